//! A fleet end to end: three ringway processes with one config behind HAProxy (TCP mode,
//! PROXY v2, health-checked), one Redis, a global `ip`-keyed limit, and load from three
//! client addresses (127.0.0.2, .3, .4: one `ringway-loadgen --source` each, open loop at
//! three times the limit). What each source got is counted twice: by its loadgen (statuses)
//! and at the origin (requests by `X-Forwarded-For`, which also shows the PROXY header was
//! honoured), and held against the token bucket's bound: from a fresh key, at most
//! `rate × T + burst` in a run of T seconds, whichever instances served it.
//!
//! Drivers: STYLE asks for every end-to-end test under both drivers. A fleet test runs
//! 20 s of load, so instead of running each twice, every fleet mixes them: instances 0 and
//! 2 on io_uring, instance 1 on the legacy driver.
//!
//! Load is kept small (150 req/s per source, 450 in all) for a 2-core machine that runs other
//! tests at the same time. Without redis-server or haproxy the tests fail saying so;
//! `RINGWAY_SKIP_FLEET=1` skips them.

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ringway_test_support::*;

/// The limit, per source address: 50 requests a second, 50 at once.
const RATE: u64 = 50;
const BURST: u64 = 50;
/// Each source's open-loop rate: three times the limit.
const LOAD: u64 = 3 * RATE;
/// loadgen connections per source.
const CONNS: u64 = 4;
const SOURCES: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const DRIVERS: [Driver; 3] = [Driver::IoUring, Driver::Legacy, Driver::IoUring];
/// `redis.local_share`: what one instance admits alone while Redis is away.
const LOCAL_SHARE: f64 = 0.34;
/// `redis.command_timeout`: no request waits on Redis longer.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest answer allowed while Redis is away: the command timeout, plus a generous
/// margin for a loaded 2-core machine (and loadgen's own send lag, part of its latency).
const SLOWEST_WITHOUT_REDIS: Duration = Duration::from_secs(1);
/// Tokens of slack at a window's edges: loadgen's run and Redis' clock do not start at the
/// same instant, so the first and last admissions of a source may be a little further apart
/// than loadgen's duration (the last request's send lag and its way through HAProxy and
/// ringway): 2 tokens are 40 ms at 50/s, far above both on loopback.
const EDGE: u64 = 2;
/// The most tokens one worker holds in a lease: rate × 50 ms, at least 1.
const LEASE: u64 = (RATE * 50).div_ceil(1000);
/// The metrics that say whether the limit was counted in Redis or alone.
const LEASES: &str = "ringway_redis_leases_total";
const FALLBACKS: &str = "ringway_rate_limit_fallbacks_total";
/// A run's length in the first two tests, and each phase's in the third.
const LONG: Duration = Duration::from_secs(20);
const PHASE: Duration = Duration::from_secs(7);

/// Redis, the origin, three ringway instances and HAProxy in front of them.
struct Fleet {
    redis: RedisServer,
    origin: Origin,
    /// `None` once killed.
    gateways: Vec<Option<Gateway>>,
    balancer: Haproxy,
}

impl Fleet {
    /// `start`, unless the fleet tests are skipped (`RINGWAY_SKIP_FLEET=1`).
    fn unless_skipped(limited: bool) -> Option<Fleet> {
        (!fleet_skipped()).then(|| Fleet::start(limited))
    }

    /// With `limited`, every instance has `[redis]` and the global limit, and the fleet is
    /// ready once each instance is connected to Redis.
    fn start(limited: bool) -> Fleet {
        let redis = RedisServer::start();
        let origin = Origin::ok("ok");
        let config = instance_config(&redis, &origin, limited);
        let gateways: Vec<Gateway> = DRIVERS.map(|d| Gateway::start(&config, d)).into();
        let backends: Vec<_> = gateways
            .iter()
            .map(|g| g.listener_addr("http, h2c"))
            .collect();
        let balancer = Haproxy::tcp_balancer(&backends, true);
        let fleet = Fleet {
            redis,
            origin,
            gateways: gateways.into_iter().map(Some).collect(),
            balancer,
        };
        if limited {
            fleet.wait_redis_up();
        }
        fleet
    }

    fn url(&self) -> String {
        format!("http://{}/", self.balancer.addr())
    }

    /// The instances still running.
    fn live(&self) -> impl Iterator<Item = &Gateway> {
        self.gateways.iter().flatten()
    }

    /// SIGKILL to instance `i`'s PID; waits until it is gone.
    fn kill(&mut self, i: usize) {
        let mut gw = self.gateways[i].take().expect("a live instance");
        gw.signal("KILL");
        assert!(gw.wait_exit().is_some(), "instance {i} did not die");
    }

    /// `name` summed over every sample, on every live instance's /metrics.
    fn metric(&self, name: &str) -> Vec<f64> {
        self.live().map(|gw| gw.metric(name) as f64).collect()
    }

    /// Waits until every worker of every live instance is connected to Redis.
    fn wait_redis_up(&self) {
        eventually("every instance connected to Redis (ringway_redis_up)").until(|| {
            let up = self.metric("ringway_redis_up");
            if up.iter().all(|&n| n >= 1.0) {
                Ok(())
            } else {
                Err(format!("ringway_redis_up per instance: {up:?}"))
            }
        });
    }

    /// Requests the origin received so far from each source (by `X-Forwarded-For`);
    /// panics on one from anyone else.
    fn forwarded(&self) -> [u64; 3] {
        let mut counts = [0; 3];
        for r in self.origin.requests() {
            let xff = r.header("x-forwarded-for").unwrap_or("(none)");
            let i = SOURCES.iter().position(|s| *s == xff);
            let i = i.unwrap_or_else(|| panic!("the origin got X-Forwarded-For {xff}"));
            counts[i] += 1;
        }
        counts
    }

    /// Asserts `name` grew on every live instance since `before`.
    fn assert_grew(&self, name: &str, before: &[f64]) {
        let now = self.metric(name);
        println!("  {name} per instance {before:?} -> {now:?}");
        assert!(
            now.len() == before.len() && now.iter().zip(before).all(|(a, b)| a > b),
            "{name} per instance: {before:?} -> {now:?}"
        );
    }

    /// Asserts the limit was counted in Redis: every live instance took leases since
    /// `leases_before` (one count per live instance), and Redis holds ringway's keys.
    fn assert_counted_in_redis(&self, leases_before: &[f64]) {
        self.assert_grew(LEASES, leases_before);
        let keys = self.redis.keys("ringway:*");
        println!("  keys in Redis {keys:?}");
        assert!(!keys.is_empty(), "no ringway: keys in Redis");
    }

    /// Each live instance's stderr lines so far (a mark for `logged_since`).
    fn log_marks(&self) -> Vec<usize> {
        self.live()
            .map(|gw| gw.stderr_text().lines().count())
            .collect()
    }

    /// Each live instance's first line after `marks` that mentions Redis.
    fn redis_lines_since(&self, marks: &[usize]) -> Vec<Option<String>> {
        self.live()
            .zip(marks)
            .map(|(gw, &mark)| {
                gw.stderr_text()
                    .lines()
                    .skip(mark)
                    .find(|l| l.to_ascii_lowercase().contains("redis"))
                    .map(str::to_string)
            })
            .collect()
    }
}

/// One instance's config: a PROXY v2 listener for the balancer, the admin listener, one
/// worker (so one client address is one bucket per instance when Redis is away: steering
/// by client cannot work behind a balancer, every connection comes from it), and, when
/// `limited`, Redis and the global limit.
fn instance_config(redis: &RedisServer, origin: &Origin, limited: bool) -> String {
    let limit = if limited {
        format!(
            "[redis]\naddress = \"{}\"\ncommand_timeout = \"{}ms\"\nlocal_share = {LOCAL_SHARE}\n\n\
             [[rules.rate_limits]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = \"{RATE}/s\"\n\
             burst = {BURST}\nscope = \"global\"\non_store_error = \"local\"\n",
            redis.addr(),
            COMMAND_TIMEOUT.as_millis()
        )
    } else {
        String::new()
    };
    format!(
        "[server]\nlisten = []\nworkers = 1\npin_workers = false\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         {limit}\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = \"v2\"\n\
         proxy_protocol_from = [\"127.0.0.1/32\"]\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        origin.addr()
    )
}

/// One loadgen per source, running.
struct Load {
    children: Vec<Child>,
    started: Instant,
    length: Duration,
}

impl Load {
    /// Starts the sources' loadgens at `LOAD` req/s each for `length` against `url`.
    fn start(url: &str, length: Duration) -> Load {
        let children = SOURCES
            .iter()
            .map(|source| {
                Command::new(env!("CARGO_BIN_EXE_ringway-loadgen"))
                    .arg(url)
                    .args(["-c", &CONNS.to_string(), "--rate", &LOAD.to_string()])
                    .args(["-d", &format!("{}ms", length.as_millis())])
                    .args(["--source", source, "--label", source, "--timeout", "2s"])
                    .args(["--json", "--quiet"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn ringway-loadgen")
            })
            .collect();
        Load {
            children,
            started: Instant::now(),
            length,
        }
    }

    /// Waits (bounded) for every loadgen to finish; their results, in `SOURCES` order.
    fn finish(mut self) -> Vec<Run> {
        let limit = self.length + Duration::from_secs(20);
        let children = std::mem::take(&mut self.children);
        children
            .into_iter()
            .zip(SOURCES)
            .map(|(mut child, source)| {
                eventually(format!("loadgen from {source} to finish"))
                    .within(limit.saturating_sub(self.started.elapsed()))
                    .until(|| child.try_wait().ok().flatten());
                let out = child.wait_with_output().expect("loadgen output");
                assert!(
                    out.status.success(),
                    "loadgen from {source}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let json = serde_json::from_slice(&out.stdout).expect("loadgen JSON");
                Run { source, json }
            })
            .collect()
    }
}

impl Drop for Load {
    /// A test that fails midway stops its loadgens (by their PIDs).
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One source's loadgen result.
struct Run {
    source: &'static str,
    json: serde_json::Value,
}

impl Run {
    fn status(&self, code: u16) -> u64 {
        self.json["statuses"][code.to_string()]
            .as_u64()
            .unwrap_or(0)
    }

    fn admitted(&self) -> u64 {
        self.status(200)
    }

    /// Complete responses, any status.
    fn answered(&self) -> u64 {
        let statuses = self.json["statuses"].as_object().expect("statuses");
        statuses.values().filter_map(|n| n.as_u64()).sum()
    }

    /// Requests sent that got no complete response (a connection reset, a timeout).
    fn lost(&self) -> u64 {
        ["write", "read", "timeout", "parse"]
            .iter()
            .map(|k| self.json["errors"][k].as_u64().unwrap_or(0))
            .sum()
    }

    fn refused_connections(&self) -> u64 {
        self.json["errors"]["connect"].as_u64().unwrap_or(0)
    }

    fn slowest(&self) -> Duration {
        Duration::from_micros(self.json["latency_us"]["p100"].as_u64().unwrap_or(0))
    }

    /// Answers were only 200 and 429.
    fn assert_only_admitted_or_limited(&self) {
        assert_eq!(
            self.admitted() + self.status(429),
            self.answered(),
            "{}: statuses other than 200 and 429: {}",
            self.source,
            self.json["statuses"]
        );
    }
}

/// The most a fresh key admits in `length`, fleet-wide, counted in Redis.
fn global_bound(length: Duration) -> u64 {
    RATE * length.as_secs() + BURST
}

/// What a source's requests scheduled over `length` number (each connection's schedule
/// starts a fraction of one interval late: up to one fewer each).
fn scheduled(length: Duration) -> std::ops::RangeInclusive<u64> {
    let n = LOAD * length.as_secs();
    n - CONNS..=n
}

/// Prints `what` (the bounds), then one line per source: what it sent and got.
fn report(what: &str, runs: &[Run], forwarded: &[u64; 3]) {
    println!("{what}");
    for (run, seen) in runs.iter().zip(forwarded) {
        println!(
            "  {}: sent {} (+{} lost), 200 {}, 429 {}, forwarded {seen}, refused \
             connections {}, slowest {:?}",
            run.source,
            run.answered(),
            run.lost(),
            run.admitted(),
            run.status(429),
            run.refused_connections(),
            run.slowest()
        );
    }
}

/// A run from fresh keys while Redis counts: what each source got is within the bucket's
/// bound and not far below it (see `assert_admitted`).
fn assert_global_run(
    what: &str,
    runs: &[Run],
    forwarded: &[u64; 3],
    length: Duration,
    exact: bool,
) {
    let bound = global_bound(length) + EDGE;
    // Under-admission is bounded by unspent leases (a few tokens per worker); 10% is far
    // more than that and still tells a global limit from one that lets nothing through.
    let floor = global_bound(length) * 9 / 10;
    let what = format!("{what}: admitted per source within [{floor}, {bound}]");
    assert_admitted(&what, runs, forwarded, length, floor..=bound, exact);
}

/// Per source: only 200s and 429s; with `exact`, every request scheduled over `length`
/// was answered and the origin got exactly the 200s (else, with an instance killed, some
/// were lost and the origin got at least the 200s); the origin got at most the top of
/// `admitted`, and the source at least its bottom.
fn assert_admitted(
    what: &str,
    runs: &[Run],
    forwarded: &[u64; 3],
    length: Duration,
    admitted: std::ops::RangeInclusive<u64>,
    exact: bool,
) {
    report(what, runs, forwarded);
    let (floor, bound) = admitted.into_inner();
    for (run, &seen) in runs.iter().zip(forwarded) {
        run.assert_only_admitted_or_limited();
        let src = run.source;
        let sent = run.answered() + run.lost();
        if exact {
            assert_eq!(run.lost(), 0, "{src}: lost requests: {}", run.json);
            assert!(scheduled(length).contains(&sent), "{src}: {}", run.json);
            assert_eq!(
                run.admitted(),
                seen,
                "{src}: 200s and requests at the origin"
            );
        } else {
            assert!(sent <= *scheduled(length).end(), "{src}: {}", run.json);
            assert!(run.admitted() <= seen, "{src}: more 200s than forwarded");
        }
        assert!(seen <= bound, "{src}: {seen} admitted, above {bound}");
        let got = run.admitted();
        assert!(got >= floor, "{src}: {got} admitted, below {floor}");
    }
}

/// `a - b`, element-wise.
fn delta(a: &[u64; 3], b: &[u64; 3]) -> [u64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Lets time pass until `deadline`, on purpose (a phase of a test), in short sleeps.
fn sleep_until(deadline: Instant) {
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[test]
fn the_balancer_spreads_each_source_over_every_instance_and_names_it() {
    let Some(fleet) = Fleet::unless_skipped(false) else {
        return;
    };
    let length = Duration::from_secs(2);
    let runs = Load::start(&fleet.url(), length).finish();
    let what = "no limit: every request admitted";
    assert_admitted(
        what,
        &runs,
        &fleet.forwarded(),
        length,
        scheduled(length),
        true,
    );
    // Round robin over 12 connections: every instance served some.
    let served = fleet.metric("ringway_requests_total");
    assert!(
        served.iter().all(|&n| n > 0.0),
        "requests per instance: {served:?}"
    );
}

#[test]
fn global_limit_holds_across_three_instances() {
    let Some(fleet) = Fleet::unless_skipped(true) else {
        return;
    };
    let runs = Load::start(&fleet.url(), LONG).finish();
    assert_global_run("three instances", &runs, &fleet.forwarded(), LONG, true);
    // Every 429 was ringway's own.
    let limited: f64 = fleet.metric("ringway_rate_limited_total").iter().sum();
    let refused: u64 = runs.iter().map(|r| r.status(429)).sum();
    assert_eq!(
        limited, refused as f64,
        "429s by the instances and by loadgen"
    );
    fleet.assert_counted_in_redis(&[0.0; 3]);
    // Tokens are leased (or, at the limit, taken ahead) before they are needed: few
    // requests wait for a round trip to Redis.
    let waits: f64 = fleet
        .metric("ringway_rate_limit_lease_waits_total")
        .iter()
        .sum();
    let sent: u64 = runs.iter().map(|r| r.status(200) + r.status(429)).sum();
    println!("  requests that waited for a lease: {waits} of {sent}");
    assert!(
        waits < sent as f64 * 0.05,
        "{waits} of {sent} waited for Redis"
    );
}

#[test]
fn global_limit_holds_when_an_instance_is_killed_midway() {
    let Some(mut fleet) = Fleet::unless_skipped(true) else {
        return;
    };
    let load = Load::start(&fleet.url(), LONG);
    sleep_until(load.started + LONG / 2);
    fleet.kill(0);
    let runs = load.finish();
    // The killed instance's unspent lease (at most `LEASE` tokens) is lost, not added:
    // the bound stays.
    let forwarded = fleet.forwarded();
    assert_global_run(
        "one instance killed at 10 s",
        &runs,
        &forwarded,
        LONG,
        false,
    );
    let lost: u64 = runs.iter().map(Run::lost).sum();
    println!("  requests lost with the killed instance's connections: {lost} (lease {LEASE})");
    fleet.assert_counted_in_redis(&[0.0; 2]);
}

#[test]
fn redis_down_falls_back_and_global_counting_resumes() {
    let Some(mut fleet) = Fleet::unless_skipped(true) else {
        return;
    };

    // 1. Redis up: the global bound.
    let runs = Load::start(&fleet.url(), PHASE).finish();
    let after_up = fleet.forwarded();
    assert_global_run("phase 1, Redis up", &runs, &after_up, PHASE, true);

    // 2. Redis stopped: each instance admits its local share, no request waits on Redis.
    let marks = fleet.log_marks();
    let fallbacks_before = fleet.metric(FALLBACKS);
    fleet.redis.stop();
    let runs = Load::start(&fleet.url(), PHASE).finish();
    let after_down = fleet.forwarded();
    let admitted = delta(&after_down, &after_up);
    let per_instance = |length: Duration| {
        let share = |n: u64| n as f64 * LOCAL_SHARE;
        (share(RATE) * length.as_secs_f64() + share(BURST).floor().max(1.0)) as u64
    };
    // Slack: tokens left in each instance's lease from phase 1, and the edges.
    let bound = 3 * per_instance(PHASE) + 3 * LEASE + EDGE;
    // A source's four connections may all land on one instance: one instance's share.
    let floor = per_instance(PHASE) * 9 / 10;
    let what = format!("phase 2, Redis stopped: admitted per source within [{floor}, {bound}]");
    assert_admitted(&what, &runs, &admitted, PHASE, floor..=bound, true);
    for run in &runs {
        let (src, slowest) = (run.source, run.slowest());
        assert_eq!(run.refused_connections(), 0, "{src}: {}", run.json);
        assert!(
            slowest < SLOWEST_WITHOUT_REDIS,
            "{src}: an answer took {slowest:?} without Redis"
        );
    }
    fleet.assert_grew(FALLBACKS, &fallbacks_before);
    let said = fleet.redis_lines_since(&marks);
    println!("  logged: {said:?}");
    assert!(
        said.iter().all(Option::is_some),
        "Redis lost, said: {said:?}"
    );

    // 3. Redis back (empty): every instance reconnects by itself, counting is global again.
    fleet.redis.restart();
    fleet.wait_redis_up();
    let leases_before = fleet.metric(LEASES);
    let fallbacks_before = fleet.metric(FALLBACKS);
    let runs = Load::start(&fleet.url(), PHASE).finish();
    let admitted = delta(&fleet.forwarded(), &after_down);
    let bound = global_bound(PHASE) + EDGE;
    let what = format!("phase 3, Redis restarted: admitted per source at most {bound}");
    assert_admitted(&what, &runs, &admitted, PHASE, 0..=bound, true);
    fleet.assert_counted_in_redis(&leases_before);
    // A command slower than the timeout on this loaded machine may fall back, rarely.
    let fallbacks = fleet.metric(FALLBACKS);
    println!("  {FALLBACKS} per instance {fallbacks_before:?} -> {fallbacks:?}");
    let requests: u64 = runs.iter().map(Run::answered).sum();
    let fell_back: f64 = fallbacks.iter().sum::<f64>() - fallbacks_before.iter().sum::<f64>();
    assert!(
        fell_back <= requests as f64 / 100.0,
        "{fell_back} fallbacks with Redis back, of {requests} requests"
    );
}
