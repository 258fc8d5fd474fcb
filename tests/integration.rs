//! The one integration test crate: runs the built `zoo` binary as a black box against real
//! apps (uvicorn from the venv that `scripts/setup` makes, node from PATH) and in-test servers.
//! The harness is `util`; the scenarios live in `integration/`, one file per subject.

mod util;

mod integration {
    mod access;
    mod basic_auth;
    mod browser;
    mod compress;
    mod config;
    mod control;
    mod control_safety;
    mod cron;
    mod demo;
    mod diagnosis;
    mod differential;
    mod engines;
    mod errors;
    mod examples;
    mod front_door;
    mod h2_clients;
    mod h2_websocket;
    mod hardening;
    mod header_rules;
    mod healthcheck;
    mod idle_memory;
    mod kinds;
    mod limits;
    mod no_loss;
    mod observe;
    mod on_demand;
    mod pool;
    mod protocols;
    mod proxy;
    mod reload;
    mod replicas;
    mod request_hygiene;
    mod routes;
    mod shutdown;
    mod sockets;
    mod spliced_bodies;
    mod spliced_uploads;
    mod sse;
    mod static_files;
    mod supervise;
    mod tunnel_fds;
    mod watch;
    mod websocket;
}
