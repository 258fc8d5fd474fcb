//! Where zoo keeps the files of one running zoo: its control socket and its apps' Unix
//! sockets. Both are named after the config file (its canonical path, hashed), so that two
//! zoos on one machine never share one, and a zoo restarted with the same config finds (and
//! replaces) its own stale files and no other zoo's. The directory is `$XDG_RUNTIME_DIR`,
//! else `/run` when it is writable (root in a container), else the temporary directory, where
//! names carry the uid too so that users never collide. Pure path logic: nothing here creates
//! or removes a file.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, Uid, access};
use ring::digest;

/// Hex digits of the config's SHA-256 in a name: 48 bits make a collision between two configs
/// on one machine vanishingly unlikely, and keep socket paths far below the 108-byte limit of
/// a socket address.
const HASH_DIGITS: usize = 12;

/// The directory of the apps' sockets of the zoo that runs `config`: `$ZOO_RUN` when set (the
/// explicit choice: that zoo's own directory), else `zoo-HASH` beside its control socket
/// (`zoo-UID-HASH` in the temporary directory).
#[must_use]
pub fn app_sockets_base(config: &Path) -> PathBuf {
    if let Some(explicit) = std::env::var_os("ZOO_RUN").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(explicit);
    }
    let location = Location::here();
    location.dir.join(location.name_of(config))
}

/// The absolute path of `config` with symlinks resolved (as given, made absolute, when it
/// cannot be resolved): what names a zoo, however its config was spelt on the command line.
#[must_use]
pub fn canonical_config(config: &Path) -> PathBuf {
    fs::canonicalize(config)
        .or_else(|_| std::path::absolute(config))
        .unwrap_or_else(|_| config.to_owned())
}

/// Whether a zoo (or anything) accepts connections on the socket at `path` now.
#[must_use]
pub fn accepting(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// Where the files of zoos live when `ZOO_SOCKET` and `ZOO_RUN` are unset, and how their names
/// start there.
pub struct Location {
    /// `$XDG_RUNTIME_DIR`, `/run` or the temp directory.
    dir: PathBuf,
    /// `zoo-`, or `zoo-UID-` in the shared temp directory so that users never collide.
    prefix: String,
}

impl Location {
    #[must_use]
    pub fn here() -> Location {
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
            return Location {
                dir: PathBuf::from(dir),
                prefix: "zoo-".to_owned(),
            };
        }
        let run = Path::new("/run");
        if access(run, AccessFlags::W_OK).is_ok() {
            return Location {
                dir: run.to_owned(),
                prefix: "zoo-".to_owned(),
            };
        }
        Location {
            dir: std::env::temp_dir(),
            prefix: format!("zoo-{}-", Uid::current()),
        }
    }

    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `PREFIX` + the hash of `config`'s canonical path: the name of that zoo's files here.
    #[must_use]
    pub fn name_of(&self, config: &Path) -> String {
        let hash = digest::digest(
            &digest::SHA256,
            canonical_config(config).as_os_str().as_encoded_bytes(),
        );
        let hex: String = hash
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("{}{}", self.prefix, &hex[..HASH_DIGITS])
    }

    /// The control sockets here that a zoo accepts on, sorted: what the CLI picks from when it
    /// was not told which config (so which zoo) it is about.
    #[must_use]
    pub fn live_sockets(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut live: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with(&self.prefix)
                    && name.ends_with(".sock")
                    && entry.file_type().is_ok_and(|kind| kind.is_socket())
            })
            .map(|entry| entry.path())
            .filter(|path| accepting(path))
            .collect();
        live.sort();
        live
    }
}
