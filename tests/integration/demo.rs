//! The article's demo (`examples/zoo/`), run from its real config file: the six answers the
//! article prints, segment-boundary matching, dot-segment normalisation, prefixed app output,
//! and `zoo check` on the same file.

use std::time::Duration;

use crate::util::{self, READY_DEADLINE, Stream, Zoo};

const PYTHON_PORT_LINE: &str = "port = 9000";
const NODE_PORT_LINE: &str = "port = 9100";
const LISTEN_LINE: &str = "listen = \"0.0.0.0:${PORT:-8000}\"";

fn demo_file(name: &str) -> String {
    let path = util::repo_root().join("examples/zoo").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `examples/zoo/zoo.toml` with its fixed ports swapped for free ones, so the demo config itself
/// is what runs. Fails loudly if the file no longer has the lines this relies on.
fn demo_config_on_free_ports() -> String {
    let config = demo_file("zoo.toml");
    for line in [PYTHON_PORT_LINE, NODE_PORT_LINE, LISTEN_LINE] {
        assert_eq!(
            config.matches(line).count(),
            1,
            "examples/zoo/zoo.toml should contain `{line}` once; update this test with it:\n{config}"
        );
    }
    config
        .replace(LISTEN_LINE, "listen = \"127.0.0.1:0\"")
        .replace(PYTHON_PORT_LINE, &format!("port = {}", util::free_port()))
        .replace(NODE_PORT_LINE, &format!("port = {}", util::free_port()))
}

#[test]
fn demo_serves_the_articles_six_answers() {
    util::require_uvicorn();
    let (main_py, main_js) = (demo_file("main.py"), demo_file("main.js"));
    // Started from `/`, not from the config's directory (as `scripts/demo` starts it from the
    // repository root): the apps must still find main.py and main.js next to zoo.toml.
    let mut zoo = Zoo::start_wrapped(
        &["sh", "-c", "cd / && exec \"$0\" \"$@\""],
        &demo_config_on_free_ports(),
        &[("main.py", &main_py), ("main.js", &main_js)],
    );
    zoo.wait_ready("/", READY_DEADLINE);
    zoo.wait_ready("/node", READY_DEADLINE);

    // The six answers printed in the article, byte for byte.
    zoo.assert_body("/", "I'm Python!\r\n[]\r\n");
    zoo.assert_body("/a/b/c", "I'm Python!\r\n[a/b/c]\r\n");
    zoo.assert_body("/node", "I'm Node!\r\n[/node]\r\n");
    zoo.assert_body("/node/a/b/c", "I'm Node!\r\n[/node/a/b/c]\r\n");
    zoo.assert_body("/go", "I'm Go!\r\n[/go]\n");
    zoo.assert_body("/go/a/b/c", "I'm Go!\r\n[/go/a/b/c]\n");

    // Prefixes match on segment boundaries: `/nodejs` is not `/node` (unlike the article's
    // strings.HasPrefix), so the default app answers.
    zoo.assert_body("/nodejs", "I'm Python!\r\n[nodejs]\r\n");
    // Dot-segments are resolved before matching, and the normalised path is what is forwarded.
    zoo.assert_body("/node/../x", "I'm Python!\r\n[x]\r\n");

    // `/health` is zoo's own built-in, only because the demo config names it.
    let health = zoo.get("/health");
    assert_eq!(
        (health.status, health.text()),
        (
            200,
            "{\"status\":\"ok\",\"apps\":{\"python\":\"ready\",\"node\":\"ready\"}}\n".to_owned()
        ),
        "{}",
        zoo.output()
    );

    // App output reaches zoo's streams as `NAME | line`: uvicorn's access log is on stdout,
    // its startup lines on stderr.
    let access = "\"GET /a/b/c HTTP/1.1\" 200";
    assert!(
        zoo.wait_for_line(Duration::from_secs(10), |stream, line| {
            stream == Stream::Stdout && line.contains("python | ") && line.contains(access)
        }),
        "expected uvicorn's access line `python | ... {access}` on zoo's stdout\n{}",
        zoo.output()
    );
    assert!(
        zoo.wait_for_line(Duration::from_secs(10), |stream, line| {
            stream == Stream::Stderr && line.contains("python | ") && line.contains("Uvicorn")
        }),
        "expected uvicorn's startup line `python | ... Uvicorn running ...` on zoo's stderr\n{}",
        zoo.output()
    );
}

#[test]
fn check_prints_route_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = util::repo_root().join("examples/zoo/zoo.toml");
    let run = util::run_to_end(
        dir.path(),
        &["check", "--config", config.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert_eq!(
        run.code(),
        Some(0),
        "zoo check on the demo config\n{}",
        run.output
    );
    // The route table, longest match first, each line exactly as `zoo check` prints it.
    let routes: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("routes"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .collect();
    assert_eq!(
        routes,
        [
            "  /google          -> https://google.com (strip prefix)",
            "  /health          builtin health",
            "  /node            -> app `node` at 127.0.0.1:9100",
            "  /go              respond 200 \"I'm Go!\\r\\n[{path}]\\n\"",
            "  /                -> app `python` at 127.0.0.1:9000",
        ],
        "{}",
        run.output
    );
    assert!(
        run.stdout
            .lines()
            .any(|line| line == "listen  0.0.0.0:8000"),
        "{}",
        run.output
    );
}
