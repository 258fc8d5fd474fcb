//! The running zoo's control plane: what `zoo reload`, SIGHUP, `zoo status` and the per-app
//! verbs act on. A reload re-reads the config file and applies every setting or refuses the
//! whole of it by name: added addresses of `listen` and `admin` are bound first (a bind that
//! fails refuses the reload, and nothing changed), the apps are brought in line (the
//! supervisor starts, stops and replaces them), the new runtime is built against the new set
//! of apps and stored in one swap once they are ready, and only then do removed addresses stop
//! accepting. A config that fails validation is refused with its file:line:col and the
//! running one keeps serving.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigError};
use crate::listeners::{ListenError, ListenerSet, Staged};
use crate::runtime::{BuildError, Runtime, Serving};
use crate::supervise::{self, AppCommand, AppState, SuperviseError, SupervisorHandle};

/// How long `zoo restart`/`start`/`stop` wait for the app to get there.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);
const COMMAND_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
    #[error("app `{app}` did not get there within {COMMAND_DEADLINE:?} (it is {state})")]
    Timeout { app: String, state: String },
    #[error("{app} failed ({detail})")]
    RunFailed { app: String, detail: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
    #[error("{}: {source} (the running config is kept)", path.display())]
    Listen {
        path: PathBuf,
        #[source]
        source: ListenError,
    },
}

/// Shared by the admin endpoints, the SIGHUP handler and `run`.
pub struct ControlPlane {
    /// Where the config is re-read from on reload.
    path: PathBuf,
    /// The runtime in use, which a reload replaces.
    serving: Arc<Serving>,
    /// Commands to and status of the supervised apps.
    apps: SupervisorHandle,
    /// The public listeners (`listen`).
    public: ListenerSet,
    /// The admin TCP listener (`admin`), none or one.
    admin: ListenerSet,
    /// Serialises reloads so that two cannot interleave their check and swap.
    reloading: tokio::sync::Mutex<()>,
}

/// What `zoo status` shows.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub config: String,
    /// Seconds since the Unix epoch when the serving config was loaded.
    pub loaded_at: u64,
    pub listen: Vec<String>,
    pub apps: Vec<AppReport>,
    pub routes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AppReport {
    pub name: String,
    /// `service`, `worker`, `task` or `cron`.
    pub kind: String,
    /// `None` for an app without a port (a worker, a task).
    pub port: Option<u16>,
    /// `waiting`, `starting`, `ready`, `running`, `scheduled`, `done`, `backoff`, `stopping`,
    /// `stopped` or `failed`.
    pub state: String,
    /// How the last run of a done or failed app ended (`exit 0 after 3.2s`); a cron job's
    /// next tick and counts (`next 2026-12-01T10:15:00Z; 3 runs, 0 failed, 1 skipped`); for
    /// a service stuck in `starting`, where it listens (`web is listening on 0.0.0.0:3000,
    /// not on PORT=9100 (is the app ignoring $PORT?)`).
    pub detail: Option<String>,
    pub pid: Option<u32>,
    pub ready: bool,
    pub restarts: u32,
    pub uptime_secs: Option<u64>,
    pub last_exit: Option<String>,
}

impl StatusReport {
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
        let states: Vec<String> = self
            .apps
            .iter()
            .map(|app| match &app.detail {
                Some(detail) => format!("{} ({detail})", app.state),
                None => app.state.clone(),
            })
            .collect();
        let state_width = states.iter().map(String::len).max().unwrap_or(0).max(8);
        let _ = writeln!(
            out,
            "\n{:<width$}  {:>5}  {:<state_width$}  {:>7}  {:>8}  {:>8}  LAST EXIT",
            "APP", "PORT", "STATE", "PID", "RESTARTS", "UPTIME"
        );
        for (app, state) in self.apps.iter().zip(&states) {
            let dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
            let port = dash(app.port.map(|port| port.to_string()));
            let pid = dash(app.pid.map(|pid| pid.to_string()));
            let uptime = dash(app.uptime_secs.map(|secs| format!("{secs}s")));
            let _ = writeln!(
                out,
                "{:<width$}  {port:>5}  {state:<state_width$}  {pid:>7}  {:>8}  {uptime:>8}  {}",
                app.name,
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

impl ControlPlane {
    /// The control plane of the zoo serving `serving`; `public` and `admin` are the listener
    /// sets a reload changes, already serving the startup config.
    #[must_use]
    pub fn new(
        path: PathBuf,
        serving: Arc<Serving>,
        apps: SupervisorHandle,
        public: ListenerSet,
        admin: ListenerSet,
    ) -> Self {
        Self {
            path,
            serving,
            apps,
            public,
            admin,
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
    pub fn serving(&self) -> &Serving {
        &self.serving
    }

    /// Re-reads the config file and, when it is valid and every address it adds can be bound,
    /// applies all of it: apps added, removed and changed are started, stopped and restarted
    /// (by their `restart_strategy`), the new runtime is stored once the new apps are ready,
    /// then removed addresses stop accepting. On an error found before any app was touched
    /// (invalid config, an address that cannot be bound, an unreadable certificate) nothing
    /// changed.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let config = config::load(&self.path)?;
        let listen_error = |source| ReloadError::Listen {
            path: self.path.clone(),
            source,
        };
        let public = self
            .public
            .stage(&config.listen)
            .await
            .map_err(listen_error)?;
        let admin = self
            .admin
            .stage(&Vec::from_iter(config.admin))
            .await
            .map_err(listen_error)?;
        let changes = self.apps.plan_changes(&config.apps, &config.path)?;
        let scheme = config.scheme();
        let runtime = Runtime::build(config, changes.handles(), &self.serving.metrics)?;
        self.apps
            .apply(changes, || self.serving.store(runtime))
            .await?;
        self.public.commit(public, scheme);
        self.admin.commit(admin, "http");
        tracing::info!("reloaded {}", self.path.display());
        Ok(())
    }

    /// Starts serving the addresses `run` bound for the startup config.
    pub fn commit_startup(&self, public: Staged, admin: Staged, scheme: &str) {
        self.admin.commit(admin, "http");
        self.public.commit(public, scheme);
    }

    /// Stops accepting on every public and admin address (shutdown).
    pub fn stop_accepting(&self) {
        self.public.stop_all();
        self.admin.stop_all();
    }

    #[must_use]
    pub fn status(&self) -> StatusReport {
        let runtime = self.serving.load();
        StatusReport {
            config: runtime.config.path.display().to_string(),
            loaded_at: runtime
                .loaded_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            listen: self
                .public
                .bound()
                .iter()
                .map(ToString::to_string)
                .collect(),
            apps: self
                .apps
                .status()
                .into_iter()
                .map(|status| AppReport {
                    detail: run_detail(&status).or_else(|| self.apps.diagnosis(&status)),
                    name: status.name,
                    kind: status.kind.as_str().to_owned(),
                    port: status.port,
                    state: status.state.as_str().to_owned(),
                    pid: status.pid,
                    ready: status.ready,
                    restarts: status.restarts,
                    uptime_secs: status.uptime.map(|uptime| uptime.as_secs()),
                    last_exit: status.last_exit.map(|exit| exit.to_string()),
                })
                .collect(),
            routes: runtime.describe(),
        }
    }

    /// The last lines app `name` wrote, oldest first.
    pub fn recent_lines(&self, name: &str) -> Result<Vec<String>, CommandError> {
        self.serving
            .load()
            .apps
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

    /// Sends `command` to app `name` and waits until it has taken effect on each of its
    /// instances: ready again (on a new process, for a restart, which rolls through them one
    /// at a time), or stopped.
    pub async fn command(&self, name: &str, command: AppCommand) -> Result<String, CommandError> {
        let before = self.app_status(name)?;
        self.apps.send(name, command)?;
        let deadline = tokio::time::Instant::now() + COMMAND_DEADLINE;
        loop {
            let now = self.app_status(name)?;
            let done = now.iter().all(|instance| {
                let was = before.iter().find(|old| old.instance == instance.instance);
                match command {
                    AppCommand::Restart => {
                        instance.ready
                            && was.is_none_or(|was| was.pid.is_none() || instance.pid != was.pid)
                    }
                    AppCommand::Start => instance.ready,
                    AppCommand::Stop => instance.state == AppState::Stopped,
                    AppCommand::Run => {
                        was.is_none_or(|was| instance.runs > was.runs)
                            && instance.state != AppState::Running
                    }
                }
            });
            if done {
                let pids = now
                    .iter()
                    .map(|instance| instance.pid.unwrap_or(0).to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Ok(match command {
                    AppCommand::Restart => format!("{name} restarted (pid {pids})\n"),
                    AppCommand::Start => format!("{name} started (pid {pids})\n"),
                    AppCommand::Stop => format!("{name} stopped\n"),
                    AppCommand::Run => {
                        let last = &now[0];
                        let detail = exit_detail(last).unwrap_or_default();
                        if !last.last_exit.is_some_and(supervise::ExitStatus::success) {
                            return Err(CommandError::RunFailed {
                                app: name.to_owned(),
                                detail,
                            });
                        }
                        format!("{name} done ({detail})\n")
                    }
                });
            }
            if tokio::time::Instant::now() >= deadline {
                let states: Vec<&str> = now.iter().map(|status| status.state.as_str()).collect();
                return Err(CommandError::Timeout {
                    app: name.to_owned(),
                    state: states.join(", "),
                });
            }
            tokio::time::sleep(COMMAND_POLL).await;
        }
    }

    /// Runs `replicas` instances of app `name` (`zoo scale`); returns once the new ones are
    /// ready and the removed ones stopped.
    pub async fn scale(&self, name: &str, replicas: usize) -> Result<String, CommandError> {
        self.apps.scale(name, replicas).await?;
        Ok(format!("{name} scaled to {replicas}\n"))
    }

    /// The status rows of app `name`'s instances (of its newest runners, during a reload's
    /// replace); at least one.
    fn app_status(&self, name: &str) -> Result<Vec<supervise::AppStatus>, SuperviseError> {
        let mut rows: Vec<supervise::AppStatus> = self
            .apps
            .status()
            .into_iter()
            .filter(|status| status.app == name)
            .collect();
        // A replace during a reload lists the old runners first: the newest of each index.
        rows.reverse();
        let mut newest: Vec<supervise::AppStatus> = Vec::with_capacity(rows.len());
        for row in rows {
            if !newest.iter().any(|kept| kept.instance == row.instance) {
                newest.push(row);
            }
        }
        newest.reverse();
        if newest.is_empty() {
            return Err(SuperviseError::UnknownApp {
                app: name.to_owned(),
            });
        }
        Ok(newest)
    }
}

/// For `zoo status`: how the last run of an app that is done or failed ended; for a cron
/// job, its next tick and its counts.
fn run_detail(status: &supervise::AppStatus) -> Option<String> {
    if status.state == AppState::Idle {
        return Some("starts on demand".to_owned());
    }
    if status.kind == config::AppKind::Cron {
        let next = status.next_run.map_or_else(
            || "not scheduled".to_owned(),
            |next| format!("next {}", humantime::format_rfc3339_seconds(next)),
        );
        return Some(format!(
            "{next}; {} runs, {} failed, {} skipped",
            status.runs, status.failures, status.skipped
        ));
    }
    matches!(status.state, AppState::Done | AppState::Failed)
        .then(|| exit_detail(status))
        .flatten()
}

/// How the app's last instance ended and after how long: `exit 0 after 3.2s`.
fn exit_detail(status: &supervise::AppStatus) -> Option<String> {
    let exit = match status.last_exit? {
        supervise::ExitStatus::Code(code) => format!("exit {code}"),
        signal @ supervise::ExitStatus::Signal(_) => signal.to_string(),
    };
    Some(match status.last_run {
        Some(took) => format!("{exit} after {:.1}s", took.as_secs_f64()),
        None => exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_as_a_table() {
        let app =
            |name: &str, port: Option<u16>, state: &str, pid, restarts, last_exit: Option<&str>| {
                AppReport {
                    name: name.into(),
                    kind: if port.is_some() { "service" } else { "task" }.into(),
                    port,
                    state: state.into(),
                    detail: (state == "done").then(|| "exit 0 after 3.2s".into()),
                    pid,
                    ready: state == "ready",
                    restarts,
                    uptime_secs: pid.map(|_| 42),
                    last_exit: last_exit.map(Into::into),
                }
            };
        let status = StatusReport {
            config: "/app/zoo.toml".into(),
            loaded_at: 1_000,
            listen: vec!["0.0.0.0:8000".into()],
            apps: vec![
                app("python", Some(9000), "ready", Some(17), 0, None),
                app("node", Some(9100), "backoff", None, 2, Some("exit code 1")),
                app("migrate", None, "done", None, 0, Some("exit code 0")),
            ],
            routes: vec!["/node  -> app `node`".into()],
        };
        assert_eq!(
            status.render(1_042),
            "config  /app/zoo.toml (loaded 42s ago)\n\
             listen  0.0.0.0:8000\n\
             \n\
             APP       PORT  STATE                         PID  RESTARTS    UPTIME  LAST EXIT\n\
             python    9000  ready                          17         0       42s  -\n\
             node      9100  backoff                         -         2         -  exit code 1\n\
             migrate      -  done (exit 0 after 3.2s)        -         0         -  exit code 0\n\
             \n\
             routes (longest match first):\n  /node  -> app `node`\n"
        );
    }
}
