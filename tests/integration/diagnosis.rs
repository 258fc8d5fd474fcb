//! The port diagnosis: an app that listens on a hard-coded port instead of `$PORT` gets one
//! line naming both (logged at its readiness deadline, and in `zoo status` while it is
//! starting), and a port held by a stray process before the start is reported with that
//! process's pid and command instead of letting a TCP probe pass against it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::supervise::config;
use crate::util::{Zoo, free_port, poll_until};

const DEADLINE: Duration = Duration::from_secs(20);

/// A process the test started, killed when the test ends however it ends.
struct Stray(Child);

impl Drop for Stray {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_logged(zoo: &Zoo, text: &str) {
    assert!(
        zoo.wait_for_line(DEADLINE, |_, line| line.contains(text)),
        "no line with {text:?}\n{}",
        zoo.output()
    );
}

#[test]
fn an_app_ignoring_port_is_told_where_it_listens() {
    let hard_coded = free_port();
    let apps = format!(
        "[apps.web]\n\
         command = \"python3 -m http.server {hard_coded} --bind 127.0.0.1\"\n\
         ready = {{ deadline = \"8s\" }}\n\
         backoff = {{ first = \"30s\" }}\n"
    );
    let zoo = Zoo::start(&config(&apps), &[]);
    let expected = format!("web is listening on 127.0.0.1:{hard_coded}, not on PORT=");
    let mut status = String::new();
    assert!(
        poll_until(DEADLINE, || {
            status = zoo.cli_ok(&["status"], DEADLINE).stdout;
            status.contains(&expected)
        }),
        "zoo status never showed {expected:?}:\n{status}\n{}",
        zoo.output()
    );
    assert!(status.contains("(is the app ignoring $PORT?)"), "{status}");
    wait_logged(&zoo, &expected);
    wait_logged(&zoo, "web not ready within 8s: killing it");
    let line = zoo
        .output()
        .lines()
        .find(|line| line.contains(&expected))
        .map(str::to_owned)
        .unwrap();
    let port: u16 = line
        .split_once("not on PORT=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_ne!(port, hard_coded, "{line}");
}

#[test]
fn a_port_held_by_a_stray_process_names_it_and_the_app_starts_once_it_is_gone() {
    let port = free_port();
    let script = format!(
        "import socket, time\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n\
         print('held', flush=True)\n\
         time.sleep(60)\n"
    );
    let mut stray = Stray(
        Command::new("python3")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut held = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(stray.0.stdout.as_mut().unwrap()),
        &mut held,
    )
    .unwrap();
    assert_eq!(held, "held\n");
    let apps = format!(
        "[apps.web]\n\
         command = \"python3 -m http.server $PORT --bind 127.0.0.1\"\n\
         port = {port}\n\
         backoff = {{ first = \"300ms\", max = \"300ms\" }}\n\
         \n\
         [routes]\n\
         \"/\" = {{ app = \"web\" }}\n"
    );
    let mut zoo = Zoo::start(&config(&apps), &[]);
    let pid = stray.0.id();
    // python3's argv[0] may be its full path.
    let taken = format!("web: cannot start: port {port} is already taken by pid {pid} (");
    wait_logged(&zoo, &taken);
    assert!(
        zoo.output()
            .lines()
            .any(|line| line.contains(&taken)
                && line.contains("python3 -c import socket, time s = ")),
        "{}",
        zoo.output()
    );
    drop(stray);
    let response = zoo.wait_ready("/", DEADLINE);
    assert_eq!(response.status, 200, "{}", zoo.output());
    assert_eq!(zoo.terminate().code(), Some(0), "{}", zoo.output());
}
