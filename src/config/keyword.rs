//! [`keyword_enum!`]: declares a config enum whose variants are each spelt by one word in
//! `zoo.toml`, and derives from that one table everything that needs the spelling (`ALL`,
//! `NAMES`, `as_str`, `from_name`), so that the parser, messages and output such as
//! `zoo check` cannot disagree on it.

/// Declares `pub enum $name { $variant => "spelling", ... }` with, in an `impl`:
/// `ALL` (the variants in declaration order), `NAMES` (their spellings in the same order, for
/// "expected one of" messages), `as_str` and `from_name` (exact match, as in `zoo.toml`).
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $spelling:literal, )+
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// How `zoo.toml` spells each of [`Self::ALL`], in the same order.
            pub const NAMES: &'static [&'static str] = &[$($spelling),+];

            /// How `zoo.toml` spells it.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $spelling,)+
                }
            }

            /// The variant `zoo.toml` spells `text` (case matters), if any.
            #[must_use]
            pub fn from_name(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|variant| variant.as_str() == text)
            }
        }
    };
}

pub(super) use keyword_enum;
