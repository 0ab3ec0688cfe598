//! The per-worker HTTP/2 upstream pool against the bundled origin's h2c: streams share one
//! connection up to the server's limit, and a server that goes away leaves no connection
//! behind (a new lease then fails to connect). In-process, on a monoio runtime.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ringway::upstream::h2pool::{Dial, H2Pool, LeaseError, Limits};
use ringway::upstream::PoolKey;
use ringway_test_support::*;

fn run<F: std::future::Future<Output = ()>>(f: F) {
    ringway::runtime::build_uring()
        .expect("io_uring runtime")
        .block_on(f);
}

#[test]
fn concurrent_streams_share_one_connection_and_a_gone_server_leaves_none() {
    let origin = BundledOrigin::start();
    let addr = PoolKey {
        addr: origin.addr,
        settings: 0,
    };
    let limits = Limits {
        max_per_server: 4,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
    };
    run(async move {
        let pool = Rc::new(H2Pool::default());
        let done = Rc::new(Cell::new(0));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (pool, done) = (pool.clone(), done.clone());
            tasks.push(monoio::spawn(async move {
                let mut lease = match pool.lease(addr, Dial::Plain, limits).await {
                    Ok(l) => l,
                    Err(e) => panic!("lease {i}: {e:?}"),
                };
                let req = http::Request::get(format!("http://origin/bytes/{}", 10 + i))
                    .body(())
                    .expect("request");
                let (response, _) = lease.send.send_request(req, true).expect("stream");
                let response = response.await.expect("response");
                assert_eq!(response.status(), 200);
                let mut body = response.into_body();
                let mut got = Vec::new();
                while let Some(chunk) = body.data().await {
                    let chunk: Bytes = chunk.expect("data");
                    let _ = body.flow_control().release_capacity(chunk.len());
                    got.extend_from_slice(&chunk);
                }
                assert_eq!(got.len(), 10 + i, "stream {i}");
                done.set(done.get() + 1);
            }));
        }
        for t in tasks {
            t.await;
        }
        assert_eq!(done.get(), 200);
        assert_eq!(pool.open_to(addr), 1, "one connection carried them all");
        origin.stop();
        // The driver sees the server go; the next lease cannot connect.
        let mut waited = Duration::ZERO;
        while pool.open_to(addr) > 0 && waited < Duration::from_secs(5) {
            monoio::time::sleep(Duration::from_millis(10)).await;
            waited += Duration::from_millis(10);
        }
        assert_eq!(pool.open_to(addr), 0);
        assert!(matches!(
            pool.lease(addr, Dial::Plain, limits).await,
            Err(LeaseError::Connect(_))
        ));
    });
}
