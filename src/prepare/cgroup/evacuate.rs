//! cgroup v2: moving every visible process out of a namespace's root cgroup and
//! enabling the controllers for its children, with the EBUSY retry; the machine's own
//! root (no `cgroup.type`) is exempt. The cgroupfs reads and writes go through a trait,
//! so the moves and retries are unit-tested without a kernel.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::Path;

use tracing::debug;

use super::*;

/// The files the v2 evacuation reads and writes (cgroupfs, and `/proc/<pid>/comm` to
/// name processes): a trait so that the moves and the EBUSY retry are unit-tested
/// without a kernel.
pub(super) trait CgroupFiles {
    fn read(&mut self, path: &Path) -> io::Result<String>;
    /// One write(2) of `data` (cgroupfs takes one value per write).
    fn write(&mut self, path: &Path, data: &str) -> io::Result<()>;
}

pub(super) struct RealFiles;

impl CgroupFiles for RealFiles {
    fn read(&mut self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&mut self, path: &Path, data: &str) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let n = f.write(data.as_bytes())?;
        if n == data.len() {
            Ok(())
        } else {
            Err(io::ErrorKind::WriteZero.into())
        }
    }
}

/// A process as messages name it: `1 (docker-init)`.
pub(super) fn describe_pid(files: &mut impl CgroupFiles, pid: i32) -> String {
    match files.read(&Path::new("/proc").join(pid.to_string()).join("comm")) {
        Ok(comm) if !comm.trim().is_empty() => format!("{pid} ({})", comm.trim()),
        _ => pid.to_string(),
    }
}

/// The processes of a cgroup, as its `cgroup.procs` lists them.
#[derive(Debug, Default)]
pub(super) struct Procs {
    /// Pids in the init's pid namespace.
    pub(super) visible: Vec<i32>,
    /// Entries shown as pid 0: processes outside the init's pid namespace. They cannot
    /// be named, and writing "0" would move the writer itself.
    pub(super) hidden: usize,
}

pub(super) fn read_procs(files: &mut impl CgroupFiles, cgroup: &Path) -> io::Result<Procs> {
    let text = files.read(&cgroup.join("cgroup.procs"))?;
    let mut procs = Procs::default();
    for pid in text
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if pid == 0 {
            procs.hidden += 1;
        } else {
            procs.visible.push(pid);
        }
    }
    Ok(procs)
}

/// What moving the processes of a cgroup did.
#[derive(Debug, Default)]
pub(super) struct MoveReport {
    /// The processes moved, named (`1 (docker-init)`).
    pub(super) moved: Vec<String>,
    /// The processes the kernel refused to move, named, with its answer.
    pub(super) refused: Vec<(String, io::Error)>,
}

impl MoveReport {
    fn absorb(&mut self, other: MoveReport) {
        self.moved.extend(other.moved);
        self.refused = other.refused;
    }
}

/// Moves every process of `from` that the init can see into `to` (SPEC §5: not only the
/// init itself; when it is not PID 1, PID 1 and its siblings keep the namespace's root
/// busy just as well). ESRCH (the process exited meanwhile) is not an error; other
/// refusals are recorded, named, and left for the EBUSY retry.
pub(super) fn move_pids(files: &mut impl CgroupFiles, from: &Path, to: &Path) -> MoveReport {
    let mut report = MoveReport::default();
    let procs = match read_procs(files, from) {
        Ok(procs) => procs,
        Err(e) => {
            debug!(error = %e, from = %from.display(), "cannot read cgroup.procs");
            return report;
        }
    };
    let target = to.join("cgroup.procs");
    for pid in procs.visible {
        // Named before the move: a process that exits right after it cannot be.
        let name = describe_pid(files, pid);
        match files.write(&target, &pid.to_string()) {
            Ok(()) => report.moved.push(name),
            Err(e) if is_errno(&e, rustix::io::Errno::SRCH) => {}
            Err(e) => report.refused.push((name, e)),
        }
    }
    report
}

pub(super) fn is_errno(e: &io::Error, errno: rustix::io::Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

/// Why enabling stayed EBUSY: what was still in the cgroup after the last attempt.
#[derive(Debug)]
pub(super) struct Busy {
    pub(super) error: io::Error,
    /// The processes left in the cgroup, named.
    pub(super) remaining: Vec<String>,
    /// Processes outside the init's pid namespace in it (pid 0).
    pub(super) hidden: usize,
    /// The last refusals to move, named, with the kernel's answer.
    pub(super) refused: Vec<(String, io::Error)>,
}

/// What enabling the v2 controllers did.
#[derive(Debug, Default)]
pub(super) struct EnableReport {
    /// Controllers newly enabled.
    pub(super) enabled: Vec<String>,
    /// Processes moved by the retries.
    pub(super) moves: MoveReport,
    /// Writes made (1 when the first one worked).
    pub(super) attempts: u32,
    /// Controllers the kernel refused for another reason than EBUSY.
    pub(super) refused: Vec<(String, io::Error)>,
    /// Still EBUSY after every attempt.
    pub(super) busy: Option<Busy>,
}

/// Enables every controller of `cgroup.controllers` not yet in `cgroup.subtree_control`
/// (hack/dind), all in one write; on EBUSY (a process is still in the cgroup: "no
/// internal processes") moves processes into `evacuate_to` again and retries, at most
/// [`V2_ENABLE_ATTEMPTS`] writes (`None`: the machine's root cgroup, where nothing is
/// moved). Another error makes it try each controller alone, so that one refused
/// controller does not cost the others.
pub(super) fn enable_controllers(
    files: &mut impl CgroupFiles,
    cgroup: &Path,
    evacuate_to: Option<&Path>,
) -> EnableReport {
    let mut report = EnableReport::default();
    let available = files
        .read(&cgroup.join("cgroup.controllers"))
        .unwrap_or_default();
    let enabled = files
        .read(&cgroup.join("cgroup.subtree_control"))
        .unwrap_or_default();
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.contains(c))
        .map(str::to_owned)
        .collect();
    if missing.is_empty() {
        return report;
    }
    let control = cgroup.join("cgroup.subtree_control");
    let all = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let attempts = if evacuate_to.is_some() {
        V2_ENABLE_ATTEMPTS
    } else {
        1
    };
    loop {
        report.attempts += 1;
        match files.write(&control, &all) {
            Ok(()) => {
                report.enabled = missing;
                return report;
            }
            Err(e) if is_errno(&e, rustix::io::Errno::BUSY) => {
                match evacuate_to {
                    Some(to) if report.attempts < attempts => {
                        let moved = move_pids(files, cgroup, to);
                        report.moves.absorb(moved);
                        continue;
                    }
                    _ => {}
                }
                let procs = read_procs(files, cgroup).unwrap_or_default();
                let remaining = procs
                    .visible
                    .iter()
                    .map(|pid| describe_pid(files, *pid))
                    .collect();
                report.busy = Some(Busy {
                    error: e,
                    remaining,
                    hidden: procs.hidden,
                    refused: std::mem::take(&mut report.moves.refused),
                });
                return report;
            }
            Err(_) => break,
        }
    }
    for c in missing {
        match files.write(&control, &format!("+{c}")) {
            Ok(()) => report.enabled.push(c),
            Err(e) => report.refused.push((c, e)),
        }
    }
    report
}

/// At most this many processes are named in one line.
pub(super) const NAMED_AT_MOST: usize = 8;

/// `1 (docker-init), 7 (dind-init)`, cut after [`NAMED_AT_MOST`].
pub(super) fn name_list(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(NAMED_AT_MOST)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED_AT_MOST {
        text.push_str(&format!(" and {} more", names.len() - NAMED_AT_MOST));
    }
    text
}
