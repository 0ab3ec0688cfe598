//! The declared consumers and groups, and the one place an `Identity` is put together.
//!
//! Invariant: every consumer name, group name and claim value inside an `Identity` is a
//! valid field value (no CR, LF, NUL or other CTL), so the forwarder can write them into an
//! upstream head as they are. Names from config that break this are config errors; values
//! from tokens that break it are dropped here.

use std::collections::HashMap;

use bytes::Bytes;

use super::{AuthMethod, Identity};
use crate::config::{ConfigError, GatewayConfig};
use crate::grammar::is_field_value;

/// Declared consumers and groups. Group ids index `group_names`; the declared groups are
/// every group named in `consumers[i].groups` plus `policy.groups`, in that order.
#[derive(Debug, Default)]
pub struct Directory {
    group_names: Vec<String>,
    group_ids: HashMap<String, u16>,
    /// Consumer name -> its configured groups (names, in config order).
    consumers: HashMap<String, Vec<String>>,
}

impl Directory {
    pub fn group_id(&self, name: &str) -> Option<u16> {
        self.group_ids.get(name).copied()
    }

    pub fn has_consumer(&self, name: &str) -> bool {
        self.consumers.contains_key(name)
    }

    /// The name of a declared group; "" for an id no group has.
    pub fn group_name(&self, id: u16) -> &str {
        self.group_names
            .get(usize::from(id))
            .map_or("", String::as_str)
    }

    /// Number of declared groups (ids are `0..group_count()`).
    pub fn group_count(&self) -> usize {
        self.group_names.len()
    }

    pub(super) fn build(cfg: &GatewayConfig, errors: &mut Vec<ConfigError>) -> Directory {
        let mut dir = Directory::default();
        for (i, c) in cfg.consumers.iter().enumerate() {
            let path = format!("consumers[{i}]");
            if let Err(reason) = check_name(&c.name) {
                errors.push(ConfigError::new(format!("{path}.name"), reason));
            } else if dir.consumers.contains_key(&c.name) {
                errors.push(ConfigError::new(
                    format!("{path}.name"),
                    format!("consumer {:?} is declared twice", c.name),
                ));
            }
            for (j, g) in c.groups.iter().enumerate() {
                dir.declare_group(g, &format!("{path}.groups[{j}]"), errors);
            }
            dir.consumers
                .entry(c.name.clone())
                .or_insert_with(|| c.groups.clone());
        }
        for (j, g) in cfg.policy.groups.iter().enumerate() {
            dir.declare_group(g, &format!("policy.groups[{j}]"), errors);
        }
        dir
    }

    fn declare_group(&mut self, name: &str, path: &str, errors: &mut Vec<ConfigError>) {
        if let Err(reason) = check_group(name) {
            errors.push(ConfigError::new(path, reason));
            return;
        }
        if self.group_ids.contains_key(name) {
            return;
        }
        match u16::try_from(self.group_names.len()) {
            Ok(id) => {
                self.group_ids.insert(name.to_string(), id);
                self.group_names.push(name.to_string());
            }
            Err(_) => errors.push(ConfigError::new(path, "more than 65536 groups declared")),
        }
    }

    /// The identity of `consumer`: its configured groups (if it is a declared consumer)
    /// followed by `extra_groups` (from a token), each once. Groups and claims that are not
    /// valid field values are dropped; `None` when the consumer name itself is not one.
    pub(super) fn identity<'a>(
        &self,
        method: AuthMethod,
        consumer: &str,
        extra_groups: impl Iterator<Item = &'a str>,
        claims: Vec<(Bytes, Bytes)>,
    ) -> Option<Identity> {
        check_name(consumer).ok()?;
        let mut names: Vec<&str> = Vec::new();
        for g in self.consumers.get(consumer).into_iter().flatten() {
            push_group(&mut names, g);
        }
        for g in extra_groups {
            push_group(&mut names, g);
        }
        let mut groups: Vec<u16> = names.iter().filter_map(|g| self.group_id(g)).collect();
        groups.sort_unstable();
        groups.dedup();
        Some(Identity {
            method,
            consumer: Bytes::copy_from_slice(consumer.as_bytes()),
            groups,
            groups_value: Bytes::from(names.join(",")),
            claims: claims
                .into_iter()
                .filter(|(_, v)| is_field_value(v))
                .collect(),
        })
    }
}

fn push_group<'n>(names: &mut Vec<&'n str>, g: &'n str) {
    if check_group(g).is_ok() && !names.contains(&g) {
        names.push(g);
    }
}

/// A consumer (or user) name: non-empty, a valid field value, no surrounding whitespace.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a consumer name must not be empty".into());
    }
    if !is_field_value(name.as_bytes()) || name.trim() != name {
        return Err(format!(
            "consumer name {name:?} must be printable text without control characters \
             or surrounding spaces"
        ));
    }
    Ok(())
}

/// A group name: like a consumer name, and without ',' or spaces (groups travel upstream as
/// one comma-separated field, and a groups claim string is split on spaces and commas).
pub(super) fn check_group(name: &str) -> Result<(), String> {
    let ok =
        !name.is_empty() && is_field_value(name.as_bytes()) && !name.contains([',', ' ', '\t']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "group name {name:?} must be non-empty printable text without spaces, commas \
             or control characters"
        ))
    }
}
