//! The command line: `check` on good and bad configs, `--version`, and `run` draining
//! in-flight requests on SIGTERM.

use ringway_test_support::*;
use std::process::Command;
use std::thread;
use std::time::Duration;

fn check(config: &str) -> (i32, String, String) {
    let path = std::env::temp_dir().join(format!(
        "ringway-cli-{}-{}.toml",
        std::process::id(),
        config.len()
    ));
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("run ringway check");
    let _ = std::fs::remove_file(&path);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE"),
    )
}

/// Each (config, expected line part): `ringway check` fails and prints that part.
fn assert_each_fails(cases: &[(&str, &str)]) {
    for (config, want) in cases {
        let (code, stdout, stderr) = check(config);
        assert_eq!(code, 1, "{config}\nstdout: {stdout}\nstderr: {stderr}");
        assert!(
            stderr.contains(want),
            "{config}\nwant: {want}\ngot: {stderr}"
        );
    }
}

/// `ringway check` on a shipped example; asserts success and returns stdout.
fn check_example(name: &str) -> String {
    let path = format!("{}/config/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "-c", &path])
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_example_config_passes_check() {
    let stdout = check_example("ringway.toml");
    assert!(
        stdout
            .contains("ok: 1 listener(s), 2 worker(s), 1 upstream(s) with 2 server(s), 3 route(s)"),
        "{stdout}"
    );
}

#[test]
fn the_policy_example_passes_check() {
    let stdout = check_example("policy.toml");
    assert!(stdout.contains("4 route(s)"), "{stdout}");
}

#[test]
fn the_grpc_example_passes_check() {
    let stdout = check_example("grpc.toml");
    assert!(
        stdout.contains("3 upstream(s) with 4 server(s), 4 route(s)"),
        "{stdout}"
    );
}

#[test]
fn the_fleet_example_passes_check() {
    let stdout = check_example("fleet.toml");
    assert!(
        stdout.contains("1 upstream(s) with 2 server(s), 1 route(s)"),
        "{stdout}"
    );
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("--version")
        .output()
        .expect("run --version");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ringway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_missing_file_names_the_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "-c", "/nonexistent/ringway.toml"])
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("/nonexistent/ringway.toml: cannot read:")
    );
}

#[test]
fn bad_configs_report_file_field_and_reason() {
    let base = "[server]\nlisten = [\"127.0.0.1:0\"]\n";
    let cases: &[(&str, &str)] = &[
        ("[server]\nlisten = [\"127.0.0.1:0\"]\nlisen = 1\n", "FILE: server.lisen: line 3, column 1: unknown field `lisen`"),
        ("[server]\nlisten = [\"nope\"]\n", "FILE: server.listen[0]: \"nope\" is not an ip:port address"),
        ("[server]\nlisten = []\n", "FILE: server.listen: at least one address is required"),
        (&format!("{base}[timeouts]\nheader = \"5\"\n"), "FILE: timeouts.header: line 4, column 10: \"5\" is not a duration"),
        (&format!("{base}[timeouts]\nheader = \"0s\"\n"), "FILE: timeouts.header: must be greater than zero"),
        (&format!("{base}[limits]\nmax_headers = 1000\n"), "FILE: limits.max_headers: 1000 is out of range: 1 to 256"),
        (&format!("{base}[[routes]]\npath_prefix = \"/\"\nupstream = \"ap\"\n"), "FILE: routes[0].upstream: no upstream named \"ap\" (defined: none)"),
        (&format!("{base}[[routes]]\npath_prefix = \"x\"\nrespond = {{ status = 200 }}\n"), "FILE: routes[0].path_prefix: \"x\" must start with '/'"),
        (&format!("{base}[[routes]]\npath_prefix = \"/a/../b\"\nrespond = {{ status = 200 }}\n"), "FILE: routes[0].path_prefix: \"/a/../b\" is not a normalised path"),
        (&format!("{base}[[routes]]\npath_prefix = \"/\"\n"), "FILE: routes[0]: set upstream"),
        (&format!("{base}[[routes]]\npath_prefix = \"/\"\nrespond = {{ status = 99 }}\n"), "FILE: routes[0].respond.status: 99 is out of range"),
        (&format!("{base}[[routes]]\nhost = \"a.*.com\"\npath_prefix = \"/\"\nrespond = {{ status = 200 }}\n"), "FILE: routes[0].host:"),
        (&format!("{base}[[routes]]\npath_prefix = \"/\"\nrespond = {{ status = 200 }}\nresponse_headers = {{ set = {{ \"Content-Length\" = \"1\" }} }}\n"), "FILE: routes[0].response_headers.set.Content-Length: Content-Length is managed by ringway"),
        (&format!("{base}[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1\"]\n"), "FILE: upstreams[0].servers[0]: \"127.0.0.1\" is not \"host:port\""),
        (&format!("{base}[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:2\"]\n"), "FILE: upstreams[1].name: \"a\" is defined twice"),
        (&format!("{base}trusted_proxies = [\"10.0.0.0/33\"]\n"), "FILE: server.trusted_proxies[0]:"),
        (&format!("{base}splice_threshold = -1\n"), "FILE: server.splice_threshold: line 3, column 20: invalid value: integer `-1`, expected u64"),
        (&format!("{base}upgrade_protocols = [\"websocket\", \"H2C\"]\n"), "FILE: server.upgrade_protocols[1]: \"h2c\" cannot be tunnelled"),
        (&format!("{base}upgrade_protocols = [\"web socket\"]\n"), "FILE: server.upgrade_protocols[0]: \"web socket\" is not a protocol name"),
        (&format!("{base}[timeouts]\ntunnel_idle = \"0s\"\n"), "FILE: timeouts.tunnel_idle: must be greater than zero"),
    ];
    assert_each_fails(cases);
}

#[test]
fn bad_policy_rules_name_the_field() {
    let base = "[server]\nlisten = [\"127.0.0.1:0\"]\n[auth.api_key]\n[[consumers]]\nname = \"a\"\ngroups = [\"ops\"]\n";
    let route = "[[routes]]\npath_prefix = \"/\"\nrespond = { status = 200 }\n";
    let cases: &[(&str, &str)] = &[
        (&format!("{base}{route}access = {{ consumers = [\"zed\"] }}\n"), "FILE: routes[0].access.consumers[0]: unknown consumer \"zed\""),
        (&format!("{base}{route}access = {{ groups = [\"devs\"] }}\n"), "FILE: routes[0].access.groups[0]: unknown group \"devs\""),
        (&format!("{base}{route}access = {{ auth = [\"jwt\"] }}\n"), "FILE: routes[0].access.auth[0]: \"jwt\" is not configured"),
        (&format!("{base}[rules]\nip_deny = [\"10.0.0.0/40\"]\n"), "FILE: rules.ip_deny[0]: \"10.0.0.0/40\": prefix length 40 is above 32"),
        (&format!("{base}{route}rules = {{ ip_allow = [\"300.1.1.1\"] }}\n"), "FILE: routes[0].rules.ip_allow[0]:"),
        (&format!("{base}{route}rules = {{ rate_limits = [{{ rate = \"5/q\" }}] }}\n"), "FILE: routes[0].rules.rate_limits[0].rate:"),
        (&format!("{base}[auth.jwt]\nkeys = [{{ alg = \"ES256\", pem_file = \"/nonexistent/k.pem\" }}]\n"), "FILE: auth.jwt.keys[0].pem_file: cannot read /nonexistent/k.pem"),
        (&format!("{base}[auth.jwt]\nkeys = [{{ alg = \"RS256\", secret = \"s\" }}]\n"), "FILE: auth.jwt.keys[0].secret: alg RS256 needs pem_file"),
        (&format!("{base}[auth.jwt]\nkeys = [{{ alg = \"none\", secret = \"s\" }}]\n"), "FILE: auth.jwt.keys[0].alg:"),
        ("[server]\nlisten = [\"127.0.0.1:0\"]\n[auth.api_key]\n[[consumers]]\nname = \"a\"\napi_keys = [\"plain-key\"]\n", "FILE: consumers[0].api_keys[0]:"),
    ];
    assert_each_fails(cases);
}

#[test]
fn bad_protect_settings_name_the_field() {
    let base = "[server]\nlisten = [\"127.0.0.1:0\"]\n";
    let route = "[[routes]]\npath_prefix = \"/\"\nrespond = { status = 200 }\n";
    let cases: &[(&str, &str)] = &[
        (
            &format!("{base}[protect.error_pages]\n\"302\" = {{ body = \"x\" }}\n"),
            "FILE: protect.error_pages.302: \"302\" is not a status code from 400 to 599",
        ),
        (
            &format!("{base}[protect.error_pages]\n\"600\" = {{ body = \"x\" }}\n"),
            "FILE: protect.error_pages.600: \"600\" is not a status code from 400 to 599",
        ),
        (
            &format!("{base}[protect.error_pages]\n\"502\" = {{ file = \"no-such-page.html\" }}\n"),
            "FILE: protect.error_pages.502.file: cannot read ",
        ),
        (
            &format!("{base}[protect.error_pages]\n\"502\" = {{ body = \"x\", file = \"y\" }}\n"),
            "FILE: protect.error_pages.502: set exactly one of body and file",
        ),
        (
            &format!("{base}[protect]\nremove_response_headers = [\"Content-Length\"]\n"),
            "FILE: protect.remove_response_headers[0]: Content-Length is managed by ringway",
        ),
        (
            &format!("{base}[protect]\nredact_headers = [\"bad name\"]\n"),
            "FILE: protect.redact_headers[0]: \"bad name\" is not a valid field name",
        ),
        (
            &format!("{base}[protect]\nserver_headr = \"x\"\n"),
            "FILE: protect.server_headr: line 4, column 1: unknown field `server_headr`",
        ),
        (
            &format!("{base}{route}hsts = {{ max_age = \"0s\" }}\n"),
            "FILE: routes[0].hsts.max_age: must be at least 1s",
        ),
        (
            &format!("{base}{route}hsts = {{ max_age = \"1y\" }}\n"),
            "FILE: routes[0].hsts.max_age: line 6, column 20: \"1y\" is not a duration",
        ),
    ];
    assert_each_fails(cases);
}

#[test]
fn every_error_in_a_file_is_reported() {
    let (code, _, stderr) = check("[server]\nlisten = [\"x\"]\nworkers = 0\n[[routes]]\npath_prefix = \"a\"\nupstream = \"b\"\n");
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(lines.iter().all(|l| l.starts_with("FILE: ")), "{stderr}");
}

both_drivers! {
    fn sigterm_lets_an_in_flight_request_finish_then_exits_zero(d) {
        let origin = Origin::start(|_| Reply::Delay(Duration::from_millis(700), Box::new(Reply::ok("done"))));
        let mut gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let addr = gw.addr();
        let client = thread::spawn(move || get(addr, "/slow"));
        origin.wait_requests(1);
        let status = gw.stop().expect("ringway exited");
        assert!(status.success(), "exit status {status:?}");
        let r = client.join().expect("client");
        assert_eq!(r.status, 200);
        assert_eq!(r.body_text(), "done");
        assert_eq!(r.header("connection"), Some("close"), "a draining gateway closes after the response");
    }

    fn startup_logs_the_driver_and_listen_address(d) {
        let origin = Origin::ok("x");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let log = gw.stderr_text();
        let want = match d {
            Driver::IoUring => "worker 0: io_uring driver",
            Driver::Legacy => "worker 0: legacy driver",
        };
        assert!(log.contains(want), "{log}");
        assert!(log.contains(&format!("listening on {}", gw.addr())), "{log}");
    }
}

both_drivers! {
    fn sigterm_closes_idle_keep_alive_connections_at_once(d) {
        let origin = Origin::ok("x");
        let cfg = Config::proxy_all(origin.addr()).section("[timeouts]\ndrain = \"5s\"\nidle = \"60s\"");
        let mut gw = Gateway::start(&cfg.render(), d);
        let mut idle = Reader::new(connect(gw.addr()));
        idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(idle.response().map(|r| r.status), Some(200));
        let started = std::time::Instant::now();
        let status = gw.stop().expect("ringway exited");
        assert!(status.success());
        // Nothing was in flight: the drain does not wait for the idle connection.
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert!(idle.closes_within(Duration::from_secs(1)));
    }
}

#[test]
fn bad_balancing_health_and_retry_fields_name_the_field() {
    let base = "[server]\nlisten = [\"127.0.0.1:0\"]\n[[upstreams]]\nname = \"a\"\n";
    let one = "servers = [\"127.0.0.1:1\"]\n";
    let route = "[[routes]]\npath_prefix = \"/\"\nupstream = \"a\"\n";
    let cases: &[(&str, &str)] = &[
        (
            &format!("{base}{one}balance = \"random\"\n"),
            "FILE: upstreams[0].balance: line 6, column 11: unknown variant `random`",
        ),
        (
            &format!("{base}servers = [{{ address = \"127.0.0.1:1\", weight = 0 }}]\n"),
            "FILE: upstreams[0].servers[0].weight: 0 is out of range: 1 to 100",
        ),
        (
            &format!("{base}servers = [{{ address = \"127.0.0.1\" }}]\n"),
            "FILE: upstreams[0].servers[0]: \"127.0.0.1\" is not \"host:port\"",
        ),
        (
            &format!("{base}{one}balance = \"hash\"\nhash_on = \"body\"\n"),
            "FILE: upstreams[0].hash_on: \"body\" is not one of",
        ),
        (
            &format!("{base}{one}hash_on = \"client_ip\"\n"),
            "FILE: upstreams[0].hash_on: is only used with balance = \"hash\"",
        ),
        (
            &format!("{base}{one}health_check = {{ interval = \"0s\" }}\n"),
            "FILE: upstreams[0].health_check.interval: must be above zero",
        ),
        (
            &format!("{base}{one}health_check = {{ healthy_threshold = 0 }}\n"),
            "FILE: upstreams[0].health_check.healthy_threshold: must be at least 1",
        ),
        (
            &format!("{base}{one}health_check = {{ path = \"healthz\" }}\n"),
            "FILE: upstreams[0].health_check.path:",
        ),
        (
            &format!("{base}{one}outlier = {{ consecutive_failures = 0 }}\n"),
            "FILE: upstreams[0].outlier.consecutive_failures: must be at least 1",
        ),
        (
            &format!("{base}{one}all_unhealthy = \"panic\"\n"),
            "FILE: upstreams[0].all_unhealthy:",
        ),
        (
            &format!("{base}{one}{route}retries = {{ attempts = 0 }}\n"),
            "FILE: routes[0].retries.attempts: 0 is out of range: 1 to 10",
        ),
        (
            &format!("{base}{one}{route}retries = {{ attempts = 11 }}\n"),
            "FILE: routes[0].retries.attempts: 11 is out of range: 1 to 10",
        ),
        (
            &format!("{base}{one}{route}retries = {{ budget_percent = 101 }}\n"),
            "FILE: routes[0].retries.budget_percent: 101 is out of range: 0 to 100",
        ),
        (
            &format!("{base}{one}{route}retries = {{ on = [\"404\"] }}\n"),
            "FILE: routes[0].retries.on[0]: \"404\" is not \"connect\", a status",
        ),
        (
            &format!("{base}{one}{route}retries = {{ on = [\"UNAVAILABLE\", \"ok\"] }}\n"),
            "FILE: routes[0].retries.on[0]: \"UNAVAILABLE\" is not \"connect\", a status",
        ),
        (
            &format!("{base}{one}{route}retries = {{ on = [\"ok\"] }}\n"),
            "FILE: routes[0].retries.on[0]: \"ok\" is not",
        ),
        (
            &format!("{base}{one}protocol = \"h2\"\n"),
            "FILE: upstreams[0].protocol: \"h2\" and \"auto\" need tls",
        ),
        (
            &format!("{base}{one}protocol = \"h2c\"\ntls = {{}}\n"),
            "FILE: upstreams[0].protocol: \"h2c\" is HTTP/2 in the clear",
        ),
        (
            &format!("{base}{one}protocol = \"h3\"\n"),
            "FILE: upstreams[0].protocol:",
        ),
        (
            &format!("{base}{one}protocol = \"h2c\"\nhttp2_connections = 0\n"),
            "FILE: upstreams[0].http2_connections: 0 is out of range: 1 to 1000",
        ),
        (
            &format!("{base}{one}protocol = \"h2c\"\nproxy_protocol = \"v2\"\n"),
            "FILE: upstreams[0].proxy_protocol: is for protocol = \"http1\" upstreams",
        ),
        (
            &format!("{base}{one}health_check = {{ grpc = \"\" }}\n"),
            "FILE: upstreams[0].health_check.grpc: a gRPC health check needs protocol",
        ),
    ];
    assert_each_fails(cases);
}

/// The support library starts the very binaries cargo built for these tests, whether cargo
/// tells it where they are or it works that out from the test's own path.
#[test]
fn the_test_support_runs_the_binaries_cargo_built() {
    for (name, built) in [
        ("ringway", env!("CARGO_BIN_EXE_ringway")),
        ("ringway-origin", env!("CARGO_BIN_EXE_ringway-origin")),
    ] {
        let built = std::path::Path::new(built).canonicalize().expect("built");
        for found in [binary(name), binary_beside_test(name)] {
            assert_eq!(found.canonicalize().expect(name), built, "{name}");
        }
    }
}
