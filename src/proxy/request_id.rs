//! Request IDs: the one value that ties a request's access log line, the app's own logs and
//! what the client saw together. An incoming ID (`X-Request-ID` unless `request_id_header`
//! names another header) is kept when it is 1 to 200 visible ASCII characters and the client
//! is in `trust_forwarded` (a load balancer that made it); otherwise zoo makes one.
//!
//! Made IDs are UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 bits mixed
//! from a random per-process seed and a counter. They are unique and time-ordered, not
//! secret: no system call or lock per request, so the default (IDs on) costs a clock read, a
//! few multiplications and one small allocation (the header value, shared by the request and
//! the response).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use ring::rand::{SecureRandom as _, SystemRandom};

/// Longest incoming ID kept; a longer one is replaced (it would only bloat every log line).
const MAX_INCOMING_LEN: usize = 200;

/// The request's ID: the incoming one under `name` when `trusted()` says its client may set
/// it and it is well-formed, else a new one. `trusted` is only asked when there is one.
pub(super) fn request_id(
    headers: &HeaderMap,
    name: &HeaderName,
    trusted: impl FnOnce() -> bool,
) -> HeaderValue {
    let mut incoming = headers.get_all(name).iter();
    match (incoming.next(), incoming.next()) {
        (Some(id), None) if acceptable(id) && trusted() => id.clone(),
        _ => generate(),
    }
}

/// 1 to [`MAX_INCOMING_LEN`] bytes, each visible ASCII (`!` to `~`): safe in a log line and
/// in any header, never a space or a control character.
fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_INCOMING_LEN).contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// The per-process random seed of made IDs, and the counter that makes each one different.
struct Generator {
    seed: u64,
    counter: AtomicU64,
}

fn generator() -> &'static Generator {
    static GENERATOR: OnceLock<Generator> = OnceLock::new();
    GENERATOR.get_or_init(|| {
        let mut seed = [0u8; 8];
        // Without the system's randomness, IDs are still unique within this process.
        let _ = SystemRandom::new().fill(&mut seed);
        Generator {
            seed: u64::from_le_bytes(seed),
            counter: AtomicU64::new(0),
        }
    })
}

/// SplitMix64's finaliser: a bijection, so distinct counters give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A new UUIDv7 as `xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx`.
fn generate() -> HeaderValue {
    let generator = generator();
    let count = generator.counter.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let low = mix(generator.seed.wrapping_add(count));
    let high = mix(low ^ generator.seed.rotate_left(32));
    let uuid = (u128::from(millis & 0xffff_ffff_ffff) << 80)
        | (0x7 << 76)
        | (u128::from(high & 0x0fff) << 64)
        | (0b10 << 62)
        | u128::from(low >> 2);
    // Owned by the `Bytes` from the start, so that the clones (one to the app, one back to the
    // client) only count references: a `Vec`-backed value would allocate again at its first.
    HeaderValue::from_maybe_shared(Bytes::from_owner(hyphenated(uuid)))
        .expect("hex digits and hyphens are a valid value")
}

/// The 8-4-4-4-12 hex form of a UUID: two digits per byte, a hyphen before bytes 4, 6, 8
/// and 10 (a plain loop: this runs once per request).
fn hyphenated(uuid: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (index, byte) in uuid.to_be_bytes().into_iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const NAME: HeaderName = HeaderName::from_static("x-request-id");

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(NAME, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn made_ids_are_uuid_v7_and_distinct() {
        let ids: Vec<HeaderValue> = (0..1000).map(|_| generate()).collect();
        let distinct: HashSet<&[u8]> = ids.iter().map(HeaderValue::as_bytes).collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            let text = id.to_str().unwrap();
            let groups: Vec<usize> = text.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{text}");
            assert_eq!(&text[14..15], "7", "version 7: {text}");
            assert!(
                matches!(&text[19..20], "8" | "9" | "a" | "b"),
                "variant: {text}"
            );
            assert!(text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn made_ids_start_with_the_time() {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let id = generate();
        let hex: String = id.to_str().unwrap().replace('-', "");
        let stamped = u128::from_str_radix(&hex[..12], 16).unwrap();
        assert!(stamped.abs_diff(millis) < 60_000, "{stamped} vs {millis}");
    }

    #[test]
    fn incoming_id_is_kept_only_from_a_trusted_client_and_when_well_formed() {
        let long = vec![b'a'; MAX_INCOMING_LEN];
        let too_long = vec![b'a'; MAX_INCOMING_LEN + 1];
        let kept: &[&[u8]] = &[b"abc-123", b"x", &long, b"{\"json\"}!~"];
        for id in kept {
            let got = request_id(&with(&[id]), &NAME, || true);
            assert_eq!(got.as_bytes(), *id);
            let untrusted = request_id(&with(&[id]), &NAME, || false);
            assert_ne!(untrusted.as_bytes(), *id, "untrusted client");
        }
        let replaced: &[&[u8]] = &[b"", b"a b", b"tab\there", &too_long, b"caf\xc3\xa9"];
        for id in replaced {
            let got = request_id(&with(&[id]), &NAME, || true);
            assert_eq!(got.len(), 36, "{:?} should have been replaced", id);
        }
        let two = request_id(&with(&[b"a", b"b"]), &NAME, || true);
        assert_eq!(two.len(), 36, "two incoming IDs: neither is kept");
    }

    #[test]
    fn trust_is_not_asked_without_an_incoming_id() {
        let id = request_id(&HeaderMap::new(), &NAME, || panic!("asked"));
        assert_eq!(id.len(), 36);
    }
}
