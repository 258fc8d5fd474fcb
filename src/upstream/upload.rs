//! The last bytes of a request body moved to the upstream's socket without a copy through
//! zoo (splice(2), through a pipe the client's connection fills): the side door beside the
//! body's frames. zoo's HTTP/1.1 engine offers one ([`UploadOffer`], in the request's
//! extensions) for a body of known, large length from a plain TCP client; zoo's client takes
//! it when it sends the body on a TCP or Unix connection, and otherwise the body's frames
//! carry every byte as before.
//!
//! The body is type-erased on its way here (`RequestBody`, under `ClientBody` and `Limited`),
//! so the offer cannot be the body itself; and `upstream` may not name the engine's types,
//! hence a trait ([`RequestSplice`]) that the engine implements.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use super::{BoxError, RawSocket};

/// The bytes of a request body not in its frames, which reach an upstream socket when
/// polled. Its errors are the body's (the client closed early, or
/// sent nothing for the idle timeout), so the request fails as if its frames had failed.
pub trait RequestSplice: Send + Sync {
    /// How many bytes it moves: the body's last ones, after all its frames' bytes.
    fn len(&self) -> u64;

    /// Readies the move (a pipe), failing it once the client leaves
    /// `idle` between two reads; `false` when it cannot be (no pipe free): then the body's
    /// frames carry every byte.
    fn prepare(&mut self, idle: Duration) -> bool;

    /// Moves the bytes to `to`; ready once they all went, or at the first failure.
    fn poll_move(&mut self, cx: &mut Context<'_>, to: RawSocket<'_>) -> Poll<Result<(), BoxError>>;
}

/// The request extension through which the engine offers a [`RequestSplice`]: taken once,
/// by the exchange that sends the body (cloned only because extensions must be).
#[derive(Clone)]
pub struct UploadOffer {
    splice: Arc<Mutex<Option<Box<dyn RequestSplice>>>>,
    /// The route's `client_body_timeout`, which the body's frames would be held to
    /// (forward.rs sets it); `None`: not set, and the offer is declined.
    idle: Option<Duration>,
}

impl UploadOffer {
    #[must_use]
    pub fn new(splice: Box<dyn RequestSplice>) -> Self {
        Self {
            splice: Arc::new(Mutex::new(Some(splice))),
            idle: None,
        }
    }

    /// Holds the move to the route's `client_body_timeout`.
    pub fn idle_timeout(&mut self, idle: Duration) {
        self.idle = Some(idle);
    }

    /// The splice, readied, for a body whose bytes after the frames' number `len`; `None`
    /// when it is not for this body or cannot be readied.
    pub(super) fn take(&self, len: u64) -> Option<(Box<dyn RequestSplice>, Duration)> {
        let idle = self.idle?;
        let mut splice = self
            .splice
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        (splice.len() <= len && splice.prepare(idle)).then_some((splice, idle))
    }

    /// An offer of a splice taken and not used (the request goes out again, none of it sent).
    pub(super) fn again(splice: Box<dyn RequestSplice>, idle: Duration) -> Self {
        let mut offer = Self::new(splice);
        offer.idle_timeout(idle);
        offer
    }
}
