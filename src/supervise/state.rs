//! What is known about one supervised app while it runs: the [`AppHandle`] the request path
//! reads (its instances, their addresses, readiness and load, and the choice among them),
//! the [`Progress`] each instance's runner writes (state, pid, restarts, last
//! exit and run), and the [`AppStatus`] snapshot `zoo status` and the metrics read. Nothing
//! here starts or stops a process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use nix::unistd::Pid;
use tokio::sync::{Notify, mpsc};

use super::ExitStatus;
use super::output::RecentLines;
use super::runner::RunnerMessage;
use crate::config::{self, AppKind, Balance};

/// What the request path needs to know about one app: its instances (one unless it has
/// `replicas`) and how a request chooses among those that are ready.
///
/// The proxy asks [`AppHandle::pick`] for an instance per attempt and holds the [`Lease`] it
/// gets until the response ends (or the tunnel closes), which is what `least_requests`
/// counts. The list of instances is one atomic pointer, replaced whole when the app is
/// scaled, so that a request reads it once, lock-free, and an instance being removed stops
/// getting new requests at once while its leases finish.
#[derive(Debug)]
pub struct AppHandle {
    pub name: String,
    /// Its `balance` ([`balance_code`]); set again by a reload that restarts the app with a
    /// new config.
    balance: AtomicU8,
    /// The instances taking new requests, by index.
    instances: ArcSwap<Vec<Arc<InstanceHandle>>>,
    /// Where the next round (or the scan for the least loaded) starts, so that ties and
    /// `round_robin` go round.
    cursor: AtomicUsize,
    /// Wakes requests waiting for some instance to become ready; each instance notifies it.
    ready_changed: Arc<Notify>,
    /// The app's last output lines (of all its instances), for `zoo logs`.
    pub recent: Arc<RecentLines>,
    /// `start = "on-demand"`: a request that finds no instance ready starts them; set again
    /// by a reload that restarts the app with a new config.
    on_demand: AtomicBool,
    /// The directory under which a socket app's instances put their sockets (zoo's
    /// `ZOO_RUN` or its config-named directory), for the instances a scale or reload adds.
    sockets_base: Option<Arc<Path>>,
    /// Set by a request to an on-demand app that found no instance ready; cleared when the
    /// app is stopped for being idle.
    wanted: AtomicBool,
    /// Wakes the runners of an on-demand app waiting to be wanted.
    demanded: Notify,
    /// Held while `zoo restart` rolls through the instances, so that two rolls do not take
    /// two instances down at once.
    pub(super) rolling: tokio::sync::Mutex<()>,
}

/// Where an instance of an app is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    /// Its loopback port.
    Tcp(SocketAddr),
    /// Its Unix socket (`socket = true`).
    Unix(Arc<Path>),
}

impl std::fmt::Display for Dial {
    /// `127.0.0.1:PORT`, or `unix:PATH` (the spelling of nginx's and curl's socket upstreams).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One instance of an app: where it listens, whether it is ready, and how much it is doing.
#[derive(Debug)]
pub struct InstanceHandle {
    /// Its `ZOO_REPLICA`: 0 to N-1, stable across its restarts; also its metrics label.
    pub index: usize,
    /// Its Unix socket (its `SOCKET`), for an app with `socket = true`; then `port` is 0.
    socket: Option<Arc<Path>>,
    /// Loopback port it listens on (its `PORT`); a replace switches it to the new process's
    /// in one store, and each request reads it once, lock-free. 0 for an app without a port
    /// (nothing routes to it).
    port: AtomicU16,
    /// Set while the current process has passed its readiness probe and not exited since;
    /// for a task, while its last run succeeded (what its dependents wait for).
    ready: AtomicBool,
    /// Requests sent to it whose response has not ended, and open tunnels: what
    /// `least_requests` compares, and what a removed instance waits for before it stops.
    in_flight: AtomicUsize,
    /// Requests it was picked for since zoo started (the per-instance metric).
    requests: AtomicU64,
    /// Until when (ms on [`clock_ms`]) it is skipped after refusing a connection, in case
    /// the supervisor has not seen it die yet; 0 when it is not.
    ejected_until: AtomicU64,
    /// The app's [`AppHandle::ready_changed`].
    ready_changed: Arc<Notify>,
}

/// How long an instance that refused a connection is skipped, unless it gets ready before.
const EJECTION: Duration = Duration::from_secs(1);

/// Milliseconds since the first call: a coarse clock an atomic can hold.
/// [`AppHandle::balance`]'s values.
const LEAST_REQUESTS: u8 = 0;
const ROUND_ROBIN: u8 = 1;
const CLIENT_IP: u8 = 2;

fn balance_code(balance: Balance) -> u8 {
    match balance {
        Balance::LeastRequests => LEAST_REQUESTS,
        Balance::RoundRobin => ROUND_ROBIN,
        Balance::ClientIp => CLIENT_IP,
    }
}

/// How much `client` prefers instance `index` (`balance = "client_ip"`): a fixed mix of the
/// two (splitmix64's finaliser), the same in every zoo, so that a restart or a second zoo
/// behind the same balancer sends a client where it went before. An IPv4-mapped address
/// scores as its IPv4 address.
fn rendezvous_score(client: IpAddr, index: usize) -> u64 {
    let address = match client.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    };
    let [high, low] = [address >> 64, address & u128::from(u64::MAX)]
        .map(|half| u64::try_from(half).unwrap_or(u64::MAX));
    let index = u64::try_from(index).unwrap_or(u64::MAX);
    let mut mixed = high ^ low ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^ (mixed >> 31)
}

fn clock_ms() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl AppHandle {
    /// An app of one instance on `port`.
    #[cfg(test)]
    pub(crate) fn new(name: String, port: u16) -> Arc<Self> {
        Self::with_instances(
            name,
            Balance::LeastRequests,
            false,
            None,
            vec![(port, None)],
        )
    }

    /// An app with one instance per address of `places` (a port, or a socket path under
    /// `sockets_base`), indexed in that order, started by the first request when `on_demand`.
    pub(crate) fn with_instances(
        name: String,
        balance: Balance,
        on_demand: bool,
        sockets_base: Option<Arc<Path>>,
        places: Vec<(u16, Option<Arc<Path>>)>,
    ) -> Arc<Self> {
        let ready_changed = Arc::new(Notify::new());
        let instances = places
            .into_iter()
            .enumerate()
            .map(|(index, (port, socket))| InstanceHandle::new(index, port, socket, &ready_changed))
            .collect();
        Arc::new(Self {
            name,
            balance: AtomicU8::new(balance_code(balance)),
            instances: ArcSwap::from_pointee(instances),
            cursor: AtomicUsize::new(0),
            ready_changed,
            recent: Arc::default(),
            on_demand: AtomicBool::new(on_demand),
            sockets_base,
            wanted: AtomicBool::new(false),
            demanded: Notify::new(),
            rolling: tokio::sync::Mutex::new(()),
        })
    }

    /// A new instance of this app on `port` (or `socket`), not yet taking requests (see
    /// [`Self::join`]).
    pub(super) fn new_instance(
        &self,
        index: usize,
        (port, socket): (u16, Option<Arc<Path>>),
    ) -> Arc<InstanceHandle> {
        InstanceHandle::new(index, port, socket, &self.ready_changed)
    }

    /// Where a socket app's instances put their sockets.
    pub(super) fn sockets_base(&self) -> Option<&Path> {
        self.sockets_base.as_deref()
    }

    /// Takes the `balance` and `start` of `app`, the app's new config (a reload restarting it
    /// on this handle).
    pub(super) fn reconfigure(&self, app: &config::App) {
        self.balance
            .store(balance_code(app.balance), Ordering::Relaxed);
        self.on_demand
            .store(app.start == config::StartMode::OnDemand, Ordering::Release);
    }

    /// The instances taking new requests, by index.
    #[must_use]
    pub fn instances(&self) -> Arc<Vec<Arc<InstanceHandle>>> {
        self.instances.load_full()
    }

    /// Adds `instance` to those picked from (it is picked once ready).
    pub(super) fn join(&self, instance: Arc<InstanceHandle>) {
        self.instances.rcu(|instances| {
            let mut instances = Vec::clone(instances);
            instances.push(Arc::clone(&instance));
            instances
        });
    }

    /// Removes the instance of `index` from those picked from: it gets no new request.
    pub(super) fn leave(&self, index: usize) {
        self.instances.rcu(|instances| {
            let mut instances = Vec::clone(instances);
            instances.retain(|instance| instance.index != index);
            instances
        });
    }

    /// Replaces the instances picked from.
    pub(super) fn set_instances(&self, instances: Vec<Arc<InstanceHandle>>) {
        self.instances.store(Arc::new(instances));
    }

    /// Where its first instance listens (an app of one instance: where it listens).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.instances
            .load()
            .first()
            .map_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), |instance| {
                instance.addr()
            })
    }

    /// Where its instances listen now, for a route's line (`zoo check`, `zoo status`) and
    /// error messages: `at ADDR` for one instance, `(N instances at ADDR, ...)` for several.
    #[must_use]
    pub fn describe_addresses(&self) -> String {
        let instances = self.instances.load();
        let addresses: Vec<String> = instances
            .iter()
            .map(|instance| instance.dial().to_string())
            .collect();
        match addresses.as_slice() {
            [one] => format!("at {one}"),
            all => format!("({} instances at {})", all.len(), all.join(", ")),
        }
    }

    /// Whether some instance is ready.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.instances
            .load()
            .iter()
            .any(|instance| instance.is_ready())
    }

    /// Whether the app starts on demand: not running is then a state it serves from (its
    /// first request starts it), not a failure.
    #[must_use]
    pub fn starts_on_demand(&self) -> bool {
        self.on_demand.load(Ordering::Acquire)
    }

    /// Starts an app that starts on demand, if it is idle (a request found no instance
    /// ready); nothing for any other app.
    pub fn demand(&self) {
        if self.starts_on_demand() && !self.wanted.swap(true, Ordering::AcqRel) {
            self.demanded.notify_waiters();
        }
    }

    /// Resolves once a request wants the (on-demand) app started.
    pub(super) async fn demanded(&self) {
        loop {
            let demanded = self.demanded.notified();
            if self.wanted.load(Ordering::Acquire) {
                return;
            }
            demanded.await;
        }
    }

    /// The app is being stopped for being idle: the next request starts it again.
    pub(super) fn forget_demand(&self) {
        self.wanted.store(false, Ordering::Release);
    }

    /// Waits until some instance is ready or `timeout` passes; returns whether one is.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = crate::deadline::after(timeout);
        loop {
            let changed = self.ready_changed.notified();
            if self.is_ready() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.is_ready();
            }
        }
    }

    /// A ready instance for the next request from `client`, by the app's `balance`, other
    /// than `avoid` (the one that just failed it) when another is ready; `None` when none is
    /// ready. An instance that recently refused a connection is taken only when no other is
    /// ready.
    #[must_use]
    pub fn pick(&self, avoid: Option<usize>, client: IpAddr) -> Option<Lease> {
        let instances = self.instances.load();
        let chosen = match instances.as_slice() {
            [only] => only.is_ready().then_some(only),
            all => {
                let now = clock_ms();
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let usable = |instance: &&Arc<InstanceHandle>, strict: bool| {
                    instance.is_ready()
                        && (!strict
                            || (Some(instance.index) != avoid
                                && instance.ejected_until.load(Ordering::Relaxed) <= now))
                };
                let choose = |strict: bool| {
                    let rotated = (0..all.len()).map(|offset| &all[(start + offset) % all.len()]);
                    let mut candidates = rotated.filter(|instance| usable(instance, strict));
                    match self.balance.load(Ordering::Relaxed) {
                        ROUND_ROBIN => candidates.next(),
                        // Rendezvous hashing: each client goes to its highest-scoring usable
                        // instance, so when one goes or comes only its own clients move.
                        CLIENT_IP => candidates
                            .max_by_key(|instance| rendezvous_score(client, instance.index)),
                        // `min_by_key` keeps the first of equals: ties go round with `start`.
                        _ => candidates
                            .min_by_key(|instance| instance.in_flight.load(Ordering::Relaxed)),
                    }
                };
                choose(true).or_else(|| choose(false))
            }
        };
        chosen.map(Lease::of)
    }

    /// Marks every instance ready or not (tests of what reads readiness).
    #[cfg(test)]
    pub(crate) fn set_ready(&self, ready: bool) {
        for instance in self.instances.load().iter() {
            instance.set_ready(ready);
        }
    }
}

impl InstanceHandle {
    fn new(
        index: usize,
        port: u16,
        socket: Option<Arc<Path>>,
        ready_changed: &Arc<Notify>,
    ) -> Arc<Self> {
        Arc::new(Self {
            index,
            socket,
            port: AtomicU16::new(port),
            ready: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            ejected_until: AtomicU64::new(0),
            ready_changed: Arc::clone(ready_changed),
        })
    }

    /// Where it listens.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port.load(Ordering::Acquire)))
    }

    /// Where requests to it are connected: its socket, else its loopback port.
    #[must_use]
    pub fn dial(&self) -> Dial {
        match &self.socket {
            Some(path) => Dial::Unix(Arc::clone(path)),
            None => Dial::Tcp(self.addr()),
        }
    }

    /// Its Unix socket, for an app with `socket = true`.
    #[must_use]
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// Routes new requests to the process listening on `port`.
    pub(crate) fn switch_port(&self, port: u16) {
        self.port.store(port, Ordering::Release);
    }

    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        if ready {
            self.ejected_until.store(0, Ordering::Relaxed);
        }
        self.ready.store(ready, Ordering::Release);
        self.ready_changed.notify_waiters();
    }

    /// Requests (and tunnels) now in flight to it.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests it was picked for since zoo started.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Skips it for new requests for a moment: it refused a connection.
    pub fn eject(&self) {
        let until = clock_ms().saturating_add(u64::try_from(EJECTION.as_millis()).unwrap_or(0));
        self.ejected_until.store(until, Ordering::Relaxed);
    }
}

/// One request's (or tunnel's) claim on an instance: counted in its `in_flight` from
/// [`AppHandle::pick`] until dropped.
#[derive(Debug)]
pub struct Lease(Arc<InstanceHandle>);

impl Lease {
    fn of(instance: &Arc<InstanceHandle>) -> Self {
        instance.in_flight.fetch_add(1, Ordering::Relaxed);
        instance.requests.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(instance))
    }

    /// The instance it holds.
    #[must_use]
    pub fn instance(&self) -> &InstanceHandle {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An app that exited and will not be restarted; it takes the container down.
#[derive(Debug, Clone)]
pub struct FinalExit {
    pub app: String,
    pub status: ExitStatus,
}

/// Where an app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppState {
    /// Waiting for the apps it depends on to be ready.
    #[default]
    Waiting,
    /// Started, not ready yet.
    Starting,
    /// Passed its readiness probe.
    Ready,
    /// A task's run (or a cron job's) is under way.
    Running,
    /// A cron job waiting for its next tick.
    Scheduled,
    /// Finished for now: a task that succeeded, or a service or worker that exited 0 under
    /// `restart = "on-failure"`; `zoo run`, `start` or `restart` starts it again.
    Done,
    /// Exited; restarting after a delay.
    Backoff,
    /// Stop signal sent, waiting for it to exit.
    Stopping,
    /// Stopped on request (`AppCommand::Stop`); starts again on `Start` or `Restart`.
    Stopped,
    /// Not running until a request comes (`start = "on-demand"`), at boot or after
    /// `idle_stop`.
    Idle,
    /// Exited for good (restart policy or budget); zoo is going down.
    Failed,
}

impl AppState {
    /// The state's name in `zoo status`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Scheduled => "scheduled",
            Self::Done => "done",
            Self::Backoff => "backoff",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Idle => "idle",
            Self::Failed => "failed",
        }
    }
}

/// One app's status, as `zoo status` and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    /// The app's name, with `#INDEX` for an instance of an app that has several (`web#1`).
    pub name: String,
    /// The app's name alone.
    pub app: String,
    /// The instance's index, for an app with several.
    pub instance: Option<usize>,
    pub kind: AppKind,
    /// Requests (and tunnels) in flight to the instance.
    pub in_flight: usize,
    /// Requests sent to the instance since zoo started.
    pub requests: u64,
    /// The port of the serving instance; `None` for an app without one.
    pub port: Option<u16>,
    pub state: AppState,
    /// The running instance's pid (also its process group id).
    pub pid: Option<u32>,
    pub ready: bool,
    /// Automatic restarts since zoo started.
    pub restarts: u32,
    /// How long the current instance has been running.
    pub uptime: Option<Duration>,
    pub last_exit: Option<ExitStatus>,
    /// How long the last instance that exited had run.
    pub last_run: Option<Duration>,
    /// Instances that exited (runs of a task or cron job) since zoo started.
    pub runs: u64,
    /// Runs that failed (a non-zero exit, a signal, a timeout).
    pub failures: u64,
    /// When a run last succeeded.
    pub last_success: Option<SystemTime>,
    /// A cron job's ticks skipped because its previous run was still going.
    pub skipped: u64,
    /// A cron job's next tick, unless it is stopped.
    pub next_run: Option<SystemTime>,
}

/// A request to one app's runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppCommand {
    /// Stop the running instance (if any) and start a new one at once, without backoff.
    Restart,
    /// Stop it and keep it stopped; this does not take the container down.
    Stop,
    /// Start it if it is stopped or waiting out a backoff delay.
    Start,
    /// Run a task again now, or a cron job's command outside its schedule (only those:
    /// [`super::SupervisorHandle::send`] refuses the others).
    Run,
}

/// The part of one app's status only its runner writes; read for snapshots and signals.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) state: AppState,
    pub(super) pid: Option<Pid>,
    pub(super) started: Option<std::time::Instant>,
    pub(super) restarts: u32,
    pub(super) last_exit: Option<ExitStatus>,
    pub(super) last_run: Option<Duration>,
    pub(super) runs: u64,
    pub(super) failures: u64,
    pub(super) last_success: Option<SystemTime>,
    pub(super) skipped: u64,
    pub(super) next_run: Option<SystemTime>,
}

/// Shared between an instance's runner (writer) and the [`super::SupervisorHandle`]
/// (readers).
#[derive(Debug)]
pub(super) struct Tracked {
    /// The app it is an instance of.
    pub(super) app: Arc<AppHandle>,
    pub(super) instance: Arc<InstanceHandle>,
    pub(super) progress: Mutex<Progress>,
    /// The runner's inbox; closed once the runner has ended.
    pub(super) controls: mpsc::UnboundedSender<RunnerMessage>,
}

impl Tracked {
    pub(super) fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The status of the instance of the app configured as `app`, which this tracks;
    /// `several` when the app has more than one instance (so rows are named `web#1`).
    pub(super) fn status(&self, app: &config::App, several: bool) -> AppStatus {
        let progress = self.progress();
        let index = self.instance.index;
        AppStatus {
            name: instance_label(&app.name, several.then_some(index)),
            app: app.name.clone(),
            instance: several.then_some(index),
            kind: app.kind,
            in_flight: self.instance.in_flight(),
            requests: self.instance.requests(),
            port: (app.listens() && !app.socket).then(|| self.instance.addr().port()),
            state: progress.state,
            #[allow(clippy::cast_sign_loss)]
            pid: progress.pid.map(|pid| pid.as_raw() as u32),
            ready: self.instance.is_ready(),
            restarts: progress.restarts,
            uptime: progress.started.map(|started| started.elapsed()),
            last_exit: progress.last_exit,
            last_run: progress.last_run,
            runs: progress.runs,
            failures: progress.failures,
            last_success: progress.last_success,
            skipped: progress.skipped,
            next_run: progress.next_run,
        }
    }
}

/// How an instance is named in status rows, log lines and its output prefix: the app's name,
/// with `#INDEX` when the app has several.
pub(super) fn instance_label(app: &str, index: Option<usize>) -> String {
    match index {
        Some(index) => format!("{app}#{index}"),
        None => app.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn ready_app(balance: Balance, instances: usize) -> Arc<AppHandle> {
        let ports: Vec<u16> = (0..instances).map(|index| 9000 + index as u16).collect();
        let places = ports.iter().map(|port| (*port, None)).collect();
        let app = AppHandle::with_instances("web".into(), balance, false, None, places);
        app.set_ready(true);
        app
    }

    #[test]
    fn least_requests_takes_the_idlest_ready_instance_and_ties_go_round() {
        let app = ready_app(Balance::LeastRequests, 3);
        let busy = app.pick(None, LOCAL).expect("a ready instance");
        let second = app.pick(None, LOCAL).expect("a ready instance");
        assert_ne!(
            busy.instance().index,
            second.instance().index,
            "ties go round"
        );
        let third = app.pick(None, LOCAL).expect("a ready instance");
        let held = [&busy, &second, &third].map(|lease| lease.instance().index);
        assert_eq!(
            held.iter().collect::<std::collections::HashSet<_>>().len(),
            3
        );
        drop(second);
        let freed = held[1];
        // Only the freed one has nothing in flight.
        assert_eq!(app.pick(None, LOCAL).unwrap().instance().index, freed);
        assert_eq!(
            app.instances()[freed].in_flight(),
            0,
            "the lease was dropped"
        );
    }

    #[test]
    fn reconfigure_takes_a_reloaded_balance_and_start() {
        let app = ready_app(Balance::LeastRequests, 2);
        let _busy = app.pick(None, LOCAL).expect("a ready instance");
        let changed = crate::supervise::tests::app_with(
            "web",
            "balance = \"round_robin\"\nstart = \"on-demand\"\n",
        );
        app.reconfigure(&changed);
        assert!(app.starts_on_demand());
        // Round robin takes the busy instance in its turn; least_requests never would.
        let picked: Vec<usize> = (0..4)
            .map(|_| app.pick(None, LOCAL).unwrap().instance().index)
            .collect();
        assert!(picked.contains(&0) && picked.contains(&1), "{picked:?}");
    }

    #[test]
    fn addresses_name_every_instance_and_sockets_as_unix() {
        assert_eq!(
            ready_app(Balance::LeastRequests, 1).describe_addresses(),
            "at 127.0.0.1:9000"
        );
        assert_eq!(
            ready_app(Balance::LeastRequests, 3).describe_addresses(),
            "(3 instances at 127.0.0.1:9000, 127.0.0.1:9001, 127.0.0.1:9002)"
        );
        let socket: Arc<Path> = Arc::from(Path::new("/run/zoo/web/web.sock"));
        let app = AppHandle::with_instances(
            "web".into(),
            Balance::LeastRequests,
            false,
            None,
            vec![(0, Some(socket))],
        );
        assert_eq!(app.describe_addresses(), "at unix:/run/zoo/web/web.sock");
    }

    #[test]
    fn pick_skips_instances_not_ready_ejected_or_avoided() {
        let app = ready_app(Balance::RoundRobin, 2);
        app.instances()[0].set_ready(false);
        for _ in 0..4 {
            assert_eq!(app.pick(None, LOCAL).unwrap().instance().index, 1);
        }
        app.instances()[0].set_ready(true);
        app.instances()[1].eject();
        assert_eq!(app.pick(None, LOCAL).unwrap().instance().index, 0);
        assert!(
            app.pick(Some(0), LOCAL).is_some(),
            "when none is usable, a ready one still is"
        );
        app.instances()[1].set_ready(true);
        assert_eq!(
            app.pick(Some(0), LOCAL).unwrap().instance().index,
            1,
            "ready again: not ejected"
        );
        app.set_ready(false);
        assert!(app.pick(None, LOCAL).is_none());
        assert!(!app.is_ready());
    }

    #[test]
    fn client_ip_keeps_each_client_on_one_instance_and_moves_only_a_gone_ones() {
        let app = ready_app(Balance::ClientIp, 3);
        let clients: Vec<IpAddr> = (0..300u32)
            .map(|n| IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n)))
            .collect();
        let place = |app: &AppHandle| -> Vec<usize> {
            clients
                .iter()
                .map(|&client| app.pick(None, client).unwrap().instance().index)
                .collect()
        };
        let first = place(&app);
        assert_eq!(place(&app), first, "each client stays where it went");
        for index in 0..3 {
            let share = first.iter().filter(|&&chosen| chosen == index).count();
            assert!(share >= 60, "instance {index} got {share} of 300 clients");
        }
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(
            app.pick(None, mapped).unwrap().instance().index,
            first[7],
            "an IPv4-mapped address is its IPv4 address"
        );
        app.instances()[1].set_ready(false);
        let without_one = place(&app);
        for (before, after) in first.iter().zip(&without_one) {
            if *before == 1 {
                assert_ne!(*after, 1, "a client of the gone instance moves");
            } else {
                assert_eq!(before, after, "the others' clients stay");
            }
        }
    }
}
