//! Signals: which ones the init takes, how it receives them, and how a child is
//! given a clean slate before exec.
//!
//! The init blocks every signal it acts on and reads them from a signalfd
//! (signalfd(2)), so they arrive as ordinary readable data in the one event loop and
//! no code ever runs in a signal handler. Blocking matters for PID 1 twice over: the
//! kernel drops a signal sent to a namespace's init that has no handler, but a
//! *blocked* signal is queued (kernel/signal.c `sig_ignored`), so SIGTERM from the
//! container runtime is never lost, not even in the moment before the loop starts.
//!
//! Children inherit the blocked mask and ignored dispositions through exec, so
//! `sys::spawn` starts each with every signal at its default and an empty mask:
//! through posix_spawn's attributes, or, when it forks, with [`reset_for_exec`]
//! between fork and exec.
//!
//! It does not decide what to do with a signal beyond classifying it; that is the
//! event loop's job. See signal(7) and signalfd(2).

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::Error;

/// What the init does with a signal it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Reap children.
    Reap,
    /// Begin (or repeat) the shutdown, passing this signal to COMMAND's group.
    Shutdown,
    /// Pass to dockerd (it reloads its config), or to COMMAND without dockerd.
    Reload,
    /// Forward to COMMAND's process group.
    Forward,
}

/// The signals the init takes, with what it does with each (SPEC §9).
pub const HANDLED: &[(Signal, Disposition)] = &[
    (Signal::SIGCHLD, Disposition::Reap),
    (Signal::SIGTERM, Disposition::Shutdown),
    (Signal::SIGINT, Disposition::Shutdown),
    (Signal::SIGQUIT, Disposition::Shutdown),
    (Signal::SIGHUP, Disposition::Reload),
    (Signal::SIGUSR1, Disposition::Forward),
    (Signal::SIGUSR2, Disposition::Forward),
    (Signal::SIGWINCH, Disposition::Forward),
    (Signal::SIGCONT, Disposition::Forward),
    // Job control: blocked so the init itself never stops (in subreaper mode the
    // default action would stop it), forwarded so COMMAND's group does.
    (Signal::SIGTSTP, Disposition::Forward),
    (Signal::SIGTTIN, Disposition::Forward),
    (Signal::SIGTTOU, Disposition::Forward),
];

/// The disposition of signal number `signo`, if the init takes it.
pub fn disposition(signo: i32) -> Option<(Signal, Disposition)> {
    HANDLED.iter().copied().find(|(s, _)| *s as i32 == signo)
}

fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for (sig, _) in HANDLED {
        set.add(*sig);
    }
    set
}

/// Blocks every handled signal and ignores SIGPIPE. Call first thing in run mode,
/// before anything else can fail, so that no signal is lost.
pub fn block() -> Result<(), Error> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None).map_err(
        |e| Error::Signals {
            op: "block signals",
            source: e.into(),
        },
    )?;
    ignore_sigpipe()
}

/// Ignores SIGPIPE: a write to a closed pipe or socket must return EPIPE, not end
/// the init. (The Rust runtime does this too; it is stated here because it matters.)
pub fn ignore_sigpipe() -> Result<(), Error> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN installs no handler code, so nothing can run in signal context.
    unsafe { sigaction(Signal::SIGPIPE, &ignore) }.map_err(|e| Error::Signals {
        op: "ignore SIGPIPE",
        source: e.into(),
    })?;
    Ok(())
}

/// Opens the signalfd for the handled signals (non-blocking, close-on-exec).
pub fn open() -> Result<SignalFd, Error> {
    SignalFd::with_flags(
        &handled_set(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|e| Error::Signals {
        op: "create signalfd",
        source: e.into(),
    })
}

/// Signal numbers read from the signalfd by one read(2), in arrival order.
#[derive(Debug, Default)]
pub struct Batch {
    numbers: [i32; BATCH],
    len: usize,
    /// The queue was found empty: nothing more to read.
    done: bool,
}

impl Batch {
    pub fn signals(&self) -> &[i32] {
        self.numbers.get(..self.len).unwrap_or(&[])
    }
}

/// Reads the next batch of pending signals into `batch`; false once the queue is
/// empty. Loop on it to drain the signalfd without allocating:
/// `while read_batch(fd, &mut b) { for s in b.signals() { ... } }`.
///
/// One read(2) takes up to [`BATCH`] records; a read that returns fewer than a
/// full buffer has emptied the queue, so the common case (one signal) costs one
/// system call, not a second one that only says EAGAIN.
pub fn read_batch(fd: &SignalFd, batch: &mut Batch) -> bool {
    batch.len = 0;
    if batch.done {
        return false;
    }
    // Not zeroed: the kernel writes what is read, and only that is looked at.
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); SIGINFO_SIZE * BATCH];
    let capacity = buf.len();
    let read = loop {
        match rustix::io::read(fd, &mut buf) {
            Ok((read, _)) => break read,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {
                // EAGAIN: the queue is empty
                batch.done = true;
                return false;
            }
        }
    };
    let n = read.len();
    // Each record is a `struct signalfd_siginfo`; its first field is the
    // signal number (u32, native endian).
    for record in read.chunks_exact(SIGINFO_SIZE) {
        if let (Some(&[a, b, c, d]), Some(slot)) =
            (record.get(..4), batch.numbers.get_mut(batch.len))
        {
            *slot = u32::from_ne_bytes([a, b, c, d]) as i32;
            batch.len += 1;
        }
    }
    batch.done = n < capacity;
    batch.len > 0
}

/// Whether a stop (SIGTERM, SIGINT or SIGQUIT) is waiting in the signalfd, not
/// read yet. Asked right before dockerd is started: after the cgroup preparation
/// and the stale-state cleanup of a restart, a stop that came meanwhile means
/// dockerd would only be stopped again. It only looks (sigpending(2)); the loop
/// reads the signal as usual.
pub fn stop_requested() -> bool {
    use nix::libc;
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigpending(2) fills the sigset_t we own; it was zeroed first, so
    // it is initialised even if the call failed (checked anyway).
    let rc = unsafe { libc::sigpending(set.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: zeroed above and written by the kernel: a valid sigset_t.
    let set = unsafe { set.assume_init() };
    [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT]
        .into_iter()
        // SAFETY: `set` is a valid sigset_t and the numbers are valid signals.
        .any(|sig| unsafe { libc::sigismember(&set, sig) } == 1)
}

/// Runs `f` in a thread of its own with `sig` blocked there and pending for that
/// thread alone (no other test sees it), then takes the signal back (sigwait).
#[cfg(test)]
pub(crate) fn with_signal_pending(sig: Signal, f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let mut set = SigSet::empty();
        set.add(sig);
        set.thread_block().unwrap();
        // SAFETY: signals this very thread, which is alive.
        let rc = unsafe { nix::libc::pthread_kill(nix::libc::pthread_self(), sig as i32) };
        assert_eq!(rc, 0);
        f();
        assert_eq!(set.wait().unwrap(), sig);
    })
    .join()
    .unwrap();
}

/// The size of `struct signalfd_siginfo` (signalfd(2)).
const SIGINFO_SIZE: usize = 128;
/// Records read at once from the signalfd.
pub const BATCH: usize = 16;

/// The kernel's `struct sigaction` for rt_sigaction(2) on x86_64 and aarch64
/// (handler, flags, restorer, mask), which differs from the libc one. Both use the
/// generic layout of include/linux/signal_types.h with `sa_restorer` present: x86_64
/// and arm64 both define SA_RESTORER in their uapi asm/signal.h (arm64 for AArch32
/// compatibility), which makes asm-generic/signal.h define `__ARCH_HAS_SA_RESTORER`;
/// musl's generic `k_sigaction`, which aarch64 uses, has the same four fields. Their
/// `sigset_t` is one 64-bit word (`_NSIG` 64), so the size argument is 8 on both.
/// [`reset_for_exec`] passes only zeros, so a layout that differed in field order
/// would still read as SIG_DFL, no flags, empty mask; what must hold is the size (the
/// kernel copies `sizeof(struct sigaction)`, 32 bytes) and the sigset size.
/// Other architectures differ (mips, alpha, sparc): the crate does not build for them.
/// tests/arm64.rs runs the aarch64 build under qemu-user and checks its children's
/// dispositions and mask.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("signals::KernelSigaction matches x86_64 and aarch64 only");
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}
const _: () = assert!(std::mem::size_of::<KernelSigaction>() == 32);

/// The size of the kernel's signal set (`sizeof(sigset_t)` in the kernel) on x86_64
/// and aarch64, rt_sigaction(2)'s last argument.
const KERNEL_SIGSET_SIZE: usize = 8;

/// The highest signal number on Linux (`_NSIG - 1`).
const LAST_SIGNAL: i64 = 64;

/// Gives the calling (child) process default dispositions for every signal and an
/// empty signal mask.
///
/// Runs between fork and exec, so it may only make async-signal-safe calls, and it
/// allocates nothing. It calls rt_sigaction(2) directly instead of libc's wrapper
/// because libc refuses to touch the signals it reserves for itself (32 and 33 in
/// glibc), and those can arrive ignored from the init's own parent: exec keeps an
/// ignored disposition, so only a reset here gives COMMAND a clean start. Errors are
/// ignored: there is nobody to tell, and exec must still happen.
pub fn reset_for_exec() {
    let default = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signo in 1..=LAST_SIGNAL {
        if signo == Signal::SIGKILL as i64 || signo == Signal::SIGSTOP as i64 {
            continue;
        }
        // SAFETY: `default` is a valid kernel sigaction that installs no handler
        // code (SIG_DFL); the old action pointer is null, which the kernel allows;
        // KERNEL_SIGSET_SIZE is the kernel's signal set size on both architectures.
        let _ = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                signo,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                KERNEL_SIGSET_SIZE,
            )
        };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Whether the signals libc reserves for itself (32 to 34) are at their default
/// disposition in this process. posix_spawn(3) cannot reset them in the child
/// (sigaddset(3) refuses them, so they are never in its default set): musl's
/// keeps an ignored one ignored and ignores one that had a handler, and exec keeps
/// that. So `sys::spawn` uses it only when this holds; an init started with them
/// ignored forks instead, and resets them between fork and exec
/// ([`reset_for_exec`]).
pub fn reserved_signals_at_default() -> bool {
    (32..=34).all(|signo: i64| {
        let mut old = KernelSigaction {
            handler: 1, // anything but SIG_DFL, should the call fail
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: a null new action only reads the current one into `old`, a valid
        // kernel sigaction; KERNEL_SIGSET_SIZE is the kernel's signal set size.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                signo,
                std::ptr::null::<KernelSigaction>(),
                &mut old as *mut KernelSigaction,
                KERNEL_SIGSET_SIZE,
            )
        };
        r == 0 && old.handler == 0
    })
}

/// The signal's name, e.g. `SIGTERM`, or its number when unknown.
pub fn name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(sig) => sig.as_str().to_owned(),
        Err(_) => signo.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_requested_sees_a_pending_stop_signal() {
        std::thread::spawn(|| assert!(!stop_requested()))
            .join()
            .unwrap();
        with_signal_pending(Signal::SIGQUIT, || assert!(stop_requested()));
        // Afterwards the signal is taken (by sigwait): nothing pending.
        std::thread::spawn(|| assert!(!stop_requested()))
            .join()
            .unwrap();
    }

    #[test]
    fn classification_table() {
        let cases = [
            (libc_signo(Signal::SIGCHLD), Some(Disposition::Reap)),
            (libc_signo(Signal::SIGTERM), Some(Disposition::Shutdown)),
            (libc_signo(Signal::SIGINT), Some(Disposition::Shutdown)),
            (libc_signo(Signal::SIGQUIT), Some(Disposition::Shutdown)),
            (libc_signo(Signal::SIGHUP), Some(Disposition::Reload)),
            (libc_signo(Signal::SIGWINCH), Some(Disposition::Forward)),
            (libc_signo(Signal::SIGTSTP), Some(Disposition::Forward)),
            (libc_signo(Signal::SIGPIPE), None),
            (libc_signo(Signal::SIGKILL), None),
        ];
        for (signo, want) in cases {
            assert_eq!(disposition(signo).map(|(_, d)| d), want, "signal {signo}");
        }
    }

    fn libc_signo(s: Signal) -> i32 {
        s as i32
    }

    #[test]
    fn names() {
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(999), "999");
    }
}
