//! The answers zoo gives itself, over the wire: `respond` with its `status`, `headers` (in file
//! order) and body template, and `redirect` with its `status` (302 by default) and `Location`
//! template, each read from a raw HTTP/1.1 exchange.

use crate::util::Zoo;

const CONFIG: &str = "listen = \"127.0.0.1:0\"\n\
    [routes]\n\
    \"/made\" = { respond = \"{method} {path} q={query} h={host}\\n\", status = 201, \
    headers = { \"content-type\" = \"application/json\", \"x-second\" = \"2\", \"x-first\" = \"1\" } }\n\
    \"/old\" = { redirect = \"https://example.com{path}?{query}\", status = 308 }\n\
    \"/moved\" = { redirect = \"/new{path}\" }\n";

/// The raw response head lines (status line first) and the body of `request`.
fn exchange(zoo: &Zoo, request: &str) -> (Vec<String>, String) {
    let raw = zoo.send_raw(request.as_bytes());
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {text:?}\n{}", zoo.output()));
    (head.lines().map(str::to_owned).collect(), body.to_owned())
}

#[test]
fn respond_answers_its_status_headers_in_file_order_and_templated_body() {
    let zoo = Zoo::start(CONFIG, &[]);
    let (head, body) = exchange(
        &zoo,
        "POST /made/x?a=1 HTTP/1.1\r\nHost: zoo.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head[0], "HTTP/1.1 201 Created", "{head:?}");
    let named: Vec<&str> = head
        .iter()
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            // The request ID every answer carries is zoo's, not the route's (front_door.rs).
            (line.starts_with("content-type:") || line.starts_with("x-"))
                && !line.starts_with("x-request-id:")
        })
        .map(String::as_str)
        .collect();
    assert_eq!(
        named
            .iter()
            .map(|line| line.to_ascii_lowercase())
            .collect::<Vec<_>>(),
        [
            "content-type: application/json",
            "x-second: 2",
            "x-first: 1"
        ],
        "{head:?}"
    );
    assert_eq!(body, "POST /made/x q=a=1 h=zoo.test\n", "{}", zoo.output());
}

#[test]
fn redirect_answers_its_status_and_templated_location() {
    let zoo = Zoo::start(CONFIG, &[]);
    for (target, status_line, location) in [
        (
            "/old/a/b?x=1",
            "HTTP/1.1 308 Permanent Redirect",
            "https://example.com/old/a/b?x=1",
        ),
        ("/moved/page", "HTTP/1.1 302 Found", "/new/moved/page"),
    ] {
        let (head, _) = exchange(
            &zoo,
            &format!("GET {target} HTTP/1.1\r\nHost: z\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(head[0], status_line, "{target}: {head:?}");
        let found = head.iter().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("location").then(|| value.trim())
        });
        assert_eq!(
            found,
            Some(location),
            "{target}: {head:?}\n{}",
            zoo.output()
        );
    }
}
