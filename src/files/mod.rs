//! Static files: what a `static` route answers. Owns the mapping of a request path to a file
//! under the route's root (open.rs: never outside it, dotfiles hidden, `index.html`, the
//! `fallback`, precompressed siblings), conditional requests and ranges (answer.rs), and the
//! streamed body (body.rs).
//!
//! GET and HEAD only (others: 405 with `Allow`); no directory listings; a directory asked for
//! without its trailing `/` is redirected to it (301, as nginx does). The file system work
//! (the lookup, the first chunk of the body, each later chunk) runs on the worker thread, as
//! nginx's does without `aio threads`: from the page cache it takes microseconds, less than a
//! hand-off to tokio's blocking pool, which cost 2.5x nginx's CPU per small file
//! (docs/performance.md, "Static files"). A file on a slow disk holds its worker meanwhile. What it does not do: compress on the fly (crate::compress does
//! that to any response, files included), multipart ranges (several ranges get the whole
//! file), or cache file contents in memory (the page cache does).

mod answer;
mod body;
mod open;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

pub(crate) use body::FileBody;
use open::{Lookup, Missing, Root};

use crate::compress;
use crate::config::{CachePolicy, Coding, StaticFiles};
use crate::route;

/// `cache = "immutable"`: a year, the longest a cache is asked to keep anything.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Why a `static` route could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("static root {}: {source}", root.display())]
    Root {
        root: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One `static` route, resolved when the runtime is built.
pub(crate) struct FileServer {
    root: Root,
    /// The file answered for a missing extension-less path, relative to the root.
    fallback: Option<String>,
    /// `Cache-Control` of every file but the fallback.
    cache: Option<HeaderValue>,
    /// Serve names starting with `.`.
    dotfiles: bool,
    /// The path below the route key names the file (nginx's `alias`), not the whole path.
    strip_prefix: bool,
}

/// The parts of the request a file's answer depends on.
pub(super) struct Asked {
    head: bool,
    if_match: Option<HeaderValue>,
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<HeaderValue>,
    if_unmodified_since: Option<HeaderValue>,
    range: Option<HeaderValue>,
    if_range: Option<HeaderValue>,
}

impl Asked {
    fn of(method: &Method, headers: &HeaderMap) -> Self {
        let get = |name| headers.get(name).cloned();
        Self {
            head: method == Method::HEAD,
            if_match: get(header::IF_MATCH),
            if_none_match: get(header::IF_NONE_MATCH),
            if_modified_since: get(header::IF_MODIFIED_SINCE),
            if_unmodified_since: get(header::IF_UNMODIFIED_SINCE),
            range: get(header::RANGE),
            if_range: get(header::IF_RANGE),
        }
    }
}

impl FileServer {
    pub(crate) fn new(config: &StaticFiles, strip_prefix: bool) -> Result<Self, FilesError> {
        let root = Root::open(&config.root, config.follow_symlinks).map_err(|source| {
            FilesError::Root {
                root: config.root.clone(),
                source,
            }
        })?;
        let cache = config.cache.map(|policy| match policy {
            CachePolicy::Immutable => HeaderValue::from_static(IMMUTABLE),
            CachePolicy::NoCache => HeaderValue::from_static("no-cache"),
            CachePolicy::MaxAge(age) => max_age(age),
        });
        Ok(Self {
            root,
            fallback: config.fallback.clone(),
            cache,
            dotfiles: config.dotfiles,
            strip_prefix,
        })
    }

    /// The root's canonical path, for `zoo check` and `zoo status`.
    pub(crate) fn describe(&self) -> String {
        format!("static {}", self.root.canonical.display())
    }

    /// Answers `request` for the normalised `path`, whose first `prefix_len` bytes matched
    /// the route key.
    pub(crate) async fn serve<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        path: &str,
        prefix_len: usize,
    ) -> Response<FileBody> {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let mut response =
                text_response(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let below = if self.strip_prefix {
            route::strip_prefix(path, prefix_len).into_owned()
        } else {
            path.to_owned()
        };
        let asked = Asked::of(method, request.headers());
        let codings = compress::acceptable(request.headers(), Coding::ALL);
        // On the worker thread, not the blocking pool: the open, stat and first read of a file
        // in the page cache take microseconds, and the pool's hand-off (two thread wake-ups)
        // cost more than all of them (docs/performance.md, "Static files"). nginx does the
        // same without `aio threads`. A file on a slow disk holds this worker; the others go on.
        match self.answer(&below, &codings, &asked) {
            Ok(response) => response,
            Err(Missing::Directory) => {
                let location = match request.uri().query() {
                    Some(query) => format!("{path}/?{query}"),
                    None => format!("{path}/"),
                };
                let mut response = text_response(StatusCode::MOVED_PERMANENTLY, "");
                if let Ok(location) = HeaderValue::try_from(location) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                response
            }
            Err(Missing::NotFound) => text_response(StatusCode::NOT_FOUND, "404 Not Found\n"),
            Err(Missing::Forbidden(error)) => {
                tracing::warn!(path, "static file not readable: {error}");
                text_response(
                    StatusCode::FORBIDDEN,
                    "403 Forbidden: the file is not readable\n",
                )
            }
            Err(Missing::Failed(error)) => {
                tracing::warn!(path, "static file failed: {error}");
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 Internal Server Error: the file could not be read\n",
                )
            }
        }
    }

    /// The blocking part: finds the file and answers from it.
    fn answer(
        &self,
        below: &str,
        codings: &[Coding],
        asked: &Asked,
    ) -> Result<Response<FileBody>, Missing> {
        let found = self.root.find(&Lookup {
            path: below,
            dotfiles: self.dotfiles,
            fallback: self.fallback.as_deref(),
            codings,
        })?;
        answer::answer(found, asked, self.cache.as_ref()).map_err(Missing::Failed)
    }
}

fn max_age(age: Duration) -> HeaderValue {
    HeaderValue::try_from(format!("public, max-age={}", age.as_secs()))
        .expect("digits are a valid header value")
}

/// A response of `status` with a short `text/plain` body (empty: no `Content-Type`).
pub(super) fn text_response(status: StatusCode, text: &'static str) -> Response<FileBody> {
    let mut response = Response::new(FileBody::bytes(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    if !text.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}
