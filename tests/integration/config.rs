//! A broken config stops zoo before anything starts: `zoo check` and plain `zoo` both exit 2
//! and point at `zoo.toml:LINE:COL` (1-based, columns in characters) with a message naming the
//! offending word.

use std::time::Duration;

use crate::util;

struct Broken {
    what: &'static str,
    config: &'static str,
    line: usize,
    /// Accepted columns: the offending key, or the offending value / its key where the mistake
    /// is in a value (the implementation may underline either).
    columns: &'static [usize],
    /// A word the message must contain.
    names: &'static str,
}

const BROKEN: &[Broken] = &[
    Broken {
        what: "unknown key in an app",
        config: "listen = \"127.0.0.1:0\"\n\
                 \n\
                 [apps.web]\n\
                 command = \"sleep 100\"\n\
                 prot = 9000\n\
                 \n\
                 [routes]\n\
                 \"/\" = { app = \"web\" }\n",
        line: 5,
        columns: &[1],
        names: "prot",
    },
    Broken {
        what: "route to an app that does not exist",
        config: "listen = \"127.0.0.1:0\"\n\
                 \n\
                 [routes]\n\
                 \"/go\" = { respond = \"hi\" }\n\
                 \"/x\" = { app = \"ghost\" }\n",
        line: 5,
        // 16: the value "ghost"; 10: its key `app`; 8: the inline table.
        columns: &[16, 10, 8],
        names: "ghost",
    },
    Broken {
        what: "route key without a leading /",
        config: "listen = \"127.0.0.1:0\"\n\
                 \n\
                 [routes]\n\
                 \"/go\" = { respond = \"hi\" }\n\
                 \"node\" = { respond = \"hi\" }\n",
        line: 5,
        columns: &[1],
        names: "node",
    },
];

#[test]
fn broken_config_exits_2_naming_file_line_col() {
    for broken in BROKEN {
        let dir = util::prepare_dir(broken.config, &[]);
        let config = dir.path().join("zoo.toml");
        let config = config.to_str().unwrap();
        for args in [vec!["check", "--config", config], vec!["--config", config]] {
            let run = util::run_to_end(dir.path(), &args, Duration::from_secs(10));
            let context = format!(
                "{} (zoo {})\nconfig:\n{}\n{}",
                broken.what,
                args.join(" "),
                broken.config,
                run.output
            );
            assert_eq!(run.code(), Some(2), "exit status: {context}");
            let positions: Vec<String> = broken
                .columns
                .iter()
                .map(|col| format!("zoo.toml:{}:{col}:", broken.line))
                .collect();
            assert!(
                positions.iter().any(|p| run.stderr.contains(p.as_str())),
                "stderr should point at one of {positions:?}: {context}"
            );
            assert!(
                run.stderr.contains("error"),
                "stderr should say `error`: {context}"
            );
            assert!(
                run.stderr.contains(broken.names),
                "stderr should name {:?}: {context}",
                broken.names
            );
        }
    }
}
