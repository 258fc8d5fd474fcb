//! SIGTERM to zoo stops its apps and zoo exits 0 (what `docker stop` relies on).

use std::time::Duration;

use crate::util::{self, READY_DEADLINE, Zoo, describe, poll_until, process_alive};

/// A stdlib-only HTTP app that writes its pid to `app.pid` once it listens on `$PORT`.
const APP_PY: &str = r#"import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"up\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
with open("app.pid.tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename("app.pid.tmp", "app.pid")
print("app serving", flush=True)
server.serve_forever()
"#;

#[test]
fn sigterm_stops_apps_and_exits_0() {
    let port = util::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         \n\
         [apps.python]\n\
         command = \"python3 app.py\"\n\
         port = {port}\n\
         \n\
         [routes]\n\
         \"/\" = {{ app = \"python\" }}\n"
    );
    let mut zoo = Zoo::start(&config, &[("app.py", APP_PY)]);
    zoo.assert_body_after_ready("/", "up\n");

    let pid_file = zoo.dir().join("app.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{} should hold the app's pid\n{}",
                pid_file.display(),
                zoo.output()
            )
        });
    assert!(
        process_alive(pid),
        "app {pid} should be running\n{}",
        zoo.output()
    );

    let status = zoo.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "zoo after SIGTERM: {}\n{}",
        describe(status),
        zoo.output()
    );
    assert!(
        poll_until(Duration::from_secs(5), || !process_alive(pid)),
        "app {pid} still running after zoo exited\n{}",
        zoo.output()
    );
}

impl Zoo {
    /// Waits for `target` to answer 200, then checks its body.
    fn assert_body_after_ready(&mut self, target: &str, body: &str) {
        self.wait_ready(target, READY_DEADLINE);
        self.assert_body(target, body);
    }
}
