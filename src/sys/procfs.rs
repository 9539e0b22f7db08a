//! The few facts the init reads about processes from /proc (proc(5)): a process's
//! name, state and parent, and the list of pids. Reads only; every function
//! tolerates a process that exits while it looks (it is then simply not there).

use std::fs;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The command name (`comm`), at most 15 bytes.
    pub name: String,
    /// One letter: R, S, D, Z, T, X...
    pub state: char,
    pub ppid: i32,
}

impl Stat {
    /// A live process: neither a zombie nor dead.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so the rest is parsed after the
/// last `)`: then come the state and the ppid.
pub fn parse_stat(stat: &str) -> Option<Stat> {
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat {
        name: name.to_owned(),
        state,
        ppid,
    })
}

/// The stat of `pid`, if it exists.
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every pid in /proc now.
pub fn pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .collect()
}

/// Whether `pid` is a live (not zombie) process named `name`.
pub fn is_live_named(pid: i32, name: &str) -> bool {
    stat(pid).is_some_and(|s| s.name == name && s.is_live())
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_table() {
        let cases = [
            ("1 (init) S 0 1 1", Some(("init", 'S', 0))),
            ("42 (a b) c) Z 7 42 42", Some(("a b) c", 'Z', 7))),
            ("5 (containerd) R 1 5", Some(("containerd", 'R', 1))),
            ("garbage", None),
            ("9 (x) S", None),
        ];
        for (line, want) in cases {
            let got = parse_stat(line);
            assert_eq!(
                got.as_ref().map(|s| (s.name.as_str(), s.state, s.ppid)),
                want,
                "{line}"
            );
        }
        assert!(!parse_stat("1 (x) Z 0").unwrap().is_live());
        assert!(parse_stat("1 (x) D 0").unwrap().is_live());
    }

    #[test]
    fn this_process_is_seen() {
        let me = std::process::id() as i32;
        assert!(pids().contains(&me));
        assert!(stat(me).unwrap().is_live());
    }
}
