//! HTTP/2 with prior knowledge (h2c) on the origin's listeners, HTTP/2 over TLS with
//! `--tls CERT KEY` (ALPN h2, every connection), and a gRPC echo service.
//!
//! A connection whose first bytes are the HTTP/2 preface is served by the `h2` crate over
//! monoio's poll-io socket (the bytes already read are read again first). Per stream:
//!
//! - **gRPC** (`content-type: application/grpc…`), any method: each request message is
//!   sent back as a response message as soon as it is whole, so unary, client-, server- and
//!   bidirectional streaming calls all echo, replies flowing before the client half-closes.
//!   The call ends with `grpc-status: 0`, and the request's `x-meta-*` fields (of its head
//!   or its trailers) come back as trailing metadata (`-bin` ones included). Metadata `x-grpc-status: N` (with
//!   `x-grpc-message`) answers with that status instead, trailers-only, after reading the
//!   request; `x-http-status: N` answers plain HTTP status N with a text body, as a broken
//!   or misrouted server would. Messages are written directly (5-byte prefix), with no code generation.
//! - **`/echo`**: the request body back as it arrives (no content-length), under flow
//!   control both ways.
//! - **anything else**: the body sizes of HTTP/1.1 (`/bytes/N`, `/small`, `/64k.bin`,
//!   `/1m.bin`, pattern `a..z`), else `ok\n`; the request body is read and dropped.
//!
//! Responses wait for the client's flow-control window, so a slow reader holds the
//! origin back instead of filling its memory.

use std::future::poll_fn;

use bytes::{BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Request, Response};
use monoio::net::TcpStream;
use ringway::front::http2::Prefixed;

use super::{body_size, pattern, Res, REQUESTS};

/// The largest gRPC message echoed (larger ones end the call with RESOURCE_EXHAUSTED).
const MAX_MESSAGE: usize = 16 << 20;

/// Serves one HTTP/2 connection whose first bytes, `first`, were already read.
pub async fn serve(s: TcpStream, first: Bytes, port: u16) -> Res<()> {
    let io = s.try_into_poll_io().map_err(|(e, _)| e.to_string())?;
    serve_io(Prefixed::new(first, io), port).await
}

/// The TLS settings of `--tls`: ALPN `h2` only.
pub type TlsConfig = std::sync::Arc<rustls::ServerConfig>;

/// Reads `--tls`'s certificate chain and key.
pub fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(std::sync::Arc::new(config))
}

/// Serves one connection as HTTP/2 over TLS.
pub async fn serve_tls(s: TcpStream, tls: TlsConfig, port: u16) -> Res<()> {
    let io = s.try_into_poll_io().map_err(|(e, _)| e.to_string())?;
    let session = rustls::ServerConnection::new(tls).map_err(|e| e.to_string())?;
    let mut io = ringway::tls::poll::PollTls::new(io, session);
    poll_fn(|cx| io.poll_handshake(cx))
        .await
        .map_err(|e| format!("tls handshake: {e:?}"))?;
    serve_io(io, port).await
}

/// Serves HTTP/2 on `io`.
async fn serve_io<T>(io: T, port: u16) -> Res<()>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(1000)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(next) = conn.accept().await {
        let (req, respond) = next.map_err(|e| e.to_string())?;
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        monoio::spawn(async move {
            let _ = stream(req, respond, port).await;
        });
    }
    Ok(())
}

async fn stream(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    port: u16,
) -> Result<(), h2::Error> {
    let grpc = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let mut head = Response::builder()
        .status(200)
        .header("server", "ringway-origin")
        .header("x-origin-port", port.to_string());
    if grpc {
        head = head.header("content-type", "application/grpc");
        let (parts, mut body) = req.into_parts();
        let http_status = parts
            .headers
            .get("x-http-status")
            .and_then(|v| v.to_str().ok()?.parse::<u16>().ok());
        if let Some(status) = http_status {
            // Not a gRPC answer at all: that HTTP status, a text body.
            while let Some(chunk) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk?.len());
            }
            let text = Bytes::from(format!("origin says {status}\n"));
            let r = Response::builder()
                .status(status)
                .header("content-type", "text/plain")
                .header("content-length", text.len().to_string())
                .body(())
                .unwrap_or_default();
            let mut send = respond.send_response(r, false)?;
            return send_all(&mut send, text, true).await;
        }
        if let Some(code) = parts.headers.get("x-grpc-status") {
            // Trailers-only: the status in the one HEADERS frame.
            while let Some(chunk) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk?.len());
            }
            let mut r = head.body(()).unwrap_or_default();
            r.headers_mut().insert("grpc-status", code.clone());
            if let Some(m) = parts.headers.get("x-grpc-message") {
                r.headers_mut().insert("grpc-message", m.clone());
            }
            respond.send_response(r, true)?;
            return Ok(());
        }
        let mut send = respond.send_response(head.body(()).unwrap_or_default(), false)?;
        return echo(&parts.headers, body, &mut send).await;
    }
    if req.uri().path() == "/echo" {
        // The request body back as it comes, each piece's window opened only once it went
        // out: a slow reader holds the sender back.
        let head = head.header("content-type", "application/octet-stream");
        let mut send = respond.send_response(head.body(()).unwrap_or_default(), false)?;
        let mut body = req.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let n = chunk.len();
            send_all(&mut send, chunk, false).await?;
            let _ = body.flow_control().release_capacity(n);
        }
        return send_all(&mut send, Bytes::new(), true).await;
    }
    let size = body_size(req.uri().path());
    let len = size.map_or(3, |n| n as usize);
    head = head
        .header("content-type", "application/octet-stream")
        .header("content-length", len.to_string());
    let mut body = req.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let mut send = respond.send_response(head.body(()).unwrap_or_default(), len == 0)?;
    match size {
        None => send_all(&mut send, Bytes::from_static(b"ok\n"), true).await,
        Some(n) => {
            let mut left = n as usize;
            let p = pattern();
            let mut phase = 0;
            while left > 0 {
                let take = left.min(p.len() - 26);
                let piece = Bytes::copy_from_slice(&p[phase..phase + take]);
                phase = (phase + take) % 26;
                left -= take;
                send_all(&mut send, piece, left == 0).await?;
            }
            Ok(())
        }
    }
}

/// The gRPC echo: every whole request message back as it comes, then the trailers.
async fn echo(
    fields: &HeaderMap,
    mut body: RecvStream,
    send: &mut SendStream<Bytes>,
) -> Result<(), h2::Error> {
    let mut trailers = HeaderMap::new();
    for (name, value) in fields {
        if name.as_str().starts_with("x-meta-") {
            trailers.append(name.clone(), value.clone());
        }
    }
    let mut buf = BytesMut::new();
    let mut status = HeaderValue::from_static("0");
    let mut message = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.put_slice(&chunk);
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > MAX_MESSAGE {
                status = HeaderValue::from_static("8");
                message = Some(HeaderValue::from_static("message too large"));
                buf.clear();
                break;
            }
            if buf.len() < 5 + len {
                break;
            }
            let whole = buf.split_to(5 + len).freeze();
            send_all(send, whole, false).await?;
        }
    }
    // The request's own trailers' x-meta-* fields come back too.
    if let Some(sent) = body.trailers().await? {
        for (name, value) in &sent {
            if name.as_str().starts_with("x-meta-") {
                trailers.append(name.clone(), value.clone());
            }
        }
    }
    if !buf.is_empty() && message.is_none() {
        status = HeaderValue::from_static("13");
        message = Some(HeaderValue::from_static("request ended inside a message"));
    }
    trailers.insert("grpc-status", status);
    if let Some(m) = message {
        trailers.insert("grpc-message", m);
    }
    send.send_trailers(trailers)
}

/// Sends `data` as the client's window allows (never more than it opened); `end` ends the
/// stream with its last piece.
async fn send_all(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        if end {
            send.send_data(Bytes::new(), true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let room = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(room) => room?,
            None => return Err(h2::Reason::CANCEL.into()),
        };
        let piece = data.split_to(room.min(data.len()));
        send.send_data(piece, end && data.is_empty())?;
    }
    Ok(())
}
