//! HTTP Basic credentials of `basic_auth` routes: the users of one htpasswd file (read and
//! checked by the config walk) and the one question the request path asks, whether a
//! request's `Authorization` names one of them with the right password.
//!
//! Invariants:
//! - bcrypt runs off the event loop, on tokio's blocking threads, at most [`verifiers`] at a
//!   time for the whole process: a burst of wrong passwords queues for those slots and leaves
//!   the other cores (and every other route) to the event loop.
//! - That queue is bounded ([`WAITING_PER_SLOT`] checks per slot): a check that finds it full
//!   is answered [`Verdict::Busy`] at once (503 with `Retry-After`), so that a flood of
//!   guesses costs a bounded wait, not an ever longer one, for the users whose right
//!   password is not yet remembered.
//! - Every check that is not answered from the cache costs one bcrypt, unknown users too
//!   (against a made-up hash of the file's highest cost), so the time taken does not tell
//!   which user names exist.
//! - A right password is remembered for [`REMEMBERED_FOR`], as an HMAC-SHA256 of user and
//!   password under a per-runtime random key, compared in constant time (`ring::hmac::verify`).
//!   Without it a client that sends its credentials with every request (they all do) would
//!   pay a bcrypt per request and queue behind the others for a slot. The cache never holds a
//!   password, only entries for users of the file, one each; a reload makes a new one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};
use tokio::sync::Semaphore;

use crate::config::BasicAuth;

/// How long a verified (user, password) pair is answered without bcrypt.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);
/// Checks that may wait for each bcrypt slot: at bcrypt's default cost (about 60 ms a check
/// here) a full queue is a wait of about 4 s.
const WAITING_PER_SLOT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("basic_auth: the system's random source failed")]
    Random,
    #[error("basic_auth: cannot make the stand-in hash for unknown users: {0}")]
    StandIn(#[from] bcrypt::BcryptError),
    #[error("basic_auth: realm \"{realm}\" cannot be sent in a header")]
    Realm { realm: String },
}

/// The users of one `basic_auth` route and what checking them needs.
pub struct BasicAuthGate {
    /// User name -> bcrypt hash, from the users file.
    users: HashMap<String, String>,
    /// A hash of a random password at the file's highest cost: what an unknown user's
    /// password is checked against, so that it takes as long as a known one's.
    stand_in: String,
    /// `Basic realm="..."`, sent with every 401.
    challenge: HeaderValue,
    /// Whether `Authorization` is passed on to the upstream, for `zoo check` (the runtime's
    /// request rules remove it otherwise).
    forward_auth_header: bool,
    /// Keys the remembered tags, so that they reveal nothing without it.
    cache_key: hmac::Key,
    /// User -> tag of the password last verified for them and until when it holds.
    remembered: Mutex<HashMap<String, (hmac::Tag, Instant)>>,
    /// The slots bcrypt runs in: the process's, shared by every gate.
    verifiers: Arc<Verifiers>,
    /// For `zoo check`.
    users_file: PathBuf,
    realm: String,
}

/// What a check of a request's credentials found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A user of the file, with the right password.
    Admitted,
    /// No credentials, an unknown user or a wrong password.
    Refused,
    /// Too many checks are waiting for bcrypt: not checked; ask again later.
    Busy,
}

/// Slots for bcrypt runs and the bounded queue in front of them.
struct Verifiers {
    slots: Arc<Semaphore>,
    /// Checks waiting for a slot now.
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// The process-wide limit of bcrypt runs at once: half the cores (at least one), so that a
/// burst of checks leaves the other half to the event loop.
fn verifiers() -> Arc<Verifiers> {
    static VERIFIERS: OnceLock<Arc<Verifiers>> = OnceLock::new();
    Arc::clone(VERIFIERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Arc::new(Verifiers::new((cores / 2).max(1), WAITING_PER_SLOT))
    }))
}

impl Verifiers {
    fn new(slots: usize, waiting_per_slot: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots)),
            waiting: AtomicUsize::new(0),
            max_waiting: slots.saturating_mul(waiting_per_slot),
        }
    }

    /// One bcrypt verification on a blocking thread, within the slots; `None` when the queue
    /// for them is full. The slot goes with the work, so that a client that hangs up does not
    /// free it while bcrypt still runs.
    async fn verify(&self, password: Vec<u8>, hash: String) -> Option<bool> {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let _waiting = self.wait_in_line()?;
                Arc::clone(&self.slots).acquire_owned().await.ok()?
            }
        };
        let right = tokio::task::spawn_blocking(move || {
            let right = bcrypt::verify(&password, &hash).unwrap_or(false);
            drop(slot);
            right
        })
        .await
        .unwrap_or(false);
        Some(right)
    }

    /// A place in the queue, given back when dropped (a slot taken, or the client gone).
    fn wait_in_line(&self) -> Option<InLine<'_>> {
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let place = InLine(&self.waiting);
        (ahead < self.max_waiting).then_some(place)
    }
}

struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BasicAuthGate {
    /// The gate of `config`; makes the stand-in hash (one bcrypt, at build time).
    pub fn new(config: &BasicAuth) -> Result<Self, AccessError> {
        let random = SystemRandom::new();
        let mut salt = [0u8; 16];
        let mut password = [0u8; 16];
        random.fill(&mut salt).map_err(|_| AccessError::Random)?;
        random
            .fill(&mut password)
            .map_err(|_| AccessError::Random)?;
        let cost = config
            .users
            .iter()
            .filter_map(|(_, hash)| hash.parse::<bcrypt::HashParts>().ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let stand_in = bcrypt::hash_with_salt(password, cost, salt)?.to_string();
        let challenge = HeaderValue::try_from(format!("Basic realm=\"{}\"", config.realm))
            .map_err(|_| AccessError::Realm {
                realm: config.realm.clone(),
            })?;
        Ok(Self {
            users: config.users.iter().cloned().collect(),
            stand_in,
            challenge,
            forward_auth_header: config.forward_auth_header,
            cache_key: hmac::Key::generate(hmac::HMAC_SHA256, &random)
                .map_err(|_| AccessError::Random)?,
            remembered: Mutex::new(HashMap::new()),
            verifiers: verifiers(),
            users_file: config.users_file.clone(),
            realm: config.realm.clone(),
        })
    }

    /// The `WWW-Authenticate` value of a refusal.
    #[must_use]
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// What `zoo check` shows of the gate.
    #[must_use]
    pub fn describe(&self) -> String {
        let forwarded = if self.forward_auth_header {
            ", Authorization forwarded"
        } else {
            ""
        };
        format!(
            "basic_auth realm \"{}\": {} user(s) from {}{forwarded}",
            self.realm,
            self.users.len(),
            self.users_file.display()
        )
    }

    /// Whether `headers` carry exactly one `Authorization: Basic` naming a user of the file
    /// with the right password.
    pub async fn check(&self, headers: &HeaderMap) -> Verdict {
        let Some((user, password)) = credentials(headers) else {
            return Verdict::Refused;
        };
        let message = tag_input(&user, &password);
        let now = Instant::now();
        if let Some(user) = std::str::from_utf8(&user).ok()
            && let Some((tag, until)) = self.lock().get(user)
            && *until > now
            && hmac::verify(&self.cache_key, &message, tag.as_ref()).is_ok()
        {
            return Verdict::Admitted;
        }
        let known = std::str::from_utf8(&user)
            .ok()
            .and_then(|user| self.users.get(user));
        let hash = known.unwrap_or(&self.stand_in).clone();
        let Some(verified) = self.verifiers.verify(password, hash).await else {
            return Verdict::Busy;
        };
        let right = verified && known.is_some();
        if right && let Ok(user) = String::from_utf8(user) {
            let tag = hmac::sign(&self.cache_key, &message);
            self.lock().insert(user, (tag, now + REMEMBERED_FOR));
        }
        if right {
            Verdict::Admitted
        } else {
            Verdict::Refused
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (hmac::Tag, Instant)>> {
        // A panic while holding it left only a cache behind: still usable.
        self.remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// User and password of the one `Authorization: Basic` header (scheme in any case).
fn credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&byte| byte == b':')?;
    let password = decoded[colon + 1..].to_vec();
    let mut user = decoded;
    user.truncate(colon);
    Some((user, password))
}

/// What the remembered tag is made of: the user, a separator no user name has, the password.
fn tag_input(user: &[u8], password: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(user.len() + 1 + password.len());
    message.extend_from_slice(user);
    message.push(b':');
    message.extend_from_slice(password);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn gate() -> BasicAuthGate {
        let hash = bcrypt::hash_with_salt("secret", 4, [7; 16])
            .unwrap()
            .to_string();
        BasicAuthGate::new(&BasicAuth {
            users_file: PathBuf::from("users.htpasswd"),
            realm: "metrics".to_owned(),
            forward_auth_header: false,
            users: vec![("alice".to_owned(), hash)],
        })
        .unwrap()
    }

    fn basic(user_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        )
    }

    #[test]
    fn credentials_are_read_from_one_basic_header() {
        let got = credentials(&authorization(&basic("alice:pa:ss"))).unwrap();
        assert_eq!(got, (b"alice".to_vec(), b"pa:ss".to_vec()));
        assert!(credentials(&authorization("bAsIc YWxpY2U6eA==")).is_some());
        assert!(credentials(&authorization("Bearer YWxpY2U6eA==")).is_none());
        assert!(credentials(&authorization("Basic !!!")).is_none());
        assert!(credentials(&authorization(&basic("no-colon"))).is_none());
        let mut two = authorization(&basic("alice:secret"));
        two.append(
            header::AUTHORIZATION,
            HeaderValue::from_str(&basic("alice:secret")).unwrap(),
        );
        assert!(credentials(&two).is_none());
    }

    #[tokio::test]
    async fn only_the_right_password_of_a_listed_user_is_admitted() {
        let gate = gate();
        assert_eq!(gate.challenge(), "Basic realm=\"metrics\"");
        let check = async |value: &str| gate.check(&authorization(value)).await;
        assert_eq!(check(&basic("alice:secret")).await, Verdict::Admitted);
        // Again, now from the cache.
        assert_eq!(check(&basic("alice:secret")).await, Verdict::Admitted);
        assert_eq!(check(&basic("alice:wrong")).await, Verdict::Refused);
        assert_eq!(check(&basic("bob:secret")).await, Verdict::Refused);
        assert_eq!(gate.check(&HeaderMap::new()).await, Verdict::Refused);
    }

    #[tokio::test]
    async fn a_check_that_finds_the_queue_full_is_busy_and_frees_no_place() {
        let mut gate = gate();
        let verifiers = Arc::new(Verifiers::new(1, 1));
        gate.verifiers = Arc::clone(&verifiers);
        let gate = Arc::new(gate);
        // The one slot is taken: the first check waits in the one place of the queue.
        let slot = Arc::clone(&verifiers.slots).acquire_owned().await.unwrap();
        let first = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.check(&authorization(&basic("alice:secret"))).await }
        });
        let queued = tokio::time::timeout(Duration::from_secs(10), async {
            while verifiers.waiting.load(Ordering::Acquire) == 0 {
                tokio::task::yield_now().await;
            }
        });
        assert!(queued.await.is_ok(), "the first check never queued");
        let second = tokio::time::timeout(
            Duration::from_secs(10),
            gate.check(&authorization(&basic("alice:wrong"))),
        )
        .await
        .expect("a check that finds the queue full is answered at once");
        assert_eq!(second, Verdict::Busy);
        assert_eq!(
            verifiers.waiting.load(Ordering::Acquire),
            1,
            "busy gave its place back"
        );
        drop(slot);
        assert_eq!(first.await.unwrap(), Verdict::Admitted);
        assert_eq!(verifiers.waiting.load(Ordering::Acquire), 0);
        // With the queue empty again, a wrong password is refused, not busy.
        let third = gate.check(&authorization(&basic("alice:wrong"))).await;
        assert_eq!(third, Verdict::Refused);
    }
}
