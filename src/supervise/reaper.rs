//! The one reaper: a `waitpid(-1, WNOHANG)` loop driven by SIGCHLD that owns every exit status
//! of every child of zoo, including orphans reparented to it (as PID 1 or as a child
//! subreaper). Statuses of processes zoo spawned are handed to whoever spawned them; the
//! others are reaped and logged. Nothing else in zoo may call `wait`: spawning goes through
//! [`Reaper::spawn`], which holds the same lock as the reaping loop so that a child cannot be
//! reaped before its pid is registered.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention tini and Docker use: the code, or 128 + the signal number.
    #[must_use]
    pub fn as_code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(signal) => 128 + signal,
        }
    }

    #[must_use]
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(name) => write!(f, "signal {signal} ({name})"),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

/// Owns the reaping of all children; see the module doc.
#[derive(Debug)]
pub struct Reaper {
    /// Children spawned through [`Reaper::spawn`] whose exit nobody has collected yet.
    waiting: Mutex<HashMap<Pid, oneshot::Sender<ExitStatus>>>,
}

impl Reaper {
    /// Becomes a child subreaper (unless already PID 1) and starts the reaping loop. Must run
    /// inside a tokio runtime, before the first child is spawned.
    pub fn start() -> io::Result<Arc<Self>> {
        become_subreaper();
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Arc::new(Self {
            waiting: Mutex::new(HashMap::new()),
        });
        let looping = Arc::clone(&reaper);
        tokio::spawn(async move {
            loop {
                looping.reap_all();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `command` and returns the child (for its pipes) and a receiver of its exit
    /// status. Never call `wait` on the returned child.
    pub fn spawn(
        &self,
        command: &mut Command,
    ) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiting = self.lock();
        let child = command.spawn()?;
        let (sender, receiver) = oneshot::channel();
        #[allow(clippy::cast_possible_wrap)]
        waiting.insert(Pid::from_raw(child.id() as i32), sender);
        Ok((child, receiver))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Pid, oneshot::Sender<ExitStatus>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Collects every exited child; SIGCHLD coalesces, so one signal may stand for many exits.
    fn reap_all(&self) {
        loop {
            let mut waiting = self.lock();
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid, ExitStatus::Signal(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(error) => {
                    tracing::warn!("waitpid failed: {error}");
                    return;
                }
            };
            match waiting.remove(&pid) {
                // The receiver may be gone when its app task ended first; nothing to tell then.
                Some(sender) => drop(sender.send(status)),
                None => tracing::debug!("reaped orphan {pid}: {status}"),
            }
        }
    }
}

/// Orphans of the apps are reparented to the nearest subreaper; making zoo one means it reaps
/// them even when it is not PID 1 (tini's `-s`).
fn become_subreaper() {
    if std::process::id() == 1 {
        return;
    }
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(
            "zoo is not PID 1 and could not become a child subreaper ({error}): orphaned grandchildren of the apps will not be reaped by zoo"
        );
    }
}
