//! Where the control socket lives, so that `zoo status` finds the running zoo without flags:
//! `$ZOO_SOCKET`, else `$XDG_RUNTIME_DIR/zoo.sock`, else `/run/zoo.sock` when `/run` is
//! writable (root in a container), else `zoo-UID.sock` in the temp directory.

use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, Uid, access};
use tokio::net::UnixListener;

#[must_use]
pub fn default_path() -> PathBuf {
    if let Some(path) = std::env::var_os("ZOO_SOCKET").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        return Path::new(&dir).join("zoo.sock");
    }
    let run = Path::new("/run");
    if access(run, AccessFlags::W_OK).is_ok() {
        return run.join("zoo.sock");
    }
    std::env::temp_dir().join(format!("zoo-{}.sock", Uid::current()))
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("control socket {}: another zoo is running there", path.display())]
    InUse { path: PathBuf },
    #[error("control socket {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds the control socket at `path`, replacing a stale file left by a zoo that died, but
/// never the socket of a zoo that is still running.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let bind_error = |source| SocketError::Bind {
        path: path.to_owned(),
        source,
    };
    match UnixListener::bind(path) {
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
            if StdUnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(bind_error)?;
            UnixListener::bind(path).map_err(bind_error)
        }
        bound => bound.map_err(bind_error),
    }
}
