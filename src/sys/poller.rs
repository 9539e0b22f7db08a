//! The event loop's one blocking call: epoll(7), with each fd registered when it
//! is created and removed when it is closed.
//!
//! An fd the loop waits on lives in a [`Watched`]: made with the epoll set, a
//! [`Token`] that says what it is, and the events wanted; its interest changes with
//! [`Watched::set`]; dropping it removes it from the epoll set and then closes it.
//! Nothing is compared or re-registered per turn: a turn where only a signal came
//! costs one `epoll_wait`, which reports the ready fds alone. Registrations are
//! level-triggered, so an fd stays ready until drained, as with poll(2).
//!
//! Every call is rustix's I/O-safe one (`epoll::add`, `modify`, `delete` take
//! `AsFd`): no raw fd numbers, no unsafe code.
//!
//! A token may be reused after its fd was closed (the next ping is a `Ping` again),
//! and an event already read in the same batch may then name the new fd. Handlers
//! therefore treat an event as a hint: every fd is non-blocking and a spurious
//! wake-up reads `EAGAIN` and changes nothing. Connections carry unique ids, so
//! their events never reach a newer client.
//!
//! Nothing here allocates after the first wait: the event buffer is reused.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::Timespec;

/// Events reported by one `epoll_wait` at most; more stay ready for the next.
const MAX_EVENTS: usize = 128;

/// What a watched fd is: the event loop dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Signals,
    /// dockerd's stdout or stderr pipe.
    Stdout,
    Stderr,
    /// dockerd's sd_notify datagram socket.
    Notify,
    /// The inotify watch for dockerd's API socket.
    SocketWatch,
    /// A `/_ping` in flight, by slot (see `run/prober.rs`).
    Ping(u8),
    /// The status listeners.
    ListenerUnix,
    ListenerTcp,
    /// A status client, by its unique id.
    Conn(u64),
    /// The stderr pipe of a helper process (iptables).
    Helper,
    /// A Docker API call in flight (`run/api.rs`).
    Api,
}

impl Token {
    /// The epoll user data: a kind in the low 8 bits, an id above.
    fn encode(self) -> u64 {
        let (kind, id): (u64, u64) = match self {
            Token::Signals => (0, 0),
            Token::Stdout => (1, 0),
            Token::Stderr => (2, 0),
            Token::Notify => (3, 0),
            Token::SocketWatch => (4, 0),
            Token::Ping(slot) => (5, u64::from(slot)),
            Token::ListenerUnix => (6, 0),
            Token::ListenerTcp => (7, 0),
            Token::Conn(id) => (8, id),
            Token::Helper => (9, 0),
            Token::Api => (10, 0),
        };
        (id << 8) | kind
    }

    fn decode(data: u64) -> Option<Token> {
        let id = data >> 8;
        Some(match data & 0xff {
            0 => Token::Signals,
            1 => Token::Stdout,
            2 => Token::Stderr,
            3 => Token::Notify,
            4 => Token::SocketWatch,
            5 => Token::Ping(u8::try_from(id).ok()?),
            6 => Token::ListenerUnix,
            7 => Token::ListenerTcp,
            8 => Token::Conn(id),
            9 => Token::Helper,
            10 => Token::Api,
            _ => return None,
        })
    }
}

/// A handle on the epoll set, for the code that creates fds to register them.
#[derive(Debug, Clone)]
pub struct Registry {
    epoll: Rc<OwnedFd>,
    /// Registrations alive (for tests and the leak checks of the benchmarks).
    count: Rc<Cell<usize>>,
}

impl Registry {
    /// How many fds are registered now.
    pub fn registered(&self) -> usize {
        self.count.get()
    }
}

/// The epoll set and the buffer its events are read into.
pub struct Poller {
    registry: Registry,
    events: Vec<Event>,
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        Ok(Poller {
            registry: Registry {
                epoll: Rc::new(epoll::create(CreateFlags::CLOEXEC)?),
                count: Rc::new(Cell::new(0)),
            },
            events: Vec::with_capacity(MAX_EVENTS),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Waits up to `timeout` (forever when `None`). Returns how many events
    /// arrived; read them with [`Poller::event`].
    pub fn wait(&mut self, timeout: Option<&Timespec>) -> rustix::io::Result<usize> {
        self.events.clear();
        epoll::wait(
            &*self.registry.epoll,
            spare_capacity(&mut self.events),
            timeout,
        )?;
        Ok(self.events.len())
    }

    /// The token and the events of the `i`th event of the last wait.
    pub fn event(&self, i: usize) -> Option<(Token, EventFlags)> {
        let e = self.events.get(i)?;
        // Copied out: the struct is packed on x86_64.
        let (flags, data) = (e.flags, e.data);
        Token::decode(data.u64()).map(|t| (t, flags))
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// An fd in the epoll set: registered by [`Watched::new`], removed on drop (before
/// the fd itself is closed).
#[derive(Debug)]
pub struct Watched<F: AsFd> {
    inner: F,
    token: Token,
    registry: Registry,
}

impl<F: AsFd> Watched<F> {
    /// Registers `inner` under `token` for `flags` (IN, OUT; HUP and ERR are
    /// always reported; empty flags keep it registered but quiet). On failure
    /// (ENOMEM, ENOSPC: the user's epoll watch limit) `inner` is returned with
    /// the error, for the caller to drop or keep unwatched.
    pub fn new(
        registry: &Registry,
        inner: F,
        token: Token,
        flags: EventFlags,
    ) -> Result<Self, (F, io::Error)> {
        let data = EventData::new_u64(token.encode());
        if let Err(e) = epoll::add(&*registry.epoll, &inner, data, flags) {
            return Err((inner, e.into()));
        }
        registry.count.set(registry.count.get() + 1);
        Ok(Watched {
            inner,
            token,
            registry: registry.clone(),
        })
    }

    /// Changes the events watched for.
    pub fn set(&self, flags: EventFlags) -> io::Result<()> {
        let data = EventData::new_u64(self.token.encode());
        epoll::modify(&*self.registry.epoll, &self.inner, data, flags)?;
        Ok(())
    }

    pub fn get(&self) -> &F {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    pub fn token(&self) -> Token {
        self.token
    }
}

impl<F: AsFd> AsFd for Watched<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<F: AsFd> Drop for Watched<F> {
    fn drop(&mut self) {
        // Cannot fail for an fd that was added; nothing to do if it did.
        let _ = epoll::delete(&*self.registry.epoll, &self.inner);
        self.registry
            .count
            .set(self.registry.count.get().saturating_sub(1));
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn ready(p: &mut Poller, ms: i64) -> Vec<(Token, EventFlags)> {
        let t = Timespec {
            tv_sec: 0,
            tv_nsec: ms * 1_000_000,
        };
        let n = p.wait(Some(&t)).unwrap();
        (0..n).filter_map(|i| p.event(i)).collect()
    }

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Signals,
            Token::Stdout,
            Token::Stderr,
            Token::Notify,
            Token::SocketWatch,
            Token::Ping(0),
            Token::Ping(2),
            Token::ListenerUnix,
            Token::ListenerTcp,
            Token::Conn(0),
            Token::Conn(u64::MAX >> 8),
            Token::Helper,
            Token::Api,
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0xff), None);
    }

    #[test]
    fn reports_ready_fds_under_their_tokens_level_triggered() {
        let mut p = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let (_c, d) = UnixStream::pair().unwrap();
        let _b = Watched::new(p.registry(), b, Token::Conn(1), EventFlags::IN).unwrap();
        let _d = Watched::new(p.registry(), d, Token::Conn(2), EventFlags::IN).unwrap();
        assert!(ready(&mut p, 0).is_empty());
        a.write_all(b"x").unwrap();
        for _ in 0..2 {
            // Not drained: reported again, like poll(2).
            let r = ready(&mut p, 100);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].0, Token::Conn(1));
            assert!(r[0].1.contains(EventFlags::IN));
        }
    }

    #[test]
    fn interest_changes_and_drop_removes() {
        let mut p = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"x").unwrap();
        let w = Watched::new(p.registry(), b, Token::Notify, EventFlags::IN).unwrap();
        assert_eq!(p.registry().registered(), 1);
        assert_eq!(ready(&mut p, 100).len(), 1);
        // Output only: writable at once, input no longer reported.
        w.set(EventFlags::OUT).unwrap();
        let r = ready(&mut p, 100);
        assert_eq!(r.len(), 1);
        assert!(r[0].1.contains(EventFlags::OUT) && !r[0].1.contains(EventFlags::IN));
        // Quiet.
        w.set(EventFlags::empty()).unwrap();
        assert!(ready(&mut p, 0).is_empty());
        w.set(EventFlags::IN).unwrap();
        assert_eq!(ready(&mut p, 100).len(), 1);
        drop(w);
        assert_eq!(p.registry().registered(), 0);
        assert!(ready(&mut p, 0).is_empty());
    }

    #[test]
    fn a_refused_registration_gives_the_fd_back() {
        let p = Poller::new().unwrap();
        // epoll refuses regular files (EPERM).
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let (file, e) =
            Watched::new(p.registry(), file, Token::Helper, EventFlags::IN).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::PERM.raw_os_error())
        );
        assert_eq!(p.registry().registered(), 0);
        drop(file);
    }
}
