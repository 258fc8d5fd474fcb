//! The TCP addresses zoo accepts on for one config key (`listen`, or `admin`), changed in place
//! by a reload in two steps: [`ListenerSet::stage`] binds the addresses added (the reload is
//! refused if one cannot be bound, and nothing changed), then [`ListenerSet::commit`] starts
//! serving them and only then stops accepting on the removed ones, whose connections finish
//! their requests. An address kept is never rebound, so no connection is refused at any moment.
//!
//! What a listener serves is the caller's (`compose` hands in the function that spawns the
//! proxy's or the admin server's accept loop), so this module knows neither.

use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Starts serving one bound listener until its token is cancelled.
pub type ServeFn = Box<dyn Fn(TcpListener, CancellationToken) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("`{key}`: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// One address being served.
struct Open {
    /// As the config names it (port 0 stays 0, so a reload that keeps it keeps the listener).
    configured: SocketAddr,
    /// What the kernel bound: the port chosen for port 0.
    bound: SocketAddr,
    stop: CancellationToken,
}

/// The addresses of one config key and their accept loops.
pub struct ListenerSet {
    key: &'static str,
    /// What the log says of a new address, before its URL: `listening on`.
    greeting: &'static str,
    serve: ServeFn,
    open: Mutex<Vec<Open>>,
}

/// Addresses bound for a reload, not served yet; dropping it closes them again.
pub struct Staged {
    added: Vec<(SocketAddr, TcpListener)>,
    wanted: Vec<SocketAddr>,
}

impl Staged {
    /// Binds the addresses of `wanted` (for config key `key`) that are not in `open`: with
    /// none open, the first listeners of a set, bound before the set exists (compose binds
    /// them before it picks the apps' free ports, so that a `listen` port 0 cannot be given
    /// a port just picked for an app). On an error the ones bound so far are closed again.
    pub async fn bind(
        key: &'static str,
        wanted: &[SocketAddr],
        open: &[SocketAddr],
    ) -> Result<Self, ListenError> {
        let mut added: Vec<(SocketAddr, TcpListener)> = Vec::new();
        for &addr in wanted {
            if open.contains(&addr) || added.iter().any(|(kept, _)| *kept == addr) {
                continue;
            }
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ListenError::Bind { key, addr, source })?;
            added.push((addr, listener));
        }
        Ok(Self {
            added,
            wanted: wanted.to_vec(),
        })
    }
}

impl ListenerSet {
    #[must_use]
    pub fn new(key: &'static str, greeting: &'static str, serve: ServeFn) -> Self {
        Self {
            key,
            greeting,
            serve,
            open: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Open>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds each address of `wanted` that is not open yet. On an error the ones bound so far
    /// are closed again and nothing changed.
    pub async fn stage(&self, wanted: &[SocketAddr]) -> Result<Staged, ListenError> {
        let open: Vec<SocketAddr> = self.lock().iter().map(|open| open.configured).collect();
        Staged::bind(self.key, wanted, &open).await
    }

    /// Serves the staged addresses, then stops accepting on the open ones `staged` does not
    /// want; their connections finish their requests and close. Logs each change, a new
    /// address as `GREETING SCHEME://ADDR`.
    pub fn commit(&self, staged: Staged, scheme: &str) {
        let mut open = self.lock();
        for (configured, listener) in staged.added {
            let bound = listener.local_addr().unwrap_or(configured);
            let stop = CancellationToken::new();
            (self.serve)(listener, stop.clone());
            tracing::info!("{} {scheme}://{bound}", self.greeting);
            open.push(Open {
                configured,
                bound,
                stop,
            });
        }
        open.retain(|listener| {
            let kept = staged.wanted.contains(&listener.configured);
            if !kept {
                listener.stop.cancel();
                tracing::info!(
                    "{}: no longer accepting on {} (its connections finish their requests)",
                    self.key,
                    listener.bound
                );
            }
            kept
        });
    }

    /// The addresses served now, as bound (port 0 shows the port the kernel chose).
    #[must_use]
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.lock().iter().map(|open| open.bound).collect()
    }

    /// Stops accepting on every address (shutdown): their connections finish and close.
    pub fn stop_all(&self) {
        for open in self.lock().drain(..) {
            open.stop.cancel();
        }
    }
}
