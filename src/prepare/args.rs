//! Reading dockerd's command-line options the way dockerd does (`--x=v`, `--x v`,
//! and `-Hv` for one-letter names), for the parts of the preparation that must know
//! what the user's `dockerd.args` already set: the launch builder, TLS, storage,
//! stale-state cleanup, cgroup's runtime directories, the container check.

/// Whether `args` set option `names` (as `--x`, `--x=v`, `-H`, `-Hv`).
pub fn has_option(args: &[String], names: &[&str]) -> bool {
    args.iter().any(|a| {
        names.iter().any(|n| {
            a == n
                || a.strip_prefix(n).is_some_and(|rest| rest.starts_with('='))
                || (n.len() == 2 && !n.starts_with("--") && a.starts_with(n))
        })
    })
}

/// The value of option `names` in `args` (`--x=v` or `--x v`), last one wins.
pub fn option_value(args: &[String], names: &[&str]) -> Option<String> {
    option_values(args, names).pop()
}

/// Every value of option `names` in `args` (`--x=v`, `--x v`, and `-Hv` for a
/// one-letter name), in order.
pub fn option_values(args: &[String], names: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut iter = args.iter().peekable();
    while let Some(a) = iter.next() {
        for n in names {
            if a == n {
                if let Some(v) = iter.peek() {
                    found.push((*v).clone());
                }
            } else if let Some(v) = a.strip_prefix(n) {
                if let Some(v) = v.strip_prefix('=') {
                    found.push(v.to_owned());
                } else if n.len() == 2 && !n.starts_with("--") && !v.is_empty() {
                    found.push(v.to_owned());
                }
            }
        }
    }
    found
}
