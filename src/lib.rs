//! zoo: one binary that supervises a container's web apps and serves them all on one port
//! through a path-routing reverse proxy.
//!
//! Data flows one way: [`config`] (parse and validate) -> [`runtime`] (built in one place,
//! swapped whole on reload) -> request handling ([`proxy`]). [`compose`] puts it together;
//! docs/design.md draws the modules and what each owns.

pub mod admin;
pub mod compose;
pub mod config;
pub mod control;
pub mod listeners;
pub mod log;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod supervise;
pub mod telemetry;
pub mod upstream;
