//! What a config reload does to the supervised apps. An app whose config is unchanged is not
//! touched (same process). An added app is started. A removed app is stopped once the new
//! runtime table, which no longer names it, serves. A changed app is restarted by its
//! `restart_strategy`: `stop-start` stops it and starts it again on the same handle, so
//! requests wait for it (gating); `replace` starts a new runner on a new handle and a fresh
//! port, the new table routes to that one once it is ready, and only then is the old one
//! stopped, finishing its in-flight requests within its grace.

use std::sync::Arc;

use tokio::time::Instant;

use super::runner::{COMMAND_GRACE, RunnerMessage};
use super::{
    AppHandle, SuperviseError, SupervisorHandle, Tracked, instance_place, new_handle, stopped,
};
use crate::config::{self, RestartStrategy};

/// What a reload does to one app of the new config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Unchanged: left alone.
    Keep,
    Add,
    /// Changed, `stop-start`: stopped, then started on the same handle.
    Restart,
    /// Changed, `replace`: a new instance on a new handle, switched to when ready.
    Replace,
    /// Only `replicas` changed: instances added or removed, the others left running.
    Scale,
}

/// For each app of `new`, what a reload does to it, given the apps `running`.
fn diff(running: &[config::App], new: &[config::App]) -> Vec<Change> {
    new.iter()
        .map(
            |app| match running.iter().rfind(|old| old.name == app.name) {
                None => Change::Add,
                Some(old) if old == app => Change::Keep,
                Some(old)
                    if *old
                        == config::App {
                            replicas: old.replicas,
                            ..app.clone()
                        } =>
                {
                    Change::Scale
                }
                Some(_) if app.restart_strategy == RestartStrategy::Replace => Change::Replace,
                Some(_) => Change::Restart,
            },
        )
        .collect()
}

/// A reload's changes to the apps, worked out (handles made, ports picked) before any process
/// is started or stopped, so that the new runtime table can be built against them first.
#[derive(Debug)]
pub struct AppChanges {
    /// The new config's apps, in its order, with the handle each is served through.
    apps: Vec<(config::App, Arc<AppHandle>, Change)>,
}

impl AppChanges {
    /// The handles the new config's apps are served through, in its order.
    #[must_use]
    pub fn handles(&self) -> Vec<Arc<AppHandle>> {
        self.apps
            .iter()
            .map(|(_, handle, _)| Arc::clone(handle))
            .collect()
    }

    fn change_of(&self, name: &str) -> Option<&(config::App, Arc<AppHandle>, Change)> {
        self.apps.iter().find(|(app, _, _)| app.name == name)
    }
}

impl SupervisorHandle {
    /// Works out what changes when the apps become `apps` (a reloaded config's).
    ///
    /// # Errors
    /// [`SuperviseError::NoFreePort`] when an added or replaced app gets no port.
    pub fn plan_changes(
        &self,
        apps: &[config::App],
        config_path: &std::path::Path,
    ) -> Result<AppChanges, SuperviseError> {
        let sockets_base = crate::rundir::app_sockets_base(config_path);
        let running: Vec<(config::App, Arc<AppHandle>)> = self
            .registry
            .lock()
            .running
            .iter()
            .map(|running| (running.config.clone(), Arc::clone(&running.tracked.app)))
            .collect();
        let configs: Vec<config::App> = running.iter().map(|(app, _)| app.clone()).collect();
        let changes = apps
            .iter()
            .zip(diff(&configs, apps))
            .map(|(app, change)| {
                let kept = running
                    .iter()
                    .rfind(|(old, _)| old.name == app.name)
                    .map(|(_, handle)| Arc::clone(handle));
                let handle = match (change, kept) {
                    (Change::Keep | Change::Restart | Change::Scale, Some(handle)) => handle,
                    _ => new_handle(app, &sockets_base)?,
                };
                Ok((app.clone(), handle, change))
            })
            .collect::<Result<_, SuperviseError>>()?;
        Ok(AppChanges { apps: changes })
    }

    /// Carries out `changes`: starts the added apps and the replacements, restarts the
    /// changed `stop-start` apps, waits for the new runners to be ready (each at most its
    /// readiness deadline; one that is not is switched to anyway and restarts by its policy),
    /// calls `swap`, which must stop routing to removed and replaced apps, then stops those.
    ///
    /// # Errors
    /// [`SuperviseError::Gone`] when zoo began stopping meanwhile.
    pub async fn apply(
        &self,
        changes: AppChanges,
        swap: impl FnOnce(),
    ) -> Result<(), SuperviseError> {
        // What runs now that the new config drops or changes, found before anything starts.
        let (mut retiring, mut restarting) = (Vec::new(), Vec::new());
        for running in &self.registry.lock().running {
            match changes.change_of(&running.config.name) {
                None | Some((_, _, Change::Replace)) => {
                    retiring.push(Arc::clone(&running.tracked));
                }
                Some((_, _, Change::Restart)) => restarting.push(Arc::clone(&running.tracked)),
                Some((_, _, Change::Keep | Change::Add | Change::Scale)) => {}
            }
        }
        let began = Instant::now();
        let fresh = |change: &Change| matches!(change, Change::Add | Change::Replace);
        self.launch(
            changes
                .apps
                .iter()
                .filter(|(_, _, change)| fresh(change))
                .map(|(app, handle, _)| {
                    tracing::info!("reload: starting {}", app.name);
                    (app, Arc::clone(handle))
                }),
        )?;
        // An app's instances are restarted together, each app in config order.
        for (app, handle, _) in changes
            .apps
            .iter()
            .filter(|(_, _, change)| *change == Change::Restart)
        {
            tracing::info!("reload: restarting {} (its config changed)", app.name);
            let instances: Vec<Arc<Tracked>> = restarting
                .iter()
                .filter(|tracked| tracked.app.name == app.name)
                .cloned()
                .collect();
            self.retire(&instances).await;
            fit_instances(handle, app)?;
            self.launch([(app, Arc::clone(handle))])?;
        }
        for (app, _, _) in changes
            .apps
            .iter()
            .filter(|(_, _, change)| *change == Change::Scale)
        {
            tracing::info!("reload: scaling {} to {}", app.name, app.replicas);
            self.scale(&app.name, app.replicas).await?;
        }
        for (app, handle, _) in changes.apps.iter().filter(|(_, _, change)| fresh(change)) {
            let left = crate::deadline::from(began, app.ready.deadline)
                .saturating_duration_since(Instant::now());
            if !handle.wait_ready(left).await {
                tracing::warn!(
                    "reload: {} not ready within {:?}; routing to it anyway",
                    app.name,
                    app.ready.deadline
                );
            }
        }
        {
            let mut apps = self.registry.lock();
            let position = |name: &str| {
                changes
                    .apps
                    .iter()
                    .position(|(app, _, _)| app.name == name)
                    .unwrap_or(usize::MAX)
            };
            // Stable: a replaced runner stays before its replacement.
            apps.running
                .sort_by_key(|running| position(&running.config.name));
        }
        swap();
        for tracked in &retiring {
            tracing::info!(
                "reload: stopping {} (pid {:?})",
                tracked.app.name,
                tracked.progress().pid
            );
        }
        self.retire(&retiring).await;
        Ok(())
    }

    /// Stops the runners of `tracked` together (each within its grace) and forgets them.
    pub(super) async fn retire(&self, tracked: &[Arc<Tracked>]) {
        let stopping: Vec<_> = {
            let mut apps = self.registry.lock();
            let (stopping, kept) =
                std::mem::take(&mut apps.running)
                    .into_iter()
                    .partition(|running| {
                        tracked
                            .iter()
                            .any(|tracked| Arc::ptr_eq(tracked, &running.tracked))
                    });
            apps.running = kept;
            stopping
        };
        for running in &stopping {
            let grace = running.config.stop.grace.unwrap_or(COMMAND_GRACE);
            // A send error means the runner already ended (the app exited for good).
            let _ = running
                .tracked
                .controls
                .send(RunnerMessage::Shutdown(crate::deadline::after(grace)));
        }
        for running in stopping {
            stopped(&running.config.name, running.task.await);
        }
    }
}

/// Gives `handle` the settings and instances `app` asks for, keeping those whose index it
/// still has (at the port the config fixes for them, if it does) unless `socket` changed,
/// before its runners start again.
fn fit_instances(handle: &AppHandle, app: &config::App) -> Result<(), SuperviseError> {
    handle.reconfigure(app);
    let current = handle.instances();
    let mut instances = Vec::with_capacity(app.replicas);
    for index in 0..app.replicas {
        let kept = current
            .iter()
            .find(|instance| instance.index == index && instance.socket().is_some() == app.socket);
        instances.push(match kept {
            Some(instance) => {
                if let Some(port) = app.port_of(index) {
                    instance.switch_port(port);
                }
                Arc::clone(instance)
            }
            None => handle.new_instance(index, instance_place(app, index, handle.sockets_base())?),
        });
    }
    handle.set_instances(instances);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::tests::app_with as app;

    #[test]
    fn reload_keeps_unchanged_apps_and_restarts_changed_ones_by_strategy() {
        let running = [
            app("same", ""),
            app("gone", ""),
            app("env", ""),
            app("swap", "restart_strategy = \"replace\"\n"),
            app("more", ""),
        ];
        let new = [
            app("new", ""),
            app("same", ""),
            app("env", "env = { A = \"1\" }\n"),
            app(
                "swap",
                "restart_strategy = \"replace\"\nenv = { A = \"1\" }\n",
            ),
            app("more", "replicas = 3\n"),
        ];
        assert_eq!(
            diff(&running, &new),
            [
                Change::Add,
                Change::Keep,
                Change::Restart,
                Change::Replace,
                Change::Scale
            ]
        );
    }
}
