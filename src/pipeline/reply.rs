//! ringway's own answers: refusals, `respond` routes and redirects. The status comes from
//! the typed `Refusal` (or the route), the body from the configured error page for it when
//! there is one, and the front end's sink writes it whole. Each error is logged at debug
//! level through the redactor only. Nothing here relays upstream bytes.

use bytes::Bytes;

use super::outcome::{Next, Refusal, UpstreamFault};
use super::{Front, Life, ResponseSink};
use crate::http::canned::Canned;
use crate::http::grpc;
use crate::io::Connector;
use crate::policy::Denial;

/// Where the body of one of ringway's own responses comes from.
#[derive(Clone, Copy)]
pub(super) enum OwnBody<'a> {
    /// The configured error page for the status (`protect.error_pages`), else the short
    /// default.
    ErrorPage,
    /// A `respond` route's body (None: the short default) and content type.
    Given(Option<&'a [u8]>, Option<&'a [u8]>),
}

impl<C: Connector, F: Front> Life<'_, C, F> {
    /// Answers `refusal` with its status and the fields it calls for. The connection closes
    /// after it when `close` (a body left unread), or when the refusal itself says so.
    pub(super) async fn refuse(&mut self, refusal: Refusal, close: bool) -> Next {
        let status = refusal.status();
        // An upstream's own non-2xx status stands for what the upstream said, not ringway.
        let said = if matches!(refusal, Refusal::Upstream(UpstreamFault::Status(_))) {
            Said::Upstream
        } else {
            Said::Ringway
        };
        let close = close || refusal.closes();
        let mut fields: Vec<(&[u8], Bytes)> = Vec::new();
        if let Refusal::Policy(denial) = refusal {
            match denial {
                Denial::Status(_) => {}
                Denial::MethodNotAllowed(allow) => fields.push((b"Allow", allow)),
                Denial::Unauthorized(challenges) => fields.extend(
                    challenges
                        .into_iter()
                        .map(|c| (&b"WWW-Authenticate"[..], c)),
                ),
                Denial::RateLimited {
                    limit,
                    retry_after,
                    reset,
                } => {
                    let n = |v: u64| Bytes::from(v.to_string());
                    fields.push((b"Retry-After", n(retry_after)));
                    fields.push((b"RateLimit-Limit", n(u64::from(limit))));
                    fields.push((b"RateLimit-Remaining", Bytes::from_static(b"0")));
                    fields.push((b"RateLimit-Reset", n(reset)));
                }
            }
        }
        if fields.is_empty() {
            return self
                .answer_as(status, OwnBody::ErrorPage, &[], close, said)
                .await;
        }
        let extra: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (*n, &v[..])).collect();
        self.answer_as(status, OwnBody::ErrorPage, &extra, close, said)
            .await
    }

    /// A `respond` route's answer: its own body, never an error page.
    pub(super) async fn respond(
        &mut self,
        status: u16,
        body: Option<&[u8]>,
        content_type: Option<&[u8]>,
        close: bool,
    ) -> Next {
        self.answer(status, OwnBody::Given(body, content_type), &[], close)
            .await
    }

    /// Writes ringway's own response with `fields` (and the route's HSTS) through the sink.
    pub(super) async fn answer(
        &mut self,
        status: u16,
        own: OwnBody<'_>,
        fields: &[(&[u8], &[u8])],
        close: bool,
    ) -> Next {
        self.answer_as(status, own, fields, close, Said::Ringway)
            .await
    }

    /// `answer`, saying whose status `status` is (a gRPC call's answer depends on it).
    async fn answer_as(
        &mut self,
        status: u16,
        own: OwnBody<'_>,
        fields: &[(&[u8], &[u8])],
        close: bool,
        said: Said,
    ) -> Next {
        let cfg = self.cfg.clone();
        if status >= 400 {
            self.log_answer(status);
        }
        // A gRPC call gets its answer as gRPC: HTTP 200, trailers-only, with the gRPC status
        // of what ringway meant, or of what the upstream's HTTP status means to gRPC
        // (`http::grpc`). The log says what went on the wire.
        let grpc = (!self.req.head.method().is_empty() && self.req.head.is_grpc()).then(|| {
            let (code, message) = match said {
                Said::Ringway => (grpc::status_for(status).0, grpc::message_for(status)),
                Said::Upstream => (
                    grpc::status_for_upstream(status).0,
                    grpc::upstream_message_for(status),
                ),
            };
            (code, code.to_string(), message)
        });
        let (status, own) = match grpc {
            Some(_) => (200, OwnBody::Given(Some(b""), Some(b"application/grpc"))),
            None => (status, own),
        };
        let log = self.front.sink().log();
        log.status = Some(status);
        log.grpc_status = grpc.as_ref().map(|(code, _, _)| u16::from(*code));
        // The request ends with this answer, not with an upstream exchange before it.
        log.end = None;
        let close = close || !self.req.head.keep_alive || self.shared.keepalive_off();
        let (body, content_type) = match own {
            OwnBody::Given(body, content_type) => (body, content_type),
            OwnBody::ErrorPage => match cfg.protect.error_page(status) {
                Some(page) => (Some(&page.body[..]), Some(&page.content_type[..])),
                None => (None, None),
            },
        };
        let hsts = self.req.hsts.clone();
        let with_grpc;
        let fields = match &grpc {
            Some((_, code, message)) => {
                with_grpc = [
                    fields,
                    &[
                        (&b"grpc-status"[..], code.as_bytes()),
                        (&b"grpc-message"[..], message.as_bytes()),
                    ],
                ]
                .concat();
                &with_grpc[..]
            }
            None => fields,
        };
        let (one, joined);
        let extra: &[(&[u8], &[u8])] = match (&hsts, fields.is_empty()) {
            (None, _) => fields,
            (Some(h), true) => {
                one = [(&b"Strict-Transport-Security"[..], &h[..])];
                &one
            }
            (Some(h), false) => {
                joined = [fields, &[(&b"Strict-Transport-Security"[..], &h[..])]].concat();
                &joined
            }
        };
        let canned = Canned {
            status,
            body,
            content_type,
            server: cfg.protect.server.as_deref(),
            extra,
            close,
            // The sink says it when its protocol needs it (an HTTP/1.0 client).
            keep_alive: false,
            head_only: self.req.head.is_head(),
        };
        let sink = self.front.sink();
        match sink.answer(&canned, cfg.timeouts.write).await {
            Ok(()) if !close => Next::KeepAlive,
            _ => Next::Close,
        }
    }
}

/// Whose status an answer carries.
#[derive(Clone, Copy)]
enum Said {
    Ringway,
    /// An upstream's answer that ringway replaces (`protect.replace_upstream_5xx`, a gRPC
    /// call answered with HTTP other than 200, retries used up on a status).
    Upstream,
}

impl<C: Connector, F: Front> Life<'_, C, F> {
    /// At debug level, one line per error ringway answers itself: peer, method, target and
    /// fields (through the redactor: no secret value, no query value) and the status.
    /// Nothing when the head did not parse (its method is then cleared).
    fn log_answer(&self, status: u16) {
        let h = &self.req.head;
        if !log::log_enabled!(log::Level::Debug) || h.method().is_empty() {
            return;
        }
        log::debug!(
            "client {}: {} {} -> {status}; fields: {}",
            self.client.peer,
            String::from_utf8_lossy(h.method()),
            crate::redact::target(&h.path, h.query()),
            self.cfg
                .protect
                .redactor
                .fields((0..h.headers.len()).map(|i| h.header_at(i)))
        );
    }
}
