//! A real browser through zoo: headless Chromium (`util/chromium.rs`).
//!
//! WebSockets: Chromium loads `util/fastapi/ws_page.html` from the FastAPI app directly and
//! through zoo. The page opens WebSockets to its own origin (a 1 MiB echo as text and binary,
//! 10,000 small messages, closes with 1000 and 4000) and posts its results to the app, where the
//! test reads them; both runs must give the same, correct results.
//!
//! Static files: the SPA example (`examples/spa`) loaded on a deep link renders (its script
//! ran and fetched the API), its bundle came as the `.br` sibling (the browser's Resource
//! Timing and zoo's access log agree), and a second load in the same profile revalidates the
//! page (304) and does not ask for the immutable bundle again.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::chromium::Profile;
use crate::util::fastapi::fastapi_zoo;
use crate::util::{self, Zoo, http};

/// How long one page run may take, browser start-up included (normally 2 to 5 s).
const PAGE_DEADLINE: Duration = Duration::from_secs(60);

/// Loads the page from `origin` (the app or zoo) and returns what it posted to the app, which
/// the test reads from the app directly. Fails after [`PAGE_DEADLINE`], with Chromium's log.
fn page_results(zoo: &Zoo, origin: SocketAddr, app: SocketAddr, run: &str) -> Value {
    let profile = Profile::new();
    let mut browser = profile.open(&format!("http://{origin}/browser?run={run}"));
    let until = Instant::now() + PAGE_DEADLINE;
    let target = format!("/browser/result?run={run}");
    loop {
        let last = match http::get(app, &target) {
            Ok(response) if response.status == 200 => {
                return serde_json::from_slice(&response.body).unwrap_or_else(|e| {
                    panic!("the page's result is not JSON ({e}): {}", response.text())
                });
            }
            Ok(response) => format!("{} {}", response.status, response.text()),
            Err(e) => e.to_string(),
        };
        if let Some(status) = browser.exited() {
            panic!(
                "chromium exited ({}) before the page posted its result (last poll: {last})\n\
                 ---- chromium log ----\n{}\n{}",
                util::describe(status),
                browser.log_tail(),
                zoo.output()
            );
        }
        assert!(
            Instant::now() < until,
            "the page loaded from {origin} posted no result within {PAGE_DEADLINE:?} \
             (last poll: {last})\n---- chromium log ----\n{}\n{}",
            browser.log_tail(),
            zoo.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The results without their `ms` timings (the only part that may differ between runs).
fn without_timings(results: &Value) -> Value {
    let mut results = results.clone();
    for case in results.as_array_mut().expect("the page posts an array") {
        case.as_object_mut()
            .expect("one object per case")
            .remove("ms");
    }
    results
}

#[test]
fn chromium_websocket_page_through_zoo_equals_direct() {
    let (zoo, port) = fastapi_zoo("");
    let app = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let direct = page_results(&zoo, app, app, "direct");
    let direct_took = started.elapsed();
    let through = page_results(&zoo, zoo.addr(), app, "zoo");
    let through_took = started.elapsed() - direct_took;
    eprintln!(
        "Chromium page, direct ({direct_took:?} with browser start-up): {direct}\n\
         Chromium page, through zoo ({through_took:?}): {through}"
    );
    assert_eq!(
        without_timings(&through),
        without_timings(&direct),
        "the page's results through zoo vs direct\n{}",
        zoo.output()
    );
    let clean = |code: u16, reason: &str| json!({"code": code, "reason": reason, "wasClean": true});
    let expected = json!([
        {"case": "1 MiB echo, text and binary", "result": {
            "text": true, "textLength": 1 << 20, "binary": true, "binaryLength": 1 << 20,
            "extensions": "permessage-deflate; client_max_window_bits=15",
            "close": clean(1000, "done"),
        }},
        {"case": "10,000 small messages", "result": {
            "sent": 10_000, "echoedInOrder": 10_000, "close": clean(1000, "done"),
        }},
        {"case": "close 1000", "result": {"echoed": "hi", "close": clean(1000, "done")}},
        {"case": "close 4000", "result": {"echoed": "hi", "close": clean(4000, "app-defined")}},
    ]);
    assert_eq!(
        without_timings(&through),
        expected,
        "the page's results through zoo"
    );
}

/// The SPA example (`examples/spa`) in Chromium through zoo: zoo runs with the example's own
/// routes (its `zoo.toml`, on a free port and with a JSON access log), serving its `dist/`.
mod spa {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use serde_json::Value;

    use crate::util::chromium::Profile;
    use crate::util::{self, Zoo};

    /// How long zoo's access log may take to show a request that was answered.
    const LOG_DEADLINE: Duration = Duration::from_secs(10);

    fn example() -> PathBuf {
        util::repo_root().join("examples/spa")
    }

    /// The example's `zoo.toml` with its paths made absolute, a free port, no admin listener
    /// (its fixed port would collide) and `access_log = "json"`; the routes as written.
    fn example_config() -> String {
        let dir = example();
        let original =
            std::fs::read_to_string(dir.join("zoo.toml")).expect("examples/spa/zoo.toml");
        let mut config = String::from("listen = \"127.0.0.1:0\"\naccess_log = \"json\"\n");
        for line in original.lines() {
            if !line.starts_with("listen =") && !line.starts_with("admin =") {
                config.push_str(line);
                config.push('\n');
            }
        }
        for (relative, absolute) in [
            (
                "\"frontend/dist",
                format!("\"{}/frontend/dist", dir.display()),
            ),
            ("\"api.py\"", format!("\"{}/api.py\"", dir.display())),
        ] {
            assert!(
                config.contains(relative),
                "examples/spa/zoo.toml no longer names {relative}: update this test\n{original}"
            );
            config = config.replace(relative, &absolute);
        }
        config
    }

    /// The bundle in `dist/assets` (its hashed name) and the lengths of it and its `.br`.
    fn bundle() -> (String, u64, u64) {
        let assets = example().join("frontend/dist/assets");
        let name = std::fs::read_dir(&assets)
            .expect("examples/spa/frontend/dist/assets")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .find(|name| name.ends_with(".js"))
            .expect("a .js bundle in dist/assets");
        let len = |path: &Path| std::fs::metadata(path).expect("bundle file").len();
        let plain = len(&assets.join(&name));
        let brotli = len(&assets.join(format!("{name}.br")));
        (name, plain, brotli)
    }

    /// zoo's access log entries so far, as JSON objects.
    fn access_entries(zoo: &Zoo) -> Vec<Value> {
        zoo.lines()
            .iter()
            .filter_map(|(_, line)| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["source"] == "access")
            .collect()
    }

    /// `(status, bytes)` of each logged request for `target` after the first `skip` entries,
    /// once there are `want` of them (or what there is after [`LOG_DEADLINE`]).
    fn logged(zoo: &Zoo, skip: usize, target: &str, want: usize) -> Vec<(u64, Option<u64>)> {
        let of_target = || {
            access_entries(zoo)
                .into_iter()
                .skip(skip)
                .filter(|entry| entry["target"] == target)
                .map(|entry| (entry["status"].as_u64().unwrap(), entry["bytes"].as_u64()))
                .collect::<Vec<_>>()
        };
        util::poll_until(LOG_DEADLINE, || of_target().len() >= want);
        of_target()
    }

    /// What the page rendered into `<main id="app">`: (its text, `data-script-bytes`,
    /// `data-ready`), read from the dumped DOM.
    fn rendered(dom: &str) -> (String, String, String) {
        let start = dom
            .find("<main id=\"app\"")
            .expect("the page has <main id=\"app\">");
        let main = &dom[start..];
        let open_end = main.find('>').unwrap();
        let tag = &main[..open_end];
        let attribute = |name: &str| {
            tag.split_once(&format!("{name}=\""))
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or_else(String::new, |(value, _)| value.to_owned())
        };
        let text = main[open_end + 1..]
            .split("</main>")
            .next()
            .unwrap()
            .to_owned();
        (
            text,
            attribute("data-script-bytes"),
            attribute("data-ready"),
        )
    }

    #[test]
    fn chromium_spa_deep_link_precompressed_bundle_and_revalidation() {
        let mut zoo = Zoo::start(&example_config(), &[]);
        zoo.wait_ready("/api/health", util::READY_DEADLINE);
        let (bundle, plain_len, brotli_len) = bundle();
        let script = format!("/assets/{bundle}");
        let deep_link = format!("http://{}/settings/profile", zoo.addr());
        let profile = Profile::new();

        let first = profile.dump_dom(&deep_link);
        let (text, script_bytes, ready) = rendered(&first);
        eprintln!("first load: {text:?}, script {script_bytes:?}");
        assert_eq!(
            (text.as_str(), ready.as_str()),
            ("route /settings/profile: 300 items from the API", "yes"),
            "the app did not render on the deep link\n{first}\n{}",
            zoo.output()
        );
        // The browser's own account (Resource Timing): the body it received was the Brotli
        // sibling, decoded to the bundle.
        assert_eq!(
            script_bytes,
            format!("{brotli_len} encoded, {plain_len} decoded"),
            "the bundle did not come as its .br sibling\n{}",
            zoo.output()
        );
        let page = logged(&zoo, 0, "/settings/profile", 1);
        assert_eq!(page[0].0, 200, "the deep link: {page:?}\n{}", zoo.output());
        let served = logged(&zoo, 0, &script, 1);
        assert_eq!(
            served,
            [(200, Some(brotli_len))],
            "zoo sent the .br sibling's bytes\n{}",
            zoo.output()
        );

        let before_second = access_entries(&zoo).len();
        let second = profile.dump_dom(&deep_link);
        let (text, _, ready) = rendered(&second);
        assert_eq!(
            (text.as_str(), ready.as_str()),
            ("route /settings/profile: 300 items from the API", "yes"),
            "the second load did not render\n{second}\n{}",
            zoo.output()
        );
        // index.html is `no-cache` (the fallback's default): revalidated, 304. The bundle is
        // `immutable`: not asked for at all.
        let page = logged(&zoo, before_second, "/settings/profile", 1);
        assert_eq!(
            page,
            [(304, Some(0))],
            "the second load revalidates the page\n{}",
            zoo.output()
        );
        // The page's fetch comes after the script has run: once it is logged, so is any
        // request for the bundle.
        logged(&zoo, before_second, "/api/items", 1);
        assert_eq!(
            logged(&zoo, before_second, &script, 0),
            [],
            "an immutable bundle is not asked for again\n{}",
            zoo.output()
        );
    }
}
