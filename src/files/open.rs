//! From a request path to an open file under the root: percent-decoding, the dotfile rule,
//! resolution that cannot leave the root, a directory's `index.html`, the `fallback`, and the
//! precompressed sibling (`.zst`, `.br`, `.gz`) the client accepts.
//!
//! Every file is opened relative to the root's directory handle with `openat2(2)` and
//! `RESOLVE_BENEATH`, so neither a `..` nor a symlink can reach outside it (symlinks inside it
//! are followed), unless `follow_symlinks` is set. Where `openat2` is refused (kernels before
//! 5.6, some seccomp profiles), the path is resolved with `realpath` and checked to be inside
//! the canonical root before it is opened. Blocking calls, made on the worker thread (mod.rs says why).

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::compress;
use crate::config::Coding;

/// The root directory a `static` route serves, opened once when the runtime is built.
pub(super) struct Root {
    /// The directory itself: every lookup starts here, so a rename of its path later does not
    /// redirect lookups elsewhere.
    pub(super) dir: File,
    /// Its canonical path, for the `realpath` check where `openat2` is unavailable.
    pub(super) canonical: PathBuf,
    pub(super) follow_symlinks: bool,
}

/// A file found for a request.
pub(super) struct Found {
    pub(super) file: File,
    pub(super) metadata: Metadata,
    /// The name its `Content-Type` comes from (the original's, for a sibling).
    pub(super) name: PathBuf,
    /// The coding of the precompressed sibling served instead of the original, if one was.
    pub(super) coding: Option<Coding>,
    /// It is the `fallback`, answered for a missing path.
    pub(super) fallback: bool,
}

/// Why no file answers a path.
pub(super) enum Missing {
    /// Nothing there, a dotfile, a path that would leave the root, or not a regular file.
    NotFound,
    /// A directory asked for without its trailing `/`: redirect to it.
    Directory,
    /// There, but zoo may not read it.
    Forbidden(io::Error),
    /// Reading the file system failed otherwise.
    Failed(io::Error),
}

/// What the request asks of the file system.
pub(super) struct Lookup<'a> {
    /// The path below the root, as normalised by the router (percent-escapes still in).
    pub(super) path: &'a str,
    pub(super) dotfiles: bool,
    pub(super) fallback: Option<&'a str>,
    /// Codings of siblings to try, best first (empty: the client accepts none).
    pub(super) codings: &'a [Coding],
}

impl Root {
    pub(super) fn open(root: &Path, follow_symlinks: bool) -> io::Result<Self> {
        let canonical = root.canonicalize()?;
        let dir = File::open(&canonical)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Self {
            dir,
            canonical,
            follow_symlinks,
        })
    }

    pub(super) fn find(&self, lookup: &Lookup<'_>) -> Result<Found, Missing> {
        let relative = decode(lookup.path, lookup.dotfiles).ok_or(Missing::NotFound)?;
        let asked_directory = lookup.path.ends_with('/') || relative.as_os_str().is_empty();
        match self.regular_or_index(&relative, asked_directory, lookup.codings) {
            Err(Missing::NotFound) => {}
            found => return found,
        }
        let extensionless = relative
            .file_name()
            .is_none_or(|name| !name.as_encoded_bytes().contains(&b'.'));
        match lookup.fallback {
            Some(fallback) if extensionless => {
                let mut found = self.regular(Path::new(fallback), lookup.codings)?;
                found.fallback = true;
                Ok(found)
            }
            _ => Err(Missing::NotFound),
        }
    }

    /// The file at `relative`, or a directory's `index.html` when the path ended in `/`.
    fn regular_or_index(
        &self,
        relative: &Path,
        asked_directory: bool,
        codings: &[Coding],
    ) -> Result<Found, Missing> {
        let file = self.open_beneath(relative)?;
        let metadata = file.metadata().map_err(classify)?;
        if metadata.is_dir() {
            if !asked_directory {
                return Err(Missing::Directory);
            }
            return self.regular(&relative.join("index.html"), codings);
        }
        if !metadata.is_file() {
            return Err(Missing::NotFound);
        }
        Ok(self.with_sibling(relative, file, metadata, codings))
    }

    /// The regular file at `relative` (or its sibling); a directory there is not found.
    fn regular(&self, relative: &Path, codings: &[Coding]) -> Result<Found, Missing> {
        let file = self.open_beneath(relative)?;
        let metadata = file.metadata().map_err(classify)?;
        if !metadata.is_file() {
            return Err(Missing::NotFound);
        }
        Ok(self.with_sibling(relative, file, metadata, codings))
    }

    /// `relative` itself, or the first of its precompressed siblings that exists.
    fn with_sibling(
        &self,
        relative: &Path,
        file: File,
        metadata: Metadata,
        codings: &[Coding],
    ) -> Found {
        // Only what compression would help has siblings worth looking for.
        let compressible =
            compress::compressible(mime_guess::from_path(relative).first_raw().unwrap_or(""));
        for coding in codings.iter().filter(|_| compressible) {
            let mut name = relative.as_os_str().to_owned();
            name.push(sibling_extension(*coding));
            let Ok(sibling) = self.open_beneath(Path::new(&name)) else {
                continue;
            };
            if let Ok(sibling_metadata) = sibling.metadata()
                && sibling_metadata.is_file()
            {
                return Found {
                    file: sibling,
                    metadata: sibling_metadata,
                    name: relative.to_path_buf(),
                    coding: Some(*coding),
                    fallback: false,
                };
            }
        }
        Found {
            file,
            metadata,
            name: relative.to_path_buf(),
            coding: None,
            fallback: false,
        }
    }

    /// Opens `relative` for reading without leaving the root (unless `follow_symlinks`).
    fn open_beneath(&self, relative: &Path) -> Result<File, Missing> {
        let target = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let resolve = if self.follow_symlinks {
            ResolveFlag::empty()
        } else {
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
        };
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .resolve(resolve);
        match openat2(self.dir.as_fd(), target, how) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::ENOSYS | Errno::EPERM) => self.open_checked(target),
            Err(errno) => Err(classify(io::Error::from(errno))),
        }
    }

    /// Without `openat2`: the path resolved by `realpath` must lie inside the root.
    fn open_checked(&self, relative: &Path) -> Result<File, Missing> {
        let resolved = self
            .canonical
            .join(relative)
            .canonicalize()
            .map_err(classify)?;
        if !self.follow_symlinks && !resolved.starts_with(&self.canonical) {
            return Err(Missing::NotFound);
        }
        File::open(resolved).map_err(classify)
    }
}

fn sibling_extension(coding: Coding) -> &'static str {
    match coding {
        Coding::Zstd => ".zst",
        Coding::Br => ".br",
        Coding::Gzip => ".gz",
    }
}

/// Sorts an open or stat failure into what the client is told.
fn classify(error: io::Error) -> Missing {
    match error.raw_os_error().map(Errno::from_raw) {
        // Not there, a file used as a directory, or a path that would leave the root.
        Some(
            Errno::ENOENT | Errno::ENOTDIR | Errno::EXDEV | Errno::ELOOP | Errno::ENAMETOOLONG,
        ) => Missing::NotFound,
        Some(Errno::EACCES) => Missing::Forbidden(error),
        _ => Missing::Failed(error),
    }
}

/// The path below the root as a relative file name: percent-escapes decoded, every segment
/// a normal name. `None` (so 404) for a decoded `/` or NUL, a `.`/`..` segment, and, unless
/// `dotfiles`, any segment starting with `.`.
fn decode(path: &str, dotfiles: bool) -> Option<PathBuf> {
    let mut bytes = Vec::with_capacity(path.len());
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        let start = bytes.len();
        if start > 0 {
            bytes.push(b'/');
        }
        let mut raw = segment.bytes();
        while let Some(byte) = raw.next() {
            let byte = if byte == b'%' {
                let high = hex(raw.next()?)?;
                let low = hex(raw.next()?)?;
                high << 4 | low
            } else {
                byte
            };
            if byte == b'/' || byte == 0 {
                return None;
            }
            bytes.push(byte);
        }
        let name = &bytes[start + usize::from(start > 0)..];
        if name == b"." || name == b".." || (!dotfiles && name.starts_with(b".")) {
            return None;
        }
    }
    let relative = PathBuf::from(OsString::from_vec(bytes));
    relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)))
        .then_some(relative)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_keeps_plain_names_and_decodes_escapes() {
        assert_eq!(
            decode("/a/b%20c.txt", false),
            Some(PathBuf::from("a/b c.txt"))
        );
        assert_eq!(decode("/", false), Some(PathBuf::new()));
        assert_eq!(decode("/dir/", false), Some(PathBuf::from("dir")));
    }

    #[test]
    fn decode_refuses_what_could_leave_the_root_or_hide_a_dotfile() {
        assert_eq!(decode("/..%2Fetc/passwd", false), None);
        assert_eq!(decode("/a%2Fb", true), None);
        assert_eq!(decode("/a%00b", true), None);
        assert_eq!(decode("/%2e%2e/x", true), None);
        assert_eq!(decode("/.env", false), None);
        assert_eq!(decode("/.git/config", false), None);
        assert_eq!(decode("/.env", true), Some(PathBuf::from(".env")));
        assert_eq!(decode("/bad%zz", false), None);
    }
}
