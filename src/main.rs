//! The `zoo` command line: parses arguments, sets up logging and the runtime, and maps the
//! outcome to an exit code. Everything else lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use http::{Method, StatusCode};

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use zoo::admin_client::{DEFAULT_CONFIG, Target};

// The CLI prints through these rather than std's macros, which panic when the stream is
// closed: `zoo check | head -1` must end quietly on EPIPE, not with a backtrace and exit 101.
// Defined before any use, they shadow std's in this file; a failed write is dropped (there is
// nobody left to tell), and the command ends with the exit code it had anyway.
macro_rules! print {
    ($($arg:tt)*) => { write_quietly(&mut std::io::stdout().lock(), format_args!($($arg)*)) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { write_quietly(&mut std::io::stderr().lock(), format_args!($($arg)*)) };
}
macro_rules! eprintln {
    ($($arg:tt)*) => { eprint!("{}\n", format_args!($($arg)*)) };
}

fn write_quietly(stream: &mut impl std::io::Write, text: std::fmt::Arguments<'_>) {
    let _ = stream.write_fmt(text).and_then(|()| stream.flush());
}

/// Exit code for an invalid config or command line (like `nginx -t`).
const EXIT_INVALID: u8 = 2;

/// Runs a container's web apps and serves them all on one port.
///
/// zoo reads its config (zoo.toml), starts every app it names, restarts them when they crash,
/// and routes requests by URL path to the apps, to external URLs, or answers them itself.
/// SIGTERM, SIGINT or SIGQUIT stops the apps and exits; SIGUSR1, SIGUSR2 and SIGWINCH are
/// forwarded to every app; SIGHUP re-reads the config, like `zoo reload`.
///
/// Example: `zoo --config /app/zoo.toml`, then `curl localhost:8000/`.
/// The config format is described in docs/config.md.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The config file [default: zoo.toml]. Given to a command that drives a running zoo
    /// (status, reload, ...), it picks the zoo that runs this config, and no other.
    #[arg(long, short, global = true, env = "ZOO_CONFIG")]
    config: Option<PathBuf>,
    /// Log level of zoo's own lines (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Shape of log lines, zoo's and the apps': `text` (`name | line`) or `json` (one object
    /// per line, the app's name in `source`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ZOO_LOG_FORMAT"
    )]
    log_format: zoo::log::Format,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config, print the resolved routes and apps, and exit (0 ok, 2 invalid).
    Check,
    /// Show the running zoo's apps and routes (over its control socket).
    Status {
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make the running zoo re-read its config; an invalid one is rejected and the old kept.
    Reload,
    /// Restart one app and wait until its new instance is ready (with replicas: one
    /// instance at a time, each once the one before is ready again).
    Restart { app: String },
    /// Run N instances of an app: new ones join once ready, removed ones finish their
    /// requests (within the app's grace) and stop.
    Scale { app: String, replicas: usize },
    /// Stop one app (it stays stopped, and does not take the container down).
    Stop { app: String },
    /// Start an app that was stopped, and wait until it is ready.
    Start { app: String },
    /// Print the last lines an app wrote (zoo keeps 1000 per app).
    Logs { app: String },
    /// Exit 0 if the running zoo is ready (its /readyz, over the control socket), else 1 with
    /// a one-line reason: for `HEALTHCHECK CMD ["zoo", "healthcheck"]` in images without curl.
    Healthcheck,
    /// Run a task or cron job now and wait for it to exit (0 when it succeeded, 1 otherwise).
    Run { app: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    zoo::log::init(&cli.log_level, cli.log_format);
    // One CPU (a 1-CPU container, or pinned): a current-thread runtime has no work stealing
    // or cross-thread wake-ups to pay for (measured: 3.6% fewer instructions per request).
    let one_cpu = std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("zoo: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = cli.config.as_deref();
    let (method, path) = match cli.command {
        None => return runtime.block_on(serve(config.unwrap_or(Path::new(DEFAULT_CONFIG)))),
        Some(Command::Check) => return check(config.unwrap_or(Path::new(DEFAULT_CONFIG))),
        Some(Command::Status { json }) => return runtime.block_on(status(config, json)),
        Some(Command::Healthcheck) => return runtime.block_on(healthcheck(config)),
        Some(Command::Reload) => (Method::POST, "/reload".to_owned()),
        Some(Command::Restart { app }) => (Method::POST, format!("/apps/{app}/restart")),
        Some(Command::Scale { app, replicas }) => {
            (Method::POST, format!("/apps/{app}/scale/{replicas}"))
        }
        Some(Command::Stop { app }) => (Method::POST, format!("/apps/{app}/stop")),
        Some(Command::Start { app }) => (Method::POST, format!("/apps/{app}/start")),
        Some(Command::Logs { app }) => (Method::GET, format!("/apps/{app}/logs")),
        Some(Command::Run { app }) => (Method::POST, format!("/apps/{app}/run")),
    };
    runtime.block_on(control(config, method, &path))
}

/// Which zoo a command is about, or the message saying why none could be picked.
fn target(config: Option<&Path>, command: &str) -> Result<Target, ExitCode> {
    Target::find(config).map_err(|error| {
        eprintln!("{command}: {error}");
        ExitCode::FAILURE
    })
}

fn load(path: &Path) -> Result<zoo::config::Config, ExitCode> {
    zoo::config::load(path).map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(EXIT_INVALID)
    })
}

async fn serve(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            tracing::error!("cannot watch for shutdown signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    match zoo::run(config, shutdown).await {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match zoo::check(config, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: error: {error}", path.display());
            ExitCode::from(EXIT_INVALID)
        }
    }
}

async fn status(config: Option<&Path>, json: bool) -> ExitCode {
    let target = match target(config, "zoo status") {
        Ok(target) => target,
        Err(code) => return code,
    };
    match target.request(Method::GET, "/status").await {
        Ok((StatusCode::OK, body)) if json => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((StatusCode::OK, body)) => match serde_json::from_str::<zoo::StatusReport>(&body) {
            Ok(status) => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs());
                print!("{}", status.render(now));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!(
                    "zoo status: unexpected answer from {}: {error}",
                    target.socket.display()
                );
                ExitCode::FAILURE
            }
        },
        Ok((status, body)) => {
            eprint!("zoo status: {status}: {body}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("zoo status: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Sends one control request to the running zoo and prints its answer.
async fn control(config: Option<&Path>, method: Method, path: &str) -> ExitCode {
    let target = match target(config, "zoo") {
        Ok(target) => target,
        Err(code) => return code,
    };
    match target.request(method, path).await {
        Ok((status, body)) if status.is_success() => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((_, body)) => {
            eprint!("{body}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("zoo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `/readyz` over the control socket: 0 when ready, else 1 (what Docker's HEALTHCHECK counts
/// as unhealthy) and the reason on one line, which `docker inspect` shows in the health log.
async fn healthcheck(config: Option<&Path>) -> ExitCode {
    let target = match target(config, "zoo healthcheck") {
        Ok(target) => target,
        Err(code) => return code,
    };
    match target.request(Method::GET, "/readyz").await {
        Ok((StatusCode::OK, _)) => ExitCode::SUCCESS,
        Ok((status, body)) => {
            let reason = body.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("zoo healthcheck: not ready ({status}): {reason}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("zoo healthcheck: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Watches SIGTERM, SIGINT and SIGQUIT from now on (so a signal during startup counts) and
/// returns a future that resolves on the first of them. Later ones are only logged: a second
/// Ctrl-C must not cut short the grace period of apps that are busy exiting cleanly.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            _ = quit.recv() => "SIGQUIT",
        };
        tracing::info!("received {name}");
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = terminate.recv() => "SIGTERM",
                    Some(()) = interrupt.recv() => "SIGINT",
                    Some(()) = quit.recv() => "SIGQUIT",
                    else => return,
                };
                tracing::warn!(
                    "received {name} again: already shutting down; apps keep their grace period"
                );
            }
        });
    })
}
