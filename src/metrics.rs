//! Per-core counters and histograms. Each worker updates its own `Metrics` with plain
//! `Cell` arithmetic (no atomics, nothing shared); a scrape asks every worker for a
//! `Snapshot` through its control channel and sums them (`Snapshot::merge`), then renders
//! the Prometheus text format (`render`). Nothing here runs on another core's request path.
//!
//! Where it sits: a leaf (it imports only `grammar`, another leaf, for gRPC status names).

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::time::Duration;

/// Adds one to a per-core counter.
pub fn bump(c: &Cell<u64>) {
    Metrics::add(c, 1);
}

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`).
pub const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets (+Inf last).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS_US.len() + 1],
    pub sum_us: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        // Whole seconds and micros apart: `as_micros` is a u128 division on every request.
        let us = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()));
        let i = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.sum_us += o.sum_us;
    }
}

/// Requests of one (route, upstream) pair by status class (1xx..5xx).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteCounts {
    pub by_class: [u64; 5],
}

/// Slots of `Metrics::grpc`: the 17 gRPC statuses and one for any other value.
pub const GRPC_SLOTS: usize = 18;

/// One worker's counters.
#[derive(Default)]
pub struct Metrics {
    pub accepted: Cell<u64>,
    pub active: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub rate_limited: Cell<u64>,
    pub auth_rejected: Cell<u64>,
    pub blocked: Cell<u64>,
    /// Requests and connections shed over the memory threshold (answered 503 or closed).
    pub shed: Cell<u64>,
    /// Requests answered, by the protocol they came with: HTTP/1.0, HTTP/1.1, HTTP/2.
    pub by_protocol: [Cell<u64>; 3],
    /// gRPC answers by `grpc-status` (0..=16; slot 17: any other value).
    pub grpc: [Cell<u64>; GRPC_SLOTS],
    /// Counts by route index (slot 0: no route) and whether an upstream was used, by
    /// status class: no string on the request path.
    by_route: RefCell<Vec<[[u64; 5]; 2]>>,
    /// Counts of earlier configs (before a reload), by (route name, upstream name).
    retired: RefCell<Vec<(String, String, RouteCounts)>>,
    total: RefCell<Histogram>,
    upstream: RefCell<Histogram>,
}

fn class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

impl Metrics {
    /// One answered request: its route (None: no route matched) and whether it went to
    /// an upstream. Grows the table once per new route; no allocation after that.
    pub fn request(&self, route: Option<usize>, proxied: bool, status: u16, total: Duration) {
        let slot = route.map_or(0, |r| r + 1);
        let mut t = self.by_route.borrow_mut();
        if t.len() <= slot {
            t.resize(slot + 1, [[0; 5]; 2]);
        }
        t[slot][usize::from(proxied)][class(status)] += 1;
        drop(t);
        self.total.borrow_mut().observe(total);
    }

    /// The counts by names: `names(route, proxied)` gives (route name, upstream name).
    fn named(
        &self,
        names: &dyn Fn(Option<usize>, bool) -> (String, String),
    ) -> Vec<(String, String, RouteCounts)> {
        let mut out = self.retired.borrow().clone();
        for (slot, pair) in self.by_route.borrow().iter().enumerate() {
            for (proxied, by_class) in pair.iter().enumerate() {
                if by_class.iter().all(|&n| n == 0) {
                    continue;
                }
                let (r, u) = names(slot.checked_sub(1), proxied == 1);
                add_counts(&mut out, r, u, by_class);
            }
        }
        out
    }

    /// Before a reload: keeps the counts under the old config's names, since route
    /// indexes may mean other routes afterwards.
    pub fn retire(&self, names: &dyn Fn(Option<usize>, bool) -> (String, String)) {
        let named = self.named(names);
        *self.retired.borrow_mut() = named;
        self.by_route.borrow_mut().clear();
    }

    /// Time from sending the request to the upstream's response head.
    pub fn upstream_latency(&self, d: Duration) {
        self.upstream.borrow_mut().observe(d);
    }

    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get().wrapping_add(n));
    }

    pub fn snapshot(&self, names: &dyn Fn(Option<usize>, bool) -> (String, String)) -> Snapshot {
        Snapshot {
            accepted: self.accepted.get(),
            active: self.active.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            rate_limited: self.rate_limited.get(),
            auth_rejected: self.auth_rejected.get(),
            blocked: self.blocked.get(),
            shed: self.shed.get(),
            by_protocol: [0, 1, 2].map(|i| self.by_protocol[i].get()),
            grpc: std::array::from_fn(|i| self.grpc[i].get()),
            requests: self.named(names),
            total: self.total.borrow().clone(),
            upstream: self.upstream.borrow().clone(),
            gauges: Vec::new(),
            redis: None,
        }
    }
}

fn add_counts(
    out: &mut Vec<(String, String, RouteCounts)>,
    r: String,
    u: String,
    by_class: &[u64; 5],
) {
    match out.iter_mut().find(|(r2, u2, _)| *r2 == r && *u2 == u) {
        Some((_, _, c)) => {
            for (a, b) in c.by_class.iter_mut().zip(by_class.iter()) {
                *a += b;
            }
        }
        None => out.push((
            r,
            u,
            RouteCounts {
                by_class: *by_class,
            },
        )),
    }
}

/// A copy of counters, sent from a worker to the scraper, and their sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub accepted: u64,
    pub active: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rate_limited: u64,
    pub auth_rejected: u64,
    pub blocked: u64,
    pub shed: u64,
    /// Requests by protocol (see `Metrics::by_protocol`).
    pub by_protocol: [u64; 3],
    /// gRPC answers by status (see `Metrics::grpc`).
    pub grpc: [u64; GRPC_SLOTS],
    pub requests: Vec<(String, String, RouteCounts)>,
    pub total: Histogram,
    pub upstream: Histogram,
    /// Extra samples: (metric name, labels, value), summed by name+labels.
    pub gauges: Vec<(String, String, u64)>,
    /// Redis command round trips (global rate limits' leases), when Redis is in use.
    pub redis: Option<Histogram>,
}

impl Snapshot {
    pub fn merge(&mut self, o: &Snapshot) {
        self.accepted += o.accepted;
        self.active += o.active;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.rate_limited += o.rate_limited;
        self.auth_rejected += o.auth_rejected;
        self.blocked += o.blocked;
        self.shed += o.shed;
        for (a, b) in self.by_protocol.iter_mut().zip(o.by_protocol) {
            *a += b;
        }
        for (a, b) in self.grpc.iter_mut().zip(o.grpc) {
            *a += b;
        }
        for (r, u, c) in &o.requests {
            match self
                .requests
                .iter_mut()
                .find(|(r2, u2, _)| r2 == r && u2 == u)
            {
                Some((_, _, mine)) => {
                    for (a, b) in mine.by_class.iter_mut().zip(c.by_class.iter()) {
                        *a += b;
                    }
                }
                None => self.requests.push((r.clone(), u.clone(), c.clone())),
            }
        }
        self.total.merge(&o.total);
        self.upstream.merge(&o.upstream);
        if let Some(h) = &o.redis {
            self.redis.get_or_insert_with(Histogram::default).merge(h);
        }
        for (n, l, v) in &o.gauges {
            match self
                .gauges
                .iter_mut()
                .find(|(n2, l2, _)| n2 == n && l2 == l)
            {
                Some((_, _, mine)) => *mine += v,
                None => self.gauges.push((n.clone(), l.clone(), *v)),
            }
        }
    }
}

/// Process-wide values the main thread knows.
#[derive(Clone, Debug, Default)]
pub struct Process {
    pub workers: usize,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub config_version: u64,
    /// Resident memory in bytes, read at scrape time.
    pub resident_bytes: u64,
    /// Over limits.memory_ceiling now.
    pub overloaded: bool,
    /// Times the process went over limits.memory_ceiling.
    pub overloads: u64,
}

/// A label value with `\`, `"` and newlines escaped (Prometheus text format).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cum = 0;
    for (i, b) in BUCKETS_US.iter().enumerate() {
        cum += h.counts[i];
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1e6);
    }
    cum += h.counts[BUCKETS_US.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
    let _ = writeln!(out, "{name}_sum {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cum}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// The Prometheus text exposition of the summed snapshot.
pub fn render(s: &Snapshot, p: &Process) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP ringway_requests_total Requests answered, by route, upstream and status class.\n\
         # TYPE ringway_requests_total counter"
    );
    for (route, upstream, c) in &s.requests {
        for (i, n) in c.by_class.iter().enumerate() {
            if *n > 0 {
                let _ = writeln!(
                    out,
                    "ringway_requests_total{{route=\"{}\",upstream=\"{}\",class=\"{}xx\"}} {n}",
                    label(route),
                    label(upstream),
                    i + 1
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP ringway_requests_by_protocol_total Requests answered, by the protocol they came with.\n\
         # TYPE ringway_requests_by_protocol_total counter"
    );
    for (protocol, n) in ["HTTP/1.0", "HTTP/1.1", "HTTP/2"].iter().zip(s.by_protocol) {
        let _ = writeln!(
            out,
            "ringway_requests_by_protocol_total{{protocol=\"{protocol}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP ringway_grpc_responses_total gRPC answers (ringway's own and relayed ones), by grpc-status.\n\
         # TYPE ringway_grpc_responses_total counter"
    );
    for (i, n) in s.grpc.iter().enumerate() {
        if *n > 0 {
            let status = crate::grammar::GRPC_STATUS_NAMES
                .get(i)
                .copied()
                .unwrap_or("other");
            let _ = writeln!(
                out,
                "ringway_grpc_responses_total{{status=\"{status}\"}} {n}"
            );
        }
    }
    histogram(
        &mut out,
        "ringway_request_duration_seconds",
        "Time from the request head to the end of the response.",
        &s.total,
    );
    histogram(
        &mut out,
        "ringway_upstream_duration_seconds",
        "Time from sending a request upstream to the end of its exchange (response relayed).",
        &s.upstream,
    );
    if let Some(h) = &s.redis {
        histogram(
            &mut out,
            "ringway_redis_command_seconds",
            "Round trips of batches of Redis commands (global rate limits' leases).",
            h,
        );
    }
    counter(
        &mut out,
        "ringway_connections_accepted_total",
        "Client connections accepted.",
        s.accepted,
    );
    gauge(
        &mut out,
        "ringway_connections_active",
        "Client connections open.",
        s.active,
    );
    counter(
        &mut out,
        "ringway_received_bytes_total",
        "Bytes read from clients.",
        s.bytes_in,
    );
    counter(
        &mut out,
        "ringway_sent_bytes_total",
        "Bytes written to clients.",
        s.bytes_out,
    );
    counter(
        &mut out,
        "ringway_rate_limited_total",
        "Requests refused by a rate limit (429).",
        s.rate_limited,
    );
    counter(
        &mut out,
        "ringway_auth_rejected_total",
        "Requests refused for missing, invalid or unauthorised credentials (401, 403 by access).",
        s.auth_rejected,
    );
    counter(
        &mut out,
        "ringway_blocked_total",
        "Requests refused by a blocking rule (403, 405, 413 from rules).",
        s.blocked,
    );
    counter(
        &mut out,
        "ringway_overload_shed_total",
        "Requests and connections shed (503 or closed) while over limits.memory_ceiling.",
        s.shed,
    );
    let mut seen: Vec<&str> = Vec::new();
    for (name, labels, v) in &s.gauges {
        if !seen.contains(&name.as_str()) {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            seen.push(name);
        }
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
    gauge(
        &mut out,
        "ringway_workers",
        "Worker threads.",
        p.workers as u64,
    );
    counter(
        &mut out,
        "ringway_reloads_total",
        "Successful config reloads.",
        p.reloads_ok,
    );
    counter(
        &mut out,
        "ringway_reload_failures_total",
        "Config reloads refused (the old config stayed).",
        p.reloads_failed,
    );
    gauge(
        &mut out,
        "ringway_config_version",
        "Active config version (1 at start).",
        p.config_version,
    );
    gauge(
        &mut out,
        "ringway_resident_memory_bytes",
        "Resident memory of the process.",
        p.resident_bytes,
    );
    gauge(
        &mut out,
        "ringway_overloaded",
        "1 while over limits.memory_ceiling (requests are shed).",
        u64::from(p.overloaded),
    );
    counter(
        &mut out,
        "ringway_overloads_total",
        "Times the process went over limits.memory_ceiling.",
        p.overloads,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_sum_and_render() {
        let names = |r: Option<usize>, proxied: bool| match (r, proxied) {
            (Some(0), true) => ("api".to_string(), "app".to_string()),
            (Some(i), _) => (format!("r{i}"), String::new()),
            (None, _) => (String::new(), String::new()),
        };
        let a = Metrics::default();
        a.request(Some(0), true, 200, Duration::from_micros(300));
        a.request(Some(0), true, 503, Duration::from_millis(3));
        Metrics::add(&a.accepted, 2);
        let b = Metrics::default();
        b.request(Some(0), true, 204, Duration::from_secs(20));
        b.request(None, false, 404, Duration::from_micros(50));
        let mut s = a.snapshot(&names);
        s.merge(&b.snapshot(&names));
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.requests[0].2.by_class, [0, 2, 0, 0, 1]);
        let text = render(&s, &Process::default());
        assert!(
            text.contains("ringway_requests_total{route=\"api\",upstream=\"app\",class=\"2xx\"} 2")
        );
        assert!(text.contains("ringway_request_duration_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(text.contains("ringway_request_duration_seconds_bucket{le=\"+Inf\"} 4"));
        assert!(text.contains("ringway_request_duration_seconds_count 4"));
        assert!(text.contains("ringway_connections_accepted_total 2"));
        // A reload keeps the counts under the old names.
        a.retire(&names);
        a.request(Some(0), true, 200, Duration::from_micros(1));
        let renamed = |_: Option<usize>, _: bool| ("new".to_string(), String::new());
        let s = a.snapshot(&renamed);
        assert!(s
            .requests
            .iter()
            .any(|(r, _, c)| r == "api" && c.by_class[1] == 1));
        assert!(s
            .requests
            .iter()
            .any(|(r, _, c)| r == "new" && c.by_class[1] == 1));
    }
}
