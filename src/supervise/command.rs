//! Building the [`Command`] that starts an app or one of its exec probes: the program (a
//! command line run by `sh -c`, `exec`ed when simple, or an argv), its environment (`env_file`,
//! then `env`, then `PORT`), working directory, process group and user. Nothing here spawns or
//! waits: the [`Reaper`](super::Reaper) does that, and the runner sets up the output pipes.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{Uid, User};

use super::dotenv;
use crate::config;

/// Words that cannot follow `exec`: shell builtins and keywords a command line may start with.
const NOT_EXECUTABLE: &[&str] = &[
    "!", ".", ":", "{", "case", "cd", "exec", "exit", "export", "for", "if", "set", "source",
    "trap", "ulimit", "umask", "unset", "until", "wait", "while",
];

/// The command of one instance of `app` listening on `port` (none for an app without a
/// port: it gets no `PORT`), or why it cannot be started
/// (an unreadable `env_file`, a missing `dir`, an unknown `user`): a shell would report
/// status 126 for each.
pub(super) fn app_command(app: &config::App, listening: Listening<'_>) -> Result<Command, String> {
    let mut command = match &app.command {
        config::Command::Shell(line) => shell(&shell_line(line)),
        config::Command::Argv(argv) => {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            command
        }
    };
    if let Some(file) = &app.env_file {
        let vars = std::fs::read_to_string(file)
            .map_err(|error| error.to_string())
            .and_then(|text| dotenv::parse(&text).map_err(|error| error.to_string()))
            .map_err(|cause| format!("env_file {}: {cause}", file.display()))?;
        command.envs(vars);
    }
    // The config's own `env` wins over the env_file, and `PORT` over both.
    in_app_context(&mut command, app, listening);
    if let Some(dir) = &app.dir
        && !dir.is_dir()
    {
        return Err(format!(
            "working directory {} does not exist",
            dir.display()
        ));
    }
    if let Some(user) = &app.user {
        let (uid, gid) = resolve_user(user)?;
        command.uid(uid).gid(gid);
    }
    Ok(command)
}

/// The command of an exec probe `line` of `app` listening on `port`: run by `sh -c` as
/// written, with the app's environment and directory, in a process group of its own so that
/// a probe that times out can be killed with whatever it started.
pub(super) fn probe_command(line: &str, app: &config::App, listening: Listening<'_>) -> Command {
    let mut command = shell(line);
    in_app_context(&mut command, app, listening);
    command
}

fn shell(script: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script);
    command
}

/// Where one instance of an app listens, as its environment says.
#[derive(Debug, Clone, Copy)]
pub(super) struct Listening<'a> {
    /// Its `PORT`; none for an app without one (or on a socket).
    pub(super) port: Option<u16>,
    /// Its `SOCKET`, with `socket = true`.
    pub(super) socket: Option<&'a Path>,
    /// Its `ZOO_REPLICA`.
    pub(super) replica: usize,
}

/// What an app and its exec probes share: own process group, `PORT` (when it has a port) or
/// `SOCKET` (on a Unix socket), `ZOO_REPLICA` (which instance it is, 0 to `replicas`-1), the
/// app's `env`, `dir`.
fn in_app_context(command: &mut Command, app: &config::App, listening: Listening<'_>) {
    command.process_group(0);
    command.env("ZOO_REPLICA", listening.replica.to_string());
    match listening.port {
        Some(port) => command.env("PORT", port.to_string()),
        // Not even one inherited from zoo's environment: the app must not bind it.
        None => command.env_remove("PORT"),
    };
    match listening.socket {
        Some(socket) => command.env("SOCKET", socket),
        None => command.env_remove("SOCKET"),
    };
    command.envs(app.env.iter().map(|(key, value)| (key, value)));
    if let Some(dir) = &app.dir {
        command.current_dir(dir);
    }
}

/// The `sh -c` script for a command line: a simple command is `exec`ed, so that the app (not a
/// shell) is the group leader whose exit status zoo sees and signals go to first; a compound
/// line (`cd app && npm start`, `a; b`) or one starting with a builtin runs as written.
fn shell_line(line: &str) -> String {
    let compound = line.contains([';', '&', '|', '\n', '(', ')', '`']);
    let first = line.split_whitespace().next().unwrap_or_default();
    if compound || first.contains('=') || NOT_EXECUTABLE.contains(&first) {
        line.to_owned()
    } else {
        format!("exec {line}")
    }
}

/// `user` as a name or a numeric uid; the group is the user's primary group (or the same
/// number for a uid without a passwd entry).
fn resolve_user(user: &str) -> Result<(u32, u32), String> {
    let entry = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid))
            .map_err(|error| format!("user {user}: {error}"))?
            .map_or((uid, uid), |entry| (uid, entry.gid.as_raw())),
        Err(_) => User::from_name(user)
            .map_err(|error| format!("user {user}: {error}"))?
            .map(|entry| (entry.uid.as_raw(), entry.gid.as_raw()))
            .ok_or_else(|| format!("unknown user `{user}`"))?,
    };
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::path::Path;

    use super::*;
    use crate::supervise::tests::app_with;

    fn args(command: &Command) -> Vec<&OsStr> {
        command.get_args().collect()
    }

    fn port(port: u16) -> Listening<'static> {
        Listening {
            port: Some(port),
            socket: None,
            replica: 0,
        }
    }

    fn env<'c>(command: &'c Command, name: &str) -> Option<&'c OsStr> {
        command
            .get_envs()
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| value)
    }

    #[test]
    fn simple_command_lines_are_execed_and_others_run_as_written() {
        assert_eq!(
            shell_line("uvicorn main:app --port $PORT"),
            "exec uvicorn main:app --port $PORT"
        );
        for line in [
            "cd app && npm start",
            "exit 3",
            "A=1 node x.js",
            "a; b",
            "x | y",
        ] {
            assert_eq!(shell_line(line), line);
        }
    }

    #[test]
    fn users_resolve_by_name_or_uid() {
        assert_eq!(resolve_user("root"), Ok((0, 0)));
        assert_eq!(resolve_user("0"), Ok((0, 0)));
        assert_eq!(resolve_user("4000000"), Ok((4_000_000, 4_000_000)));
        assert_eq!(
            resolve_user("no-such-user-zoo"),
            Err("unknown user `no-such-user-zoo`".to_owned())
        );
    }

    #[test]
    fn app_command_runs_a_shell_line_with_port_and_env_set() {
        let app = app_with("web", "env = { PORT_NAME = \"http\" }\ndir = \"/\"");
        let command = app_command(&app, port(9100)).expect("buildable");
        assert_eq!(command.get_program(), "/bin/sh");
        assert_eq!(args(&command), ["-c", "exec sleep 30"]);
        assert_eq!(env(&command, "PORT"), Some(OsStr::new("9100")));
        assert_eq!(env(&command, "ZOO_REPLICA"), Some(OsStr::new("0")));
        assert_eq!(env(&command, "PORT_NAME"), Some(OsStr::new("http")));
        assert_eq!(command.get_current_dir(), Some(Path::new("/")));
    }

    #[test]
    fn app_command_runs_an_argv_directly() {
        let mut app = app_with("web", "");
        app.command = config::Command::Argv(vec!["node".to_owned(), "main.js".to_owned()]);
        let command = app_command(&app, port(9100)).expect("buildable");
        assert_eq!(command.get_program(), "node");
        assert_eq!(args(&command), ["main.js"]);
    }

    #[test]
    fn app_command_refuses_a_missing_dir_env_file_or_user() {
        let missing = "/nonexistent-zoo-test";
        let app = app_with("web", &format!("dir = \"{missing}\""));
        let cause = app_command(&app, port(1)).expect_err("no such dir");
        assert_eq!(cause, format!("working directory {missing} does not exist"));
        let app = app_with("web", &format!("env_file = \"{missing}/.env\""));
        let cause = app_command(&app, port(1)).expect_err("no such env_file");
        assert!(
            cause.starts_with(&format!("env_file {missing}/.env: ")),
            "{cause}"
        );
        let app = app_with("web", "user = \"no-such-user-zoo\"");
        let cause = app_command(&app, port(1)).expect_err("no such user");
        assert_eq!(cause, "unknown user `no-such-user-zoo`");
    }

    #[test]
    fn probe_command_runs_the_line_as_written_beside_the_app() {
        let app = app_with("web", "dir = \"/\"");
        let command = probe_command("curl -f localhost:$PORT", &app, port(9100));
        assert_eq!(command.get_program(), "/bin/sh");
        assert_eq!(args(&command), ["-c", "curl -f localhost:$PORT"]);
        assert_eq!(env(&command, "PORT"), Some(OsStr::new("9100")));
        assert_eq!(command.get_current_dir(), Some(Path::new("/")));
    }
}
