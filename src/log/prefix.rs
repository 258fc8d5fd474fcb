//! The name column of every line zoo writes, its own and its apps': `name | `, names padded
//! to one width, coloured when zoo's stdout is a terminal and `NO_COLOR` is unset (docker
//! compose's look).

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Width every name is padded to, so that the `|` columns line up across apps and zoo.
static NAME_WIDTH: AtomicUsize = AtomicUsize::new(3);

/// Widens the name column to fit `name`; call for every app before it starts.
pub fn reserve_name_width(name: &str) {
    NAME_WIDTH.fetch_max(name.chars().count(), Ordering::Relaxed);
}

/// The padded name column followed by the separator.
#[must_use]
pub fn prefix(name: &str) -> String {
    static COLOUR: OnceLock<bool> = OnceLock::new();
    let colour = *COLOUR
        .get_or_init(|| std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    paint(name, NAME_WIDTH.load(Ordering::Relaxed), colour)
}

/// `name` padded to `width`, in a colour of its own when `colour` is set.
fn paint(name: &str, width: usize, colour: bool) -> String {
    // Foreground colours readable on dark and light terminals: cyan, yellow, green, magenta,
    // blue, red. zoo's own name stays uncoloured (bold) so that apps stand out.
    const COLOUR_COUNT: usize = 6;
    const COLOURS: [u8; COLOUR_COUNT] = [36, 33, 32, 35, 34, 31];
    if !colour {
        return format!("{name:<width$} | ");
    }
    let code = if name == "zoo" {
        1
    } else {
        let hash = name.bytes().fold(0usize, |hash, byte| {
            hash.wrapping_mul(31).wrapping_add(byte.into())
        });
        COLOURS[hash % COLOUR_COUNT]
    };
    format!("\x1b[{code}m{name:<width$}\x1b[0m | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_pads_to_the_widest_name() {
        reserve_name_width("python");
        let width = NAME_WIDTH.load(Ordering::Relaxed);
        assert_eq!(paint("zoo", width, false), "zoo    | ");
    }

    #[test]
    fn colour_wraps_the_padded_name_only() {
        assert_eq!(paint("web", 5, false), "web   | ");
        assert_eq!(paint("zoo", 4, true), "\x1b[1mzoo \x1b[0m | ");
        let web = paint("web", 5, true);
        assert!(
            web.starts_with("\x1b[3") && web.ends_with("web  \x1b[0m | "),
            "{web:?}"
        );
    }
}
