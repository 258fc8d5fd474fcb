//! The `zoo` command line: parses arguments, sets up logging and the runtime, and maps the
//! outcome to an exit code. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

/// Exit code for an invalid config or command line (like `nginx -t`).
const EXIT_INVALID: u8 = 2;

/// Runs a container's web apps and serves them all on one port.
///
/// zoo reads its config (zoo.toml), starts every app it names, restarts them when they crash,
/// and routes requests by URL path to the apps, to external URLs, or answers them itself.
/// SIGTERM or SIGINT stops the apps and exits.
///
/// Example: `zoo --config /app/zoo.toml`, then `curl localhost:8000/`.
/// The config format is described in docs/config.md.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        short,
        global = true,
        env = "ZOO_CONFIG",
        default_value = "zoo.toml"
    )]
    config: PathBuf,
    /// Log level of zoo's own lines (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config, print the resolved routes and apps, and exit (0 ok, 2 invalid).
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    zoo::log::init(&cli.log_level);
    let config = match zoo::config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    // One CPU (a 1-CPU container, or pinned): a current-thread runtime has no work-stealing
    // or cross-thread wake-ups to pay for.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
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
    match cli.command {
        Some(Command::Check) => runtime.block_on(async {
            match zoo::check(&config) {
                Ok(summary) => {
                    print!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{}: error: {error}", cli.config.display());
                    ExitCode::from(EXIT_INVALID)
                }
            }
        }),
        None => runtime.block_on(async {
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
        }),
    }
}

/// Watches SIGTERM, SIGINT and SIGQUIT from now on (so a signal during startup counts) and
/// returns a future that resolves on the first of them.
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
    })
}
