//! dockerd's stdout and stderr, the pure part (SPEC §7): the bytes read from its
//! pipes become lines, and the last lines of both streams are kept, so that an exit
//! can be logged with dockerd's own last words and matched against the known
//! failure signatures (`diagnose.rs`).
//!
//! It does no I/O: the event loop polls the pipes and hands over whatever read(2)
//! returned; logging each line as an event of target `dockerd` is the caller's job,
//! and so is deciding how many lines to keep (`log_tail`).
//!
//! Memory stays bounded whatever dockerd prints, because a dockerd that writes one
//! endless line (a stuck progress bar, a binary dump) must not grow PID 1 until the
//! OOM killer ends the container: a [`LineSplitter`] never holds more than
//! `max_line + 1` bytes of an unfinished line (the extra byte is a pending `'\r'`),
//! and a [`Tail`] never holds more than its capacity of lines, each at most
//! `max_line` bytes plus what lossy UTF-8 conversion adds.

use std::collections::VecDeque;

/// The longest line kept whole; the rest of a longer line is dropped. dockerd's
/// own log lines are far shorter; only runaway output gets near it.
pub const MAX_LINE: usize = 16 * 1024;

/// Which of dockerd's pipes a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The value of the `stream` field on dockerd's log events.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Splits a byte stream into lines.
///
/// [`feed`](Self::feed) takes whatever read(2) returned, in any chunking; complete
/// lines come out. A line longer than `max_line` bytes (not counting its `\n` or
/// `\r\n`) is cut at `max_line`, at a char boundary when the text is valid UTF-8,
/// and the rest of it is discarded up to the next `'\n'`, counting one truncation.
/// Invalid UTF-8 is converted lossily (U+FFFD). A trailing `'\r'` is dropped.
/// [`finish`](Self::finish) flushes an unterminated last line at EOF.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    max_line: usize,
    /// The unfinished line. Invariant: at most `max_line` bytes, or `max_line + 1`
    /// when the last byte is a `'\r'` that may still turn out to end the line.
    buf: Vec<u8>,
    /// The current line was cut and emitted; drop bytes until its `'\n'`.
    discarding: bool,
    truncated: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            max_line,
            buf: Vec::new(),
            discarding: false,
            truncated: 0,
        }
    }

    /// Consumes one read's worth of bytes and returns the lines it completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            let (segment, rest, terminated) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (
                    bytes.get(..i).unwrap_or_default(),
                    bytes.get(i + 1..).unwrap_or_default(),
                    true,
                ),
                None => (bytes, &[][..], false),
            };
            bytes = rest;

            if self.discarding {
                // The cut part went out already; only its end matters now.
                if terminated {
                    self.discarding = false;
                }
                continue;
            }

            // Copy no more than one byte past the limit: enough to know the line is
            // too long (or to hold a '\r' that may be its ending), never more, so a
            // 2 MiB line costs max_line + 1 bytes, not 2 MiB.
            let room = (self.max_line + 1).saturating_sub(self.buf.len());
            let take = segment.len().min(room);
            self.buf
                .extend_from_slice(segment.get(..take).unwrap_or_default());
            let overflow = segment.len() > take;

            if terminated {
                if !overflow && self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                if overflow || self.buf.len() > self.max_line {
                    lines.push(self.cut());
                } else {
                    lines.push(self.take_line());
                }
            } else if overflow || (self.buf.len() > self.max_line && !self.pending_cr()) {
                // Too long already: emit the cut part now rather than holding it
                // until a '\n' that may never come.
                lines.push(self.cut());
                self.discarding = true;
            }
        }
        lines
    }

    /// At EOF: the unterminated last line, if there is one.
    pub fn finish(&mut self) -> Option<String> {
        if self.discarding {
            // Its cut part was emitted when it overflowed.
            self.discarding = false;
            return None;
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.buf.is_empty() {
            return None;
        }
        if self.buf.len() > self.max_line {
            return Some(self.cut());
        }
        Some(self.take_line())
    }

    /// How many lines were cut at `max_line` so far.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// The buffer is one byte over the limit only to hold a '\r' that may end the
    /// line; the next byte decides.
    fn pending_cr(&self) -> bool {
        self.buf.len() == self.max_line + 1 && self.buf.last() == Some(&b'\r')
    }

    /// The buffered line, converted; the buffer keeps its allocation.
    fn take_line(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        line
    }

    /// The buffered line cut at `max_line`, counted as one truncation.
    fn cut(&mut self) -> String {
        let mut end = self.max_line.min(self.buf.len());
        // Back off to the start of the char the limit falls in: a continuation
        // byte (0b10xxxxxx) right after the cut means a char straddles it. UTF-8
        // chars are at most 4 bytes, so at most 3 steps.
        let mut steps = 0;
        while steps < 3
            && end > 0
            && self
                .buf
                .get(end)
                .is_some_and(|&b| b & 0b1100_0000 == 0b1000_0000)
        {
            end -= 1;
            steps += 1;
        }
        let line = String::from_utf8_lossy(self.buf.get(..end).unwrap_or_default()).into_owned();
        self.buf.clear();
        self.truncated += 1;
        line
    }
}

/// One kept line of dockerd output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailLine {
    pub stream: Stream,
    pub text: String,
    /// Which dockerd run printed it (see [`Tail::new_run`]).
    pub run: u32,
}

/// Bytes of text the tail keeps at most, whatever `log_tail` says: 200 lines of
/// 16 KiB would otherwise be 3 MiB in PID 1, copied into every status answer.
pub const MAX_TAIL_BYTES: usize = 256 * 1024;

/// The last N lines of dockerd output, both streams, in arrival order, at most
/// [`MAX_TAIL_BYTES`] of text.
#[derive(Debug, Clone)]
pub struct Tail {
    capacity: usize,
    lines: VecDeque<TailLine>,
    bytes: usize,
    /// The current dockerd run; lines of earlier runs stay until pushed out.
    run: u32,
}

impl Tail {
    /// A tail that keeps at most `capacity` lines; 0 keeps none. Nothing is
    /// allocated up front: a large `log_tail` costs only what dockerd prints.
    pub fn new(capacity: usize) -> Self {
        Tail {
            capacity,
            lines: VecDeque::new(),
            bytes: 0,
            run: 0,
        }
    }

    /// Appends a line, dropping the oldest when full.
    pub fn push(&mut self, stream: Stream, line: String) {
        if self.capacity == 0 {
            return;
        }
        while self.lines.len() >= self.capacity
            || (!self.lines.is_empty() && self.bytes + line.len() > MAX_TAIL_BYTES)
        {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.text.len();
            }
        }
        self.bytes += line.len();
        self.lines.push_back(TailLine {
            stream,
            text: line,
            run: self.run,
        });
    }

    /// All kept lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &TailLine> {
        self.lines.iter()
    }

    /// The last `n` stderr lines of the current run, oldest first: what this
    /// dockerd said before it died, for the exit event and for `diagnose`.
    pub fn stderr_lines(&self, n: usize) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .lines
            .iter()
            .rev()
            .take_while(|l| l.run == self.run)
            .filter(|l| l.stream == Stream::Stderr)
            .take(n)
            .map(|l| l.text.as_str())
            .collect();
        out.reverse();
        out
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Starts a new dockerd run: the lines kept so far stay (status shows the
    /// last `log_tail` lines across restarts), but [`Tail::stderr_lines`] sees
    /// only what the new run prints.
    pub fn new_run(&mut self) {
        self.run = self.run.wrapping_add(1);
    }

    /// Forgets every line.
    pub fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        max_line: usize,
        feeds: &'static [&'static [u8]],
        lines: &'static [&'static str],
        finish: Option<&'static str>,
        truncated: u64,
    }

    const CASES: &[Case] = &[
        Case {
            name: "one line in one feed",
            max_line: 64,
            feeds: &[b"hello\n"],
            lines: &["hello"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "several lines in one feed",
            max_line: 64,
            feeds: &[b"a\nbb\nccc\n"],
            lines: &["a", "bb", "ccc"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "line split across feeds",
            max_line: 64,
            feeds: &[b"hel", b"lo wo", b"rld\nnext", b"\n"],
            lines: &["hello world", "next"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "one byte per feed",
            max_line: 64,
            feeds: &[b"a", b"b", b"\n", b"c", b"\n"],
            lines: &["ab", "c"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "CRLF",
            max_line: 64,
            feeds: &[b"one\r\ntwo\r\n"],
            lines: &["one", "two"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "CR and LF in different feeds",
            max_line: 64,
            feeds: &[b"one\r", b"\ntwo\r", b"\n"],
            lines: &["one", "two"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "only the trailing CR is dropped",
            max_line: 64,
            feeds: &[b"a\rb\r\r\n"],
            lines: &["a\rb\r"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "empty lines",
            max_line: 64,
            feeds: &[b"\n\r\n\nx\n\n"],
            lines: &["", "", "", "x", ""],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "unterminated last line",
            max_line: 64,
            feeds: &[b"first\nlast wo", b"rds"],
            lines: &["first"],
            finish: Some("last words"),
            truncated: 0,
        },
        Case {
            name: "unterminated last line with CR",
            max_line: 64,
            feeds: &[b"last\r"],
            lines: &[],
            finish: Some("last"),
            truncated: 0,
        },
        Case {
            name: "nothing fed",
            max_line: 64,
            feeds: &[],
            lines: &[],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "exactly max_line is not truncated",
            max_line: 5,
            feeds: &[b"12345\n"],
            lines: &["12345"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "exactly max_line with CRLF is not truncated",
            max_line: 5,
            feeds: &[b"12345\r", b"\n"],
            lines: &["12345"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "exactly max_line unterminated is not truncated",
            max_line: 5,
            feeds: &[b"12345"],
            lines: &[],
            finish: Some("12345"),
            truncated: 0,
        },
        Case {
            name: "one over max_line is cut",
            max_line: 5,
            feeds: &[b"123456\nok\n"],
            lines: &["12345", "ok"],
            finish: None,
            truncated: 1,
        },
        Case {
            name: "CR past the limit followed by more text is cut",
            max_line: 5,
            feeds: &[b"12345\r", b"x\nok\n"],
            lines: &["12345", "ok"],
            finish: None,
            truncated: 1,
        },
        Case {
            name: "long line across feeds, rest discarded up to newline",
            max_line: 4,
            feeds: &[b"abc", b"defgh", b"ijk\nnext\n"],
            lines: &["abcd", "next"],
            finish: None,
            truncated: 1,
        },
        Case {
            name: "long unterminated line is emitted once, not again at EOF",
            max_line: 4,
            feeds: &[b"abcdefgh", b"ijkl"],
            lines: &["abcd"],
            finish: None,
            truncated: 1,
        },
        Case {
            name: "two long lines count two truncations",
            max_line: 3,
            feeds: &[b"aaaaaa\nbbbbbb\nc\n"],
            lines: &["aaa", "bbb", "c"],
            finish: None,
            truncated: 2,
        },
        Case {
            name: "invalid UTF-8 is converted lossily",
            max_line: 64,
            feeds: &[b"ab\xffcd\n"],
            lines: &["ab\u{fffd}cd"],
            finish: None,
            truncated: 0,
        },
        Case {
            name: "UTF-8 char split across feeds stays whole",
            max_line: 64,
            feeds: &[b"caf\xc3", b"\xa9\n"],
            lines: &["caf\u{e9}"],
            finish: None,
            truncated: 0,
        },
        Case {
            // "abcd" + "é" (2 bytes): the limit 5 falls inside "é".
            name: "two-byte char at the cut is not split",
            max_line: 5,
            feeds: &[b"abcd\xc3\xa9xyz\n"],
            lines: &["abcd"],
            finish: None,
            truncated: 1,
        },
        Case {
            // "a" + U+1F600 (4 bytes): every limit inside the emoji backs off to 1.
            name: "four-byte char at the cut is not split",
            max_line: 3,
            feeds: &[b"a\xf0\x9f\x98\x80b\n"],
            lines: &["a"],
            finish: None,
            truncated: 1,
        },
        Case {
            name: "char ending exactly at the cut is kept",
            max_line: 6,
            feeds: &[b"abcd\xc3\xa9xyz\n"],
            lines: &["abcd\u{e9}"],
            finish: None,
            truncated: 1,
        },
        Case {
            name: "invalid UTF-8 at the cut is converted lossily",
            max_line: 3,
            feeds: &[b"ab\xff\xfe\xfd\n"],
            lines: &["ab\u{fffd}"],
            finish: None,
            truncated: 1,
        },
        Case {
            name: "max_line 0 keeps nothing of non-empty lines",
            max_line: 0,
            feeds: &[b"abc\n\n"],
            lines: &["", ""],
            finish: None,
            truncated: 1,
        },
    ];

    #[test]
    fn splitter_cases() {
        for case in CASES {
            let mut s = LineSplitter::new(case.max_line);
            let mut got = Vec::new();
            for feed in case.feeds {
                got.extend(s.feed(feed));
                assert!(
                    s.buf.len() <= case.max_line + 1,
                    "{}: buffer grew to {}",
                    case.name,
                    s.buf.len()
                );
            }
            assert_eq!(got, case.lines, "{}: lines", case.name);
            assert_eq!(s.finish().as_deref(), case.finish, "{}: finish", case.name);
            assert_eq!(s.truncated(), case.truncated, "{}: truncated", case.name);
            assert_eq!(s.finish(), None, "{}: second finish", case.name);
        }
    }

    #[test]
    fn every_chunking_gives_the_same_lines() {
        // Lines must not depend on where read(2) happened to split the stream.
        let input: &[u8] = b"time=\"x\" level=info msg=\"caf\xc3\xa9\"\r\n\nlong line here\nend";
        let mut whole = LineSplitter::new(8);
        let mut expected = whole.feed(input);
        expected.extend(whole.finish());
        for size in 1..input.len() {
            let mut s = LineSplitter::new(8);
            let mut got = Vec::new();
            for chunk in input.chunks(size) {
                got.extend(s.feed(chunk));
            }
            got.extend(s.finish());
            assert_eq!(got, expected, "chunk size {size}");
            assert_eq!(s.truncated(), whole.truncated(), "chunk size {size}");
        }
    }

    #[test]
    fn two_mib_line_in_4_kib_chunks() {
        let mut s = LineSplitter::new(MAX_LINE);
        let chunk = [b'x'; 4096];
        let mut got = Vec::new();
        for _ in 0..(2 * 1024 * 1024 / chunk.len()) {
            got.extend(s.feed(&chunk));
            // Bounded: never more than max_line + 1 bytes held, whatever arrives.
            assert!(s.buf.len() <= MAX_LINE + 1);
            assert!(s.buf.capacity() <= 2 * (MAX_LINE + 1) + chunk.len());
        }
        got.extend(s.feed(b"\nafter\n"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), MAX_LINE);
        assert!(got[0].bytes().all(|b| b == b'x'));
        assert_eq!(got[1], "after");
        assert_eq!(s.truncated(), 1);
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn stream_names() {
        assert_eq!(Stream::Stdout.as_str(), "stdout");
        assert_eq!(Stream::Stderr.as_str(), "stderr");
    }

    fn texts(tail: &Tail) -> Vec<(Stream, &str)> {
        tail.lines().map(|l| (l.stream, l.text.as_str())).collect()
    }

    #[test]
    fn tail_keeps_the_last_lines_in_order() {
        let mut t = Tail::new(3);
        assert!(t.is_empty());
        for (i, stream) in [
            Stream::Stdout,
            Stream::Stderr,
            Stream::Stdout,
            Stream::Stderr,
            Stream::Stderr,
        ]
        .into_iter()
        .enumerate()
        {
            t.push(stream, format!("l{i}"));
            assert!(t.len() <= 3);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.capacity(), 3);
        assert_eq!(
            texts(&t),
            [
                (Stream::Stdout, "l2"),
                (Stream::Stderr, "l3"),
                (Stream::Stderr, "l4")
            ]
        );
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.lines().count(), 0);
    }

    #[test]
    fn tail_of_capacity_zero_keeps_nothing() {
        let mut t = Tail::new(0);
        t.push(Stream::Stderr, "x".to_string());
        assert!(t.is_empty());
        assert!(t.stderr_lines(5).is_empty());
    }

    #[test]
    fn stderr_lines_cases() {
        let mut t = Tail::new(10);
        for (stream, text) in [
            (Stream::Stderr, "e1"),
            (Stream::Stdout, "o1"),
            (Stream::Stderr, "e2"),
            (Stream::Stdout, "o2"),
            (Stream::Stderr, "e3"),
            (Stream::Stdout, "o3"),
        ] {
            t.push(stream, text.to_string());
        }
        let cases: &[(usize, &[&str])] = &[
            (0, &[]),
            (1, &["e3"]),
            (2, &["e2", "e3"]),
            (3, &["e1", "e2", "e3"]),
            (50, &["e1", "e2", "e3"]),
        ];
        for &(n, want) in cases {
            assert_eq!(t.stderr_lines(n), want, "n = {n}");
        }
        assert!(Tail::new(4).stderr_lines(3).is_empty());
    }

    #[test]
    fn a_new_run_keeps_the_lines_but_not_for_the_exit_report() {
        let mut t = Tail::new(10);
        t.push(Stream::Stderr, "first run died".to_string());
        t.new_run();
        assert!(t.stderr_lines(5).is_empty(), "the new run said nothing yet");
        t.push(Stream::Stdout, "o".to_string());
        t.push(Stream::Stderr, "second".to_string());
        assert_eq!(t.stderr_lines(5), vec!["second"]);
        // Status still shows both runs, oldest first.
        let all: Vec<&str> = t.lines().map(|l| l.text.as_str()).collect();
        assert_eq!(all, vec!["first run died", "o", "second"]);
    }

    #[test]
    fn tail_is_bounded_by_bytes() {
        let mut t = Tail::new(1000);
        for i in 0..100 {
            t.push(Stream::Stderr, format!("{i:>0width$}", width = 16 * 1024));
        }
        let total: usize = t.lines().map(|l| l.text.len()).sum();
        assert!(total <= MAX_TAIL_BYTES, "{total}");
        assert!(t.len() >= MAX_TAIL_BYTES / (16 * 1024) - 1);
        assert!(t.lines().last().unwrap().text.ends_with("99"));
    }
}
