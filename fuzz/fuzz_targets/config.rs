//! `config::parse` must reject bad input with errors, never panic. The environment lookup
//! answers a few names so `${VAR}` and `${VAR:-default}` expansion is exercised too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "PORT" => Some("8000".to_owned()),
        "EMPTY" => Some(String::new()),
        "ODD" => Some("${PORT}\"\n[x]".to_owned()),
        _ => None,
    };
    let _ = zoo::config::parse(source, Path::new("zoo.toml"), &env);
});
