//! The one integration test crate: runs the built `zoo` binary as a black box against real
//! apps (uvicorn from the venv that `scripts/setup` makes, node from PATH) and in-test servers.
//! The harness is `util`; the scenarios live in `integration/`, one file per subject.

mod util;

mod integration {
    mod browser;
    mod config;
    mod control;
    mod demo;
    mod differential;
    mod errors;
    mod examples;
    mod h2_clients;
    mod h2_websocket;
    mod hardening;
    mod no_loss;
    mod observe;
    mod pool;
    mod protocols;
    mod proxy;
    mod shutdown;
    mod sse;
    mod supervise;
}
