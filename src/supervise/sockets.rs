//! The Unix sockets of apps with `socket = true`: where each instance's socket is (pure, at
//! plan time), and making way for it before each start: the app's private directory made or
//! checked, and a stale socket from an earlier run removed.
//!
//! The base directory is the one zoo's (`rundir`: `$ZOO_RUN`, else named after the config),
//! so a restarted zoo finds its own stale sockets and two zoos with different configs never
//! meet. Inside it, each app has `NAME/`, mode 0700 and owned by zoo's user: no other user
//! can connect to an app's socket or put another in its place. zoo never loosens or takes
//! over a directory it finds: one owned by another user, open to group or others, or a
//! symlink is refused with the reason (the start fails with 126), as is a base directory that
//! others could rename entries in. A socket file at an instance's path is removed only if it
//! is a socket that nothing accepts on; anything else there is refused, never deleted.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Permission bits for group and others.
const GROUP_OTHER: u32 = 0o077;
/// Write permission for group and others.
const GROUP_OTHER_WRITE: u32 = 0o022;
/// The sticky bit: in such a directory (`/tmp`) only an entry's owner may rename it.
const STICKY: u32 = 0o1000;

#[derive(Debug, thiserror::Error)]
#[error("app `{app}`: its socket {} is {len} bytes long, over the {MAX_SOCKET_PATH} a socket address holds: set ZOO_RUN to a shorter directory", path.display())]
pub struct SocketPathTooLong {
    pub app: String,
    pub path: PathBuf,
    pub len: usize,
}

/// Where instance `index` of the app `name` (of `replicas`) puts its socket under `base`:
/// `NAME/NAME.sock`, or `NAME/NAME.INDEX.sock` when it has (or had, once scaled) several.
///
/// # Errors
/// [`SocketPathTooLong`] when the path would not fit in a socket address.
pub fn socket_path(
    base: &Path,
    name: &str,
    index: usize,
    replicas: usize,
) -> Result<PathBuf, SocketPathTooLong> {
    let file = if replicas > 1 || index > 0 {
        format!("{name}.{index}.sock")
    } else {
        format!("{name}.sock")
    };
    let path = base.join(name).join(file);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(SocketPathTooLong {
            app: name.to_owned(),
            path,
            len,
        });
    }
    Ok(path)
}

/// Makes way for an app's socket at `path` (`BASE/NAME/FILE`): `BASE` and `NAME/` made if
/// missing and checked, a stale socket there removed. The error says why the app cannot be
/// started.
pub fn make_way(path: &Path) -> Result<(), String> {
    let app_dir = path
        .parent()
        .ok_or_else(|| format!("SOCKET {}: has no directory", path.display()))?;
    if let Some(base) = app_dir.parent() {
        make_dir(base)?;
        check_base(base)?;
    }
    make_dir(app_dir)?;
    check_private(app_dir)?;
    clear_stale(path)
}

/// Creates `dir` (and what is missing above it) with mode 0700; an existing one is left as
/// it is, for the checks to judge.
fn make_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| {
            format!(
                "cannot make the socket directory {}: {error}",
                dir.display()
            )
        })
}

/// The directory's own metadata (not a symlink's target), which must be a directory.
fn directory(dir: &Path) -> Result<fs::Metadata, String> {
    let found = fs::symlink_metadata(dir)
        .map_err(|error| format!("socket directory {}: {error}", dir.display()))?;
    if found.file_type().is_dir() {
        Ok(found)
    } else {
        Err(format!(
            "socket directory {} is not a directory (a symlink is not followed): move it away",
            dir.display()
        ))
    }
}

/// The base must not let another user rename an app's directory in it: owned by zoo's user or
/// root, and not writable by group or others unless sticky (as `/tmp` is).
fn check_base(base: &Path) -> Result<(), String> {
    let found = directory(base)?;
    let owner = found.uid();
    let mode = found.mode();
    if owner != nix::unistd::geteuid().as_raw() && owner != 0 {
        return Err(format!(
            "socket directory {} belongs to uid {owner}, not zoo's user: zoo will not use it",
            base.display()
        ));
    }
    if mode & GROUP_OTHER_WRITE != 0 && mode & STICKY == 0 {
        return Err(format!(
            "socket directory {} is writable by others (mode {:o}): zoo will not use it",
            base.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// An app's own directory: owned by zoo's user, no access for group or others.
fn check_private(dir: &Path) -> Result<(), String> {
    let found = directory(dir)?;
    let owner = found.uid();
    if owner != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "socket directory {} belongs to uid {owner}, not zoo's user: zoo will not use it",
            dir.display()
        ));
    }
    let mode = found.mode() & 0o7777;
    if mode & GROUP_OTHER != 0 {
        return Err(format!(
            "socket directory {} is mode {mode:o}: zoo uses only a private one (0700): \
             `chmod 700` it or remove it",
            dir.display()
        ));
    }
    // Only owner bits can be missing (a umask that took them): give them back, nothing more.
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|error| format!("socket directory {}: {error}", dir.display()))?;
    }
    Ok(())
}

/// A socket left by a previous run is removed (the app could not bind over it); one that a
/// process still accepts on, or anything that is not a socket, is refused, never deleted.
fn clear_stale(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(format!("SOCKET {}: {error}", path.display())),
        Ok(found) if found.file_type().is_socket() => {
            if crate::rundir::accepting(path) {
                return Err(format!(
                    "SOCKET {} is taken: a process accepts connections on it",
                    path.display()
                ));
            }
            fs::remove_file(path).map_err(|error| {
                format!("cannot remove the stale socket {}: {error}", path.display())
            })
        }
        Ok(_) => Err(format!(
            "SOCKET {} exists and is not a socket; zoo removes only sockets: move it away",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn socket_paths_name_the_instance_when_there_are_several() {
        let base = Path::new("/run/zoo-0123456789ab");
        assert_eq!(
            socket_path(base, "web", 0, 1).unwrap(),
            base.join("web/web.sock")
        );
        assert_eq!(
            socket_path(base, "web", 2, 3).unwrap(),
            base.join("web/web.2.sock")
        );
        let deep = Path::new("/tmp").join("d".repeat(100));
        assert!(socket_path(&deep, "web", 0, 1).is_err());
    }

    #[test]
    fn make_way_makes_private_directories_and_replaces_only_a_dead_socket() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("run/web/web.sock");
        make_way(&path).unwrap();
        assert_eq!(mode(&scratch.path().join("run/web")), 0o700);
        assert_eq!(mode(&scratch.path().join("run")), 0o700);

        // A socket nothing accepts on is stale: removed.
        drop(UnixListener::bind(&path).unwrap());
        make_way(&path).unwrap();
        assert!(!path.exists());

        // One a process accepts on is someone's: kept.
        let live = UnixListener::bind(&path).unwrap();
        let refused = make_way(&path).unwrap_err();
        assert!(refused.contains("a process accepts"), "{refused}");
        assert!(path.exists());
        drop(live);

        fs::remove_file(&path).unwrap();
        fs::write(&path, "keep").unwrap();
        let refused = make_way(&path).unwrap_err();
        assert!(refused.contains("is not a socket"), "{refused}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep");
    }

    #[test]
    fn make_way_refuses_directories_others_can_use() {
        let scratch = tempfile::tempdir().unwrap();
        let app_dir = scratch.path().join("web");
        fs::create_dir(&app_dir).unwrap();
        fs::set_permissions(&app_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let refused = make_way(&app_dir.join("web.sock")).unwrap_err();
        assert!(refused.contains("mode 755"), "{refused}");
        assert_eq!(
            mode(&app_dir),
            0o755,
            "not loosened or fixed behind the user's back"
        );

        // A symlink to a private directory is not followed.
        let elsewhere = scratch.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, scratch.path().join("api")).unwrap();
        let refused = make_way(&scratch.path().join("api/api.sock")).unwrap_err();
        assert!(refused.contains("not a directory"), "{refused}");

        // A base others may write to (and not sticky): an app's directory could be swapped.
        let open = scratch.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let refused = make_way(&open.join("web/web.sock")).unwrap_err();
        assert!(refused.contains("writable by others"), "{refused}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        make_way(&open.join("web/web.sock")).expect("a sticky base, like /tmp");
    }
}
