//! What graceful shutdown waits for before it stops the apps: every request being answered
//! on the public listeners, from the moment hyper hands it to the service until the last
//! byte of its response body (an SSE stream or a download counts until it ends).
//!
//! Tunnels are not requests: the `101` (or, over h2, the `200` to an extended CONNECT) ends
//! the request that opened one. An open WebSocket never ends by itself, so it must not hold
//! up the apps' stop; stopping the apps is what closes it properly (see `crate::run`). Each
//! request holds one [`TaskTrackerToken`]: an atomic increment when it starts, a decrement
//! when its body is dropped; nothing on a tunnel's path.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::ServedBody;
use super::keepalive::{Activity, RequestActive};
use super::service::{Answer, ProxyService};
use crate::upstream::{RawBody, RequestBody};

/// The proxy service, each of its requests tracked by `requests` until its response ends.
#[derive(Clone)]
pub struct Counted {
    pub service: ProxyService,
    /// The requests being answered; `crate::run` waits for it to empty before it stops apps.
    pub requests: TaskTracker,
    /// This connection's requests in flight, for its idle and header timeouts (keepalive.rs).
    pub activity: Arc<Activity>,
}

impl Counted {
    /// Answers `request`, counted from now until its response body is dropped.
    pub fn answer(&self, request: Request<RequestBody>) -> Answering {
        Answering {
            token: Some((self.requests.token(), self.activity.request_started())),
            answer: self.service.answer(request),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Counted {
    type Response = Response<CountedBody>;
    type Error = Infallible;
    type Future = HyperAnswering;

    fn call(&self, request: Request<Incoming>) -> HyperAnswering {
        HyperAnswering(self.answer(request.map(Either::Left)))
    }
}

/// The proxy's answer to one request, still holding its token.
pub struct Answering {
    token: Option<(TaskTrackerToken, RequestActive)>,
    answer: Answer,
}

impl Future for Answering {
    type Output = Response<CountedBody>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.answer.as_mut().poll(cx));
        let token = self.token.take();
        Poll::Ready(response.map(|body| CountedBody {
            body,
            _token: token,
        }))
    }
}

/// [`Answering`] as hyper's service future, which never fails.
pub struct HyperAnswering(Answering);

impl Future for HyperAnswering {
    type Output = Result<Response<CountedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(Ok)
    }
}

/// A response body that keeps its request counted until hyper drops it.
pub struct CountedBody {
    body: ServedBody,
    _token: Option<(TaskTrackerToken, RequestActive)>,
}

impl CountedBody {
    /// The rest of an upstream's body for moving socket to socket, when it is one that can be
    /// (`ResponseBody::raw`): not a file, not compressed, not one zoo made.
    pub(super) fn raw(&mut self) -> Option<(Option<Bytes>, RawBody<'_>)> {
        match &mut self.body {
            Either::Left(Either::Left(Either::Left(upstream))) => upstream.raw(),
            _ => None,
        }
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_request_counts_until_its_body_is_dropped() {
        let requests = TaskTracker::new();
        let body = CountedBody {
            body: Either::Left(Either::Left(Either::Right(Full::new(Bytes::from_static(
                b"streamed",
            ))))),
            _token: Some((requests.token(), Activity::accepted().request_started())),
        };
        requests.close();
        assert_eq!(requests.len(), 1);
        assert_eq!(body.size_hint().exact(), Some(8));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "streamed");
        assert!(requests.is_empty(), "collecting consumed and dropped it");
        requests.wait().await;
    }
}
