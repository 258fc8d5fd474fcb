//! The proxy: request handling on the public listeners. [`serve`] accepts connections
//! (listener.rs: HTTP/1.1, h2c told apart by sniff.rs, or TLS with ALPN), each served by the
//! service (service.rs) that routes a request through the runtime in use and forwards it
//! (forward.rs) or answers it. Everything a request reads is in one `Runtime`, loaded once
//! per request; bodies stream both ways, never buffered whole.

mod client;
mod drain;
mod engine;
mod error;
mod forward;
mod h2_websocket;
mod headers;
mod heap;
mod keepalive;
mod listener;
mod request_id;
mod service;
mod sniff;
#[cfg(target_os = "linux")]
mod splice;
mod tunnel;

use bytes::Bytes;
use http_body_util::{Either, Full};

pub use engine::ClientStream;
pub use error::ProxyError;
pub use listener::{serve, serve_http1_stream};

use crate::compress::Compressed;
use crate::files::FileBody;
use crate::upstream::ResponseBody;

/// A response from an upstream (streamed) or one zoo made.
pub type ZooBody = Either<ResponseBody, Full<Bytes>>;

/// A response before compression: [`ZooBody`] or a `static` route's file. The file's state
/// (an open file, a read buffer) is boxed so that the proxied responses, which are most,
/// do not move its size around at every step (measured: about 3% more instructions per
/// proxied request unboxed).
pub(crate) type UncompressedBody = Either<ZooBody, Box<FileBody>>;

/// Every response zoo sends: as it is, or compressed on the way (crate::compress), the
/// encoder boxed for the same reason.
pub(crate) type ServedBody = Either<UncompressedBody, Box<Compressed<UncompressedBody>>>;
