//! zoo in front of the FastAPI app (`fastapi/app.py`, run by uvicorn from the venv) on a
//! known port, for the suites that need a real app speaking WebSocket, SSE and uploads:
//! `websocket.rs`, `browser.rs`, `h2_clients.rs`, `sse.rs`, `h2_websocket.rs`.

use std::net::SocketAddr;

use super::{READY_DEADLINE, Zoo, http};

const APP_PY: &str = include_str!("fastapi/app.py");
/// The page `app.py` serves at `/browser`, for the headless Chromium test (`browser.rs`).
const WS_PAGE_HTML: &str = include_str!("fastapi/ws_page.html");

/// zoo in front of `app.py` on a known port; `root` adds top-level keys. The other suites that
/// need a real FastAPI app (`browser.rs`, `h2_clients.rs`, `sse.rs`, `h2_websocket.rs`) use this
/// one too.
pub fn fastapi_zoo(root: &str) -> (Zoo, u16) {
    let (mut zoo, port) = fastapi_zoo_with(root, &[]);
    zoo.wait_ready("/ping", READY_DEADLINE);
    (zoo, port)
}

/// [`fastapi_zoo`] with `files` written next to `zoo.toml` (a certificate for `tls`, say);
/// returns once the app answers on its own port, whatever zoo's listener speaks.
pub fn fastapi_zoo_with(root: &str, files: &[(&str, &str)]) -> (Zoo, u16) {
    super::require_uvicorn();
    let port = super::free_port();
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         {root}\n\
         \n\
         [apps.py]\n\
         command = \"uvicorn app:app --host 127.0.0.1 --port $PORT --ws wsproto --log-level warning\"\n\
         port = {port}\n\
         \n\
         [routes]\n\
         \"/\" = {{ app = \"py\" }}\n"
    );
    let zoo = Zoo::start(
        &config,
        &[&[("app.py", APP_PY), ("ws_page.html", WS_PAGE_HTML)], files].concat(),
    );
    let app = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        super::poll_until(READY_DEADLINE, || http::get(app, "/ping")
            .is_ok_and(|response| response.status == 200)),
        "the app did not answer on its port\n{}",
        zoo.output()
    );
    (zoo, port)
}

/// uvicorn's close code when it shuts down (1012, service restart), as a close payload.
pub const SERVICE_RESTART: [u8; 2] = [0x03, 0xf4];
