//! A bounded load generator: `total` GET requests from `concurrency` threads, each on a new
//! connection, every outcome recorded with its start and end, so that failures can be told
//! apart by when they happened (in flight at a crash, or after it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http;

/// One request's fate.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started: Instant,
    pub ended: Instant,
    /// The status, or the I/O error that replaced it.
    pub result: Result<u16, String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self.result, Ok(200))
    }

    /// Whether this request was open at some moment from `from` to `to`.
    pub fn overlaps(&self, from: Instant, to: Instant) -> bool {
        self.started <= to && from <= self.ended
    }
}

/// A load run in progress.
pub struct Load {
    done: Arc<AtomicUsize>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    workers: Vec<JoinHandle<()>>,
    pub total: usize,
}

impl Load {
    /// Starts `total` `GET target` requests against `addr`, `concurrency` at a time; no
    /// request starts after `deadline` has passed.
    pub fn start(
        addr: SocketAddr,
        target: &str,
        total: usize,
        concurrency: usize,
        deadline: Duration,
    ) -> Load {
        let until = Instant::now() + deadline;
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let outcomes = Arc::new(Mutex::new(Vec::with_capacity(total)));
        let workers = (0..concurrency)
            .map(|_| {
                let (next, done, outcomes) =
                    (Arc::clone(&next), Arc::clone(&done), Arc::clone(&outcomes));
                let target = target.to_owned();
                thread::spawn(move || {
                    while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < until {
                        let started = Instant::now();
                        let result = http::get(addr, &target)
                            .map(|response| response.status)
                            .map_err(|error| error.to_string());
                        let outcome = Outcome {
                            started,
                            ended: Instant::now(),
                            result,
                        };
                        outcomes.lock().unwrap().push(outcome);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            done,
            outcomes,
            workers,
            total,
        }
    }

    /// Requests answered (or failed) so far.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits (bounded by the start deadline) until `fraction` of the requests are done.
    pub fn wait_for_fraction(&self, fraction: f64, deadline: Duration) -> bool {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let wanted = (self.total as f64 * fraction) as usize;
        super::poll_until(deadline, || self.done() >= wanted)
    }

    /// Waits for every worker and returns all outcomes.
    pub fn finish(self) -> Vec<Outcome> {
        for worker in self.workers {
            worker.join().expect("load worker panicked");
        }
        Arc::try_unwrap(self.outcomes)
            .expect("workers are done")
            .into_inner()
            .unwrap()
    }
}

/// `N failed of M: first failures...` for assertion messages.
pub fn summary(outcomes: &[Outcome]) -> String {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|outcome| !outcome.ok()).collect();
    let examples: Vec<String> = failed
        .iter()
        .take(5)
        .map(|outcome| format!("{:?}", outcome.result))
        .collect();
    format!(
        "{} failed of {}: {}",
        failed.len(),
        outcomes.len(),
        examples.join("; ")
    )
}
