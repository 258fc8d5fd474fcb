//! The walk of what serving files and compressing responses take: a `static` route's
//! directory and its options (`fallback`, `cache`, `dotfiles`, `follow_symlinks`), and
//! `compress` (top level or per route). The one place the walk looks at the disk: a `static`
//! root that is missing or not a directory, and a `fallback` that is not a file in it, are
//! reported at their line (read-only `stat`s; nothing is opened or created).

use super::read::{Fields, Value, Walker, join, list, optional};
use crate::config::{Action, CachePolicy, Coding, StaticFiles};
use toml::de::DeValue;

impl Walker<'_> {
    pub(super) fn static_action(
        &mut self,
        at: &str,
        value: &Value<'_>,
        fields: &Fields<'_, '_>,
    ) -> Option<Action> {
        let root_at = join(at, "static");
        let root = self.non_empty_string(&root_at, value).and_then(|dir| {
            let root = self.base.join(&dir);
            match std::fs::metadata(&root) {
                Ok(metadata) if metadata.is_dir() => Some(root),
                Ok(_) => {
                    let message = format!("`{}` is not a directory", root.display());
                    self.error(value.span(), &root_at, message);
                    None
                }
                Err(error) => {
                    let message = format!("cannot use `{}`: {error}", root.display());
                    self.error(value.span(), &root_at, message);
                    None
                }
            }
        });
        let fallback = optional(fields.get("fallback"), |fallback_value| {
            let fallback_at = join(at, "fallback");
            let file = self.non_empty_string(&fallback_at, fallback_value)?;
            let relative = file.trim_start_matches('/');
            let inside = std::path::Path::new(relative)
                .components()
                .all(|part| matches!(part, std::path::Component::Normal(_)));
            let is_file = root
                .as_ref()
                .is_some_and(|root| root.join(relative).is_file());
            if !inside || (root.is_some() && !is_file) {
                let message = format!("`{file}` is not a file in the `static` directory");
                self.error(fallback_value.span(), &fallback_at, message);
                return None;
            }
            Some(relative.to_owned())
        });
        let cache = optional(fields.get("cache"), |cache_value| {
            self.cache(&join(at, "cache"), cache_value)
        });
        let dotfiles = optional(fields.get("dotfiles"), |flag| {
            self.boolean(&join(at, "dotfiles"), flag)
        });
        let follow_symlinks = optional(fields.get("follow_symlinks"), |flag| {
            self.boolean(&join(at, "follow_symlinks"), flag)
        });
        Some(Action::Static(Box::new(StaticFiles {
            root: root?,
            fallback: fallback?,
            cache: cache?,
            dotfiles: dotfiles?.unwrap_or(false),
            follow_symlinks: follow_symlinks?.unwrap_or(false),
        })))
    }

    /// `"immutable"`, `"no-cache"` or a duration (`"1h"`, or seconds).
    fn cache(&mut self, at: &str, value: &Value<'_>) -> Option<CachePolicy> {
        match value.get_ref() {
            DeValue::String(text) if text.as_ref() == "immutable" => Some(CachePolicy::Immutable),
            DeValue::String(text) if text.as_ref() == "no-cache" => Some(CachePolicy::NoCache),
            _ => self.duration(at, value).map(CachePolicy::MaxAge),
        }
    }

    /// `true` (zstd, br, gzip), `false`, or a list of codings in the order zoo prefers them.
    pub(super) fn compress(&mut self, at: &str, value: &Value<'_>) -> Option<Vec<Coding>> {
        match value.get_ref() {
            DeValue::Boolean(true) => Some(Coding::ALL.to_vec()),
            DeValue::Boolean(false) => Some(Vec::new()),
            DeValue::Array(items) => {
                let codings: Option<Vec<Coding>> = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        self.keyword(
                            &format!("{at}[{index}]"),
                            item,
                            Coding::from_name,
                            |other| {
                                format!(
                                    "unknown coding \"{other}\"; expected one of {}",
                                    list(Coding::NAMES)
                                )
                            },
                        )
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect();
                let mut codings = codings?;
                let mut seen = Vec::with_capacity(codings.len());
                codings.retain(|coding| {
                    let first = !seen.contains(coding);
                    seen.push(*coding);
                    first
                });
                Some(codings)
            }
            _ => {
                self.mismatch(at, value, "true, false or a list like [\"zstd\", \"gzip\"]");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Action, CachePolicy, Coding, ConfigError, parse};

    fn parsed(source: &str) -> Result<crate::config::Config, Vec<String>> {
        parse(source, Path::new("/nowhere/zoo.toml"), &|_| None).map_err(|error| match error {
            ConfigError::Invalid { diagnostics, .. } => diagnostics
                .into_iter()
                .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
                .collect(),
            other @ ConfigError::Read { .. } => vec![other.to_string()],
        })
    }

    #[test]
    fn static_route_reads_its_options_and_strips_its_key_by_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "x").unwrap();
        let source = format!(
            "compress = [\"gzip\", \"br\", \"gzip\"]\n[routes]\n\"/\" = {{ static = \"{}\", \
             fallback = \"index.html\", cache = \"1h\", dotfiles = true, compress = false }}\n",
            dir.path().display()
        );
        let config = parsed(&source).unwrap();
        assert_eq!(config.compress, [Coding::Gzip, Coding::Br]);
        let route = &config.routes[0];
        assert!(route.strip_prefix);
        assert_eq!(route.compress, Some(Vec::new()));
        let Action::Static(files) = &route.action else {
            panic!("{route:?}")
        };
        assert_eq!(files.fallback.as_deref(), Some("index.html"));
        assert_eq!(
            files.cache,
            Some(CachePolicy::MaxAge(std::time::Duration::from_secs(3600)))
        );
        assert!(files.dotfiles && !files.follow_symlinks);
    }

    #[test]
    fn static_root_and_fallback_are_checked_on_disk_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file.txt");
        std::fs::write(&file, "x").unwrap();
        let source = format!(
            "[routes]\n\"/a\" = {{ static = \"{0}/missing\" }}\n\"/b\" = {{ static = \"{1}\" }}\n\
             \"/c\" = {{ static = \"{0}\", fallback = \"nope.html\" }}\n\
             \"/d\" = {{ static = \"{0}\", fallback = \"../file.txt\" }}\n\
             \"/e\" = {{ app = \"x\", cache = \"immutable\" }}\n",
            dir.path().display(),
            file.display()
        );
        let errors = parsed(&source).unwrap_err();
        assert!(
            errors[0].starts_with("2:19: routes.\"/a\".static: cannot use"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("routes.\"/b\".static: ")
                && errors[1].contains("is not a directory")
        );
        assert!(errors[2].contains("`nope.html` is not a file in the `static` directory"));
        assert!(errors[3].contains("`../file.txt` is not a file"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`cache` applies only to `static` routes"))
        );
    }

    #[test]
    fn compress_refuses_unknown_codings() {
        let errors = parsed("compress = [\"gzip\", \"lzma\"]").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("compress[1]: unknown coding \"lzma\""),
            "{errors:?}"
        );
        assert!(parsed("compress = 3").is_err());
    }
}
