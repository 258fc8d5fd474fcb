//! Apps' output: pumps each line an app writes to stdout or stderr to zoo's own stdout or
//! stderr, shaped by `log::app_line` (`name | line`, or JSON), and keeps the last lines for
//! `zoo logs`. A line that never ends is cut at
//! [`MAX_LINE`] rather than buffered without bound, and a partial last line is flushed when
//! the pipe closes.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;

/// Longest line kept whole; longer ones are written in pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// The last lines an app wrote, for `zoo logs`: bounded in lines, never in the way of the
/// copy to zoo's own streams.
#[derive(Debug, Default)]
pub struct RecentLines {
    lines: Mutex<VecDeque<String>>,
}

impl RecentLines {
    /// Lines kept per app.
    pub const CAPACITY: usize = 1000;

    fn push(&self, line: &[u8]) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == Self::CAPACITY {
            lines.pop_front();
        }
        lines.push_back(String::from_utf8_lossy(line).into_owned());
    }

    /// The kept lines, oldest first.
    #[must_use]
    pub fn snapshot(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect()
    }
}

/// Copies the pipe `fd` to zoo's `stream`, line by line in the log format (`name | line` or
/// JSON), until EOF, keeping the last lines in `recent`.
pub async fn forward_lines(name: String, fd: OwnedFd, stream: Stream, recent: Arc<RecentLines>) {
    let receiver = match pipe::Receiver::from_owned_fd(fd) {
        Ok(receiver) => receiver,
        Err(error) => {
            tracing::warn!("{name}: cannot read its output: {error}");
            return;
        }
    };
    let mut reader = BufReader::with_capacity(MAX_LINE, receiver);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line).await {
            Ok(0) => return,
            Ok(_) => {
                let body = line.strip_suffix(b"\n").unwrap_or(&line);
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                recent.push(body);
                write_line(stream, &crate::log::app_line(&name, stream.name(), body));
            }
            Err(error) => {
                tracing::warn!("{name}: reading its output failed: {error}");
                return;
            }
        }
    }
}

/// Reads up to and including `\n`, or [`MAX_LINE`] bytes, whichever comes first.
async fn read_line_capped<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(line.len());
        }
        let room = MAX_LINE - line.len();
        let window = &available[..available.len().min(room)];
        let (taken, done) = match window.iter().position(|&byte| byte == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (window.len(), line.len() + window.len() == MAX_LINE),
        };
        line.extend_from_slice(&window[..taken]);
        reader.consume(taken);
        if done {
            return Ok(line.len());
        }
    }
}

fn write_line(stream: Stream, record: &[u8]) {
    // One write per line keeps lines of different apps from interleaving; a closed stdout
    // must not take the apps down, so the error is dropped.
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(record),
        Stream::Stderr => std::io::stderr().lock().write_all(record),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_lines_keep_only_the_last_ones() {
        let recent = RecentLines::default();
        for number in 0..RecentLines::CAPACITY + 5 {
            recent.push(format!("line {number}").as_bytes());
        }
        let lines = recent.snapshot();
        assert_eq!(lines.len(), RecentLines::CAPACITY);
        assert_eq!(lines[0], "line 5");
        assert_eq!(
            lines.last().unwrap(),
            &format!("line {}", RecentLines::CAPACITY + 4)
        );
    }

    async fn lines_of(input: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = BufReader::with_capacity(64, input);
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            if read_line_capped(&mut reader, &mut line).await.unwrap() == 0 {
                return lines;
            }
            lines.push(line);
        }
    }

    #[tokio::test]
    async fn lines_split_on_newline_and_keep_partial_last_line() {
        let lines = lines_of(b"one\ntwo\nthree").await;
        assert_eq!(lines, [&b"one\n"[..], b"two\n", b"three"]);
    }

    #[tokio::test]
    async fn endless_line_is_cut_at_the_cap() {
        let input = vec![b'x'; MAX_LINE * 2 + 5];
        let lines = lines_of(&input).await;
        let lengths: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(lengths, [MAX_LINE, MAX_LINE, 5]);
    }
}
