//! Checks of `[auth]`, `[[consumers]]`, `[policy]`, `[rules]` and each route's `access` and
//! `rules`. Files (key files, JWKS, htpasswd) are read and checked when the policy is
//! compiled (`policy::Policy::build`), which `ringway check` also runs.

use std::collections::HashSet;

use super::redis::GlobalLimits;
use super::{AccessConfig, FieldRuleConfig, GatewayConfig, RulesConfig};
use super::{ConfigError, PathPatternConfig};
use super::{Glob, Rate, RateLimitScope};
use crate::config::Cidr;
use crate::grammar::{is_field_value, is_hop_by_hop, is_token};

pub(super) fn validate(cfg: &GatewayConfig, e: &mut Vec<ConfigError>) {
    let mut push = |p: String, r: String| e.push(ConfigError::new(p, r));
    auth(cfg, &mut push);
    let (consumers, groups) = names(cfg, &mut push);
    policy(cfg, &mut push);
    let mut globals = GlobalLimits::new(cfg);
    rules("rules", &cfg.rules, &mut globals, &mut push);
    for (i, r) in cfg.routes.iter().enumerate() {
        rules(
            &format!("routes[{i}].rules"),
            &r.rules,
            &mut globals,
            &mut push,
        );
        if let Some(a) = &r.access {
            access(
                cfg,
                &format!("routes[{i}].access"),
                a,
                &consumers,
                &groups,
                &mut push,
            );
        }
    }
}

type Push<'a> = dyn FnMut(String, String) + 'a;

fn field_name(path: &str, name: &str, optional: bool, push: &mut Push<'_>) {
    if name.is_empty() && optional {
        return;
    }
    if !is_token(name.as_bytes()) {
        push(path.into(), format!("{name:?} is not a valid field name"));
    } else if is_hop_by_hop(name.as_bytes())
        || ["content-length", "host"].contains(&name.to_ascii_lowercase().as_str())
    {
        push(path.into(), format!("{name:?} cannot be used here"));
    }
}

fn auth(cfg: &GatewayConfig, push: &mut Push<'_>) {
    let a = &cfg.auth;
    field_name("auth.consumer_header", &a.consumer_header, true, push);
    field_name("auth.groups_header", &a.groups_header, true, push);
    field_name("auth.client_cert_header", &a.client_cert_header, true, push);
    if let Some(k) = &a.api_key {
        field_name("auth.api_key.header", &k.header, true, push);
        match &k.query {
            Some(q) if q.is_empty() || !q.bytes().all(|b| b.is_ascii_graphic() && b != b'&') => {
                push(
                    "auth.api_key.query".into(),
                    format!("{q:?} is not a query parameter name"),
                )
            }
            None if k.header.is_empty() => push(
                "auth.api_key".into(),
                "set header or query: the key must come from somewhere".into(),
            ),
            _ => {}
        }
    }
    if let Some(j) = &a.jwt {
        field_name("auth.jwt.header", &j.header, false, push);
        if j.consumer_claim.is_empty() {
            push("auth.jwt.consumer_claim".into(), "must not be empty".into());
        }
        for name in j.forward_claims.keys() {
            field_name(
                &format!("auth.jwt.forward_claims.{name}"),
                name,
                false,
                push,
            );
        }
        if j.keys.is_empty() && j.jwks_file.is_none() {
            push("auth.jwt".into(), "no keys: set keys or jwks_file".into());
        }
    }
    if let Some(b) = &a.basic {
        if !is_field_value(b.realm.as_bytes()) || b.realm.contains('"') || b.realm.contains('\\') {
            push(
                "auth.basic.realm".into(),
                format!("{:?} must be printable text without '\"' or '\\'", b.realm),
            );
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && is_field_value(s.as_bytes()) && !s.contains(',') && s.trim() == s
}

/// Checks consumer and group names; returns the declared ones.
fn names(cfg: &GatewayConfig, push: &mut Push<'_>) -> (HashSet<String>, HashSet<String>) {
    let mut consumers = HashSet::new();
    let mut groups = HashSet::new();
    for (i, c) in cfg.consumers.iter().enumerate() {
        if !valid_name(&c.name) {
            push(
                format!("consumers[{i}].name"),
                format!("{:?} must be non-empty printable text without ','", c.name),
            );
        } else if !consumers.insert(c.name.clone()) {
            push(
                format!("consumers[{i}].name"),
                format!("{:?} is defined twice", c.name),
            );
        }
        for (j, g) in c.groups.iter().enumerate() {
            if !valid_name(g) {
                push(
                    format!("consumers[{i}].groups[{j}]"),
                    format!("{g:?} must be non-empty printable text without ','"),
                );
            }
            groups.insert(g.clone());
        }
    }
    for (j, g) in cfg.policy.groups.iter().enumerate() {
        if !valid_name(g) {
            push(
                format!("policy.groups[{j}]"),
                format!("{g:?} must be non-empty printable text without ','"),
            );
        }
        groups.insert(g.clone());
    }
    (consumers, groups)
}

fn one_of(path: &str, v: &str, allowed: &[&str], push: &mut Push<'_>) {
    if !allowed.contains(&v) {
        push(
            path.into(),
            format!("{v:?} is not one of {}", allowed.join(", ")),
        );
    }
}

fn policy(cfg: &GatewayConfig, push: &mut Push<'_>) {
    let p = &cfg.policy;
    one_of(
        "policy.client_ip_from",
        &p.client_ip_from,
        &["x-forwarded-for", "forwarded"],
        push,
    );
    one_of(
        "policy.steer_by_client",
        &p.steer_by_client,
        &["auto", "on", "off"],
        push,
    );
    one_of(
        "policy.escaped_slashes",
        &p.escaped_slashes,
        &["keep", "reject", "decode"],
        push,
    );
    if !(16..=1 << 24).contains(&p.rate_limit_keys) {
        push(
            "policy.rate_limit_keys".into(),
            format!("{} is out of range: 16 to 16777216", p.rate_limit_keys),
        );
    }
}

fn cidrs(path: &str, list: &[String], push: &mut Push<'_>) {
    for (i, c) in list.iter().enumerate() {
        if let Err(why) = Cidr::parse(c) {
            push(format!("{path}[{i}]"), why);
        }
    }
}

fn rules<'a>(p: &str, r: &'a RulesConfig, globals: &mut GlobalLimits<'a>, push: &mut Push<'_>) {
    cidrs(&format!("{p}.ip_allow"), &r.ip_allow, push);
    cidrs(&format!("{p}.ip_deny"), &r.ip_deny, push);
    if let Some(ms) = &r.methods {
        if ms.is_empty() {
            push(format!("{p}.methods"), "list at least one method".into());
        }
        for (i, m) in ms.iter().enumerate() {
            if !is_token(m.as_bytes()) {
                push(
                    format!("{p}.methods[{i}]"),
                    format!("{m:?} is not a method"),
                );
            }
        }
    }
    for (i, d) in r.deny_paths.iter().enumerate() {
        path_pattern(&format!("{p}.deny_paths[{i}]"), d, push);
    }
    for (i, f) in r.headers.iter().enumerate() {
        let fp = format!("{p}.headers[{i}]");
        if !is_token(f.name.as_bytes()) {
            push(
                format!("{fp}.name"),
                format!("{:?} is not a valid field name", f.name),
            );
        }
        field_rule(&fp, f, push);
    }
    for (i, f) in r.query.iter().enumerate() {
        let fp = format!("{p}.query[{i}]");
        if f.name.is_empty()
            || f.name
                .bytes()
                .any(|b| !b.is_ascii_graphic() || b == b'&' || b == b'=')
        {
            push(
                format!("{fp}.name"),
                format!("{:?} is not a query parameter name", f.name),
            );
        }
        field_rule(&fp, f, push);
    }
    if r.max_body_bytes == Some(0) {
        push(
            format!("{p}.max_body_bytes"),
            "must be at least 1 (omit it for no limit)".into(),
        );
    }
    for (i, l) in r.rate_limits.iter().enumerate() {
        let lp = format!("{p}.rate_limits[{i}]");
        match l.key.split_once(':') {
            Some(("header", name)) if is_token(name.as_bytes()) => {}
            None if ["ip", "consumer", "route"].contains(&l.key.as_str()) => {}
            _ => push(
                format!("{lp}.key"),
                format!(
                    "{:?} is not one of ip, consumer, route, header:<Field-Name>",
                    l.key
                ),
            ),
        }
        let rate = Rate::parse(&l.rate, l.burst);
        if let Err(why) = &rate {
            push(format!("{lp}.rate"), why.clone());
        }
        if l.scope == RateLimitScope::Global {
            globals.check(&lp, l, rate.as_ref().ok(), push);
        }
    }
}

fn path_pattern(p: &str, d: &PathPatternConfig, push: &mut Push<'_>) {
    match (&d.exact, &d.prefix, &d.glob) {
        (Some(x), None, None) | (None, Some(x), None) => {
            if !x.starts_with('/') {
                push(p.into(), format!("{x:?} must start with '/'"));
            }
        }
        (None, None, Some(g)) => {
            if let Err(why) = Glob::new(g, d.case_sensitive, true) {
                push(format!("{p}.glob"), why);
            }
        }
        _ => push(p.into(), "set exactly one of exact, prefix and glob".into()),
    }
}

fn field_rule(p: &str, f: &FieldRuleConfig, push: &mut Push<'_>) {
    if f.required && f.forbidden {
        push(p.into(), "required and forbidden cannot both be set".into());
    }
    if !f.required && !f.forbidden && f.allow.is_empty() && f.deny.is_empty() {
        push(
            p.into(),
            "the rule does nothing: set required, forbidden, allow or deny".into(),
        );
    }
    for (list, name) in [(&f.allow, "allow"), (&f.deny, "deny")] {
        for (i, g) in list.iter().enumerate() {
            if let Err(why) = Glob::new(g, f.case_sensitive, false) {
                push(format!("{p}.{name}[{i}]"), why);
            }
        }
    }
}

fn access(
    cfg: &GatewayConfig,
    p: &str,
    a: &AccessConfig,
    consumers: &HashSet<String>,
    groups: &HashSet<String>,
    push: &mut Push<'_>,
) {
    let mtls = cfg
        .listeners
        .iter()
        .any(|l| l.tls.as_ref().is_some_and(|t| t.client_auth.is_some()));
    let configured = |m: &str| match m {
        "api_key" => cfg.auth.api_key.is_some(),
        "jwt" => cfg.auth.jwt.is_some(),
        "basic" => cfg.auth.basic.is_some(),
        "mtls" => mtls,
        _ => false,
    };
    let any = ["api_key", "jwt", "basic", "mtls"]
        .iter()
        .any(|m| configured(m));
    if let Some(ms) = &a.auth {
        if ms.is_empty() && !a.public {
            push(format!("{p}.auth"), "list at least one method".into());
        }
        for (i, m) in ms.iter().enumerate() {
            if !["api_key", "jwt", "basic", "mtls"].contains(&m.as_str()) {
                push(
                    format!("{p}.auth[{i}]"),
                    format!("{m:?} is not one of api_key, jwt, basic, mtls"),
                );
            } else if !configured(m) {
                let how = if m == "mtls" {
                    "give a TLS listener a client_auth table".to_string()
                } else {
                    format!("add an [auth.{m}] table")
                };
                push(
                    format!("{p}.auth[{i}]"),
                    format!("{m:?} is not configured: {how}"),
                );
            }
        }
    } else if !a.public && !any {
        push(
            p.into(),
            "no authentication is configured: add [auth.api_key], [auth.jwt], [auth.basic] or a TLS listener with client_auth, or set public = true".into(),
        );
    }
    for (i, c) in a.consumers.iter().enumerate() {
        if !consumers.contains(c) {
            push(
                format!("{p}.consumers[{i}]"),
                format!("unknown consumer {c:?}: declare it in [[consumers]]"),
            );
        }
    }
    for (i, g) in a.groups.iter().enumerate() {
        if !groups.contains(g) {
            push(
                format!("{p}.groups[{i}]"),
                format!("unknown group {g:?}: name it in a consumer's groups or in policy.groups"),
            );
        }
    }
    if a.public && (!a.consumers.is_empty() || !a.groups.is_empty()) {
        push(
            p.into(),
            "a public route cannot also list consumers or groups".into(),
        );
    }
}
