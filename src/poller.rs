//! The event loop's one blocking call: epoll(7), kept in step with what the loop
//! wants watched, without a system call for what did not change.
//!
//! Each turn the loop lists what it wants watched ([`Poller::want`]: a key, an fd,
//! the events); [`Poller::sync`] compares that list with the registrations the
//! kernel holds and issues `epoll_ctl` only for the differences; [`Poller::wait`]
//! waits. On a turn where only a signal came, nothing changed: the turn costs one
//! `epoll_wait`,
//! which reports the ready fds alone (poll(2) walked every fd's poll method twice
//! a turn). Registrations are level-triggered, so the loop sees what poll(2)
//! showed it: an fd stays ready until drained.
//!
//! Keys must be unique for the lifetime of an open file: an fd that is closed and
//! replaced (a new ping, dockerd's new pipes, a new client) comes back under a new
//! key (see [`next_serial`]), so that a key that stays means the same file. A
//! closed fd leaves the epoll set by itself once its file has no other reference
//! (every fd of the init is close-on-exec and never duplicated; a child holds
//! copies only between fork and exec, and std's spawn returns after the exec).
//! The stale registration is still deleted by number, before anything is added:
//! then the number is either free or held by a file this turn wants that is not
//! registered yet, and the deletion fails harmlessly.
//!
//! The `epoll_ctl` calls take raw fd numbers (through libc), so what the loop
//! promises is only this: a wanted fd stays open until [`Poller::sync`] returns.
//! A failed call is logged once per episode and retried at the next sync.
//!
//! Nothing here allocates after the first turns: the lists are reused.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::libc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, Event, EventFlags};
use rustix::event::Timespec;
use tracing::warn;

/// Events reported by one `epoll_wait` at most; more stay ready for the next.
const MAX_EVENTS: usize = 128;

/// A number never returned before, to make keys unique per open file.
pub fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(1);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key: u64,
    fd: RawFd,
    flags: EventFlags,
}

/// An epoll instance and the registrations it holds.
pub struct Poller {
    epoll: OwnedFd,
    /// What the kernel holds, sorted by key.
    registered: Vec<Entry>,
    /// What the loop wants this turn.
    wanted: Vec<Entry>,
    events: Vec<Event>,
    /// An `epoll_ctl` failed on the last sync (logged once per episode).
    ctl_failing: bool,
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        Ok(Poller {
            epoll: epoll::create(CreateFlags::CLOEXEC)?,
            registered: Vec::with_capacity(MAX_EVENTS),
            wanted: Vec::with_capacity(MAX_EVENTS),
            events: Vec::with_capacity(MAX_EVENTS),
            ctl_failing: false,
        })
    }

    /// Asks for `fd` to be watched for `flags` (IN, OUT; HUP and ERR are always
    /// reported) under `key` in the next [`Poller::wait`]. Empty `flags` keep
    /// the fd registered but quiet (a listener at rest).
    pub fn want(&mut self, key: u64, fd: BorrowedFd<'_>, flags: EventFlags) {
        self.wanted.push(Entry {
            key,
            fd: fd.as_raw_fd(),
            flags,
        });
    }

    /// Waits up to `timeout` (forever when `None`) on the registrations of the
    /// last [`Poller::sync`]. Returns how many events arrived; read them with
    /// [`Poller::event`].
    pub fn wait(&mut self, timeout: Option<&Timespec>) -> rustix::io::Result<usize> {
        self.events.clear();
        epoll::wait(&self.epoll, spare_capacity(&mut self.events), timeout)?;
        Ok(self.events.len())
    }

    /// The key and the events of the `i`th event of the last wait.
    pub fn event(&self, i: usize) -> Option<(u64, EventFlags)> {
        self.events.get(i).map(|e| {
            // Copied out: the struct is packed on x86_64.
            let (flags, data) = (e.flags, e.data);
            (data.u64(), flags)
        })
    }

    /// Brings the registrations in line with the wants given since the last
    /// sync, and forgets those wants. A sync with no wants unregisters all.
    /// Every wanted fd must still be open (the loop calls `want`, then `sync`).
    pub fn sync(&mut self) {
        self.wanted.sort_unstable_by_key(|e| e.key);
        let epoll = self.epoll.as_raw_fd();
        let mut failed: Option<io::Error> = None;
        // Deletions first: a number freed by a closed fd may have been taken by
        // a new one that is added below.
        for old in &self.registered {
            if self
                .wanted
                .binary_search_by_key(&old.key, |e| e.key)
                .is_err()
            {
                // EBADF or ENOENT when the file was closed (it left by itself).
                let _ = ctl(epoll, libc::EPOLL_CTL_DEL, old.fd, 0, EventFlags::empty());
            }
        }
        for new in self.wanted.iter_mut() {
            let old = self
                .registered
                .binary_search_by_key(&new.key, |e| e.key)
                .ok()
                .and_then(|k| self.registered.get(k));
            let result = match old {
                Some(old) if old.flags == new.flags && old.fd == new.fd => Ok(()),
                Some(_) => ctl(epoll, libc::EPOLL_CTL_MOD, new.fd, new.key, new.flags),
                None => match ctl(epoll, libc::EPOLL_CTL_ADD, new.fd, new.key, new.flags) {
                    // Registered under another key that is still wanted (two
                    // keys for one fd): the newest wins.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        ctl(epoll, libc::EPOLL_CTL_MOD, new.fd, new.key, new.flags)
                    }
                    other => other,
                },
            };
            if let Err(e) = result {
                failed.get_or_insert(e);
                // Remember what the kernel really holds, so that the next sync
                // tries again: the old registration, or none.
                match old {
                    Some(old) => *new = *old,
                    None => new.key = UNREGISTERED,
                }
            }
        }
        self.wanted.retain(|e| e.key != UNREGISTERED);
        match failed {
            Some(e) if !self.ctl_failing => {
                warn!(error = %e, "epoll_ctl failed; will retry at every turn");
                self.ctl_failing = true;
            }
            Some(_) => {}
            None => self.ctl_failing = false,
        }
        std::mem::swap(&mut self.registered, &mut self.wanted);
        self.wanted.clear();
    }
}

/// Marks a want whose registration failed (no key is all ones: see
/// `event_loop.rs`, whose keys are a small kind and a serial).
const UNREGISTERED: u64 = u64::MAX;

/// epoll_ctl(2) on raw numbers.
fn ctl(epoll: RawFd, op: libc::c_int, fd: RawFd, key: u64, flags: EventFlags) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: flags.bits(),
        u64: key,
    };
    // SAFETY: `event` is a valid epoll_event on the stack, read by the kernel
    // during the call only (and ignored for EPOLL_CTL_DEL). The fds are plain
    // numbers the kernel looks up and checks; a wrong one is an error, not
    // memory unsafety.
    let rc = unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("epoll", &self.epoll)
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn ready(p: &mut Poller, ms: i64) -> Vec<(u64, EventFlags)> {
        let t = Timespec {
            tv_sec: 0,
            tv_nsec: ms * 1_000_000,
        };
        p.sync();
        let n = p.wait(Some(&t)).unwrap();
        (0..n).filter_map(|i| p.event(i)).collect()
    }

    #[test]
    fn reports_ready_fds_under_their_keys_level_triggered() {
        let mut p = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let (_c, d) = UnixStream::pair().unwrap();
        p.want(1, b.as_fd(), EventFlags::IN);
        p.want(2, d.as_fd(), EventFlags::IN);
        assert!(ready(&mut p, 0).is_empty());
        a.write_all(b"x").unwrap();
        for _ in 0..2 {
            // Not drained: reported again, like poll(2).
            p.want(1, b.as_fd(), EventFlags::IN);
            p.want(2, d.as_fd(), EventFlags::IN);
            let r = ready(&mut p, 100);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].0, 1);
            assert!(r[0].1.contains(EventFlags::IN));
        }
    }

    #[test]
    fn unwanted_fds_are_removed_and_flags_changes_applied() {
        let mut p = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"x").unwrap();
        p.want(7, b.as_fd(), EventFlags::IN);
        assert_eq!(ready(&mut p, 100).len(), 1);
        // Not wanted this turn: deleted, so no event.
        assert!(ready(&mut p, 0).is_empty());
        // Wanted for output only (writable at once), then quiet.
        p.want(7, b.as_fd(), EventFlags::OUT);
        let r = ready(&mut p, 100);
        assert_eq!(r.len(), 1);
        assert!(r[0].1.contains(EventFlags::OUT) && !r[0].1.contains(EventFlags::IN));
        p.want(7, b.as_fd(), EventFlags::empty());
        assert!(ready(&mut p, 0).is_empty());
    }

    #[test]
    fn a_replaced_fd_with_the_same_number_is_watched_under_its_new_key() {
        let mut p = Poller::new().unwrap();
        let (_a, b) = UnixStream::pair().unwrap();
        p.want(1, b.as_fd(), EventFlags::IN);
        assert!(ready(&mut p, 0).is_empty());
        // Closed: the kernel hands out the lowest free number, so the new
        // pair most likely reuses it.
        drop(b);
        let (mut c, d) = UnixStream::pair().unwrap();
        c.write_all(b"y").unwrap();
        p.want(2, d.as_fd(), EventFlags::IN);
        let r = ready(&mut p, 100);
        assert_eq!(r.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_failed_registration_is_not_taken_as_done_and_spoils_nothing_else() {
        let mut p = Poller::new().unwrap();
        // epoll refuses regular files (EPERM).
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"x").unwrap();
        p.want(1, file.as_fd(), EventFlags::IN);
        p.want(2, b.as_fd(), EventFlags::IN);
        let r = ready(&mut p, 100);
        assert_eq!(r.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2]);
        assert!(p.ctl_failing);
        // Not recorded as registered: the next sync tries again.
        assert!(p.registered.iter().all(|e| e.key != 1));
        assert!(p.registered.iter().any(|e| e.key == 2));
        // Once it is no longer wanted, the episode ends.
        p.want(2, b.as_fd(), EventFlags::IN);
        assert_eq!(ready(&mut p, 100).len(), 1);
        assert!(!p.ctl_failing);
    }

    #[test]
    fn serials_are_unique() {
        let a = next_serial();
        let b = next_serial();
        assert_ne!(a, b);
    }
}
