//! Server-sent events timing, through zoo vs direct: the FastAPI app (`util/fastapi/app.py`,
//! `/sse/timed`) writes events at a fixed spacing, each carrying the wall-clock time at which it
//! was yielded; a raw-socket reader here stamps each event's arrival with the same clock
//! (CLOCK_REALTIME, one machine) and takes the difference. The direct and the through-zoo
//! streams are read at the same time, so both see the same load on the machine.
//!
//! Asserted: every event arrives through zoo within 50 ms of its direct arrival (issue 6's
//! requirement, counted from the direct path so that a stall of the machine is not zoo's);
//! at most a quarter of the events more than direct share a read with the next event (a proxy
//! that holds an event until the next one would coalesce nearly all); and the through-zoo
//! median is within 5 ms of the direct median (zoo's extra hop costs tens of microseconds on
//! loopback; 5 ms leaves room for scheduling noise on a busy machine yet is ten times smaller
//! than buffering until the next event would cost). Run with `--nocapture` to see the figures.
//! Also here: the first event of a stream the app holds open comes through before its end,
//! and a 1 GiB upload streams through zoo with its peak RSS bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::fastapi::fastapi_zoo;
use crate::util::raw::{IO_TIMEOUT, connect, read_head};
use crate::util::{Zoo, http};

/// The bound: an event reaches the client within this long of the app writing it.
const FLUSH_BOUND: Duration = Duration::from_millis(50);
/// Through zoo, at most `count / COALESCED_EXTRA_DIVISOR` more events than direct may share a
/// read with the next event.
const COALESCED_EXTRA_DIVISOR: usize = 4;
/// How much later than direct the through-zoo median latency may be.
const MEDIAN_EXTRA_BOUND: Duration = Duration::from_millis(5);

/// One stream's measurements.
struct Timing {
    /// Per event: arrival at the reader minus the app's timestamp.
    latencies: Vec<Duration>,
    /// The app's timestamps, in nanoseconds since the epoch.
    sent_ns: Vec<u128>,
    /// Per event: the number of the read that completed it.
    read_of: Vec<usize>,
}

impl Timing {
    /// Events that came in the same read as the event after them: what a proxy that held an
    /// event until the next one (or until the previous write's ACK) would make of them all.
    fn coalesced(&self) -> usize {
        self.read_of
            .windows(2)
            .filter(|pair| pair[0] == pair[1])
            .count()
    }

    fn percentile(&self, p: usize) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[(sorted.len() - 1) * p / 100]
    }

    fn summary(&self) -> String {
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
        format!(
            "{} coalesced, p50 {} ms, p90 {} ms, max {} ms; each (ms): {}",
            self.coalesced(),
            ms(self.percentile(50)),
            ms(self.percentile(90)),
            ms(self.percentile(100)),
            self.latencies
                .iter()
                .map(|d| ms(*d))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

/// Reads `count` events from `/sse/timed` at `addr`, stamping each with the time of the read
/// that completed its `data:` line.
fn read_events(addr: SocketAddr, count: usize, interval: Duration) -> Timing {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET /sse/timed?count={count}&interval_ms={} HTTP/1.1\r\nHost: zoo.test\r\n\
         Connection: close\r\n\r\n",
        interval.as_millis()
    )
    .unwrap();
    let head = read_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"),
        "{addr}: {head}"
    );
    let until = Instant::now() + IO_TIMEOUT;
    let mut timing = Timing {
        latencies: Vec::new(),
        sent_ns: Vec::new(),
        read_of: Vec::new(),
    };
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    for read_number in 0.. {
        if timing.sent_ns.len() == count {
            break;
        }
        assert!(
            Instant::now() < until,
            "{addr}: {} of {count} events in {IO_TIMEOUT:?}",
            timing.sent_ns.len()
        );
        let read = stream.read(&mut buf).expect("read the event stream");
        let arrived = now_ns();
        assert!(
            read > 0,
            "{addr}: the stream ended after {} of {count} events",
            timing.sent_ns.len()
        );
        pending.extend_from_slice(&buf[..read]);
        // Whole lines only; chunk-size lines of the chunked framing are skipped as non-data.
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(value) = line.strip_prefix(b"data: ") {
                let sent: u128 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{addr}: bad data line {line:?}"));
                let latency = arrived.checked_sub(sent).unwrap_or_else(|| {
                    panic!("{addr}: event stamped {sent} arrived earlier, at {arrived}")
                });
                timing
                    .latencies
                    .push(Duration::from_nanos(u64::try_from(latency).unwrap()));
                timing.sent_ns.push(sent);
                timing.read_of.push(read_number);
            }
        }
    }
    timing
}

/// Reads the same stream from the app and through zoo at once and checks the bounds.
fn direct_and_through_zoo(count: usize, interval: Duration) {
    let (zoo, port) = fastapi_zoo("");
    let app = SocketAddr::from(([127, 0, 0, 1], port));
    let (direct, through) = std::thread::scope(|scope| {
        let direct = scope.spawn(|| read_events(app, count, interval));
        let through = read_events(zoo.addr(), count, interval);
        (direct.join().unwrap(), through)
    });
    let report = format!(
        "{count} events {interval:?} apart\n  direct:      {}\n  through zoo: {}",
        direct.summary(),
        through.summary()
    );
    eprintln!("SSE latency (arrival - app's send time), {report}");
    // The app really spaced the events (else nothing here measures flushing).
    let spread = Duration::from_nanos(
        u64::try_from(through.sent_ns[count - 1] - through.sent_ns[0]).unwrap(),
    );
    assert!(
        spread >= interval * u32::try_from(count - 1).unwrap() * 9 / 10,
        "the app wrote {count} events within {spread:?}, not {interval:?} apart"
    );
    // Counted from the same event's direct arrival: read at the same time, both paths see the
    // same stalls of a busy machine, which are no flushing fault of zoo's.
    for (i, (latency, direct)) in through.latencies.iter().zip(&direct.latencies).enumerate() {
        assert!(
            *latency <= *direct + FLUSH_BOUND,
            "event {i} reached the client {latency:?} after the app wrote it through zoo, \
             {direct:?} direct (bound: direct + {FLUSH_BOUND:?}); {report}\n{}",
            zoo.output()
        );
    }
    // The per-event bound is several spacings wide at 10 ms; counting events per read is not:
    // a proxy holding each event until the next would coalesce nearly all of them, while a busy
    // machine coalesces a few, on both paths alike.
    assert!(
        through.coalesced() <= direct.coalesced() + count / COALESCED_EXTRA_DIVISOR,
        "events through zoo came together more often than direct; {report}\n{}",
        zoo.output()
    );
    assert!(
        through.percentile(50) <= direct.percentile(50) + MEDIAN_EXTRA_BOUND,
        "median latency through zoo exceeds direct by more than {MEDIAN_EXTRA_BOUND:?}; \
         {report}\n{}",
        zoo.output()
    );
}

#[test]
fn sse_events_50ms_apart_arrive_through_zoo_as_promptly_as_direct() {
    direct_and_through_zoo(20, Duration::from_millis(50));
}

#[test]
fn sse_events_10ms_apart_are_not_coalesced_through_zoo() {
    // Closer than Linux's delayed-ACK timer (40 ms): a proxy whose socket waits for the ACK of
    // the previous write before sending a small one (Nagle) would show it here.
    direct_and_through_zoo(50, Duration::from_millis(10));
}

#[test]
fn sse_first_event_arrives_before_the_stream_ends_and_uploads_stream() {
    let (zoo, _) = fastapi_zoo("");
    let mut stream = connect(zoo.addr());
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nHost: zoo.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{}", zoo.output());
    assert!(head.contains("text/event-stream"), "{head}");
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    // The app cannot end the stream until /release: the first event must come through first.
    while !seen.contains("data: first") {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .expect("first SSE event through zoo");
        assert!(read > 0, "stream ended before the first event: {seen:?}");
        seen.push_str(&line);
    }
    let release = http::exchange(
        zoo.addr(),
        b"POST /release HTTP/1.1\r\nHost: zoo.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        IO_TIMEOUT,
    )
    .unwrap();
    assert!(release.starts_with(b"HTTP/1.1 200"));
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: last"), "{rest:?}");

    upload_streams_with_bounded_rss(&zoo);
}

/// `/proc/PID/status` VmHWM (peak resident set) in KiB.
fn peak_rss_kib(pid: nix::unistd::Pid) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn upload_streams_with_bounded_rss(zoo: &Zoo) {
    const SIZE: usize = 1 << 30;
    const CHUNK: usize = 1 << 20;
    let before = peak_rss_kib(zoo.pid());
    let started = Instant::now();
    let mut stream = connect(zoo.addr());
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: zoo.test\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'z'; CHUNK];
    for _ in 0..SIZE / CHUNK {
        stream.write_all(&chunk).unwrap();
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = http::parse(&response).unwrap();
    let after = peak_rss_kib(zoo.pid());
    eprintln!(
        "upload of {} MiB through zoo: {:?}, zoo peak RSS {before} KiB -> {after} KiB",
        SIZE >> 20,
        started.elapsed()
    );
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        zoo.output()
    );
    assert_eq!(response.text(), SIZE.to_string());
    assert!(
        after - before < 16 * 1024,
        "zoo's peak RSS grew by {} KiB during a {} MiB upload",
        after - before,
        SIZE >> 20
    );
}
