//! `ringway-loadgen`: the bundled HTTP/1.1 and HTTP/2 load generator, built on monoio.
//!
//! - Closed loop (default, like wrk and h2load): each connection (HTTP/2: each stream slot)
//!   sends its next request when the previous response is in.
//! - Open loop (`--rate R`): R requests per second in total, on a fixed schedule per
//!   connection (HTTP/2: per stream slot); latency is measured from the *intended* send
//!   time, which corrects coordinated omission.
//!
//! N connections over T threads (one monoio runtime each), keep-alive, any method, path,
//! headers and body. `--h2` speaks HTTP/2 (the `h2` crate over monoio's poll-io sockets):
//! h2c with prior knowledge for `http://` URLs, TLS with ALPN `h2` for `https://` ones
//! (`--insecure` or `--cacert` for test certificates), with `--streams M` concurrent streams
//! on each connection. Reports HDR-histogram percentiles (p50 … p99.99, max), errors by
//! kind, responses by status code and the achieved rate, as text or `--json`; `--plot FILE.svg` draws the latency
//! percentile curve and can overlay earlier `--json` results (`--overlay a.json,b.json`).
//! A progress line goes to stderr every second. `--source IP` binds every HTTP/1.1
//! connection to that local address, so that one machine stands for several clients (on
//! loopback: 127.0.0.2, 127.0.0.3, ...). Only for load-testing servers you run.
//!
//! In open loop a request may leave a little after its intended time; that lateness is part
//! of the reported latency (by design of the correction) and is reported separately as "send
//! lag" so it can be told apart. Under io_uring each connection (stream slot) paces itself
//! with a timerfd (lag of tens of µs); on the legacy driver, or when no more descriptors can
//! be had, monoio's millisecond timer wheel paces it (lag up to ~1 ms).
//!
//! The HTTP/1.1 path (`client.rs`) is the one compared against wrk and does not go through
//! any of the HTTP/2 machinery (`http2.rs`, `tls.rs`).

mod client;
mod http2;
mod plot;
mod tls;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;

use client::{ErrorKind, Plan, Stats, STATUS_CODES};

#[derive(Parser)]
#[command(
    name = "ringway-loadgen",
    version,
    about = "HTTP/1.1 and HTTP/2 load generator (closed or open loop)",
    long_about = "HTTP/1.1 and HTTP/2 load generator (closed or open loop).\n\n\
        HTTP/1.1 over http:// URLs; with --h2, HTTP/2: h2c with prior knowledge over \
        http://, TLS with ALPN h2 over https://, --streams concurrent streams per connection."
)]
struct Args {
    /// Target, e.g. http://127.0.0.1:8080/small (https:// needs --h2)
    url: String,
    /// Speak HTTP/2: h2c with prior knowledge for http://, TLS with ALPN h2 for https://.
    #[arg(long)]
    h2: bool,
    /// Unary gRPC calls (implies --h2): POST, `content-type: application/grpc`, the body
    /// (--body / --body-file, default empty) sent as one gRPC message; a call counts as
    /// an error unless it ends with grpc-status 0.
    #[arg(long)]
    grpc: bool,
    /// HTTP/2: concurrent streams per connection, each a closed loop of its own (or its own
    /// share of --rate). Like h2load's -m (here -m is the method).
    #[arg(long, visible_alias = "max-concurrent-streams", default_value_t = 1)]
    streams: usize,
    /// https: do not verify the server's certificate (self-signed test certificates).
    #[arg(short = 'k', long)]
    insecure: bool,
    /// https: verify the server's certificate against the CA certificates in this PEM file
    /// (default: the system's).
    #[arg(long)]
    cacert: Option<std::path::PathBuf>,
    /// Connections in total.
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,
    /// Threads (one monoio runtime each).
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Duration, e.g. 10s, 500ms, 1m.
    #[arg(short = 'd', long, default_value = "10s")]
    duration: String,
    /// Open loop: total requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Request method (not h2load's -m: that is --streams here).
    #[arg(short = 'm', long, default_value = "GET")]
    method: String,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request body.
    #[arg(long)]
    body: Option<String>,
    /// Request body from a file.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Write a latency-percentile plot (SVG) to this file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Earlier --json results to draw in the same plot, comma-separated.
    #[arg(long)]
    overlay: Option<String>,
    /// HTTP/1.1: bind every connection to this local address (any port) before connecting,
    /// e.g. 127.0.0.2 to be another client on loopback.
    #[arg(long)]
    source: Option<IpAddr>,
    /// Name of this run in plots and JSON.
    #[arg(long, default_value = "run")]
    label: String,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

static PROGRESS: AtomicU64 = AtomicU64::new(0);

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 10s"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => bail!("{s:?}: unit must be ms, s or m"),
    })
}

/// Where a URL points.
struct Target {
    /// https://
    tls: bool,
    addr: SocketAddr,
    /// "host[:port]" as written (the Host field, the :authority).
    authority: String,
    path: String,
}

/// The target of an http:// or https:// URL.
fn parse_url(url: &str) -> anyhow::Result<Target> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => bail!("{url:?}: only http:// and https:// URLs are supported"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let with_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    Ok(Target {
        tls,
        addr,
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

fn request_body(args: &Args) -> anyhow::Result<Vec<u8>> {
    Ok(match (&args.body, &args.body_file) {
        (Some(b), None) => b.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => bail!("use --body or --body-file, not both"),
    })
}

/// Whether requests carry a Content-Length: with a body, or for a method that expects one.
fn sends_length(args: &Args, body: &[u8]) -> bool {
    !body.is_empty() || matches!(args.method.as_str(), "POST" | "PUT" | "PATCH")
}

fn build_request(args: &Args, host: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let body = request_body(args)?;
    let mut req = format!("{} {path} HTTP/1.1\r\nHost: {host}\r\n", args.method);
    for h in &args.headers {
        let (n, v) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not \"Name: value\""))?;
        req.push_str(&format!("{}: {}\r\n", n.trim(), v.trim()));
    }
    if sends_length(args, &body) {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// The HTTP/2 request every stream sends, and the TLS settings for https://. A Host field
/// given with -H becomes the :authority.
fn build_h2(args: &Args, target: &Target) -> anyhow::Result<http2::H2Plan> {
    let body = request_body(args)?;
    // A gRPC call's body is one message: a 5-byte prefix (not compressed, length), then it.
    let body = if args.grpc {
        let mut framed = Vec::with_capacity(5 + body.len());
        framed.push(0);
        framed.extend_from_slice(&u32::try_from(body.len())?.to_be_bytes());
        framed.extend_from_slice(&body);
        framed
    } else {
        body
    };
    let method = http::Method::from_bytes(args.method.as_bytes())
        .with_context(|| format!("{:?} is not a method", args.method))?;
    let mut authority = target.authority.clone();
    let mut headers = http::HeaderMap::new();
    for h in &args.headers {
        let (n, v) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not \"Name: value\""))?;
        let (n, v) = (n.trim(), v.trim());
        if n.eq_ignore_ascii_case("host") {
            authority = v.to_string();
            continue;
        }
        let name = http::HeaderName::from_bytes(n.as_bytes())
            .with_context(|| format!("{n:?} is not a field name"))?;
        if matches!(
            name.as_str(),
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
        ) || (name == "te" && !v.eq_ignore_ascii_case("trailers"))
        {
            bail!("{n:?} is a connection-specific field: HTTP/2 does not allow it");
        }
        let value = http::HeaderValue::from_str(v)
            .with_context(|| format!("{v:?} is not a field value"))?;
        headers.append(name, value);
    }
    if sends_length(args, &body) {
        headers.insert(http::header::CONTENT_LENGTH, body.len().into());
    }
    if args.grpc {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    let scheme = if target.tls { "https" } else { "http" };
    let uri: http::Uri = format!("{scheme}://{authority}{}", target.path)
        .parse()
        .with_context(|| format!("{scheme}://{authority}{} is not a URI", target.path))?;
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let tls = if target.tls {
        let trust = match (&args.cacert, args.insecure) {
            (_, true) => tls::Trust::Anything,
            (Some(f), false) => tls::Trust::CaFile(f),
            (None, false) => tls::Trust::System,
        };
        Some(http2::TlsPlan {
            config: tls::client_config(trust)?,
            name: http2::server_name(&target.authority)?,
        })
    } else {
        None
    };
    Ok(http2::H2Plan {
        request,
        body: (!body.is_empty()).then(|| bytes::Bytes::from(body)),
        streams: args.streams,
        grpc: args.grpc,
        tls,
    })
}

struct Summary {
    latency_us: Histogram<u64>,
    send_lag_us: Histogram<u64>,
    requests: u64,
    bytes: u64,
    errors: [u64; 6],
    statuses: Box<[u64; STATUS_CODES]>,
    elapsed: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = parse_duration(&args.duration)?;
    let timeout = parse_duration(&args.timeout)?;
    let target = parse_url(&args.url)?;
    if !args.method.is_empty() && args.method.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "-m is the method here; for concurrent streams per connection (h2load's -m) \
             use --streams {}",
            args.method
        );
    }
    if args.streams == 0 {
        bail!("--streams must be at least 1");
    }
    let mut args = args;
    if args.grpc {
        args.h2 = true;
        args.method = "POST".to_string();
    }
    let h2 = if args.h2 {
        Some(build_h2(&args, &target)?)
    } else {
        if target.tls {
            bail!("https:// URLs need --h2 (HTTP/1.1 over TLS is not supported)");
        }
        if args.streams > 1 {
            bail!("--streams needs --h2 (HTTP/1.1 has one request in flight per connection)");
        }
        None
    };
    if let Some(source) = args.source {
        check_source(source, &target, h2.is_some())?;
    }
    // Leaked once: every request of every connection writes these same bytes, uncopied.
    let request: &'static [u8] = match h2 {
        Some(_) => &[],
        None => build_request(&args, &target.authority, &target.path)?.leak(),
    };
    let threads = args.threads.clamp(1, 256);
    let connections = args.connections.max(threads);
    let slots = connections * args.streams;
    if let Some(r) = args.rate {
        if !r.is_finite() || r <= 0.0 {
            bail!("--rate must be positive");
        }
    }
    let started = Instant::now();
    let end = started + duration;
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns = connections / threads + usize::from(t < connections % threads);
        let tx = tx.clone();
        // Each connection (HTTP/2: stream slot) gets rate / slots; schedules are staggered
        // over one interval.
        let interval = args.rate.map(|r| Duration::from_secs_f64(slots as f64 / r));
        let plan = Plan {
            addr: target.addr,
            source: args.source,
            request,
            head_request: args.method == "HEAD",
            end,
            interval,
            timeout,
        };
        let h2 = h2.clone();
        handles.push(std::thread::spawn(move || {
            run_thread(plan, h2, conns, t, threads, tx)
        }));
    }
    drop(tx);
    if !args.quiet {
        progress(started, end);
    }
    let mut summary = Summary {
        latency_us: Histogram::new_with_bounds(1, 100_000_000, 3)?,
        send_lag_us: Histogram::new_with_bounds(1, 100_000_000, 3)?,
        requests: 0,
        bytes: 0,
        errors: [0; 6],
        statuses: Box::new([0; STATUS_CODES]),
        elapsed: Duration::ZERO,
    };
    for stats in rx {
        summary.latency_us.add(&stats.latency_us)?;
        summary.send_lag_us.add(&stats.send_lag_us)?;
        summary.requests += stats.requests;
        summary.bytes += stats.bytes;
        for (a, b) in summary.errors.iter_mut().zip(stats.errors) {
            *a += b;
        }
        for (a, b) in summary.statuses.iter_mut().zip(stats.statuses.iter()) {
            *a += b;
        }
    }
    for h in handles {
        let _ = h.join();
    }
    if let Some(msg) = http2::fatal_error() {
        bail!("{msg}");
    }
    summary.elapsed = started.elapsed().min(duration + timeout);
    let result = to_json(&args, &summary);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_text(&args, &summary);
    }
    if let Some(out) = &args.plot {
        let mut runs = vec![result];
        if let Some(list) = &args.overlay {
            for f in list.split(',').filter(|f| !f.is_empty()) {
                let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
                runs.push(
                    serde_json::from_str(&text)
                        .with_context(|| format!("{f} is not a --json result"))?,
                );
            }
        }
        std::fs::write(out, plot::svg(&runs))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// `--source` is for HTTP/1.1 to an address of its family, and must be an address of this
/// machine: said once here rather than as a connect error per attempt.
fn check_source(source: IpAddr, target: &Target, h2: bool) -> anyhow::Result<()> {
    if h2 {
        bail!("--source is for HTTP/1.1 only (not with --h2 or --grpc)");
    }
    if source.is_ipv4() != target.addr.is_ipv4() {
        bail!(
            "--source {source} and the target {} are not of the same address family",
            target.addr
        );
    }
    std::net::TcpListener::bind((source, 0))
        .map(drop)
        .with_context(|| format!("--source {source}: cannot bind to it"))
}

/// The status codes that were answered, in order, with their counts.
fn statuses(s: &Summary) -> impl Iterator<Item = (usize, u64)> + '_ {
    s.statuses
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| (code, *n))
}

fn run_thread(
    plan: Plan,
    h2: Option<http2::H2Plan>,
    conns: usize,
    t: usize,
    threads: usize,
    tx: mpsc::Sender<Stats>,
) {
    let work = move |precise_timer: bool| async move {
        let plan = Rc::new(plan);
        let h2 = h2.map(Rc::new);
        let stats = Rc::new(RefCell::new(Stats::new()));
        let mut tasks = Vec::new();
        let total = (conns * threads).max(1);
        for i in 0..conns {
            let global = i * threads + t;
            match &h2 {
                None => {
                    let offset = plan.interval.map_or(Duration::ZERO, |every| {
                        every.mul_f64(global as f64 / total as f64)
                    });
                    tasks.push(monoio::spawn(client::run(
                        plan.clone(),
                        stats.clone(),
                        &PROGRESS,
                        offset,
                        precise_timer,
                    )));
                }
                Some(h2) => {
                    // The slots of one connection are spread apart over the interval, the
                    // connections' slots interleaved between them.
                    let offsets = (0..h2.streams)
                        .map(|s| {
                            plan.interval.map_or(Duration::ZERO, |every| {
                                let slot = s * total + global;
                                every.mul_f64(slot as f64 / (total * h2.streams) as f64)
                            })
                        })
                        .collect();
                    tasks.push(monoio::spawn(http2::run(
                        plan.clone(),
                        h2.clone(),
                        stats.clone(),
                        &PROGRESS,
                        offsets,
                        precise_timer,
                    )));
                }
            }
        }
        for task in tasks {
            task.await;
        }
        // (An HTTP/2 keeper may still hold `stats` while its connection closes.)
        stats.replace(Stats::new())
    };
    let stats = match tuned_uring() {
        Some(mut rt) => rt.block_on(work(true)),
        None => match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
        {
            // FusionDriver may be the legacy driver, where a timerfd read would block.
            Ok(mut rt) => rt.block_on(work(false)),
            Err(e) => {
                eprintln!("thread {t}: cannot build a runtime: {e}");
                return;
            }
        },
    };
    let _ = tx.send(stats);
}

/// io_uring built as the gateway's workers build it (SINGLE_ISSUER + DEFER_TASKRUN,
/// measured cheaper here, see BENCH.md); None where the kernel refuses io_uring.
fn tuned_uring() -> Option<ringway::runtime::UringRuntime> {
    ringway::runtime::build_uring().ok()
}

/// Prints "elapsed, requests, rate" to stderr once a second until `end`.
fn progress(started: Instant, end: Instant) {
    let mut last = 0;
    while Instant::now() < end && http2::fatal_error().is_none() {
        std::thread::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        );
        let now = PROGRESS.load(Ordering::Relaxed);
        eprint!(
            "\r{:>5.1}s  {:>10} requests  {:>9} req/s   ",
            started.elapsed().as_secs_f64(),
            now,
            now - last
        );
        last = now;
    }
    eprintln!();
}

const PERCENTILES: [f64; 8] = [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0];

fn to_json(args: &Args, s: &Summary) -> serde_json::Value {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let pct: serde_json::Map<String, serde_json::Value> = PERCENTILES
        .iter()
        .map(|p| (format!("p{p}"), s.latency_us.value_at_percentile(*p).into()))
        .collect();
    // The curve for plots: percentile -> latency, denser towards the tail.
    let curve: Vec<serde_json::Value> = (0..=60)
        .map(|i| {
            let p = 100.0 * (1.0 - 10f64.powf(-(i as f64) / 10.0));
            serde_json::json!([p, s.latency_us.value_at_percentile(p)])
        })
        .collect();
    let errors: serde_json::Map<String, serde_json::Value> = ErrorKind::ALL
        .iter()
        .zip(s.errors)
        .map(|(k, n)| (k.name().to_string(), n.into()))
        .collect();
    let statuses: serde_json::Map<String, serde_json::Value> = statuses(s)
        .map(|(code, n)| (code.to_string(), n.into()))
        .collect();
    serde_json::json!({
        "label": args.label,
        "url": args.url,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "target_rate": args.rate,
        "protocol": if args.grpc { "grpc" } else if args.h2 { "h2" } else { "http/1.1" },
        "connections": args.connections,
        "streams": args.streams,
        "threads": args.threads,
        "duration_s": secs,
        "requests": s.requests,
        "rate": s.requests as f64 / secs,
        "bytes": s.bytes,
        "latency_us": pct,
        "mean_us": s.latency_us.mean(),
        "send_lag_us": {
            "p50": s.send_lag_us.value_at_percentile(50.0),
            "p99": s.send_lag_us.value_at_percentile(99.0),
            "max": s.send_lag_us.max(),
        },
        "curve": curve,
        "errors": errors,
        "statuses": statuses,
    })
}

fn print_text(args: &Args, s: &Summary) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let mode = match args.rate {
        Some(r) => format!("open loop at {r} req/s (latency from intended send time)"),
        None => "closed loop".to_string(),
    };
    let conns = if args.h2 {
        format!(
            "HTTP/2, {} connections x {} streams",
            args.connections, args.streams
        )
    } else {
        format!("{} connections", args.connections)
    };
    println!(
        "{} {}: {conns}, {} threads, {:.1}s, {mode}",
        args.method, args.url, args.threads, secs
    );
    println!(
        "  requests {}  achieved {:.0} req/s  {:.1} MiB/s",
        s.requests,
        s.requests as f64 / secs,
        s.bytes as f64 / secs / 1_048_576.0
    );
    print!("  latency ");
    for p in PERCENTILES {
        let v = s.latency_us.value_at_percentile(p);
        let name = if p == 100.0 {
            "max".to_string()
        } else {
            format!("p{p}")
        };
        print!(" {name}={}", fmt_us(v));
    }
    println!();
    if args.rate.is_some() {
        println!(
            "  send lag p50={} p99={} max={} (generator timer lateness, included in latency)",
            fmt_us(s.send_lag_us.value_at_percentile(50.0)),
            fmt_us(s.send_lag_us.value_at_percentile(99.0)),
            fmt_us(s.send_lag_us.max())
        );
    }
    let errs: Vec<String> = ErrorKind::ALL
        .iter()
        .zip(s.errors)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{}={n}", k.name()))
        .collect();
    println!("  errors   {}", list_or_none(&errs));
    let codes: Vec<String> = statuses(s).map(|(code, n)| format!("{code}={n}")).collect();
    println!("  statuses {}", list_or_none(&codes));
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(" ")
    }
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}
