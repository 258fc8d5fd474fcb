//! "Did you mean" for misspelt keys and names: picks the closest candidate by edit distance,
//! or none when nothing is close enough to be a plausible typo.

/// The candidate closest to `word`, if it is within two edits and not a total rewrite.
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (levenshtein(word, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= 2 && distance < candidate.chars().count())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Classic two-row Levenshtein distance, counted in characters.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("comand", "command"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
    }

    #[test]
    fn closest_picks_a_near_candidate() {
        let keys = ["command", "port", "dir", "env", "ready", "restart"];
        assert_eq!(closest("comand", keys), Some("command"));
        assert_eq!(closest("restrat", keys), Some("restart"));
        assert_eq!(closest("prot", keys), Some("port"));
    }

    #[test]
    fn closest_ignores_far_candidates() {
        assert_eq!(closest("xyz", ["command", "port"]), None);
        assert_eq!(closest("ab", ["cd"]), None);
    }
}
