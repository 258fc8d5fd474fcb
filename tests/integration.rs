//! The one integration test crate: runs the built `zoo` binary as a black box against real
//! apps (uvicorn from the venv that `scripts/setup` makes, node from PATH) and in-test servers.
//! The harness is `util`; the scenarios live in `integration/`, one file per subject.

mod util;

mod integration {
    mod browser;
    mod compress;
    mod config;
    mod control;
    mod control_safety;
    mod cron;
    mod demo;
    mod diagnosis;
    mod differential;
    mod errors;
    mod examples;
    mod front_door;
    mod h2_clients;
    mod h2_websocket;
    mod hardening;
    mod healthcheck;
    mod kinds;
    mod limits;
    mod no_loss;
    mod observe;
    mod pool;
    mod protocols;
    mod proxy;
    mod reload;
    mod request_hygiene;
    mod routes;
    mod shutdown;
    mod sse;
    mod static_files;
    mod supervise;
    mod watch;
    mod websocket;
}
