//! The running zoo's control plane: what `zoo reload`, SIGHUP and `zoo status` act on. It
//! owns the path and the currently loaded config, and swaps a freshly validated runtime
//! table in one store; a config that fails validation is logged with its file:line:col and
//! the old table keeps serving. Listeners are never rebound.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::admin::{Health, Metrics};
use crate::config::{self, Config, ConfigError};
use crate::proxy::{BuildError, RuntimeTable, Shared};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{}: {what} changed; restart zoo to apply it (the running config is kept)", path.display())]
    NeedsRestart { path: PathBuf, what: String },
}

/// Shared by the admin endpoints, the SIGHUP handler and `run`.
pub struct Control {
    /// Where the config is re-read from on reload.
    path: PathBuf,
    /// The config now serving and when it was loaded; replaced only by a successful reload.
    current: Mutex<(Config, SystemTime)>,
    /// The proxy's shared state, whose table a reload swaps.
    shared: Arc<Shared>,
    /// The apps' readiness and whether zoo is draining; also the apps' list, in start order.
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// Serialises reloads so that two cannot interleave their check and swap.
    reloading: tokio::sync::Mutex<()>,
}

/// What `zoo status` shows.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub config: String,
    /// Seconds since the Unix epoch when the serving config was loaded.
    pub loaded_at: u64,
    pub listen: Vec<String>,
    pub apps: Vec<AppStatus>,
    pub routes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    pub port: u16,
    pub ready: bool,
}

impl Status {
    /// The readable table `zoo status` prints; `now` is seconds since the Unix epoch.
    #[must_use]
    pub fn render(&self, now: u64) -> String {
        let mut out = String::new();
        let ago = now.saturating_sub(self.loaded_at);
        let _ = writeln!(out, "config  {} (loaded {ago}s ago)", self.config);
        let _ = writeln!(out, "listen  {}", self.listen.join(", "));
        let width = self
            .apps
            .iter()
            .map(|app| app.name.len())
            .max()
            .unwrap_or(0)
            .max(3);
        let _ = writeln!(out, "\n{:<width$}  {:>5}  READY", "APP", "PORT");
        for app in &self.apps {
            let ready = if app.ready { "yes" } else { "no" };
            let _ = writeln!(out, "{:<width$}  {:>5}  {ready}", app.name, app.port);
        }
        let _ = writeln!(out, "\nroutes (longest match first):");
        for route in &self.routes {
            let _ = writeln!(out, "  {route}");
        }
        out
    }
}

impl Control {
    #[must_use]
    pub fn new(
        config: Config,
        shared: Arc<Shared>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            path: config.path.clone(),
            current: Mutex::new((config, SystemTime::now())),
            shared,
            health,
            metrics,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    #[must_use]
    pub fn health(&self) -> &Health {
        &self.health
    }

    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Re-reads the config file and, when it is valid, swaps in its runtime table. On any
    /// error the serving config stays as it was.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let config = config::load(&self.path)?;
        {
            let current = self.lock();
            if let Some(what) = needs_restart(&current.0, &config) {
                return Err(ReloadError::NeedsRestart {
                    path: self.path.clone(),
                    what,
                });
            }
        }
        let table = RuntimeTable::build(&config, &self.health, &self.metrics)?;
        self.shared.table.store(Arc::new(table));
        *self.lock() = (config, SystemTime::now());
        tracing::info!("reloaded {}", self.path.display());
        Ok(())
    }

    #[must_use]
    pub fn status(&self) -> Status {
        let current = self.lock();
        let (config, loaded_at) = &*current;
        Status {
            config: config.path.display().to_string(),
            loaded_at: loaded_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            listen: config.listen.iter().map(ToString::to_string).collect(),
            apps: self
                .health
                .apps()
                .iter()
                .map(|app| AppStatus {
                    name: app.name.clone(),
                    port: app.addr.port(),
                    ready: app.is_ready(),
                })
                .collect(),
            routes: self.shared.table.load().describe(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Config, SystemTime)> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a reload cannot apply in place: the listeners, which are never rebound, and the apps,
/// which only the supervisor may start and stop.
fn needs_restart(running: &Config, new: &Config) -> Option<String> {
    if running.listen != new.listen {
        return Some("`listen`".to_owned());
    }
    if running.apps != new.apps {
        return Some("`[apps]`".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_as_a_table() {
        let status = Status {
            config: "/app/zoo.toml".into(),
            loaded_at: 1_000,
            listen: vec!["0.0.0.0:8000".into()],
            apps: vec![
                AppStatus {
                    name: "python".into(),
                    port: 9000,
                    ready: true,
                },
                AppStatus {
                    name: "node".into(),
                    port: 9100,
                    ready: false,
                },
            ],
            routes: vec!["/node  -> app `node`".into()],
        };
        assert_eq!(
            status.render(1_042),
            "config  /app/zoo.toml (loaded 42s ago)\n\
             listen  0.0.0.0:8000\n\
             \n\
             APP      PORT  READY\n\
             python   9000  yes\n\
             node     9100  no\n\
             \n\
             routes (longest match first):\n  /node  -> app `node`\n"
        );
    }
}
