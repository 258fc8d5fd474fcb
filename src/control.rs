//! The running zoo's control plane: what `zoo reload`, SIGHUP and `zoo status` act on. It
//! owns the path and the currently loaded config, and swaps a freshly validated runtime
//! table in one store; a config that fails validation is logged with its file:line:col and
//! the old table keeps serving. Listeners are never rebound. A reload also brings the apps in
//! line with the new config (the supervisor starts, stops and replaces them); the new table
//! is built against the new set of apps and stored once the new ones are ready.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::admin::{Health, Metrics};
use crate::config::{self, Config, ConfigError};
use crate::proxy::{BuildError, RuntimeTable, Shared};
use crate::supervise::{self, AppCommand, AppState, Controller, SuperviseError};

/// How long `zoo restart`/`start`/`stop` wait for the app to get there.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);
const COMMAND_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
    #[error("app `{app}` did not get there within {COMMAND_DEADLINE:?} (it is {state})")]
    Timeout { app: String, state: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
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
    /// Commands to and status of the supervised apps.
    apps: Controller,
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
    /// `waiting`, `starting`, `ready`, `backoff`, `stopping`, `stopped` or `failed`.
    pub state: String,
    pub pid: Option<u32>,
    pub ready: bool,
    pub restarts: u32,
    pub uptime_secs: Option<u64>,
    pub last_exit: Option<String>,
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
        let _ = writeln!(
            out,
            "\n{:<width$}  {:>5}  {:<8}  {:>7}  {:>8}  {:>8}  LAST EXIT",
            "APP", "PORT", "STATE", "PID", "RESTARTS", "UPTIME"
        );
        for app in &self.apps {
            let pid = app
                .pid
                .map_or_else(|| "-".to_owned(), |pid| pid.to_string());
            let uptime = app
                .uptime_secs
                .map_or_else(|| "-".to_owned(), |secs| format!("{secs}s"));
            let _ = writeln!(
                out,
                "{:<width$}  {:>5}  {:<8}  {pid:>7}  {:>8}  {uptime:>8}  {}",
                app.name,
                app.port,
                app.state,
                app.restarts,
                app.last_exit.as_deref().unwrap_or("-")
            );
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
        apps: Controller,
    ) -> Self {
        Self {
            path: config.path.clone(),
            current: Mutex::new((config, SystemTime::now())),
            shared,
            health,
            metrics,
            apps,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The config file this zoo runs, as it was given; the admin server compares it with the
    /// one a CLI request names.
    #[must_use]
    pub fn config_path(&self) -> &std::path::Path {
        &self.path
    }

    #[must_use]
    pub fn health(&self) -> &Health {
        &self.health
    }

    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Re-reads the config file and, when it is valid, applies it: apps added, removed and
    /// changed are started, stopped and restarted (by their `restart_strategy`), and the new
    /// runtime table is swapped in once the new apps are ready. On an error found before any
    /// app was touched (invalid config, unbuildable table) the serving config stays as it was.
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
        let changes = self.apps.plan_changes(&config.apps)?;
        let handles = changes.handles();
        let table = RuntimeTable::build(&config, &handles, &self.health, &self.metrics)?;
        self.apps
            .apply(changes, || {
                self.health.set_apps(handles);
                self.shared.table.store(Arc::new(table));
            })
            .await?;
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
                .apps
                .status()
                .into_iter()
                .map(|status| AppStatus {
                    name: status.name,
                    port: status.port,
                    state: state_name(status.state).to_owned(),
                    pid: status.pid,
                    ready: status.ready,
                    restarts: status.restarts,
                    uptime_secs: status.uptime.map(|uptime| uptime.as_secs()),
                    last_exit: status.last_exit.map(|exit| exit.to_string()),
                })
                .collect(),
            routes: self.shared.table.load().describe(),
        }
    }

    /// The last lines app `name` wrote, oldest first.
    pub fn recent_lines(&self, name: &str) -> Result<Vec<String>, CommandError> {
        self.health
            .apps()
            .iter()
            .find(|app| app.name == name)
            .map(|app| app.recent.snapshot())
            .ok_or_else(|| {
                SuperviseError::UnknownApp {
                    app: name.to_owned(),
                }
                .into()
            })
    }

    /// Sends `command` to app `name` and waits until it has taken effect: the app ready again
    /// (a new instance, for a restart), or stopped.
    pub async fn command(&self, name: &str, command: AppCommand) -> Result<String, CommandError> {
        let before = self.app_status(name)?;
        self.apps.send(name, command)?;
        let deadline = tokio::time::Instant::now() + COMMAND_DEADLINE;
        loop {
            let now = self.app_status(name)?;
            let done = match command {
                AppCommand::Restart => now.ready && (before.pid.is_none() || now.pid != before.pid),
                AppCommand::Start => now.ready,
                AppCommand::Stop => now.state == AppState::Stopped,
            };
            if done {
                return Ok(match command {
                    AppCommand::Restart => {
                        format!("{name} restarted (pid {})\n", now.pid.unwrap_or(0))
                    }
                    AppCommand::Start => format!("{name} started (pid {})\n", now.pid.unwrap_or(0)),
                    AppCommand::Stop => format!("{name} stopped\n"),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CommandError::Timeout {
                    app: name.to_owned(),
                    state: state_name(now.state).to_owned(),
                });
            }
            tokio::time::sleep(COMMAND_POLL).await;
        }
    }

    fn app_status(&self, name: &str) -> Result<supervise::AppStatus, SuperviseError> {
        self.apps
            .status()
            .into_iter()
            .find(|status| status.name == name)
            .ok_or_else(|| SuperviseError::UnknownApp {
                app: name.to_owned(),
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Config, SystemTime)> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn state_name(state: AppState) -> &'static str {
    match state {
        AppState::Waiting => "waiting",
        AppState::Starting => "starting",
        AppState::Ready => "ready",
        AppState::Backoff => "backoff",
        AppState::Stopping => "stopping",
        AppState::Stopped => "stopped",
        AppState::Failed => "failed",
    }
}

/// What a reload cannot apply in place: the listeners, which are never rebound, and the
/// access log writer.
fn needs_restart(running: &Config, new: &Config) -> Option<String> {
    if running.listen != new.listen {
        return Some("`listen`".to_owned());
    }
    if running.access_log != new.access_log {
        return Some("`access_log`".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_as_a_table() {
        let app =
            |name: &str, port, state: &str, pid, restarts, last_exit: Option<&str>| AppStatus {
                name: name.into(),
                port,
                state: state.into(),
                pid,
                ready: state == "ready",
                restarts,
                uptime_secs: pid.map(|_| 42),
                last_exit: last_exit.map(Into::into),
            };
        let status = Status {
            config: "/app/zoo.toml".into(),
            loaded_at: 1_000,
            listen: vec!["0.0.0.0:8000".into()],
            apps: vec![
                app("python", 9000, "ready", Some(17), 0, None),
                app("node", 9100, "backoff", None, 2, Some("exit code 1")),
            ],
            routes: vec!["/node  -> app `node`".into()],
        };
        assert_eq!(
            status.render(1_042),
            "config  /app/zoo.toml (loaded 42s ago)\n\
             listen  0.0.0.0:8000\n\
             \n\
             APP      PORT  STATE         PID  RESTARTS    UPTIME  LAST EXIT\n\
             python   9000  ready          17         0       42s  -\n\
             node     9100  backoff         -         2         -  exit code 1\n\
             \n\
             routes (longest match first):\n  /node  -> app `node`\n"
        );
    }
}
