//! ringway's own answers: errors, refusals and `respond` routes. Each is written whole
//! (status line, `Server`, framing, fields, body) by `canned`, with the configured error page
//! for its status when there is one, and each error is logged at debug level through the
//! redactor only. Nothing here relays upstream bytes.

use bytes::Bytes;

use super::{ClientConn, Next};
use crate::compiled::Compiled;
use crate::http::canned::{self, Canned};
use crate::io::{Connector, Stream};
use crate::policy::Denial;

/// Where the body of one of ringway's own responses comes from.
#[derive(Clone, Copy)]
enum OwnBody<'a> {
    /// The configured error page for the status (`protect.error_pages`), else the short
    /// default.
    ErrorPage,
    /// A `respond` route's body (None: the short default) and content type.
    Given(Option<&'a [u8]>, Option<&'a [u8]>),
}

impl<S, C> ClientConn<S, C>
where
    S: Stream,
    C: Connector,
{
    /// Writes ringway's own short response (or the configured error page for `status`).
    /// `close` forces `Connection: close`.
    pub(super) async fn reply(&mut self, cfg: &Compiled, status: u16, close: bool) -> Next {
        self.reply_full(cfg, status, OwnBody::ErrorPage, &[], close)
            .await
    }

    /// A `respond` route's answer: its own body, never an error page.
    pub(super) async fn reply_with(
        &mut self,
        cfg: &Compiled,
        status: u16,
        body: Option<&[u8]>,
        content_type: Option<&[u8]>,
        close: bool,
    ) -> Next {
        self.reply_full(cfg, status, OwnBody::Given(body, content_type), &[], close)
            .await
    }

    /// ringway's own short response with extra fields (`Allow`, `WWW-Authenticate`...).
    pub(super) async fn reply_fields(
        &mut self,
        cfg: &Compiled,
        status: u16,
        fields: &[(&[u8], &[u8])],
        close: bool,
    ) -> Next {
        self.reply_full(cfg, status, OwnBody::ErrorPage, fields, close)
            .await
    }

    async fn reply_full(
        &mut self,
        cfg: &Compiled,
        status: u16,
        own: OwnBody<'_>,
        fields: &[(&[u8], &[u8])],
        close: bool,
    ) -> Next {
        if status >= 400 {
            self.log_answer(cfg, status);
        }
        self.cout.log.status = status;
        // The request ends with this answer, not with an upstream exchange before it.
        self.cout.log.end = None;
        let close = close || !self.head.keep_alive || self.shared.keepalive_off();
        let keep_alive_10 = !close && self.head.version == crate::http::Version::Http10;
        let (body, content_type) = match own {
            OwnBody::Given(body, content_type) => (body, content_type),
            OwnBody::ErrorPage => match cfg.protect.error_page(status) {
                Some(page) => (Some(&page.body[..]), Some(&page.content_type[..])),
                None => (None, None),
            },
        };
        self.cout.buf.clear();
        let hsts = self.hsts.clone();
        let mut more: [(&[u8], &[u8]); 2] = [(b"", b""); 2];
        let mut n = 0;
        if keep_alive_10 {
            more[n] = (b"Connection", b"keep-alive");
            n += 1;
        }
        if let Some(h) = &hsts {
            more[n] = (b"Strict-Transport-Security", h);
            n += 1;
        }
        let joined;
        let extra: &[(&[u8], &[u8])] = match (n, fields.is_empty()) {
            (0, _) => fields,
            (_, true) => &more[..n],
            (_, false) => {
                joined = [fields, &more[..n]].concat();
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
            head_only: self.head.is_head(),
        };
        canned::write_response(&canned, &mut self.cout.buf);
        match self.cout.flush(cfg.timeouts.write).await {
            Ok(()) if !close => Next::KeepAlive,
            _ => Next::Close,
        }
    }

    /// At debug level, one line per error ringway answers itself: peer, method, target and
    /// fields (through the redactor: no secret value, no query value) and the status.
    /// Nothing when the head did not parse (`run` then clears the method).
    fn log_answer(&self, cfg: &Compiled, status: u16) {
        let h = &self.head;
        if !log::log_enabled!(log::Level::Debug) || h.method().is_empty() {
            return;
        }
        log::debug!(
            "client {}: {} {} -> {status}; fields: {}",
            self.peer,
            String::from_utf8_lossy(h.method()),
            crate::redact::target(&h.path, h.query()),
            cfg.protect
                .redactor
                .fields((0..h.headers.len()).map(|i| h.header_at(i)))
        );
    }

    /// Answers a request the policy refused, with the fields its status calls for.
    pub(super) async fn deny(&mut self, cfg: &Compiled, denial: Denial, has_body: bool) -> Next {
        let mut fields: Vec<(&[u8], Bytes)> = Vec::new();
        let status = match denial {
            Denial::Status(s) => s,
            Denial::MethodNotAllowed(allow) => {
                fields.push((b"Allow", allow));
                405
            }
            Denial::Unauthorized(challenges) => {
                fields.extend(
                    challenges
                        .into_iter()
                        .map(|c| (&b"WWW-Authenticate"[..], c)),
                );
                401
            }
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
                429
            }
        };
        let extra: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (*n, &v[..])).collect();
        // A refused request's body is never read: the connection closes after the answer.
        self.reply_fields(cfg, status, &extra, has_body || status == 413)
            .await
    }
}
