//! Near misses: which of our own names a word that is none of them was probably meant
//! to be, for "did you mean ...?" hints. The command line asks it about a COMMAND that
//! exec cannot find (`dind-init stauts`), the config about an unknown key or table
//! (`verfy`).
//!
//! It only suggests: a hint adds to an error message and never changes what is
//! accepted.

/// The name in `names` nearest to `word`, when it is near enough to be a misspelling
/// of it: at most one edit (a character added, removed or replaced, or two neighbours
/// swapped) per three characters of `word`, and at least one, so that `verfy` finds
/// `verify` while `foo` finds neither `env` nor `tcp`. Ties go to the earlier name.
pub fn closest<'a>(word: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = (len / 3).max(1);
    names
        .into_iter()
        // The distance is at least the difference in length: a name too far off in
        // length is skipped before the table is built (an unknown key of megabytes,
        // hostile input, would otherwise cost a table of megabytes squared).
        .filter(|name| len.abs_diff(name.chars().count()) <= limit)
        .map(|name| (edit_distance(word, name), name))
        .filter(|(distance, _)| *distance <= limit)
        // `min_by_key` keeps the first of equal ones.
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance, with a swap of two neighbours counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        if let Some(first) = row.first_mut() {
            *first = i;
        }
    }
    if let Some(row) = d.first_mut() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a.get(i - 1) != b.get(j - 1));
            let at = |d: &Vec<Vec<usize>>, x: usize, y: usize| {
                d.get(x)
                    .and_then(|r| r.get(y))
                    .copied()
                    .unwrap_or(usize::MAX - 1)
            };
            let mut best = (at(&d, i - 1, j) + 1)
                .min(at(&d, i, j - 1) + 1)
                .min(at(&d, i - 1, j - 1) + cost);
            if i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1) {
                best = best.min(at(&d, i - 2, j - 2) + 1);
            }
            if let Some(cell) = d.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = best;
            }
        }
    }
    d.last().and_then(|r| r.last()).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_table() {
        for (a, b, want) in [
            ("status", "stauts", 1),
            ("", "abc", 3),
            ("kitten", "sitting", 3),
            ("verify", "verfy", 1),
            ("level", "levle", 1),
            ("same", "same", 0),
        ] {
            assert_eq!(edit_distance(a, b), want, "{a} {b}");
        }
    }

    #[test]
    fn closest_table() {
        let keys: Vec<&str> = "file socket socket_mode tcp interval timeout verify"
            .split(' ')
            .collect();
        for (word, want) in [
            ("verfy", Some("verify")),
            ("veryfy", Some("verify")),
            ("timout", Some("timeout")),
            ("sockt", Some("socket")),
            ("socket_mod", Some("socket_mode")),
            ("tc", Some("tcp")),
            // One edit per three characters: short words get only one.
            ("foo", None),
            ("ttl", None),
            ("colour", None),
            ("", None),
        ] {
            assert_eq!(closest(word, keys.iter().copied()), want, "{word:?}");
        }
        // Equally near: the earlier name.
        assert_eq!(closest("ab", ["ax", "ay"]), Some("ax"));
    }
}
