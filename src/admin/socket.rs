//! The control socket: where it lives, and binding it without harm. Its path is `$ZOO_SOCKET`,
//! else `zoo-HASH.sock` in the directory [`Location`] picks (`$XDG_RUNTIME_DIR`, `/run` when
//! writable, else `zoo-UID-HASH.sock` in the temp directory); HASH names the config file (its
//! canonical path), so that two zoos on one machine each have their own socket and the CLI
//! given a config reaches the zoo running that config.
//!
//! Binding never deletes what zoo did not make: only a stale *socket* (nobody accepts on it)
//! is replaced; a live one, or anything that is not a socket, is an error and zoo runs on
//! without a control socket. The socket is made `0600` whatever the umask; the moment between
//! bind and chmod grants nothing, because every connection's peer uid is checked
//! ([`super::auth::peer_allowed`]). At exit it is removed only if it is still the one zoo made.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::rundir::Location;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("control socket {}: another zoo is running there", path.display())]
    InUse { path: PathBuf },
    #[error("control socket {}: is {what}, not a socket: zoo will not replace it", path.display())]
    NotASocket { path: PathBuf, what: &'static str },
    #[error("control socket {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `$ZOO_SOCKET`, the explicit choice that overrides every default.
#[must_use]
pub fn explicit_path() -> Option<PathBuf> {
    std::env::var_os("ZOO_SOCKET")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The control socket of the zoo that runs `config`.
#[must_use]
pub fn default_path(config: &Path) -> PathBuf {
    if let Some(path) = explicit_path() {
        return path;
    }
    let location = Location::here();
    location
        .dir()
        .join(format!("{}.sock", location.name_of(config)))
}

/// The control socket zoo bound, with the identity of the file it made.
pub struct ControlSocket {
    listener: UnixListener,
    /// What [`SocketFile::remove`] may remove at exit: this file and no other.
    file: SocketFile,
}

/// The socket file zoo made, by path and inode, so that it removes that file and no other.
#[derive(Debug, Clone)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode right after bind: a file at `path` with others is not zoo's.
    device: u64,
    inode: u64,
}

/// Binds the control socket at `path`, `0600`, replacing a stale socket left by a zoo that
/// died, but never the socket of a zoo that is still running, nor anything that is not a
/// socket (never followed through a symlink).
///
/// # Errors
/// [`SocketError::InUse`] when a zoo accepts there, [`SocketError::NotASocket`] when the path
/// holds something else, [`SocketError::Bind`] when the system refuses.
pub fn bind(path: &Path) -> Result<ControlSocket, SocketError> {
    let bind_error = |source| SocketError::Bind {
        path: path.to_owned(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(found) if found.file_type().is_socket() => match StdUnixStream::connect(path) {
            Ok(_) => {
                return Err(SocketError::InUse {
                    path: path.to_owned(),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                fs::remove_file(path).map_err(bind_error)?;
            }
            Err(error) => return Err(bind_error(error)),
        },
        Ok(found) => {
            return Err(SocketError::NotASocket {
                path: path.to_owned(),
                what: describe(found.file_type()),
            });
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(bind_error(error)),
    }
    // bind(2) never replaces: if something appeared since the check, this fails with
    // EADDRINUSE and that something stays.
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    let made = fs::symlink_metadata(path).map_err(bind_error)?;
    // Someone who can write to the directory swapped the new socket for something else
    // between bind and here: serve nothing there, and remember nothing to remove.
    if !made.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_owned(),
            what: describe(made.file_type()),
        });
    }
    Ok(ControlSocket {
        listener,
        file: SocketFile {
            path: path.to_owned(),
            device: made.dev(),
            inode: made.ino(),
        },
    })
}

fn describe(kind: fs::FileType) -> &'static str {
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symlink"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

impl ControlSocket {
    /// What to remove at exit, kept by the caller while the listener is being served.
    #[must_use]
    pub fn file(&self) -> SocketFile {
        self.file.clone()
    }

    /// The next connection and its peer's uid (SO_PEERCRED, as the kernel saw it at connect).
    ///
    /// # Errors
    /// When accept fails or the peer's credentials cannot be read (the connection is closed).
    pub async fn accept(&self) -> io::Result<(UnixStream, u32)> {
        let (stream, _) = self.listener.accept().await?;
        let uid = stream.peer_cred()?.uid();
        Ok((stream, uid))
    }
}

impl SocketFile {
    /// Removes the socket file if it is still the one zoo made; someone else's file that took
    /// its place (after `rm`, a second zoo) is left alone.
    pub fn remove(&self) {
        let ours = fs::symlink_metadata(&self.path).is_ok_and(|now| {
            now.file_type().is_socket() && now.dev() == self.device && now.ino() == self.inode
        });
        if ours {
            let _ = fs::remove_file(&self.path);
        } else {
            tracing::debug!(
                "control socket {} is no longer the one zoo made: left in place",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[tokio::test]
    async fn bind_refuses_what_is_not_a_socket() {
        let dir = scratch();
        let file = dir.path().join("file");
        fs::write(&file, "keep me").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        for (path, what) in [
            (&file, "a regular file"),
            (&link, "a symlink"),
            (&dangling, "a symlink"),
            (&dir.path().to_owned(), "a directory"),
        ] {
            match bind(path) {
                Err(SocketError::NotASocket { what: found, .. }) => assert_eq!(found, what),
                other => panic!("{}: {:?}", path.display(), other.map(|_| ())),
            }
        }
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
        assert!(!dir.path().join("nowhere").exists());
    }

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_but_not_a_live_one() {
        let dir = scratch();
        let path = dir.path().join("zoo.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let socket = bind(&path).expect("a stale socket is replaced");
        assert!(matches!(bind(&path), Err(SocketError::InUse { .. })));
        let mode = fs::symlink_metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        socket.file().remove();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn remove_leaves_a_file_that_took_the_sockets_place() {
        let dir = scratch();
        let path = dir.path().join("zoo.sock");
        let socket = bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, "someone else's").unwrap();
        socket.file().remove();
        assert_eq!(fs::read_to_string(&path).unwrap(), "someone else's");
    }

    #[test]
    fn default_path_names_the_config() {
        let dir = scratch();
        let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        fs::write(&a, "").unwrap();
        fs::write(&b, "").unwrap();
        let alias = dir.path().join("sub/../a.toml");
        fs::create_dir(dir.path().join("sub")).unwrap();
        // Only when ZOO_SOCKET is unset; the test environment does not set it.
        if explicit_path().is_none() {
            assert_ne!(default_path(&a), default_path(&b));
            assert_eq!(default_path(&a), default_path(&alias));
            let name = default_path(&a);
            let name = name.file_name().unwrap().to_string_lossy();
            assert!(
                name.starts_with("zoo-") && name.ends_with(".sock"),
                "{name}"
            );
        }
    }
}
