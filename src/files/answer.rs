//! The response for a file found: its validators (a strong `ETag` from inode, size and
//! modification time; `Last-Modified`), the preconditions of RFC 9110 13.2.2 in their order
//! (`If-Match`, `If-Unmodified-Since` -> 412; `If-None-Match`, `If-Modified-Since` -> 304),
//! one byte range (206, or 416 when unsatisfiable; several ranges get the whole file, 200),
//! and the headers. Reads the first chunk of the body here, so that a small file is answered
//! in one go.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::body::{FileBody, read_chunk};
use super::open::Found;
use super::{Asked, text_response};
use crate::compress;

/// Up to this much of the body is read with the lookup, so a small file is one answer.
const FIRST_READ: u64 = 64 * 1024;

/// What the file's current version is known by.
struct Validators {
    etag: String,
    /// Whole seconds, as `Last-Modified` and the dates compared with it carry no more.
    modified: SystemTime,
}

impl Validators {
    fn of(metadata: &std::fs::Metadata) -> Self {
        let nanos = metadata.mtime_nsec().unsigned_abs();
        let seconds = metadata.mtime().unsigned_abs();
        let etag = format!(
            "\"{:x}-{:x}-{:x}\"",
            metadata.ino(),
            metadata.size(),
            u128::from(seconds) * 1_000_000_000 + u128::from(nanos)
        );
        let modified = if metadata.mtime() >= 0 {
            UNIX_EPOCH + Duration::from_secs(seconds)
        } else {
            UNIX_EPOCH
        };
        Self { etag, modified }
    }

    /// Strong comparison (If-Match, If-Range): a weak tag never matches.
    fn strong_match(&self, list: &HeaderValue) -> bool {
        tags(list).any(|tag| tag == "*" || tag == self.etag)
    }

    /// Weak comparison (If-None-Match): `W/"x"` matches `"x"`.
    fn weak_match(&self, list: &HeaderValue) -> bool {
        tags(list).any(|tag| tag == "*" || tag.trim_start_matches("W/") == self.etag)
    }

    fn modified_after(&self, date: &HeaderValue) -> Option<bool> {
        let date = httpdate::parse_http_date(date.to_str().ok()?).ok()?;
        Some(self.modified > date)
    }
}

fn tags(list: &HeaderValue) -> impl Iterator<Item = &str> {
    list.to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
}

/// The answer for `found`: 200, 206, 304, 412 or 416 with its headers, and the body unless
/// `HEAD`.
pub(super) fn answer(
    found: Found,
    asked: &Asked,
    cache: Option<&HeaderValue>,
) -> io::Result<Response<FileBody>> {
    let validators = Validators::of(&found.metadata);
    let size = found.metadata.size();
    let mut headers = HeaderMap::new();
    let etag = HeaderValue::try_from(validators.etag.as_str()).map_err(io::Error::other)?;
    headers.insert(header::ETAG, etag);
    headers.insert(
        header::LAST_MODIFIED,
        HeaderValue::try_from(httpdate::fmt_http_date(validators.modified))
            .map_err(io::Error::other)?,
    );
    let cache_control = if found.fallback {
        Some(HeaderValue::from_static("no-cache"))
    } else {
        cache.cloned()
    };
    if let Some(cache_control) = cache_control {
        headers.insert(header::CACHE_CONTROL, cache_control);
    }
    let content_type = content_type(&found.name);
    if let Some(coding) = found.coding {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.as_str()),
        );
    }
    if compress::compressible(content_type.to_str().unwrap_or("")) {
        // A sibling may answer another client differently; caches must key on it.
        compress::add_vary(&mut headers);
    }

    if let Some(status) = precondition_failed(&validators, asked) {
        let mut response = text_response(status, "");
        if status == StatusCode::NOT_MODIFIED {
            response.headers_mut().extend(headers);
        }
        return Ok(response);
    }

    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, start, length) = match range(&validators, asked, size) {
        Ranged::Whole => (StatusCode::OK, 0, size),
        Ranged::Part { start, end } => {
            let content_range = format!("bytes {start}-{end}/{size}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::try_from(content_range).map_err(io::Error::other)?,
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Ranged::Unsatisfiable => {
            let mut response = text_response(StatusCode::RANGE_NOT_SATISFIABLE, "");
            let content_range =
                HeaderValue::try_from(format!("bytes */{size}")).map_err(io::Error::other)?;
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, content_range);
            return Ok(response);
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let body = if asked.head {
        FileBody::empty()
    } else {
        first_chunk(found.file, start, length)?
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The status the preconditions answer with instead of the file, in RFC 9110's order.
fn precondition_failed(validators: &Validators, asked: &Asked) -> Option<StatusCode> {
    if let Some(list) = &asked.if_match {
        if !validators.strong_match(list) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let Some(date) = &asked.if_unmodified_since
        && validators.modified_after(date) == Some(true)
    {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    if let Some(list) = &asked.if_none_match {
        if validators.weak_match(list) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    } else if let Some(date) = &asked.if_modified_since
        && validators.modified_after(date) == Some(false)
    {
        return Some(StatusCode::NOT_MODIFIED);
    }
    None
}

enum Ranged {
    Whole,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// The one range asked for, if it applies: a bad or multiple `Range`, or an `If-Range` that
/// does not match the current version, gets the whole file.
fn range(validators: &Validators, asked: &Asked, size: u64) -> Ranged {
    let Some(text) = asked.range.as_ref().and_then(|range| range.to_str().ok()) else {
        return Ranged::Whole;
    };
    if let Some(if_range) = &asked.if_range {
        let current = if if_range.as_bytes().starts_with(b"\"") {
            validators.strong_match(if_range)
        } else {
            // A date validates only when it is exactly the file's `Last-Modified`.
            httpdate::parse_http_date(if_range.to_str().unwrap_or(""))
                .is_ok_and(|date| date == validators.modified)
        };
        if !current {
            return Ranged::Whole;
        }
    }
    let Ok(parsed) = http_range_header::parse_range_header(text) else {
        return Ranged::Whole;
    };
    match parsed.validate(size).as_deref() {
        Ok([only]) => Ranged::Part {
            start: *only.start(),
            end: *only.end(),
        },
        Err(http_range_header::RangeUnsatisfiableError::Unsatisfiable) => Ranged::Unsatisfiable,
        // Several ranges (no multipart/byteranges), none of an empty file, or refused ones.
        _ => Ranged::Whole,
    }
}

/// The body: up to [`FIRST_READ`] bytes read now, the rest streamed from the file.
fn first_chunk(mut file: File, start: u64, length: u64) -> io::Result<FileBody> {
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    let first = read_chunk(&mut file, length.min(FIRST_READ))?;
    let remaining = length - first.len() as u64;
    Ok(FileBody::file(first, file, remaining))
}

/// From the extension (the MIME table of `mime_guess`), with `charset=utf-8` for text.
fn content_type(name: &std::path::Path) -> HeaderValue {
    let essence = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let texty = essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    if texty {
        HeaderValue::try_from(format!("{essence}; charset=utf-8"))
            .unwrap_or(HeaderValue::from_static("application/octet-stream"))
    } else {
        HeaderValue::from_static(essence)
    }
}
