//! `[access_log]`: where the JSON-lines access log goes and how much each core buffers.
//! Absent section: no access log.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Smallest and largest per-core buffer accepted.
pub const MIN_ACCESS_LOG_BUFFER: usize = 4 * 1024;
pub const MAX_ACCESS_LOG_BUFFER: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// A file (opened for appending, created if missing; reopened on SIGUSR1) or "stdout".
    pub path: String,
    /// Per-core buffer: lines are appended here and handed to the writer thread when it is
    /// full or once a second; a line that finds it full (the writer is behind) is dropped
    /// and counted, never waited for.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
}

fn default_buffer_bytes() -> usize {
    super::defaults::access_log::BUFFER_BYTES
}

pub(super) fn validate(cfg: &Option<AccessLogConfig>, errors: &mut Vec<ConfigError>) {
    let Some(a) = cfg else { return };
    if a.path.is_empty() {
        errors.push(ConfigError::new(
            "access_log.path",
            "must be a file path or \"stdout\"",
        ));
    }
    if !(MIN_ACCESS_LOG_BUFFER..=MAX_ACCESS_LOG_BUFFER).contains(&a.buffer_bytes) {
        errors.push(ConfigError::new(
            "access_log.buffer_bytes",
            format!("must be between {MIN_ACCESS_LOG_BUFFER} and {MAX_ACCESS_LOG_BUFFER}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    fn errors(section: &str) -> String {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[access_log]\n{section}\n\
             [[routes]]\npath_prefix = \"/\"\nrespond = {{ status = 200 }}\n"
        );
        match crate::config::from_str(&text, "t.toml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_path_is_required_and_the_buffer_size_is_bounded() {
        assert_eq!(errors("path = \"stdout\""), "");
        assert!(errors("buffer_bytes = 65536").contains("path"));
        assert!(errors("path = \"\"").contains("access_log.path"));
        assert!(errors("path = \"x\"\nbuffer_bytes = 100").contains("access_log.buffer_bytes"));
    }
}
