//! Tests of `parse` as a whole: the DESIGN.md example, defaults, and the text of each error.

use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "NODE_PORT" => Some("9100".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn ok(source: &str) -> Config {
    match parse(source, Path::new("/srv/zoo.toml"), &env) {
        Ok(config) => config,
        Err(error) => panic!("expected a valid config, got:\n{error}"),
    }
}

fn invalid(source: &str) -> Vec<Diagnostic> {
    match parse(source, Path::new("zoo.toml"), &env) {
        Ok(config) => panic!("expected an error, got {config:#?}"),
        Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics,
        Err(error) => panic!("expected Invalid, got {error:?}"),
    }
}

/// The messages, in order.
fn errors(source: &str) -> Vec<String> {
    invalid(source).into_iter().map(|d| d.message).collect()
}

/// The single message, with its line and column.
fn error(source: &str) -> (usize, usize, String) {
    let mut diagnostics = invalid(source);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    let d = diagnostics.remove(0);
    (d.line, d.column, d.message)
}

fn app(source: &str) -> App {
    ok(&format!("[apps.web]\ncommand = \"x\"\n{source}"))
        .apps
        .remove(0)
}

fn route(source: &str) -> Route {
    ok(&format!("[apps.web]\ncommand = \"x\"\n[routes]\n{source}"))
        .routes
        .remove(0)
}

fn route_error(source: &str) -> (usize, usize, String) {
    error(&format!("[apps.web]\ncommand = \"x\"\n[routes]\n{source}"))
}

const DESIGN_EXAMPLE: &str = r#"
listen = "0.0.0.0:${PORT:-8000}"     # ${VAR} and ${VAR:-default} expand from the environment

[apps.python]
command = "uvicorn main:app --port $PORT"   # run as `sh -c 'exec ...'`; or an argv array
port = 9000              # zoo sets PORT for the app; omit it and zoo picks a free port
dir = "."                # working directory
env = { PYTHONUNBUFFERED = "1" }
ready = { http = "/" }   # default: the port accepts a TCP connection
restart = "always"       # always | on-failure | never

[apps.node]
command = "node main.js"
port = 9100

[routes]
"/node"   = { app = "node" }
"/go"     = { respond = "I'm Go!\r\n[{path}]\n" }
"/google" = { proxy = "https://google.com", strip_prefix = true }
"/"       = { app = "python" }
"#;

#[test]
fn parse_design_example() {
    let config = ok(DESIGN_EXAMPLE);
    let expected = Config {
        path: PathBuf::from("/srv/zoo.toml"),
        listen: vec!["0.0.0.0:8000".parse().unwrap()],
        admin: None,
        admin_token: None,
        access_log: AccessLog::Off,
        grace: Duration::from_secs(10),
        shutdown_delay: Duration::ZERO,
        client_header_timeout: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(75),
        client_body_timeout: Duration::from_secs(60),
        engine: Engine::Zoo,
        trust_forwarded: vec![],
        tls: None,
        apps: vec![
            App {
                name: "python".to_owned(),
                command: Command::Shell("uvicorn main:app --port $PORT".to_owned()),
                kind: AppKind::Service,
                port: Some(9000),
                timeout: None,
                schedule: None,
                overlap: false,
                watch: vec![],
                watch_ignore: vec![],
                dir: Some(PathBuf::from("/srv/.")),
                env: vec![("PYTHONUNBUFFERED".to_owned(), "1".to_owned())],
                ready: Ready {
                    probe: Probe::Http {
                        path: "/".to_owned(),
                    },
                    interval: Duration::from_millis(100),
                    timeout: Duration::from_secs(1),
                    deadline: Duration::from_secs(60),
                },
                restart: RestartPolicy::Always,
                restart_strategy: RestartStrategy::StopStart,
                restarts: Restarts::default(),
                live: None,
                depends_on: vec![],
                stop: Stop::default(),
                user: None,
                env_file: None,
                protocol: Protocol::Http1,
                replicas: 1,
                replica_ports: Vec::new(),
                balance: Balance::LeastRequests,
                socket: false,
                start: StartMode::Boot,
                idle_stop: None,
            },
            App {
                name: "node".to_owned(),
                command: Command::Shell("node main.js".to_owned()),
                kind: AppKind::Service,
                port: Some(9100),
                timeout: None,
                schedule: None,
                overlap: false,
                watch: vec![],
                watch_ignore: vec![],
                dir: Some(PathBuf::from("/srv")),
                env: vec![],
                ready: Ready {
                    probe: Probe::Tcp,
                    interval: Duration::from_millis(100),
                    timeout: Duration::from_secs(1),
                    deadline: Duration::from_secs(60),
                },
                restart: RestartPolicy::Always,
                restart_strategy: RestartStrategy::StopStart,
                restarts: Restarts::default(),
                live: None,
                depends_on: vec![],
                stop: Stop::default(),
                user: None,
                env_file: None,
                protocol: Protocol::Http1,
                replicas: 1,
                replica_ports: Vec::new(),
                balance: Balance::LeastRequests,
                socket: false,
                start: StartMode::Boot,
                idle_stop: None,
            },
        ],
        routes: vec![
            Route {
                key: "/node".to_owned(),
                host: None,
                action: Action::App {
                    name: "node".to_owned(),
                },
                strip_prefix: false,
                max_body: None,
                timeout: Duration::from_secs(60),
                wait: Duration::from_secs(10),
                compress: None,
                access: None,
                headers: None,
                basic_auth: None,
            },
            Route {
                key: "/go".to_owned(),
                host: None,
                action: Action::Respond {
                    status: StatusCode::OK,
                    headers: Box::new([]),
                    body: "I'm Go!\r\n[{path}]\n".into(),
                },
                strip_prefix: false,
                max_body: None,
                timeout: Duration::from_secs(60),
                wait: Duration::from_secs(10),
                compress: None,
                access: None,
                headers: None,
                basic_auth: None,
            },
            Route {
                key: "/google".to_owned(),
                host: None,
                action: Action::Proxy {
                    target: Arc::new(ProxyTarget {
                        scheme: Scheme::Https,
                        host: "google.com".to_owned(),
                        port: 443,
                        authority: "google.com".to_owned(),
                        path: String::new(),
                    }),
                    ca_file: None,
                },
                strip_prefix: true,
                max_body: None,
                timeout: Duration::from_secs(60),
                wait: Duration::from_secs(10),
                compress: None,
                access: None,
                headers: None,
                basic_auth: None,
            },
            Route {
                key: "/".to_owned(),
                host: None,
                action: Action::App {
                    name: "python".to_owned(),
                },
                strip_prefix: false,
                max_body: None,
                timeout: Duration::from_secs(60),
                wait: Duration::from_secs(10),
                compress: None,
                access: None,
                headers: None,
                basic_auth: None,
            },
        ],
        compress: Vec::new(),
        request_id: Some(HeaderName::from_static("x-request-id")),
        headers: HeaderRules::default(),
    };
    assert_eq!(config, expected);
}

#[test]
fn parse_empty_file_gets_defaults() {
    let config = ok("");
    assert_eq!(config.listen, vec!["0.0.0.0:8000".parse().unwrap()]);
    assert_eq!(config.grace, Duration::from_secs(10));
    assert!(config.apps.is_empty() && config.routes.is_empty());
}

#[test]
fn parse_app_defaults() {
    let app = app("");
    assert_eq!(app.port, None);
    assert_eq!(
        app.dir,
        Some(PathBuf::from("/srv")),
        "the config file's directory"
    );
    assert!(app.env.is_empty());
    assert_eq!(app.ready.probe, Probe::Tcp);
    assert_eq!(app.ready.interval, Duration::from_millis(100));
    assert_eq!(app.restart, RestartPolicy::Always);
}

#[test]
fn parse_listen_array_and_ipv6() {
    let config = ok(r#"listen = ["127.0.0.1:0", "[::1]:8000"]"#);
    assert_eq!(
        config.listen,
        vec![
            "127.0.0.1:0".parse().unwrap(),
            "[::1]:8000".parse().unwrap()
        ]
    );
}

#[test]
fn parse_grace_and_ready_durations() {
    assert_eq!(ok("grace = \"1m30s\"").grace, Duration::from_secs(90));
    assert_eq!(ok("grace = 3").grace, Duration::from_secs(3));
    let ready =
        app(r#"ready = { tcp = true, interval = "250ms", timeout = 2, deadline = "2m" }"#).ready;
    assert_eq!(
        ready,
        Ready {
            probe: Probe::Tcp,
            interval: Duration::from_millis(250),
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(120),
        }
    );
}

#[test]
fn parse_port_from_expanded_string() {
    assert_eq!(app(r#"port = "${P:-9100}""#).port, Some(9100));
    assert_eq!(app(r#"port = "${NODE_PORT}""#).port, Some(9100));
}

#[test]
fn parse_resolves_relative_paths_against_config_dir() {
    assert_eq!(app("dir = \"web\"").dir, Some(PathBuf::from("/srv/web")));
    assert_eq!(
        app("dir = \"/opt/web\"").dir,
        Some(PathBuf::from("/opt/web"))
    );
    let Action::Proxy { ca_file, .. } =
        route(r#""/x" = { proxy = "https://a.com", ca_file = "ca.pem" }"#).action
    else {
        panic!("expected a proxy route");
    };
    assert_eq!(ca_file, Some(PathBuf::from("/srv/ca.pem")));
}

#[test]
fn parse_argv_command_env_and_restart() {
    let app = ok(
        "[apps.web]\ncommand = [\"node\", \"main.js\", \"${EMPTY:-x}\"]\nenv = { B = \"2\", A = \"$${X}\" }\nrestart = \"on-failure\"",
    )
    .apps
    .remove(0);
    assert_eq!(
        app.command,
        Command::Argv(vec!["node".into(), "main.js".into(), "x".into()])
    );
    assert_eq!(
        app.env,
        vec![("B".into(), "2".into()), ("A".into(), "${X}".into())]
    );
    assert_eq!(app.restart, RestartPolicy::OnFailure);
}

#[test]
fn parse_respond_and_redirect_routes() {
    assert_eq!(
        route(r#""/go" = { respond = "hi", status = 404, headers = { "Content-Type" = "text/plain; charset=é" } }"#)
            .action,
        Action::Respond {
            status: StatusCode::NOT_FOUND,
            headers: Box::new([(
                HeaderName::from_static("content-type"),
                HeaderValue::from_bytes("text/plain; charset=é".as_bytes()).unwrap()
            )]),
            body: "hi".into(),
        }
    );
    assert_eq!(
        route(r#""/old*" = { redirect = "https://example.com{path}" }"#).action,
        Action::Redirect {
            status: StatusCode::FOUND,
            location: "https://example.com{path}".into(),
        }
    );
    assert_eq!(
        route(r#""/old" = { redirect = "/new", status = 308 }"#).action,
        Action::Redirect {
            status: StatusCode::PERMANENT_REDIRECT,
            location: "/new".into(),
        }
    );
}

#[test]
fn error_renders_file_line_column_and_caret() {
    let source = "[apps.web]\ncommand = \"x\"\nport = \"abc\"\n";
    let Err(error) = parse(source, Path::new("zoo.toml"), &env) else {
        panic!("expected an error");
    };
    assert_eq!(
        error.to_string(),
        "zoo.toml:3:8: error: apps.web.port: expected an integer port, found \"abc\"\n  |\n3 | port = \"abc\"\n  |        ^^^^^"
    );
}

#[test]
fn error_lists_every_problem_in_source_order() {
    let source = "grace = \"soon\"\n[apps.web]\ncomand = \"x\"\nport = true\n";
    let Err(error) = parse(source, Path::new("zoo.toml"), &env) else {
        panic!("expected an error");
    };
    assert_eq!(
        error.to_string(),
        "zoo.toml:1:9: error: grace: expected a duration like \"250ms\", \"10s\", \"2m\" or \"1h\", found \"soon\"\n  |\n1 | grace = \"soon\"\n  |         ^^^^^^\n\n\
         zoo.toml:3:1: error: apps.web: unknown key `comand`; did you mean `command`?\n  |\n3 | comand = \"x\"\n  | ^^^^^^\n\n\
         zoo.toml:4:8: error: apps.web.port: expected an integer, found a boolean\n  |\n4 | port = true\n  |        ^^^^"
    );
}

#[test]
fn error_typo_is_not_also_reported_as_missing() {
    assert_eq!(
        errors("[apps.web]\nprot = 1\n"),
        vec![
            "apps.web: missing `command` (a string run by `sh -c`, or an array of arguments)",
            "apps.web: unknown key `prot`; did you mean `port`?",
        ]
    );
    assert_eq!(
        route_error(r#""/" = { aap = "web" }"#).2,
        "routes.\"/\": unknown key `aap`; did you mean `app`?"
    );
}

#[test]
fn error_toml_syntax() {
    assert_eq!(
        error("a = 1\na = 2\n"),
        (2, 1, "invalid TOML: duplicate key".to_owned())
    );
    let (line, column, message) = error("listen = \n");
    assert_eq!((line, column), (1, 10));
    assert!(message.starts_with("invalid TOML: "), "{message}");
}

#[test]
fn error_unknown_top_level_key() {
    assert_eq!(
        error("lisen = \"0.0.0.0:1\""),
        (
            1,
            1,
            "unknown key `lisen`; did you mean `listen`?".to_owned()
        )
    );
    assert_eq!(
        error("xyz = 1"),
        (
            1,
            1,
            "unknown key `xyz`; expected one of `listen`, `access_log`, `admin`, `admin_token`, `grace`, `shutdown_delay`, `client_header_timeout`, `keepalive_timeout`, `client_body_timeout`, `engine`, `trust_forwarded`, `tls`, `apps`, `routes`, `compress`, `request_id`, `request_id_header`, `headers`"
                .to_owned()
        )
    );
}

#[test]
fn error_unknown_keys_in_app_route_and_ready() {
    assert_eq!(
        errors(
            "[apps.web]\ncommand = \"x\"\nprot = 1\nready = { htp = \"/\" }\n[routes]\n\"/\" = { app = \"web\", strip = true }\n"
        ),
        vec![
            "apps.web: unknown key `prot`; did you mean `port`?",
            "apps.web.ready: unknown key `htp`; did you mean `http`?",
            "routes.\"/\": unknown key `strip`; expected one of `app`, `proxy`, `respond`, `redirect`, `builtin`, `strip_prefix`, `ca_file`, `status`, `headers`, `max_body`, `timeout`, `wait`, `static`, `fallback`, `cache`, `dotfiles`, `follow_symlinks`, `compress`, `allow`, `deny`, `basic_auth`",
        ]
    );
}

#[test]
fn error_wrong_types() {
    assert_eq!(
        errors("grace = true\n[apps.web]\ncommand = 5\nrestart = 1\nenv = { A = 1 }\n"),
        vec![
            "grace: expected a duration like \"10s\" or \"250ms\", found a boolean",
            "apps.web.command: expected a string or an array of strings, found an integer",
            "apps.web.restart: expected a string, found an integer",
            "apps.web.env.A: expected a string, found an integer",
        ]
    );
    assert_eq!(
        error("apps = 1"),
        (1, 8, "apps: expected a table, found an integer".to_owned())
    );
    assert_eq!(
        error("[[apps]]\ncommand = \"x\""),
        (1, 1, "apps: expected a table, found an array".to_owned())
    )
}

#[test]
fn error_route_to_missing_app() {
    assert_eq!(
        route_error(r#""/" = { app = "wbe" }"#),
        (
            4,
            15,
            "routes.\"/\".app: no app named `wbe`; did you mean `web`?".to_owned()
        )
    );
    assert_eq!(
        route_error(r#""/" = { app = "python" }"#).2,
        "routes.\"/\".app: no app named `python`; the apps are `web`"
    );
    assert_eq!(
        error("[routes]\n\"/\" = { app = \"web\" }").2,
        "routes.\"/\".app: no app named `web`; define it as [apps.web]"
    );
}

#[test]
fn error_route_to_broken_app_is_not_also_missing() {
    assert_eq!(
        errors("[apps.web]\n[routes]\n\"/\" = { app = \"web\" }"),
        vec!["apps.web: missing `command` (a string run by `sh -c`, or an array of arguments)"]
    );
}

#[test]
fn error_two_apps_on_one_port() {
    assert_eq!(
        error("[apps.a]\ncommand = \"x\"\nport = 9000\n[apps.b]\ncommand = \"y\"\nport = 9000\n"),
        (
            6,
            8,
            "apps.b.port: port 9000 is already used by app `a`".to_owned()
        )
    );
}

#[test]
fn error_app_port_is_listen_port() {
    assert_eq!(
        error("listen = \"0.0.0.0:9000\"\n[apps.a]\ncommand = \"x\"\nport = 9000\n"),
        (
            4,
            8,
            "apps.a.port: port 9000 is also a `listen` port; give the app another one".to_owned()
        )
    );
}

#[test]
fn error_app_port_out_of_range() {
    assert_eq!(
        errors("[apps.a]\ncommand = \"x\"\nport = 0\n[apps.b]\ncommand = \"x\"\nport = 70000\n"),
        vec![
            "apps.a.port: port must be between 1 and 65535, found 0",
            "apps.b.port: port must be between 1 and 65535, found 70000",
        ]
    );
}

#[test]
fn error_route_keys() {
    assert_eq!(
        route_error(r#"node = { app = "web" }"#),
        (
            4,
            1,
            "routes.node: a route key is a path starting with `/`, or a host and a path, \
             as in \"node/\""
                .to_owned()
        )
    );
    assert_eq!(
        route_error(r#""example.com:8080/" = { app = "web" }"#).2,
        "routes.\"example.com:8080/\": a route host has no port: hosts match whatever port \
         the client used"
    );
    assert_eq!(
        route_error(r#""a.*.example.com/" = { app = "web" }"#).2,
        "routes.\"a.*.example.com/\": `*` may only be the first label of a route host, as in \
         \"*.example.com/\""
    );
    assert_eq!(
        route_error(r#""a_b!.test/" = { app = "web" }"#).2,
        "routes.\"a_b!.test/\": \"a_b!.test\" is not a host name: a label may only hold \
         letters, digits, `-` and `_`"
    );
    assert_eq!(
        route_error(r#""/a*b" = { app = "web" }"#).2,
        "routes.\"/a*b\": `*` may only end a route key, as in \"/node*\""
    );
    assert_eq!(
        route_error(r#""/a?b" = { app = "web" }"#).2,
        "routes.\"/a?b\": a route key is a path: it cannot contain whitespace, `?` or `#`"
    );
}

#[test]
fn host_route_keys_split_into_host_and_path() {
    let r = route(r#""API.Example.com./v1*" = { app = "web" }"#);
    assert_eq!(r.key, "API.Example.com./v1*");
    assert_eq!(
        r.host.as_deref(),
        Some(&HostPattern::Exact("api.example.com".into()))
    );
    assert_eq!(r.path(), "/v1*");
    let r = route(r#""*.bücher.example/" = { app = "web" }"#);
    assert_eq!(
        r.host.as_deref(),
        Some(&HostPattern::Wildcard(".xn--bcher-kva.example".into()))
    );
    let r = route(r#""/plain" = { app = "web" }"#);
    assert_eq!((r.host.as_deref(), r.path()), (None, "/plain"));
}

#[test]
fn error_host_routes_that_are_the_same_route() {
    let source = "[apps.web]\ncommand = \"x\"\n[routes]\n\"api.example.com/\" = { app = \"web\" }\n\"API.example.com./\" = { app = \"web\" }\n\"xn--bcher-kva.example/a\" = { app = \"web\" }\n\"bücher.example/a\" = { app = \"web\" }\n";
    let diagnostics = invalid(source);
    let found: Vec<(usize, usize, &str)> = diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                5,
                1,
                "routes.\"API.example.com./\": the same route as `api.example.com/`: hosts \
                 match case-insensitively, without a trailing dot, international names in \
                 their ASCII form"
            ),
            (
                7,
                1,
                "routes.\"bücher.example/a\": the same route as `xn--bcher-kva.example/a`: \
                 hosts match case-insensitively, without a trailing dot, international names \
                 in their ASCII form"
            ),
        ]
    );
}

#[test]
fn error_route_without_action() {
    assert_eq!(
        route_error(r#""/" = { strip_prefix = true }"#),
        (
            4,
            7,
            "routes.\"/\": expected one of `app`, `proxy`, `respond`, `redirect`, `builtin`, `static`"
                .to_owned()
        )
    );
    assert_eq!(
        route_error(r#""/" = "web""#).2,
        "routes.\"/\": expected a table, found a string"
    );
}

#[test]
fn error_route_with_two_actions() {
    assert_eq!(
        route_error(r#""/" = { proxy = "http://a", app = "web" }"#),
        (
            4,
            29,
            "routes.\"/\": `proxy` and `app` cannot be combined: a route has exactly one action"
                .to_owned()
        )
    );
}

#[test]
fn error_bad_proxy_url() {
    assert_eq!(
        route_error(r#""/" = { proxy = "ftp://a.com" }"#),
        (
            4,
            17,
            "routes.\"/\".proxy: unsupported scheme `ftp`: expected http:// or https://".to_owned()
        )
    );
    assert_eq!(
        route_error(r#""/" = { proxy = "https://a.com/?q" }"#).2,
        "routes.\"/\".proxy: a proxy URL cannot have a query or fragment: the request's own query is forwarded"
    );
}

#[test]
fn error_options_on_the_wrong_action() {
    assert_eq!(
        route_error(r#""/" = { respond = "x", strip_prefix = true }"#).2,
        "routes.\"/\": `strip_prefix` applies only to `app`, `proxy` and `static` routes, not `respond`"
    );
    assert_eq!(
        route_error(r#""/" = { redirect = "/x", strip_prefix = false }"#).2,
        "routes.\"/\": `strip_prefix` applies only to `app`, `proxy` and `static` routes, not `redirect`"
    );
    assert_eq!(
        route_error(r#""/" = { app = "web", ca_file = "a.pem" }"#).2,
        "routes.\"/\": `ca_file` applies only to `proxy` routes, not `app`"
    );
    assert_eq!(
        route_error(r#""/" = { app = "web", status = 200 }"#).2,
        "routes.\"/\": `status` applies only to `respond` and `redirect` routes, not `app`"
    );
    assert_eq!(
        route_error(r#""/" = { proxy = "http://a.com", ca_file = "a.pem" }"#),
        (
            4,
            33,
            "routes.\"/\".ca_file: `ca_file` needs an https:// proxy URL".to_owned()
        )
    );
}

#[test]
fn error_bad_headers_and_statuses() {
    assert_eq!(
        errors(
            "[routes]\n\"/a\" = { respond = \"x\", headers = { \"bad name\" = \"v\", ok = \"a\\u0001\" } }\n\"/b\" = { respond = \"x\", status = 600 }\n\"/c\" = { redirect = \"/\", status = 200 }\n"
        ),
        vec![
            "routes.\"/a\".headers: invalid header name \"bad name\"",
            "routes.\"/a\".headers.ok: invalid header value: control characters are not allowed",
            "routes.\"/b\".status: expected an HTTP status from 100 to 599, found 600",
            "routes.\"/c\".status: expected a redirect status (301, 302, 303, 307 or 308), found 200",
        ]
    );
}

#[test]
fn error_missing_or_empty_command() {
    assert_eq!(
        error("[apps.web]\nport = 9000\n"),
        (
            1,
            1,
            "apps.web: missing `command` (a string run by `sh -c`, or an array of arguments)"
                .to_owned()
        )
    );
    assert_eq!(
        errors("[apps.a]\ncommand = \" \"\n[apps.b]\ncommand = []\n[apps.c]\ncommand = [\"\"]\n"),
        vec![
            "apps.a.command: command is empty",
            "apps.b.command: command is empty: expected at least the program",
            "apps.c.command[0]: the program name is empty",
        ]
    );
}

#[test]
fn error_invalid_app_name() {
    assert_eq!(
        error("[apps.\"-web\"]\ncommand = \"x\"\n"),
        (
            1,
            7,
            "apps: invalid app name \"-web\": use ASCII letters, digits, `-` and `_`, starting with a letter or digit"
                .to_owned()
        )
    );
}

#[test]
fn error_invalid_listen_address() {
    assert_eq!(
        error("listen = \"localhost:80\""),
        (
            1,
            10,
            "listen: expected IP:PORT, like 0.0.0.0:8000 or [::]:8000, found \"localhost:80\""
                .to_owned()
        )
    );
    assert_eq!(
        errors("listen = [\"1.2.3.4:1\", \"::1:80\"]"),
        vec!["listen[1]: expected IP:PORT, like 0.0.0.0:8000 or [::]:8000, found \"::1:80\""]
    );
    assert_eq!(
        errors("listen = []"),
        vec!["listen: expected at least one address"]
    );
}

#[test]
fn error_env_expansion() {
    assert_eq!(
        error("listen = \"0.0.0.0:${PORT}\""),
        (
            1,
            10,
            "listen: environment variable `PORT` is not set (use ${PORT:-default} to give a default)"
                .to_owned()
        )
    );
    assert_eq!(
        errors("[apps.web]\ncommand = \"run ${X\"\nenv = { A = \"${1}\" }\n"),
        vec![
            "apps.web.command: unterminated `${`: add a closing `}`, or write `$${` for a literal `${`",
            "apps.web.env.A: invalid `${1}`: expected `${NAME}` or `${NAME:-default}`, where NAME is letters, digits and `_`, not starting with a digit",
        ]
    );
}

#[test]
fn error_ready_probe() {
    assert_eq!(
        errors(
            "[apps.a]\ncommand = \"x\"\nready = { tcp = true, http = \"/\" }\n[apps.b]\ncommand = \"x\"\nready = { http = \"health\", interval = \"0s\" }\n"
        ),
        vec![
            "apps.a.ready: `tcp`, `http` and `exec` cannot be combined: choose one probe",
            "apps.b.ready.http: expected a path starting with `/`, found \"health\"",
            "apps.b.ready.interval: must be greater than zero",
        ]
    );
}

#[test]
fn error_restart_policy_did_you_mean() {
    assert_eq!(
        app_error("restart = \"alway\""),
        "apps.web.restart: unknown restart policy \"alway\"; did you mean `always`?"
    );
}

#[test]
fn error_env_port_is_set_by_zoo() {
    assert_eq!(
        app_error("env = { PORT = \"1\" }"),
        "apps.web.env.PORT: zoo sets `PORT` itself from the app's `port`; set `port` instead"
    );
}

fn app_error(source: &str) -> String {
    error(&format!("[apps.web]\ncommand = \"x\"\n{source}")).2
}

#[test]
fn load_reports_unreadable_file() {
    let Err(error) = load(Path::new("/nonexistent/zoo.toml")) else {
        panic!("expected an error");
    };
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("cannot read config file /nonexistent/zoo.toml: "),
        "{error}"
    );
}

#[test]
fn parse_docs_example() {
    // Keeps docs/config.md honest: its first TOML block must be a valid config.
    let docs = include_str!("../../docs/config.md");
    let start = docs.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + docs[start..].find("```").expect("a closed block");
    let config = ok(&docs[start..end]);
    assert_eq!(config.apps.len(), 2);
    assert_eq!(config.apps[1].port, Some(9100));
    assert_eq!(config.routes.len(), 5);
}

#[test]
fn error_output_matches_docs() {
    let source = "listen = \"0.0.0.0:8000\"\n[apps.web]\ncomand = \"uvicorn main:app\"\nport = 9000\n\n[routes]\n\"/go\" = { respond = \"hi\" }\n\"/old\" = { redirect = \"/\" }\n\"/\" = { app = \"wbe\" }\n";
    let Err(error) = parse(source, Path::new("zoo.toml"), &env) else {
        panic!("expected an error");
    };
    let docs = include_str!("../../docs/config.md");
    let rendered = format!("```\n{error}\n```");
    assert!(
        docs.contains(&rendered),
        "docs/config.md should show:\n{rendered}"
    );
}

#[test]
fn parse_builtin_health_route() {
    assert_eq!(
        route("\"/health\" = { builtin = \"health\" }").action,
        Action::Builtin(Builtin::Health)
    );
}

#[test]
fn error_unknown_builtin() {
    assert_eq!(
        route_error("\"/m\" = { builtin = \"metrix\" }"),
        (
            4,
            20,
            "routes.\"/m\".builtin: no built-in named `metrix`; expected one of `health`, `metrics`"
                .to_owned()
        )
    );
}

#[test]
fn parse_admin_address() {
    let config = ok("admin = \"127.0.0.1:9901\"");
    assert_eq!(config.admin, Some("127.0.0.1:9901".parse().unwrap()));
}

#[test]
fn parse_admin_token_expands_and_must_not_be_empty() {
    let config = ok("admin_token = \"${NODE_PORT}-t\"");
    assert_eq!(config.admin_token.as_deref(), Some("9100-t"));
    assert_eq!(ok("").admin_token, None);
    let (_, _, message) = error("admin_token = \"${EMPTY:-}\"");
    assert_eq!(message, "admin_token: must not be empty");
}

#[test]
fn error_bad_admin_address() {
    let (line, column, message) = error("admin = \"localhost\"");
    assert_eq!((line, column), (1, 9));
    assert!(message.starts_with("admin: expected IP:PORT"), "{message}");
}

#[test]
fn parse_supervision_keys() {
    let config = ok(r#"
[apps.db]
command = "x"
ready = { exec = "pg_isready" }
[apps.web]
command = "x"
depends_on = ["db"]
backoff = { first = "100ms", max = "1s", reset_after = "5s" }
max_restarts = 5
restart_window = "30s"
stop_signal = "INT"
grace = "2s"
user = "nobody"
env_file = "web.env"
live = { http = "/health", interval = "500ms", failures = 2 }
"#);
    assert_eq!(
        config.apps[0].ready.probe,
        Probe::Exec {
            command: "pg_isready".to_owned()
        }
    );
    let web = &config.apps[1];
    assert_eq!(web.depends_on, ["db"]);
    assert_eq!(
        web.restarts,
        Restarts {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(5),
            max_restarts: Some(5),
            window: Duration::from_secs(30),
        }
    );
    assert_eq!(
        web.stop,
        Stop {
            signal: nix::sys::signal::Signal::SIGINT,
            grace: Some(Duration::from_secs(2)),
        }
    );
    assert_eq!(web.user.as_deref(), Some("nobody"));
    assert_eq!(web.env_file, Some(PathBuf::from("/srv/web.env")));
    assert_eq!(
        web.live,
        Some(Live {
            probe: Probe::Http {
                path: "/health".to_owned()
            },
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            failures: 2,
        })
    );
}

#[test]
fn protocol_limits_and_timeouts_parse() {
    let config = ok(r#"
client_header_timeout = "2s"
keepalive_timeout = 0
client_body_timeout = "5s"
engine = "zoo"
tls = { cert = "cert.pem", key = "tls/key.pem" }
[apps.grpc]
command = "python server.py"
protocol = "h2c"
[routes]
"/grpc" = { app = "grpc", max_body = 1048576, timeout = "500ms" }
"#);
    assert_eq!(config.client_header_timeout, Duration::from_secs(2));
    assert_eq!(config.keepalive_timeout, Duration::ZERO);
    assert_eq!(config.client_body_timeout, Duration::from_secs(5));
    assert_eq!(config.engine, Engine::Zoo);
    let tls = config.tls.unwrap();
    assert_eq!(
        (tls.cert.as_path(), tls.key.as_path()),
        (Path::new("/srv/cert.pem"), Path::new("/srv/tls/key.pem"))
    );
    assert_eq!(config.apps[0].protocol, Protocol::H2c);
    assert_eq!(config.routes[0].max_body, Some(1_048_576));
    assert_eq!(config.routes[0].timeout, Duration::from_millis(500));
}

#[test]
fn unknown_protocol_and_misplaced_limits_are_rejected() {
    let message = errors(
        r#"
tls = { cert = "c.pem" }
[apps.grpc]
command = "x"
protocol = "h3"
[routes]
"/r" = { respond = "x", max_body = 10 }
"#,
    )
    .join("\n");
    assert!(message.contains("unknown protocol \"h3\""), "{message}");
    assert!(
        message.contains("tls: missing `key` (a PEM file)"),
        "{message}"
    );
    assert!(
        message.contains("`max_body` applies only to `app` and `proxy` routes"),
        "{message}"
    );
}

#[test]
fn error_dependency_cycle_points_at_the_closing_entry() {
    let source = "[apps.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n\
                  [apps.b]\ncommand = \"x\"\ndepends_on = [\"a\"]\n";
    assert_eq!(
        error(source),
        (
            3,
            15,
            "apps.a.depends_on: dependency cycle: a -> b -> a".to_owned()
        )
    );
}

#[test]
fn error_supervision_keys() {
    assert_eq!(
        errors(
            "[apps.a]\ncommand = \"x\"\ndepends_on = [\"a\", \"dbb\"]\nstop_signal = \"STOP\"\n\
             backoff = { first = \"2s\", max = \"1s\" }\nlive = { failures = 0 }\n\
             [apps.db]\ncommand = \"x\"\n"
        ),
        vec![
            "apps.a.depends_on[0]: an app cannot depend on itself",
            "apps.a.depends_on[1]: unknown app `dbb`; did you mean `db`?",
            "apps.a.stop_signal: unknown stop signal \"STOP\"; expected one of `TERM`, `INT`, `QUIT`, `HUP`, `KILL`, `USR1`, `USR2`, `WINCH`",
            "apps.a.backoff: `max` must not be shorter than `first`",
            "apps.a.live.failures: must be a positive integer",
        ]
    );
}

#[test]
fn trust_forwarded_takes_networks_and_single_addresses() {
    let config = ok(r#"trust_forwarded = ["10.0.0.0/8", "::1"]"#);
    let [lb, local] = config.trust_forwarded[..] else {
        panic!("{:?}", config.trust_forwarded)
    };
    assert!(lb.contains("10.1.2.3".parse().unwrap()));
    assert!(lb.contains("::ffff:10.9.9.9".parse().unwrap()));
    assert!(!lb.contains("11.0.0.1".parse().unwrap()));
    assert!(local.contains("::1".parse().unwrap()));
    assert!(!local.contains("::2".parse().unwrap()));
    assert!(!local.contains("127.0.0.1".parse().unwrap()));
}

#[test]
fn every_address_is_in_a_zero_prefix_network() {
    let all = Network::parse("0.0.0.0/0").unwrap();
    assert!(all.contains("203.0.113.9".parse().unwrap()));
    let all6 = Network::parse("::/0").unwrap();
    assert!(all6.contains("2001:db8::1".parse().unwrap()));
}

#[test]
fn bad_networks_are_rejected() {
    let message = errors(r#"trust_forwarded = ["10.0.0.0/33", "lb.local"]"#).join("\n");
    assert!(
        message.contains("trust_forwarded[0]: prefix length must be 0 to 32, found \"33\""),
        "{message}"
    );
    assert!(
        message.contains("trust_forwarded[1]: expected an IP address or network"),
        "{message}"
    );
}

#[test]
fn parse_access_log_and_route_wait() {
    let config = ok(
        "access_log = \"json\"\n[apps.web]\ncommand = \"x\"\n[routes]\n\"/\" = { app = \"web\", wait = \"30s\" }\n",
    );
    assert_eq!(config.access_log, AccessLog::Json);
    assert_eq!(config.routes[0].wait, Duration::from_secs(30));
    assert_eq!(ok("").access_log, AccessLog::Off);
}

#[test]
fn error_unknown_access_log_format() {
    assert_eq!(
        error("access_log = \"apache\""),
        (
            1,
            14,
            "access_log: unknown access log format \"apache\"; expected one of `off`, `common`, `json`".to_owned()
        )
    );
}

#[test]
fn restart_strategy_parses_and_replace_needs_a_picked_port() {
    let config = ok(r#"
[apps.web]
command = "x"
restart_strategy = "replace"
"#);
    assert_eq!(config.apps[0].restart_strategy, RestartStrategy::Replace);
    let (line, column, message) = error(
        r#"
[apps.web]
command = "x"
port = 9000
restart_strategy = "replace"
"#,
    );
    assert_eq!((line, column), (5, 20), "{message}");
    assert!(message.contains("may not have a fixed `port`"), "{message}");
    let message = errors("[apps.web]\ncommand = \"x\"\nrestart_strategy = \"swap\"\n").join("\n");
    assert!(
        message.contains("unknown restart strategy \"swap\"; expected one of"),
        "{message}"
    );
}

#[test]
fn keyword_enums_round_trip_through_the_parser() {
    let app = |key: &str, spelling: &str| {
        let config = ok(&format!(
            "[apps.web]\ncommand = \"x\"\n{key} = \"{spelling}\"\n"
        ));
        config.apps.into_iter().next().expect("one app")
    };
    for &policy in RestartPolicy::ALL {
        assert_eq!(app("restart", policy.as_str()).restart, policy);
    }
    for &strategy in RestartStrategy::ALL {
        let parsed = app("restart_strategy", strategy.as_str()).restart_strategy;
        assert_eq!(parsed, strategy);
    }
    for &protocol in Protocol::ALL {
        assert_eq!(app("protocol", protocol.as_str()).protocol, protocol);
    }
    for &format in AccessLog::ALL {
        let config = ok(&format!("access_log = \"{}\"", format.as_str()));
        assert_eq!(config.access_log, format);
    }
    for &builtin in Builtin::ALL {
        let config = ok(&format!(
            "[routes]\n\"/\" = {{ builtin = \"{}\" }}",
            builtin.as_str()
        ));
        assert_eq!(config.routes[0].action, Action::Builtin(builtin));
    }
    for &scheme in Scheme::ALL {
        let route = format!(
            "[routes]\n\"/\" = {{ proxy = \"{}://example.com\" }}",
            scheme.as_str()
        );
        let Action::Proxy { target, .. } = &ok(&route).routes[0].action else {
            panic!("expected a proxy route");
        };
        assert_eq!(target.scheme, scheme);
    }
}

#[test]
fn request_id_is_on_by_default_and_its_header_configurable() {
    assert_eq!(
        ok("").request_id,
        Some(HeaderName::from_static("x-request-id"))
    );
    assert_eq!(ok("request_id = false").request_id, None);
    assert_eq!(
        ok("request_id_header = \"X-Trace-Id\"").request_id,
        Some(HeaderName::from_static("x-trace-id"))
    );
    assert_eq!(
        error("request_id_header = \"Content-Length\""),
        (
            1,
            21,
            "request_id_header: cannot carry the request ID: it frames the body, which zoo \
             does for each hop"
                .to_owned()
        )
    );
    assert_eq!(
        error("request_id = false\nrequest_id_header = \"X-Id\"").2,
        "request_id_header: has no effect with `request_id = false`"
    );
}

#[test]
fn route_allow_and_deny_admit_by_network() {
    let r = route(
        r#""/admin" = { app = "web", allow = ["10.0.0.0/8", "::1"], deny = ["10.9.0.0/16"] }"#,
    );
    let access = r.access.unwrap();
    let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
    assert!(access.admits(ip("10.1.2.3")));
    assert!(access.admits(ip("::1")));
    assert!(access.admits(ip("::ffff:10.1.2.3")));
    assert!(!access.admits(ip("10.9.1.1")), "deny wins over allow");
    assert!(!access.admits(ip("127.0.0.1")), "not allowed");
    let deny_only = route(r#""/" = { respond = "x", deny = ["127.0.0.1"] }"#)
        .access
        .unwrap();
    assert!(!deny_only.admits(ip("127.0.0.1")));
    assert!(deny_only.admits(ip("127.0.0.2")));
    assert_eq!(route(r#""/" = { respond = "x" }"#).access, None);
    assert_eq!(
        route_error(r#""/" = { respond = "x", allow = ["10.0.0.0/33"] }"#).2,
        "routes.\"/\".allow[0]: prefix length must be 0 to 32, found \"33\""
    );
}

#[test]
fn replicas_take_a_count_a_port_list_and_a_balance() {
    let apps = |extra: &str| {
        parse(
            &format!("[apps.web]\ncommand = \"x\"\n{extra}"),
            Path::new("zoo.toml"),
            &|_| None,
        )
    };
    let app = apps("replicas = 3\nport = [9001, 9002, 9003]\nbalance = \"round_robin\"\n")
        .expect("valid")
        .apps
        .remove(0);
    assert_eq!(
        (app.replicas, app.port_of(0), app.port_of(2), app.balance),
        (3, Some(9001), Some(9003), Balance::RoundRobin)
    );
    let defaults = apps("").expect("valid").apps.remove(0);
    assert_eq!(
        (defaults.replicas, defaults.balance),
        (1, Balance::LeastRequests)
    );
    let messages = |extra: &str| errors(&format!("[apps.web]\ncommand = \"x\"\n{extra}"));
    assert_eq!(
        messages("replicas = 0\n"),
        ["apps.web.replicas: expected 1 to 64 instances, found 0"]
    );
    assert_eq!(
        messages("replicas = 2\nport = 9000\n"),
        [
            "apps.web.port: 2 instances cannot share one port: give a list of 2 ports, or remove `port` and zoo picks them"
        ]
    );
    assert_eq!(
        messages("replicas = 3\nport = [9001, 9002]\n"),
        ["apps.web.port: a list of ports gives one per instance: expected 3 (`replicas`), found 2"]
    );
    assert_eq!(
        messages("kind = \"task\"\nreplicas = 2\n"),
        [
            "apps.web.replicas: a task runs one process per trigger; `replicas` applies to services and workers"
        ]
    );
    assert_eq!(
        messages("balance = \"random\"\n"),
        [
            "apps.web.balance: unknown balance \"random\"; expected one of `least_requests`, `round_robin`, `client_ip`"
        ]
    );
}

#[test]
fn start_on_demand_is_for_services_and_idle_stop_needs_it() {
    let on_demand = app("start = \"on-demand\"\n");
    assert_eq!(
        (on_demand.start, on_demand.idle_stop),
        (StartMode::OnDemand, Some(Duration::from_secs(900)))
    );
    assert_eq!(
        app("start = \"on-demand\"\nidle_stop = \"2s\"\n").idle_stop,
        Some(Duration::from_secs(2))
    );
    let messages = |extra: &str| errors(&format!("[apps.web]\ncommand = \"x\"\n{extra}"));
    assert_eq!(
        messages("idle_stop = \"1m\"\n"),
        [
            "apps.web.idle_stop: `idle_stop` stops an app started on demand: add `start = \"on-demand\"` or remove it"
        ]
    );
    assert_eq!(
        messages("port = false\nstart = \"on-demand\"\n"),
        [
            "apps.web.start: a worker is not reached by requests, so nothing would start it: `start = \"on-demand\"` is for services"
        ]
    );
}

#[test]
fn socket_is_for_services_without_a_port_or_replace() {
    assert!(app("socket = true\n").socket);
    let messages = |extra: &str| errors(&format!("[apps.web]\ncommand = \"x\"\n{extra}"));
    assert_eq!(
        messages("socket = true\nport = 9000\n"),
        ["apps.web.socket: an app on a Unix socket has no port: remove `port`"]
    );
    assert_eq!(
        messages("socket = true\nrestart_strategy = \"replace\"\n"),
        [
            "apps.web.socket: `restart_strategy = \"replace\"` needs a second address: use \"stop-start\""
        ]
    );
}

#[test]
fn error_unknown_engine_names_the_choices() {
    assert_eq!(
        error("engine = \"nginx\""),
        (
            1,
            10,
            "engine: unknown engine \"nginx\"; expected one of `hyper`, `zoo`".to_owned()
        )
    );
}

/// The two ways a config is read give the same config, or the same diagnostics: routes a
/// batch at a time (when `[routes]` is plain) and toml's tree of the whole document.
#[test]
fn batched_and_whole_tree_reads_agree() {
    let apps = "listen = \"127.0.0.1:1\"\n[apps.web]\ncommand = \"x\"\nport = 9000\n";
    let routes: String = (0..300)
        .map(|n| {
            format!(
                "\"/r{n}\" = {{ app = \"web\", timeout = \"{}s\" }}\n",
                n % 7 + 1
            )
        })
        .collect();
    let sources = [
        format!("{apps}[routes]\n{routes}"),
        format!("[routes]\n{routes}\n{apps}"),
        format!("{apps}[routes]\n{routes}\"/bad\" = {{ app = \"wbe\" }}\nlisen = 1\n"),
        format!("lisen = 1\n[routes]\n{routes}[apps.web]\ncomand = \"x\"\n"),
        format!("{apps}[routes]\n\"/x\" = {{ respond = \"a\", sttus = 1 }}\n{routes}"),
        format!(
            "{apps}[routes]\n\"A.example.com/\" = {{ app = \"web\" }}\n\"a.example.com./\" = {{ app = \"web\" }}\n"
        ),
        format!("{apps}[routes]\n{routes}\"/r5\" = {{ app = \"web\" }}\n"),
        // Found as plain, but no TOML: read again as one tree.
        format!("{apps}[routes]\n{routes}\"/z\" = {{ app = \"web\" \"x\" }}\n"),
    ];
    for source in &sources {
        assert!(split::find(source).is_some(), "{source}");
        let path = Path::new("zoo.toml");
        let batched = parse(source, path, &env);
        let whole = parse_whole(source, path, &env);
        match (batched, whole) {
            (Ok(batched), Ok(whole)) => assert_eq!(batched, whole),
            (
                Err(ConfigError::Invalid {
                    diagnostics: batched,
                    ..
                }),
                Err(ConfigError::Invalid {
                    diagnostics: whole, ..
                }),
            ) => assert_eq!(batched, whole),
            (batched, whole) => panic!("{source}\nbatched: {batched:?}\nwhole: {whole:?}"),
        }
    }
}
