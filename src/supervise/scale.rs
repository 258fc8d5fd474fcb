//! Changing how many instances of an app serve, and restarting them without a gap: a
//! rolling `zoo restart` (one instance at a time, the next only once the one before is ready
//! again), and scaling to N instances (`zoo scale`, or a reload that changes `replicas`):
//! new instances join the balancing once ready; removed ones get no new requests, finish
//! those in flight within their grace, then stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::runner::{COMMAND_GRACE, RunnerMessage};
use super::state::Tracked;
use super::{AppCommand, AppKind, SuperviseError, SupervisorHandle, config, instance_place};

/// How often a roll looks whether the restarted instance is ready again.
const ROLL_POLL: Duration = Duration::from_millis(20);

/// Restarts the instances of `tracked` (one app's, by index) one after the other, each once
/// the one before is ready again on its new process, so that all but one keep serving (all
/// of them, with `restart_strategy = "replace"`). An instance that does not get ready within
/// its grace and readiness deadline is left to its runner, and the roll goes on.
pub(super) async fn roll(app: config::App, tracked: Vec<Arc<Tracked>>) {
    let group = match tracked.first() {
        Some(first) => Arc::clone(&first.app),
        None => return,
    };
    let _one_roll = group.rolling.lock().await;
    let total = tracked.len();
    let patience = app.stop.grace.unwrap_or(COMMAND_GRACE) + app.ready.deadline;
    for (done, instance) in tracked.iter().enumerate() {
        let before = instance.progress().pid;
        if instance
            .controls
            .send(RunnerMessage::App(AppCommand::Restart))
            .is_err()
        {
            continue;
        }
        let deadline = crate::deadline::after(patience);
        loop {
            let now = instance.progress().pid;
            if instance.instance.is_ready() && now.is_some() && now != before {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "{}: instance {} not ready again within {patience:?}; going on",
                    app.name,
                    instance.instance.index
                );
                break;
            }
            tokio::time::sleep(ROLL_POLL).await;
        }
        let ready = tracked.iter().filter(|t| t.instance.is_ready()).count();
        tracing::info!(
            "{}: rolling restart {}/{total} done; {ready} of {total} instances ready",
            app.name,
            done + 1
        );
    }
}

impl SupervisorHandle {
    /// Runs `replicas` instances of app `name`: new ones are started and join the balancing
    /// once ready (this waits for that, up to their readiness deadline); removed ones (the
    /// highest indices) get no new requests at once, finish those in flight within their
    /// grace, then stop (this waits for that too).
    ///
    /// # Errors
    /// [`SuperviseError::UnknownApp`], [`SuperviseError::BadScale`] outside 1 to
    /// [`config::MAX_REPLICAS`], [`SuperviseError::NotScalable`] for a task or cron job,
    /// [`SuperviseError::Gone`] once zoo is stopping, [`SuperviseError::NoFreePort`].
    pub async fn scale(&self, name: &str, replicas: usize) -> Result<(), SuperviseError> {
        if !(1..=config::MAX_REPLICAS).contains(&replicas) {
            return Err(SuperviseError::BadScale {
                app: name.to_owned(),
                replicas,
            });
        }
        let (app, added, removed) = {
            let mut apps = self.registry.lock();
            if apps.closed {
                return Err(SuperviseError::Gone {
                    app: name.to_owned(),
                });
            }
            let current: Vec<Arc<Tracked>> = apps
                .instances_of(name)
                .iter()
                .map(|running| Arc::clone(&running.tracked))
                .collect();
            let first = apps
                .running
                .iter()
                .rfind(|running| running.config.name == name)
                .ok_or_else(|| SuperviseError::UnknownApp {
                    app: name.to_owned(),
                })?;
            if matches!(first.config.kind, AppKind::Task | AppKind::Cron) {
                return Err(SuperviseError::NotScalable {
                    app: name.to_owned(),
                    kind: first.config.kind,
                });
            }
            let group = Arc::clone(&first.tracked.app);
            let mut app = first.config.clone();
            app.replicas = replicas;
            for running in &mut apps.running {
                if Arc::ptr_eq(&running.tracked.app, &group) {
                    running.config.replicas = replicas;
                }
            }
            let mut added = Vec::new();
            for index in current.len()..replicas {
                let instance =
                    group.new_instance(index, instance_place(&app, index, group.sockets_base())?);
                self.launch_one(&mut apps.running, &app, &group, Arc::clone(&instance));
                group.join(Arc::clone(&instance));
                added.push(instance);
            }
            let removed: Vec<Arc<Tracked>> = current.into_iter().skip(replicas).collect();
            for tracked in &removed {
                group.leave(tracked.instance.index);
            }
            (app, added, removed)
        };
        tracing::info!("{}: scaling to {replicas} instances", app.name);
        let deadline = crate::deadline::after(app.ready.deadline);
        for instance in &added {
            while !instance.is_ready() && Instant::now() < deadline {
                tokio::time::sleep(ROLL_POLL).await;
            }
        }
        if !removed.is_empty() {
            // Taken out of the balancing above: what they still have in flight ends first.
            let grace = app.stop.grace.unwrap_or(COMMAND_GRACE);
            let drained = crate::deadline::after(grace);
            while removed
                .iter()
                .any(|tracked| tracked.instance.in_flight() > 0)
                && Instant::now() < drained
            {
                tokio::time::sleep(ROLL_POLL).await;
            }
            self.retire(&removed).await;
        }
        tracing::info!("{}: {replicas} instances", app.name);
        Ok(())
    }
}
