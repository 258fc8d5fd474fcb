//! `route::normalize` then `RouteTable::lookup` and `strip_prefix` on arbitrary bytes (as a
//! path when they are UTF-8, as hyper only hands zoo valid `&str` paths). Checks the invariants
//! the proptest properties check, so a crash here is a counterexample to them.
#![no_main]

use std::borrow::Cow;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use zoo::route::{RouteTable, normalize, strip_prefix};

static TABLE: LazyLock<RouteTable<()>> = LazyLock::new(|| {
    let keys = [
        "/", "/a", "/a/", "/a/b", "/a/b/", "/a*", "/a/b*", "/ab", "/node", "/node*", "/%2F",
        "/\u{e9}",
    ];
    RouteTable::new(keys.iter().map(|k| ((*k).to_owned(), ())))
});

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let _ = TABLE.lookup(path);
    let Ok(n) = normalize(path) else {
        return;
    };
    assert!(n.starts_with('/'), "{path:?} -> {n:?}");
    assert!(
        n.split('/').all(|s| s != "." && s != ".."),
        "{path:?} -> {n:?}"
    );
    assert!(
        matches!(normalize(&n), Ok(Cow::Borrowed(again)) if again == n),
        "not a fixed point: {path:?} -> {n:?}"
    );
    if let Some(m) = TABLE.lookup(&n) {
        assert!(n.as_bytes().starts_with(&m.key.as_bytes()[..m.prefix_len]));
        assert!(strip_prefix(&n, m.prefix_len).starts_with('/'));
    }
});
