//! File-watch restarts for development (`watch`, `watch_ignore`): a change to a file matching
//! one of the app's globs (relative to its `dir`) restarts it by its `restart_strategy`.
//! Only changes count (created, written, renamed, removed), not reads: the app opening its own
//! sources must not restart it. Changes are debounced: a burst (a `git checkout` of 500
//! files, an editor's save dance) is one restart, sent once the burst has been quiet for
//! [`DEBOUNCE`]. `.git`, `node_modules`,
//! `__pycache__` and `.venv` are always ignored; `watch_ignore` adds to them.
//! inotify (through `notify`) watches the directory each glob starts in, recursively; when
//! the kernel's inotify limits are exhausted, zoo says so once and polls instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use notify::event::ModifyKind;
use notify::{Event, EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::runner::RunnerMessage;
use crate::config;

/// How long a burst of changes must be quiet before the app is restarted.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// How often the polling fallback looks at the files.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Never worth a restart: version control, dependencies, caches.
const ALWAYS_IGNORED: &[&str] = &[
    "**/.git/**",
    "**/node_modules/**",
    "**/__pycache__/**",
    "**/.venv/**",
];

#[derive(Debug, thiserror::Error)]
pub(super) enum WatchError {
    #[error("invalid glob \"{glob}\": {source}")]
    Glob {
        glob: String,
        #[source]
        source: globset::Error,
    },
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// The watcher behind a [`FileWatch`] (inotify, or polling once its limits are exhausted),
/// held only to keep watching: dropping it stops it.
type Backend = Box<dyn std::any::Any + Send>;

/// Watches one app's files while it lives; dropping it stops watching.
pub(super) struct FileWatch {
    _backend: Backend,
    /// Debounces the changes into one [`RunnerMessage::FilesChanged`] per burst.
    forwarder: JoinHandle<()>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

/// Starts watching `app`'s `watch` globs, telling its runner through `runner`; `None` when
/// it has none.
pub(super) fn start(
    app: &config::App,
    runner: mpsc::UnboundedSender<RunnerMessage>,
) -> Result<Option<FileWatch>, WatchError> {
    if app.watch.is_empty() {
        return Ok(None);
    }
    let root = app
        .dir
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let watched = glob_set(&root, &app.watch)?;
    let ignored_globs: Vec<String> = ALWAYS_IGNORED
        .iter()
        .map(|glob| (*glob).to_owned())
        .chain(app.watch_ignore.iter().cloned())
        .collect();
    let ignored = glob_set(&root, &ignored_globs)?;
    let (changes, changed) = mpsc::unbounded_channel();
    let filter_root = root.clone();
    let handler = move |event: notify::Result<Event>| {
        let Ok(event) = event else { return };
        if !is_change(&event.kind) {
            return;
        }
        for path in event.paths {
            let Ok(relative) = path.strip_prefix(&filter_root) else {
                continue;
            };
            if watched.is_match(relative) && !ignored.is_match(relative) {
                let _ = changes.send(relative.to_path_buf());
            }
        }
    };
    let roots = watch_roots(&root, &app.watch);
    let backend = watching::<RecommendedWatcher>(&roots, handler.clone(), notify::Config::default())
        .or_else(|error| {
        if !exhausted(&error) {
            return Err(error);
        }
        tracing::warn!(
            "{}: inotify limits exhausted ({}); watching its files by polling every {POLL_INTERVAL:?} \
             instead (raise fs.inotify.max_user_watches or max_user_instances to avoid it)",
            app.name,
            watch_cause(&error)
        );
        let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
        watching::<PollWatcher>(&roots, handler, config)
    })?;
    let forwarder = tokio::spawn(forward(app.name.clone(), changed, runner));
    Ok(Some(FileWatch {
        _backend: backend,
        forwarder,
    }))
}

/// Whether an event changed a file: created, written, renamed or removed; not opened, read
/// or touched in its metadata.
fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
    )
}

/// Starts a watcher of type `W` (inotify, or polling) on `roots`.
fn watching<W: Watcher + Send + 'static>(
    roots: &[PathBuf],
    handler: impl Fn(notify::Result<Event>) + Send + 'static,
    config: notify::Config,
) -> Result<Backend, WatchError> {
    let mut watcher = W::new(handler, config).map_err(|source| WatchError::Watch {
        path: roots.first().cloned().unwrap_or_default(),
        source,
    })?;
    add_roots(&mut watcher, roots)?;
    Ok(Box::new(watcher))
}

fn add_roots(watcher: &mut dyn Watcher, roots: &[PathBuf]) -> Result<(), WatchError> {
    for root in roots {
        watcher
            .watch(root, RecursiveMode::Recursive)
            .map_err(|source| WatchError::Watch {
                path: root.clone(),
                source,
            })?;
    }
    Ok(())
}

/// Whether watching failed for want of inotify watches or instances (ENOSPC, EMFILE).
fn exhausted(error: &WatchError) -> bool {
    let WatchError::Watch { source, .. } = error else {
        return false;
    };
    match &source.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => matches!(io.raw_os_error(), Some(28 | 24)),
        _ => false,
    }
}

fn watch_cause(error: &WatchError) -> String {
    match error {
        WatchError::Watch { source, .. } => source.to_string(),
        WatchError::Glob { .. } => error.to_string(),
    }
}

/// A glob as written, made to match what it means: `templates/` (or a directory named
/// without a glob) is everything under it.
fn normalized(root: &Path, glob: &str) -> String {
    let glob = glob.strip_prefix("./").unwrap_or(glob);
    if glob.ends_with('/') {
        format!("{glob}**")
    } else if !glob.contains(['*', '?', '[', '{']) && root.join(glob).is_dir() {
        format!("{glob}/**")
    } else {
        glob.to_owned()
    }
}

/// The globs, `*` not crossing `/` (so `src/*.py` is not `src/a/b.py`; `**` is).
fn glob_set(root: &Path, globs: &[String]) -> Result<GlobSet, WatchError> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        let built = GlobBuilder::new(&normalized(root, glob))
            .literal_separator(true)
            .build()
            .map_err(|source| WatchError::Glob {
                glob: glob.clone(),
                source,
            })?;
        set.add(built);
    }
    set.build().map_err(|source| WatchError::Glob {
        glob: globs.join(", "),
        source,
    })
}

/// The directories to watch: where each glob's literal part ends (`src` for `src/**/*.py`),
/// the nearest existing one, and none inside another.
fn watch_roots(root: &Path, globs: &[String]) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = globs
        .iter()
        .map(|glob| {
            let literal: PathBuf = Path::new(glob.strip_prefix("./").unwrap_or(glob))
                .components()
                .take_while(|part| {
                    !part
                        .as_os_str()
                        .to_string_lossy()
                        .contains(['*', '?', '[', '{'])
                })
                .collect();
            let mut dir = root.join(literal);
            while !dir.is_dir() && dir != root {
                dir.pop();
            }
            dir
        })
        .collect();
    roots.sort();
    roots.dedup();
    let all = roots.clone();
    roots.retain(|dir| {
        !all.iter()
            .any(|other| other != dir && dir.starts_with(other))
    });
    roots
}

/// Waits for a change, then for the burst to be quiet for [`DEBOUNCE`], then tells the
/// runner once; until the runner or the watcher is gone.
async fn forward(
    app: String,
    mut changed: mpsc::UnboundedReceiver<PathBuf>,
    runner: mpsc::UnboundedSender<RunnerMessage>,
) {
    while let Some(first) = changed.recv().await {
        // A file is counted once however many events its save made.
        let mut files = std::collections::HashSet::from([first.clone()]);
        loop {
            match tokio::time::timeout(DEBOUNCE, changed.recv()).await {
                Ok(Some(path)) => {
                    files.insert(path);
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let more = if files.len() > 1 {
            format!(" and {} more", files.len() - 1)
        } else {
            String::new()
        };
        tracing::info!("{app}: {} changed{more}: restarting it", first.display());
        if runner.send(RunnerMessage::FilesChanged).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(globs: &[&str], path: &str) -> bool {
        let root = std::env::temp_dir();
        let globs: Vec<String> = globs.iter().map(|glob| (*glob).to_owned()).collect();
        glob_set(&root, &globs).unwrap().is_match(path)
    }

    #[test]
    fn globs_match_relative_paths_with_star_inside_one_directory() {
        assert!(matches(&["src/**/*.py"], "src/app.py"));
        assert!(matches(&["src/**/*.py"], "src/a/b/app.py"));
        assert!(!matches(&["src/**/*.py"], "src/app.js"));
        assert!(matches(&["*.py"], "main.py"));
        assert!(!matches(&["*.py"], "lib/main.py"));
        assert!(matches(&["templates/"], "templates/base/index.html"));
        assert!(matches(ALWAYS_IGNORED, "node_modules/x/index.js"));
        assert!(matches(
            ALWAYS_IGNORED,
            "src/__pycache__/app.cpython-311.pyc"
        ));
        assert!(matches(ALWAYS_IGNORED, ".git/HEAD"));
        assert!(!matches(ALWAYS_IGNORED, "src/app.py"));
    }

    #[test]
    fn each_glob_is_watched_from_where_its_literal_part_ends() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("src/app")).unwrap();
        std::fs::create_dir_all(root.path().join("templates")).unwrap();
        let globs = [
            "src/**/*.py",
            "src/app/*.toml",
            "templates/",
            "missing/*.txt",
        ]
        .map(str::to_owned);
        assert_eq!(
            watch_roots(root.path(), &globs),
            [root.path().to_path_buf(),],
            "missing/ falls back to the root, which holds the others"
        );
        let globs = ["src/**/*.py", "templates/"].map(str::to_owned);
        assert_eq!(
            watch_roots(root.path(), &globs),
            [root.path().join("src"), root.path().join("templates")]
        );
    }

    #[test]
    fn only_changes_count_not_reads() {
        use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, RenameMode};
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Content
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Read)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
    }

    #[test]
    fn exhausted_inotify_is_told_apart_from_other_failures() {
        let watch = |source| WatchError::Watch {
            path: PathBuf::from("/app"),
            source,
        };
        assert!(exhausted(&watch(notify::Error::new(
            notify::ErrorKind::MaxFilesWatch
        ))));
        assert!(exhausted(&watch(notify::Error::io(
            std::io::Error::from_raw_os_error(28)
        ))));
        assert!(!exhausted(&watch(notify::Error::path_not_found())));
    }
}
