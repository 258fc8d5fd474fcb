//! What an open WebSocket tunnel costs zoo in file descriptors: its two sockets and nothing
//! more once idle (the splice pipes are lent from a bounded pool only while bytes move), and
//! echoes still arrive whole and in order while many tunnels move bytes at once.

use std::net::TcpStream;
use std::thread;

use super::websocket::{ws_open, ws_recv, ws_send};
use crate::util::fastapi::fastapi_zoo;

/// Tunnels the test keeps open at once.
const TUNNELS: usize = 200;
/// The most pipes zoo keeps in all (`MAX_PIPES` in src/proxy/splice.rs), two descriptors each.
const POOL_DESCRIPTORS: usize = 2 * 64;
/// Descriptors zoo may open besides the tunnels' (a log file, an upstream connection).
const SLACK: usize = 16;

fn open_descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read zoo's /proc/PID/fd")
        .count()
}

/// Echoes `rounds` binary messages of growing length on `stream`, checking each echo.
fn echo_rounds(stream: &mut TcpStream, seed: usize, rounds: usize) {
    for round in 0..rounds {
        let len = (seed * 7919 + round * 104_729) % 200_000;
        let payload: Vec<u8> = (0..len).map(|i| ((i + seed + round) % 251) as u8).collect();
        ws_send(stream, 0x2, &payload);
        let (opcode, echoed) = ws_recv(stream);
        assert_eq!(opcode, 0x2);
        assert!(
            echoed == payload,
            "tunnel {seed} round {round}: echo differs"
        );
    }
}

#[test]
fn idle_websocket_tunnels_hold_two_descriptors_each() {
    let (zoo, _) = fastapi_zoo("");
    let pid = zoo.pid().as_raw();
    let before = open_descriptors(pid);
    let mut tunnels: Vec<TcpStream> = (0..TUNNELS).map(|_| ws_open(zoo.addr())).collect();
    // One message each way on every tunnel, so that each has spliced before it idles.
    for (seed, stream) in tunnels.iter_mut().enumerate() {
        echo_rounds(stream, seed, 1);
    }
    let idle = open_descriptors(pid) - before;
    assert!(
        idle <= 2 * TUNNELS + SLACK,
        "{TUNNELS} idle tunnels hold {idle} descriptors (at most {} expected)\n{}",
        2 * TUNNELS + SLACK,
        zoo.output()
    );

    // Every tunnel busy at once from 8 threads: more directions than the pool has pipes.
    let mut groups: Vec<Vec<TcpStream>> = (0..8).map(|_| Vec::new()).collect();
    for (index, stream) in tunnels.into_iter().enumerate() {
        groups[index % 8].push(stream);
    }
    let workers: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(worker, mut group)| {
            thread::spawn(move || {
                for round in 0..4 {
                    for (index, stream) in group.iter_mut().enumerate() {
                        echo_rounds(stream, worker * 1000 + index * 10 + round, 1);
                    }
                }
                group
            })
        })
        .collect();
    let tunnels: Vec<TcpStream> = workers
        .into_iter()
        .flat_map(|worker| worker.join().expect("an echo worker failed"))
        .collect();
    let after_traffic = open_descriptors(pid) - before;
    assert!(
        after_traffic <= 2 * TUNNELS + POOL_DESCRIPTORS + SLACK,
        "after concurrent traffic {TUNNELS} tunnels hold {after_traffic} descriptors\n{}",
        zoo.output()
    );
    drop(tunnels);
}
