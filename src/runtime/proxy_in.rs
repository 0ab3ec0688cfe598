//! The PROXY protocol on a listener's new connections (`listeners[].proxy_protocol`): the
//! header an L4 balancer sends first is read off the socket before anything else (the TLS
//! handshake included), within `timeouts.header`, and never past its own end, so what
//! follows is the connection's own first bytes. The client address it names stands for the
//! peer's from then on: forwarding fields, `ip` rules and rate-limit keys, the access log,
//! `hash_on = "client_ip"`. A connection from a peer outside `proxy_protocol_from`, or whose
//! header is missing, malformed or too large, is closed unanswered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRentExt;
use monoio::net::TcpStream;

use crate::config::{Cidr, GatewayConfig};
use crate::proxy_protocol::{self, Accept, Parsed, MAX_V2_BODY, V2_SIGNATURE};

/// One listener's PROXY protocol settings.
#[derive(Debug)]
pub struct ProxyIn {
    accept: Accept,
    /// Peers that may send the header; empty: any.
    from: Vec<Cidr>,
}

/// Each listener's settings, in listener order (`server.listen` entries first: none).
pub fn for_listeners(cfg: &GatewayConfig) -> Vec<Option<Arc<ProxyIn>>> {
    let plain = cfg.server.listen.iter().map(|_| None);
    let listeners = cfg.listeners.iter().map(|l| {
        l.proxy_protocol.map(|accept| {
            Arc::new(ProxyIn {
                accept,
                // (Validated with the config.)
                from: l
                    .proxy_protocol_from
                    .iter()
                    .filter_map(|c| Cidr::parse(c).ok())
                    .collect(),
            })
        })
    });
    plain.chain(listeners).collect()
}

/// The shortest header: v1's `PROXY UNKNOWN\r\n`.
const SHORTEST: usize = 15;

impl ProxyIn {
    /// Reads the header off `stream` by `deadline`; the client address it names (the
    /// connection's `peer` when it names none) and the address the client connected to, or
    /// None: close the connection.
    pub async fn read(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Option<(SocketAddr, Option<SocketAddr>)> {
        if !self.from.is_empty() && !self.from.iter().any(|c| c.contains(peer.ip())) {
            log::debug!("client {peer}: may not send a PROXY protocol header; closed");
            return None;
        }
        match monoio::time::timeout_at(deadline.into(), self.header(stream)).await {
            Ok(Ok(h)) => Some((h.source.unwrap_or(peer), h.source.and(h.destination))),
            Ok(Err(why)) => {
                log::debug!("client {peer}: {why}; closed");
                None
            }
            Err(_) => {
                log::debug!("client {peer}: no PROXY protocol header in time; closed");
                None
            }
        }
    }

    async fn header(&self, stream: &mut TcpStream) -> Result<proxy_protocol::Header, String> {
        // Room for v1's longest line and the usual v2 header; a v2 header with large TLVs
        // grows it (`parse` refuses one past `MAX_V2_BODY` before that).
        let mut buf = vec![0u8; 256];
        let mut have = 0;
        let mut want = SHORTEST;
        loop {
            if want > buf.len() {
                buf.resize(want.min(16 + MAX_V2_BODY), 0);
            }
            let (res, b) = stream.read_exact(buf.slice_mut(have..want)).await;
            buf = b.into_inner();
            res.map_err(|e| format!("reading the PROXY protocol header: {e}"))?;
            have = want;
            match proxy_protocol::parse(&buf[..have], self.accept) {
                Ok(Parsed::Done(h, _)) => return Ok(h),
                Err(e) => return Err(e.to_string()),
                // Never read past the header's end: v2 says its length in its 16-byte head,
                // a v1 line is read up to its LF a byte at a time.
                Ok(Parsed::Incomplete) if buf.starts_with(V2_SIGNATURE) && have >= 16 => {
                    want = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
                }
                Ok(Parsed::Incomplete) if buf[..have.min(12)] == V2_SIGNATURE[..have.min(12)] => {
                    want = 16;
                }
                Ok(Parsed::Incomplete) => want = have + 1,
            }
        }
    }
}
