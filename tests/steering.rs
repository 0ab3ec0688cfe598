//! Client steering on real sockets: `runtime::bind_all` with `steer = true` must send every
//! connection from one source IP to the same worker's listener, while different sources
//! still spread over the workers. Clients are plain blocking sockets (the kernel completes
//! the handshake into the accept queue); the listeners are drained with non-blocking
//! accepts, polled with `eventually` until every connection is seen.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};

use ringway::runtime::bind_all;
use ringway_test_support::eventually;
use socket2::{Domain, Socket, Type};

/// One listener per worker for `addr`, or None when the address cannot be bound here.
fn bind(addr: &str, workers: usize, steer: bool) -> Option<Vec<TcpListener>> {
    let addr: SocketAddr = addr.parse().unwrap();
    match bind_all(&[addr], workers, 1024, &[steer]) {
        Ok(per_worker) => Some(per_worker.into_iter().map(|mut ls| ls.remove(0)).collect()),
        Err(e) if addr.is_ipv6() => {
            eprintln!("skipping: cannot bind {addr}: {e}");
            None
        }
        Err(e) => panic!("bind {addr}: {e}"),
    }
}

fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let sock = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(source, 0).into()).unwrap();
    sock.connect(&to.into()).unwrap();
    sock.into()
}

/// Accepts `expected` connections across `listeners`; returns, per source IP, the index of
/// each listener that accepted one of its connections.
fn accept_all(listeners: &[TcpListener], expected: usize) -> BTreeMap<IpAddr, Vec<usize>> {
    let mut seen: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    let mut count = 0;
    eventually(format!("{expected} connections to be accepted")).until(|| {
        for (i, l) in listeners.iter().enumerate() {
            loop {
                match l.accept() {
                    Ok((_, peer)) => {
                        seen.entry(peer.ip()).or_default().push(i);
                        count += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("accept: {e}"),
                }
            }
        }
        if count >= expected {
            Ok(())
        } else {
            Err(format!("accepted {count} of {expected} connections"))
        }
    });
    seen
}

/// `per_source` connections from each of `sources`, accepted; listener indices per source.
fn connect_and_accept(
    listeners: &[TcpListener],
    sources: &[IpAddr],
    per_source: usize,
) -> BTreeMap<IpAddr, Vec<usize>> {
    let to = listeners[0].local_addr().unwrap();
    let clients: Vec<TcpStream> = sources
        .iter()
        .flat_map(|&s| (0..per_source).map(move |_| connect_from(s, to)))
        .collect();
    let seen = accept_all(listeners, clients.len());
    drop(clients);
    seen
}

fn listeners_used(seen: &BTreeMap<IpAddr, Vec<usize>>) -> Vec<usize> {
    let mut used: Vec<usize> = seen.values().flatten().copied().collect();
    used.sort_unstable();
    used.dedup();
    used
}

/// What the steering program computes, restated: the listener index for `ip` of `n`.
/// Agreement shows both the hash and that group index i is worker i's listener.
fn expected_index(ip: IpAddr, n: usize) -> usize {
    let word = match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            (0..4).fold(0, |acc, i| {
                acc ^ u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    };
    let a = word.wrapping_mul(0x9E37_79B1);
    ((a ^ (a >> 16)) % n as u32) as usize
}

fn loopback_v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[test]
fn one_source_address_lands_on_one_listener() {
    let ls = bind("127.0.0.1:0", 2, true).unwrap();
    let seen = connect_and_accept(&ls, &[loopback_v4(1)], 40);
    let want = expected_index(loopback_v4(1), 2);
    assert_eq!(seen[&loopback_v4(1)], vec![want; 40]);
}

#[test]
fn without_steering_one_source_address_spreads() {
    // The control for the test above: the kernel's default choice hashes the source port
    // too, so 40 connections from one address all on one listener would be a 2^-39 fluke.
    let ls = bind("127.0.0.1:0", 2, false).unwrap();
    let seen = connect_and_accept(&ls, &[loopback_v4(1)], 40);
    assert_eq!(listeners_used(&seen), vec![0, 1], "{seen:?}");
}

#[test]
fn many_source_addresses_spread_and_each_sticks_to_one_listener() {
    for workers in [2, 3] {
        let ls = bind("127.0.0.1:0", workers, true).unwrap();
        let sources: Vec<IpAddr> = (2..=40).map(loopback_v4).collect();
        let seen = connect_and_accept(&ls, &sources, 3);
        assert_eq!(seen.len(), sources.len());
        for (&ip, idx) in &seen {
            let want = expected_index(ip, workers);
            assert!(idx.iter().all(|&i| i == want), "{ip}: {idx:?}, want {want}");
        }
        let all: Vec<usize> = (0..workers).collect();
        assert_eq!(listeners_used(&seen), all, "{workers} workers: {seen:?}");
    }
}

#[test]
fn one_ipv6_source_address_lands_on_one_listener() {
    let Some(ls) = bind("[::1]:0", 2, true) else {
        return;
    };
    let ip: IpAddr = "::1".parse().unwrap();
    let seen = connect_and_accept(&ls, &[ip], 40);
    assert_eq!(seen[&ip], vec![expected_index(ip, 2); 40]);
}

#[test]
fn one_worker_needs_no_program() {
    let ls = bind("127.0.0.1:0", 1, true).unwrap();
    let seen = connect_and_accept(&ls, &[loopback_v4(1)], 5);
    assert_eq!(seen[&loopback_v4(1)], vec![0; 5]);
}

#[test]
fn an_unsteered_address_spreads_while_the_others_stay_steered() {
    // What `steer_by_client = "auto"` does with a PROXY protocol listener (its peer is the
    // balancer, the same address for every client): leaves that address's group alone.
    let addrs: [SocketAddr; 2] = [
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    ];
    let per_worker = bind_all(&addrs, 2, 1024, &[true, false]).unwrap();
    let group = |i: usize| -> Vec<TcpListener> {
        per_worker
            .iter()
            .map(|ls| ls[i].try_clone().unwrap())
            .collect()
    };
    let (steered, spread) = (group(0), group(1));
    let seen = connect_and_accept(&steered, &[loopback_v4(1)], 40);
    assert_eq!(listeners_used(&seen).len(), 1, "steered: {seen:?}");
    let seen = connect_and_accept(&spread, &[loopback_v4(1)], 40);
    assert_eq!(listeners_used(&seen), vec![0, 1], "left alone: {seen:?}");
}
