//! The config file exactly as a user writes it (TOML, serde, `deny_unknown_fields`), its
//! documented defaults, and `validate()`, which reports *every* problem as
//! `ConfigError { path: "routes[2].upstream", reason }`. No I/O beyond reading the file;
//! nothing here is used on the request path (see `compiled/`).

mod duration;
mod error;
mod types;
mod validate;

pub use duration::Duration;
pub use error::{ConfigError, ConfigErrors};
pub use types::*;

use std::path::Path;

/// Reads, parses and validates `path`. Errors carry the file name.
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    todo!()
}

/// Parses and validates TOML text; `file` is only used in error messages.
pub fn from_str(text: &str, file: &str) -> Result<GatewayConfig, ConfigErrors> {
    todo!()
}
