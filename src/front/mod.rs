//! Front ends: the protocols clients speak. Each one reads its protocol off an accepted
//! connection, turns every request into the protocol-neutral `RequestHead`, and hands it to
//! the request's life (`pipeline`) together with its implementation of `pipeline::Front`
//! (where the body comes from, where the response goes). Connection matters (keep-alive,
//! pipelining, idle memory, upgrades) stay here; nothing about routing, policy or
//! upstreams does.
//!
//! Where it sits: above `pipeline`, below `runtime` (which accepts connections and picks
//! the front end).

pub mod http1;
pub mod http2;
