//! zoo: one binary that supervises a container's web apps and serves them all on one port
//! through a path-routing reverse proxy.

pub mod config;
pub mod route;
