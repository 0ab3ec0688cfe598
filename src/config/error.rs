//! Config errors that name the file, the field path and what is wrong.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path like `routes[2].upstream` or `timeouts.header`; empty for whole-file errors
    /// (unreadable file, TOML syntax error: then the reason carries line/column).
    pub path: String,
    pub reason: String,
}

/// Every error found in one file. Displays one line per error: `FILE: path: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl std::error::Error for ConfigErrors {}
