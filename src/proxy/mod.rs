//! The proxy: request handling on the public listeners. [`serve`] accepts connections
//! (listener.rs: HTTP/1.1, h2c told apart by sniff.rs, or TLS with ALPN), each served by the
//! service (service.rs) that routes a request through the runtime in use and forwards it
//! (forward.rs) or answers it. Everything a request reads is in one `Runtime`, loaded once
//! per request; bodies stream both ways, never buffered whole.

mod drain;
mod error;
mod forward;
mod h2_websocket;
mod headers;
mod keepalive;
mod listener;
mod service;
mod sniff;
mod tunnel;

use bytes::Bytes;
use http_body_util::{Either, Full};

pub use error::ProxyError;
pub use listener::serve;

use crate::upstream::ResponseBody;

/// Every response zoo sends: an upstream's streamed body or one zoo made.
pub type ZooBody = Either<ResponseBody, Full<Bytes>>;
