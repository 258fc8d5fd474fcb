//! zoo: one binary that supervises a container's web apps and serves them all on one port
//! through a path-routing reverse proxy.
//!
//! Data flows one way: [`config`] (parse and validate) -> [`runtime`] (built in one place,
//! swapped whole on reload) -> request handling ([`proxy`]). [`compose`] puts it together;
//! docs/design.md draws the modules and what each owns.

mod access;
mod admin;
mod compose;
mod compress;
pub mod config;
mod control;
mod deadline;
mod files;
pub mod h1;
mod listeners;
pub mod log;
mod proxy;
pub mod route;
mod rundir;
mod runtime;
mod supervise;
mod telemetry;
mod upstream;

// What the binary (src/main.rs) and the fuzz targets use; everything else is the crate's own,
// so that what nothing uses is reported as dead code.
pub use admin::client as admin_client;
pub use compose::{check, run};
pub use control::StatusReport;
pub use proxy::{ClientStream, serve, serve_http1_stream};
pub use runtime::{Runtime, Serving};
pub use telemetry::Metrics;
