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
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.path.is_empty() {
                write!(f, "{}: {}", self.file, e.reason)?;
            } else {
                write!(f, "{}: {}: {}", self.file, e.path, e.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl ConfigErrors {
    pub fn one(file: &str, path: impl Into<String>, reason: impl Into<String>) -> ConfigErrors {
        ConfigErrors {
            file: file.to_string(),
            errors: vec![ConfigError::new(path, reason)],
        }
    }
}
