//! Who listens where, from `/proc`: the one-line diagnosis of an app that does not get ready
//! (which TCP ports its process group actually listens on, against its `PORT`), and the check
//! before a start that the app's port is not held by another process (then: its pid and
//! command). Listening sockets come from `/proc/<pid>/net/tcp` and `tcp6` (state `0A`), and
//! are tied to processes by the socket inodes behind `/proc/<pid>/fd/*`. Best effort: what
//! cannot be read (another user's process, no `/proc`) is left out, never an error.

// Input (the config, /proc, what apps print) drives the arithmetic here: no silent overflow,
// no lossy `as` (docs/design.md, "Arithmetic on input, and the fuzz suite").
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nix::unistd::Pid;

/// How much of a holder's command line is shown.
const COMMAND_SHOWN: usize = 100;

/// One listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listening {
    addr: SocketAddr,
    inode: u64,
}

/// The process holding a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holder {
    pid: u32,
    command: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)
    }
}

/// Parses one line of `/proc/net/tcp` or `tcp6`: a listening socket, or `None` for the header,
/// another state, or a line that does not parse.
fn parse_line(line: &str) -> Option<Listening> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if fields.len() < 10 || fields[3] != "0A" {
        return None;
    }
    let (host, port) = fields[1].split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints each 32-bit word of the address as a host-order integer.
    let ip = match host.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(host, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (word, hex) in bytes
                .chunks_exact_mut(4)
                .zip(host.as_bytes().chunks_exact(8))
            {
                let hex = std::str::from_utf8(hex).ok()?;
                word.copy_from_slice(&u32::from_str_radix(hex, 16).ok()?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(Listening {
        addr: SocketAddr::new(ip, port),
        inode: fields[9].parse().ok()?,
    })
}

/// Every listening TCP socket in the network namespace of `pid` (`self` for zoo's own).
fn listening(pid: &str) -> Vec<Listening> {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| text.lines().filter_map(parse_line).collect::<Vec<_>>())
        .collect()
}

/// The socket inodes `pid` has open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| {
        let target = fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

/// Every pid, with its process group, from `/proc/*/stat`.
fn processes() -> Vec<(u32, i32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let (_, rest) = stat.rsplit_once(')')?;
            let pgrp = rest.split_whitespace().nth(2)?.parse().ok()?;
            Some((pid, pgrp))
        })
        .collect()
}

/// A process's command line, as `ps` shows it.
fn command_line(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|byte| *byte == 0)
        .filter(|word| !word.is_empty())
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect();
    let line = if words.is_empty() {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .map_or_else(|_| "?".to_owned(), |comm| comm.trim().to_owned())
    } else {
        words.join(" ")
    };
    // One log line: a `-c` script's newlines become spaces, and a long one is cut.
    let line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match line.char_indices().nth(COMMAND_SHOWN) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// Who listens on TCP `port` (any address) before an app is started on it, if anyone does;
/// `Err` with what is known when the socket's owner cannot be seen.
pub(super) fn holder(port: u16) -> Option<Result<Holder, SocketAddr>> {
    let taken = listening("self")
        .into_iter()
        .find(|socket| socket.addr.port() == port)?;
    let owner = processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .find(|pid| socket_inodes(*pid).contains(&taken.inode));
    Some(owner.map_or(Err(taken.addr), |pid| {
        Ok(Holder {
            pid,
            command: command_line(pid),
        })
    }))
}

/// Why `app`, started as process group `pgid` with `PORT=port`, is not ready: where its
/// group listens, in one sentence.
pub(super) fn diagnose(app: &str, pgid: Pid, port: u16) -> String {
    let members: Vec<u32> = processes()
        .into_iter()
        .filter(|(_, pgrp)| *pgrp == pgid.as_raw())
        .map(|(pid, _)| pid)
        .collect();
    let inodes: Vec<u64> = members.iter().flat_map(|pid| socket_inodes(*pid)).collect();
    let table = members
        .first()
        .map_or_else(|| "self".to_owned(), ToString::to_string);
    let mut addrs: Vec<SocketAddr> = listening(&table)
        .into_iter()
        .filter(|socket| inodes.contains(&socket.inode))
        .map(|socket| socket.addr)
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    describe(app, port, &addrs)
}

/// The sentence [`diagnose`] says, for the addresses the group listens on.
fn describe(app: &str, port: u16, addrs: &[SocketAddr]) -> String {
    let list = |addrs: &[&SocketAddr]| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let on_port: Vec<&SocketAddr> = addrs.iter().filter(|addr| addr.port() == port).collect();
    let reachable = on_port.iter().any(|addr| {
        let ip = addr.ip();
        ip.is_unspecified() || ip.is_loopback()
    });
    if addrs.is_empty() {
        format!("nothing in {app}'s process group is listening on TCP (expected PORT={port})")
    } else if reachable {
        format!(
            "{app} is listening on {} (its PORT), but its readiness probe did not pass",
            list(&on_port)
        )
    } else if !on_port.is_empty() {
        format!(
            "{app} is listening on {}, which zoo cannot reach on 127.0.0.1:{port}: listen on \
             0.0.0.0 or 127.0.0.1",
            list(&on_port)
        )
    } else {
        let all: Vec<&SocketAddr> = addrs.iter().collect();
        format!(
            "{app} is listening on {}, not on PORT={port} (is the app ignoring $PORT?)",
            list(&all)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_give_listening_sockets() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  \
                  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(v4),
            Some(Listening {
                addr: "127.0.0.1:8080".parse().unwrap(),
                inode: 123_456
            })
        );
        let any = "   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     \
                   0        0 42 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(any).unwrap().addr,
            "0.0.0.0:3000".parse().unwrap()
        );
        let v6 = "   0: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 \
                  0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0 100 0 0 10 0";
        assert_eq!(parse_line(v6).unwrap().addr, "[::1]:9090".parse().unwrap());
        let established = "   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 \
                           00000000  1000        0 99 1 0 20 4 30 10 -1";
        assert_eq!(parse_line(established), None);
        assert_eq!(
            parse_line("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when"),
            None
        );
    }

    #[test]
    fn the_diagnosis_names_where_the_group_listens() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(
            describe("node", 9100, &[at("0.0.0.0:3000")]),
            "node is listening on 0.0.0.0:3000, not on PORT=9100 (is the app ignoring $PORT?)"
        );
        assert_eq!(
            describe("node", 9100, &[]),
            "nothing in node's process group is listening on TCP (expected PORT=9100)"
        );
        assert_eq!(
            describe("node", 9100, &[at("10.1.2.3:9100")]),
            "node is listening on 10.1.2.3:9100, which zoo cannot reach on 127.0.0.1:9100: \
             listen on 0.0.0.0 or 127.0.0.1"
        );
        assert_eq!(
            describe("node", 9100, &[at("127.0.0.1:9100"), at("0.0.0.0:9229")]),
            "node is listening on 127.0.0.1:9100 (its PORT), but its readiness probe did not pass"
        );
    }

    #[test]
    fn a_port_zoo_itself_listens_on_has_zoo_as_its_holder() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let zoo = holder(port).expect("taken").expect("visible");
        assert_eq!(zoo.pid, std::process::id());
        assert!(
            zoo.to_string()
                .starts_with(&format!("pid {} (", std::process::id()))
        );
        drop(listener);
        assert_eq!(holder(port), None);
    }
}
