//! Front ends: the protocols clients speak. Each one reads its protocol off an accepted
//! connection, turns every request into the protocol-neutral `RequestHead`, and hands it to
//! the request's life (`pipeline`) together with its implementation of `pipeline::Front`
//! (where the body comes from, where the response goes). Connection matters (keep-alive,
//! pipelining, idle memory, upgrades) stay here; nothing about routing, policy or
//! upstreams does.
//!
//! Where it sits: above `pipeline`, below `runtime` (which accepts connections and picks
//! the front end).

use std::time::Duration;

pub mod http1;
pub mod http2;

/// A connection idle this long (HTTP/1.1: no request coming; HTTP/2: no stream open) has
/// given its large buffers back, and says so (`Shared::note_shrunk`).
pub(crate) const SHRINK_AFTER: Duration = Duration::from_secs(1);
