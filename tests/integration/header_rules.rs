//! Header rules through the real binary: what a recording app receives and what the client
//! gets back on every kind of route (app, proxy, static, respond, redirect, a built-in) and
//! on zoo's own errors (404, 403); the top-level rules before the route's; a `respond`
//! route's own headers under the rules; `zoo check`'s table showing them, and refusing the
//! rules that name a header zoo owns.

use std::time::Duration;

use super::front_door::{RECORDER_PY, echoed, get_with, is_uuid_v7, recorder_app};
use crate::util::{self, READY_DEADLINE, Zoo};

const CHECK_DEADLINE: Duration = Duration::from_secs(20);

/// One app on a fixed port (so that a `proxy` route can name it too) and a route of each kind.
fn rules_config(port: u16) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\
         headers = {{ request = {{ set = {{ X-Top = \"top {{method}}\" }} }}, \
                      response = {{ set = {{ Strict-Transport-Security = \"max-age=31536000\" }}, \
                                    add = {{ X-Served-For = \"{{client_ip}} {{request_id}}\" }}, \
                                    remove = [\"X-Powered-By\"] }} }}\n\
         {api}port = {port}\n\n\
         [routes]\n\
         \"/api\" = {{ app = \"api\", headers = {{ \
             request = {{ set = {{ X-Api-Version = \"2\", X-Forwarded-Proto = \"https\", Host = \"internal.test\" }}, \
                          add = {{ X-Path = \"{{path}}\" }}, remove = [\"Cookie\", \"X-Top\"] }}, \
             response = {{ set = {{ X-Route = \"api {{host}}{{path}}\" }}, remove = [\"Server\"] }} }} }}\n\
         \"/ext\" = {{ proxy = \"http://127.0.0.1:{port}\" }}\n\
         \"/files\" = {{ static = \"site\" }}\n\
         \"/hello\" = {{ respond = \"hi\", headers = {{ X-Own = \"own\", X-Kept = \"kept\", \
             response = {{ set = {{ X-Own = \"rule\" }} }} }} }}\n\
         \"/old\" = {{ redirect = \"/hello\", headers = {{ response = {{ add = {{ X-Moved = \"yes\" }} }} }} }}\n\
         \"/health\" = {{ builtin = \"health\" }}\n\
         \"/closed\" = {{ respond = \"no\", deny = [\"0.0.0.0/0\", \"::/0\"], \
             headers = {{ response = {{ set = {{ X-Closed = \"{{method}}\" }} }} }} }}\n",
        api = recorder_app("api"),
    )
}

#[test]
fn header_rules_edit_what_the_app_gets_and_every_answer() {
    let port = util::free_port();
    let mut zoo = Zoo::start(
        &rules_config(port),
        &[("recorder.py", RECORDER_PY), ("site/a.txt", "file\n")],
    );
    zoo.wait_ready("/hello", READY_DEADLINE);
    assert!(
        util::poll_until(READY_DEADLINE, || get_with(&zoo, "/api/one", "").0.status
            == 200),
        "{}",
        zoo.output()
    );

    // The app: the top-level rule, then the route's (which removes what the top set).
    let (response, echo) = get_with(&zoo, "/api/one", "Cookie: session=1\r\n");
    let seen = &echo["headers"];
    assert_eq!(seen["x-api-version"], "2", "{echo}");
    assert_eq!(
        seen["x-forwarded-proto"], "https",
        "a rule replaces what zoo set"
    );
    assert_eq!(seen["host"], "internal.test", "`Host` may be set");
    assert_eq!(seen["x-path"], "/api/one");
    assert!(seen.get("cookie").is_none(), "{echo}");
    assert!(
        seen.get("x-top").is_none(),
        "the route's remove runs after the top set"
    );
    assert_eq!(response.header("x-route"), Some("api x.test/api/one"));
    assert_eq!(response.header("server"), None, "{:?}", response.headers);
    assert_eq!(response.header("x-powered-by"), None);

    // Another app route without rules of its own gets the top level's only.
    let (response, echo) = get_with(&zoo, "/ext/two", "Cookie: session=1\r\n");
    assert_eq!(echo["headers"]["x-top"], "top GET", "{echo}");
    assert_eq!(echo["headers"]["cookie"], "session=1");
    assert!(
        response.header("server").is_some(),
        "{:?}",
        response.headers
    );

    // Every answer carries the top-level response rules, zoo's own errors too.
    let answers = [
        ("/api/one", 200),
        ("/ext/two", 200),
        ("/files/a.txt", 200),
        ("/hello", 200),
        ("/old", 302),
        ("/health", 200),
        ("/nowhere", 404),
        ("/closed", 403),
    ];
    for (target, status) in answers {
        let (response, _) = get_with(&zoo, target, "");
        assert_eq!(response.status, status, "{target}: {}", response.text());
        assert_eq!(
            response.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{target}: {:?}",
            response.headers
        );
        let served_for = response.header("x-served-for").unwrap_or_default();
        let (client, id) = served_for.split_once(' ').unwrap_or_default();
        assert_eq!(client, "127.0.0.1", "{target}: {served_for:?}");
        assert!(is_uuid_v7(id), "{target}: {served_for:?}");
        assert_eq!(response.header("x-request-id"), Some(id));
        assert_eq!(response.header("x-powered-by"), None, "{target}");
    }

    // A `respond` route's own headers, then its rules over them.
    let (hello, _) = get_with(&zoo, "/hello", "");
    assert_eq!(hello.header("x-own"), Some("rule"));
    assert_eq!(hello.header("x-kept"), Some("kept"));
    let (moved, _) = get_with(&zoo, "/old", "");
    assert_eq!(moved.header("x-moved"), Some("yes"));
    assert_eq!(moved.header("location"), Some("/hello"));
    let (closed, _) = get_with(&zoo, "/closed", "");
    assert_eq!(
        closed.header("x-closed"),
        Some("GET"),
        "a refused route's rules"
    );
    assert!(echoed(&closed.body).is_none());
}

#[test]
fn check_shows_the_rules_in_the_route_table() {
    let dir = util::prepare_dir(&rules_config(util::free_port()), &[("site/a.txt", "x")]);
    let finished = util::run_to_end(dir.path(), &["check"], CHECK_DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.output);
    let table = &finished.stdout;
    for expected in [
        "request headers: set x-top, x-api-version, x-forwarded-proto, host; add x-path; remove \
         cookie, x-top",
        "response headers: set strict-transport-security; add x-served-for; remove \
         x-powered-by; set x-route; remove server",
        "response headers: set strict-transport-security; add x-served-for; remove \
         x-powered-by; set x-own",
        "deny 0.0.0.0/0, ::/0",
    ] {
        assert!(table.contains(expected), "no {expected:?} in\n{table}");
    }
}

/// `zoo check`'s stderr for `config`; it must fail.
fn refused(config: &str) -> String {
    let dir = util::prepare_dir(config, &[]);
    let finished = util::run_to_end(dir.path(), &["check"], CHECK_DEADLINE);
    assert_eq!(finished.code(), Some(2), "{}", finished.output);
    finished.stderr
}

#[test]
fn check_refuses_rules_on_headers_zoo_owns_at_their_position() {
    let stderr = refused(
        "headers = { response = { set = { Content-Length = \"5\" } } }\n\
         [routes]\n\
         \"/a\" = { proxy = \"http://127.0.0.1:9\", headers = { request = { add = { Transfer-Encoding = \"gzip\", Host = \"x\" }, remove = [\"Connection\", \"Proxy-Authorization\"] } } }\n\
         \"/b\" = { respond = \"b\", headers = { response = { set = { \"bad name\" = \"v\", X-B = \"a\\u0001\" } } } }\n\
         \"/e\" = { respond = \"e\", headers = { request = { set = { X-A = \"1\" } } } }\n\
         \"/c\" = { respond = \"c\", headers = { Content-Length = \"1\" } }\n\
         \"/d\" = { app = \"nope\", headers = { X-Plain = \"1\" } }\n",
    );
    for expected in [
        "zoo.toml:1:34: error: headers.response.set: `Content-Length` cannot be set: it frames \
         the body, which zoo does for each hop",
        "routes.\"/a\".headers.request.add: `Transfer-Encoding` cannot be added: it frames the body",
        "routes.\"/a\".headers.request.add: `Host` can only be set: a request names exactly one host",
        "routes.\"/a\".headers.request.remove[0]: `Connection` cannot be removed: it describes one \
         connection",
        "routes.\"/a\".headers.request.remove[1]: `Proxy-Authorization` cannot be removed: a \
         `Proxy-*` header is meant for the one proxy that reads it",
        "routes.\"/e\": `headers.request` applies only to `app` and `proxy` routes",
        "routes.\"/b\".headers.response.set: invalid header name \"bad name\"",
        "routes.\"/b\".headers.response.set.X-B: invalid header value",
        "routes.\"/c\".headers: `Content-Length` cannot be set",
        "routes.\"/d\".headers: unknown key `X-Plain`; expected `request` or `response`",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in\n{stderr}");
    }
}
