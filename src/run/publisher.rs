//! The state publisher (SPEC §8): what each change of the shown state means for
//! the outside world: the ready file, the parked `wait`s, sd_notify upward, and
//! the state's log line. A pure state machine; the loop writes the file, answers
//! the waits and sends the datagrams in the order given, which is the order
//! readiness is measured by (the file and the waits first, the log line last: in
//! gVisor each log line is a slow write to the host).

use std::time::{Duration, Instant};

use crate::run::model::Shown;

/// A ready file that could not be written is tried again this often.
pub const READY_FILE_RETRY: Duration = Duration::from_secs(1);

/// What the loop must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    WriteReadyFile,
    RemoveReadyFile,
    /// Answer every parked `wait` with the current status.
    ReleaseWaits,
    /// Send this sd_notify message upward.
    Notify(String),
    /// Log the state line.
    LogState,
}

#[derive(Debug, Clone)]
pub struct Publisher {
    /// What was last published; `None` before the first.
    shown: Option<(Shown, Option<String>)>,
    /// The ready file could not be written: when to try again.
    file_retry: Option<Instant>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    pub fn new() -> Self {
        Publisher {
            shown: None,
            file_retry: None,
        }
    }

    /// The state now; returns what to do when it differs from the last one
    /// published (empty when nothing changed).
    pub fn on_state(&mut self, state: Shown, reason: Option<&str>) -> Vec<Publish> {
        if let Some((s, r)) = &self.shown {
            if *s == state && r.as_deref() == reason {
                return Vec::new();
            }
        }
        let was = self.shown.as_ref().map(|(s, _)| *s);
        self.shown = Some((state, reason.map(str::to_owned)));
        // A new state starts a new episode for the file: its failure is news.
        self.file_retry = None;
        let mut out = Vec::new();
        match state {
            Shown::Ready => {
                // sd_notify first: one datagram, while the ready file is a file
                // system round trip (a slow one through gVisor's gofer).
                if was != Some(Shown::Ready) {
                    out.push(Publish::Notify("READY=1".into()));
                }
                out.push(Publish::WriteReadyFile);
                out.push(Publish::ReleaseWaits);
            }
            _ => out.push(Publish::RemoveReadyFile),
        }
        match state {
            // Final: a `wait` would only run out; answer it now.
            Shown::Failed => out.push(Publish::ReleaseWaits),
            Shown::Stopping if was != Some(Shown::Stopping) => {
                out.push(Publish::Notify("STOPPING=1".into()));
                out.push(Publish::ReleaseWaits);
            }
            _ => {}
        }
        out.push(Publish::Notify(match reason {
            Some(r) => format!("STATUS=dockerd {}: {r}", state.as_str()),
            None => format!("STATUS=dockerd {}", state.as_str()),
        }));
        out.push(Publish::LogState);
        out
    }

    /// How the last write (or removal) of the ready file went. Returns true when this
    /// failure is the first of an episode (to be logged once), or when it worked after
    /// failures (to say so). A failure is retried every [`READY_FILE_RETRY`]: a ready
    /// file left behind would tell orchestrators dockerd is ready when it is not.
    pub fn file_written(&mut self, ok: bool, now: Instant) -> bool {
        let was_failing = self.file_retry.is_some();
        if ok {
            self.file_retry = None;
            was_failing
        } else {
            self.file_retry = Some(now + READY_FILE_RETRY);
            !was_failing
        }
    }

    /// Whether the retry of a failed write is due (the state is still ready).
    /// Whether the retry of a failed write or removal is due: the file is made to
    /// match the state as it is now (present while ready, absent otherwise).
    pub fn on_time(&mut self, now: Instant) -> Option<Publish> {
        if self.file_retry.is_some_and(|t| t <= now) {
            return Some(if matches!(&self.shown, Some((Shown::Ready, _))) {
                Publish::WriteReadyFile
            } else {
                Publish::RemoveReadyFile
            });
        }
        None
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.file_retry
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use Publish::*;

    fn status(s: &str) -> Publish {
        Notify(format!("STATUS=dockerd {s}"))
    }

    #[test]
    fn changes_table() {
        // Each case: a sequence of (state, reason) and what the last one publishes.
        type Case = (Vec<(Shown, Option<&'static str>)>, Vec<Publish>);
        let cases: Vec<Case> = vec![
            // The first state is published too (STATUS=dockerd starting).
            (
                vec![(Shown::Starting, None)],
                vec![RemoveReadyFile, status("starting"), LogState],
            ),
            (
                vec![(Shown::Starting, None), (Shown::Ready, None)],
                vec![
                    Notify("READY=1".into()),
                    WriteReadyFile,
                    ReleaseWaits,
                    status("ready"),
                    LogState,
                ],
            ),
            // Unchanged: nothing.
            (vec![(Shown::Ready, None), (Shown::Ready, None)], vec![]),
            (
                vec![(Shown::Ready, None), (Shown::Unhealthy, Some("no answer"))],
                vec![RemoveReadyFile, status("unhealthy: no answer"), LogState],
            ),
            // Back to ready: READY=1 again.
            (
                vec![(Shown::Unhealthy, Some("x")), (Shown::Ready, None)],
                vec![
                    Notify("READY=1".into()),
                    WriteReadyFile,
                    ReleaseWaits,
                    status("ready"),
                    LogState,
                ],
            ),
            (
                vec![(Shown::Starting, None), (Shown::Failed, Some("gone"))],
                vec![
                    RemoveReadyFile,
                    ReleaseWaits,
                    status("failed: gone"),
                    LogState,
                ],
            ),
            (
                vec![(Shown::Ready, None), (Shown::Stopping, None)],
                vec![
                    RemoveReadyFile,
                    Notify("STOPPING=1".into()),
                    ReleaseWaits,
                    status("stopping"),
                    LogState,
                ],
            ),
            // A new reason in the same state is a change.
            (
                vec![
                    (Shown::Restarting, Some("a")),
                    (Shown::Restarting, Some("b")),
                ],
                vec![RemoveReadyFile, status("restarting: b"), LogState],
            ),
        ];
        for (seq, want) in cases {
            let mut p = Publisher::new();
            let mut last = Vec::new();
            for (s, r) in &seq {
                last = p.on_state(*s, *r);
            }
            assert_eq!(last, want, "{seq:?}");
        }
    }

    #[test]
    fn a_failed_ready_file_is_retried_while_ready() {
        let t0 = Instant::now();
        let mut p = Publisher::new();
        p.on_state(Shown::Ready, None);
        assert!(p.file_written(false, t0), "first failure is logged");
        assert!(!p.file_written(false, t0), "not again");
        assert_eq!(p.deadline(), Some(t0 + READY_FILE_RETRY));
        assert_eq!(p.on_time(t0), None);
        assert_eq!(p.on_time(t0 + READY_FILE_RETRY), Some(WriteReadyFile));
        assert!(p.file_written(true, t0), "success after failures is logged");
        assert_eq!(p.deadline(), None);
        // Not ready any more: the retry of the write is dropped...
        p.file_written(false, t0);
        p.on_state(Shown::Restarting, Some("x"));
        assert_eq!(p.deadline(), None);
        assert_eq!(p.on_time(t0 + READY_FILE_RETRY), None);
        // ...and a removal that failed is retried instead.
        assert!(p.file_written(false, t0));
        assert_eq!(p.on_time(t0 + READY_FILE_RETRY), Some(RemoveReadyFile));
    }
}
