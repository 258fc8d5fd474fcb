//! zoo's tuning of glibc's malloc, the one allocator concern of the proxy: big body buffers
//! stay on the heap under load ([`raise_mmap_threshold`]), and the memory of many closed
//! connections goes back to the system once they are gone ([`trim_when_connections_close`]).
//!
//! The two pull opposite ways, so they act at different times: the raised thresholds keep
//! freed heap for the next requests (no page faults per proxied MiB), and a trim runs only
//! after a wave of connections closed, never per request. Other allocators (musl's) are left
//! alone: they return freed pages on their own.
#![allow(unsafe_code)]

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::task::TaskTracker;

/// Size of the allocation [`raise_mmap_threshold`] makes and frees once.
const MMAP_THRESHOLD: usize = 4 * 1024 * 1024;

/// Open connections that must have gone (from the highest count seen since the last trim)
/// before a trim: 1000 idle HTTP/1.1 connections hold ~20 MiB of hyper's buffers.
const TRIM_AFTER_CLOSED: usize = 1000;

/// How often the count of open connections is looked at: a load of one atomic.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// The most connections open at once since the last trim, raised at each accept
/// ([`note_open`]): a wave that opens and closes between two looks is still seen.
static PEAK_OPEN: AtomicUsize = AtomicUsize::new(0);

/// Makes glibc's malloc keep big body buffers on its heap instead of mapping and unmapping them.
///
/// hyper reads a body into a fresh buffer of up to `MAX_HEAD_BYTES` (server) or ~400 KiB
/// (upstream client) whenever the chunk before is still being written, which under load is
/// most reads. glibc maps blocks of 128 KiB and more with `mmap` and trims the heap top past
/// 128 KiB free; it raises both on the fly only to the largest mapped block freed so far
/// (the trim threshold to twice that, mallopt(3) M_MMAP_THRESHOLD), ~400 KiB here, which is
/// not enough for 8 connections' buffers: ~8-10 page faults per proxied MiB (zeroed pages
/// faulted in, then trimmed away again), 5-8% of zoo's CPU on 1 MiB bodies. Freeing one 4 MiB
/// mapped block at startup raises them to 4 and 8 MiB: no fault per request, the same peak
/// RSS, at most 8 MiB of freed heap kept at the top. Other allocators just see one
/// allocation. (This needs no `mallopt` call.)
pub(super) fn raise_mmap_threshold() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // black_box: the optimizer would otherwise drop an allocation nothing reads.
        drop(std::hint::black_box(Vec::<u8>::with_capacity(
            MMAP_THRESHOLD,
        )));
    });
}

/// Starts, once per process, the task that trims the heap after connections closed;
/// `connections` tracks every public connection (one tracker for all listeners).
pub(super) fn trim_when_connections_close(connections: &TaskTracker) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tokio::spawn(trim_after_waves(connections.clone()));
    });
}

/// Notes that `open` public connections are open now (called at each accept).
pub(super) fn note_open(open: usize) {
    PEAK_OPEN.fetch_max(open, Ordering::Relaxed);
}

/// Trims once [`TRIM_AFTER_CLOSED`] connections fewer are open than at the highest count
/// seen since the last trim, and the count stopped falling (the wave of closes is over: a trim
/// in its middle would leave the rest of it unreturned). glibc never gives back the freed
/// chunks in the middle of its arenas on its own (the threshold above even keeps 8 MiB at the
/// top): without this, the RSS of 10,000 closed idle connections stays, and grows with each
/// such wave.
async fn trim_after_waves(connections: TaskTracker) {
    let mut every = tokio::time::interval(LOOK_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut before = connections.len();
    loop {
        every.tick().await;
        let open = connections.len();
        let highest = PEAK_OPEN.load(Ordering::Relaxed).max(open);
        if highest.saturating_sub(open) >= TRIM_AFTER_CLOSED && open >= before {
            PEAK_OPEN.store(open, Ordering::Relaxed);
            // A trim walks every arena: off the event loop.
            let _ = tokio::task::spawn_blocking(trim).await;
        }
        before = open;
    }
}

/// Gives the freed pages of every malloc arena back to the system (malloc_trim(3)).
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and walks only malloc's own arenas, each under
    // its lock; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
