//! Checks for `[protect]` and `routes[i].hsts`. Error pages named by a file are read by
//! `compiled/` (the only place that knows the config file's directory), not here.

use super::{ConfigError, GatewayConfig, RESERVED_FIELDS};
use crate::grammar::{is_field_value, is_token};

pub fn validate(cfg: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    let mut push = |p: String, r: String| errors.push(ConfigError::new(p, r));
    let p = &cfg.protect;
    if !is_field_value(p.server_header.as_bytes()) {
        push(
            "protect.server_header".into(),
            "contains a control character".into(),
        );
    }
    for (j, name) in p.remove_response_headers.iter().enumerate() {
        let path = format!("protect.remove_response_headers[{j}]");
        if !is_token(name.as_bytes()) {
            push(path, format!("{name:?} is not a valid field name"));
        } else if RESERVED_FIELDS.contains(&name.to_ascii_lowercase().as_str()) {
            push(
                path,
                format!("{name} is managed by ringway and cannot be removed"),
            );
        }
    }
    for (j, name) in p.redact_headers.iter().enumerate() {
        if !is_token(name.as_bytes()) {
            push(
                format!("protect.redact_headers[{j}]"),
                format!("{name:?} is not a valid field name"),
            );
        }
    }
    for (key, page) in &p.error_pages {
        let path = format!("protect.error_pages.{key}");
        match parse_error_status(key) {
            Ok(_) => {}
            Err(why) => push(path.clone(), why),
        }
        if page.body.is_some() == page.file.is_some() {
            push(path.clone(), "set exactly one of body and file".into());
        }
        if page.content_type.is_empty() || !is_field_value(page.content_type.as_bytes()) {
            push(
                format!("{path}.content_type"),
                "must be a non-empty field value".into(),
            );
        }
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        if let Some(h) = &r.hsts {
            if h.max_age.0.as_secs() == 0 {
                push(
                    format!("routes[{i}].hsts.max_age"),
                    "must be at least 1s (a max-age of 0 tells browsers to forget HSTS)".into(),
                );
            }
        }
    }
}

/// An `error_pages` key: a status code from 400 to 599.
pub fn parse_error_status(key: &str) -> Result<u16, String> {
    match key.parse::<u16>() {
        Ok(s) if (400..=599).contains(&s) => Ok(s),
        _ => Err(format!("{key:?} is not a status code from 400 to 599")),
    }
}
