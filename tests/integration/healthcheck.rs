//! `zoo healthcheck`, the HEALTHCHECK of images without curl: exit 1 with a one-line reason
//! while an app is not ready and when no zoo is running, 0 once every app is ready.

use std::time::Duration;

use crate::util::{self, Finished, Zoo};

const CLI_DEADLINE: Duration = Duration::from_secs(10);

/// One app that becomes ready (listens) only once the file `go` exists next to zoo.toml.
const GATED_APP: &str = "listen = \"127.0.0.1:0\"\n\
                         [apps.gated]\n\
                         command = \"sh -c 'while [ ! -e go ]; do sleep 0.1; done; exec python3 -m http.server $PORT --bind 127.0.0.1'\"\n\
                         dir = \".\"\n\
                         [routes]\n\
                         \"/\" = { app = \"gated\" }\n";

fn healthcheck(zoo: &Zoo) -> Finished {
    util::run_to_end(zoo.dir(), &["healthcheck"], CLI_DEADLINE)
}

fn assert_one_line_reason(run: &Finished, needle: &str) {
    assert_eq!(run.code(), Some(1), "zoo healthcheck\n{}", run.output);
    assert_eq!(run.stdout, "", "nothing on stdout\n{}", run.output);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "the reason is one line on stderr\n{}",
        run.output
    );
    assert!(
        lines[0].starts_with("zoo healthcheck: ") && lines[0].contains(needle),
        "the reason should mention {needle:?}\n{}",
        run.output
    );
}

#[test]
fn healthcheck_follows_readiness_and_says_why_not() {
    let mut zoo = Zoo::start(GATED_APP, &[]);

    // The app has not started listening: zoo serves, but is not ready.
    let not_ready = healthcheck(&zoo);
    assert_one_line_reason(&not_ready, "\"gated\":\"not ready\"");
    assert!(
        not_ready.stderr.contains("503"),
        "the reason names the status\n{}",
        not_ready.output
    );

    std::fs::write(zoo.dir().join("go"), "").expect("write go");
    assert!(
        util::poll_until(util::READY_DEADLINE, || healthcheck(&zoo).code() == Some(0)),
        "zoo healthcheck should exit 0 once the app is ready\n{}",
        zoo.output()
    );
    let ready = healthcheck(&zoo);
    assert_eq!(
        (ready.code(), ready.stdout.as_str(), ready.stderr.as_str()),
        (Some(0), "", ""),
        "a ready zoo: exit 0, silent\n{}",
        ready.output
    );

    zoo.terminate();
    assert_one_line_reason(&healthcheck(&zoo), "no zoo is running at");
}
