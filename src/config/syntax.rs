//! Naming what is wrong in a file the crate rejects: the key a syntax error is in (the
//! crate's own event parser is followed up to the error's offset), and every key, value
//! and message cut to a bound (SPEC §3: one line of at most ~300 bytes).

use super::*;

/// Turns the crate's syntax error into a [`Located`] one, with the key it is in.
pub(super) fn syntax_error(text: &str, e: &toml::de::Error) -> Located {
    let message = e.message();
    match e.span() {
        // The crate's error for a missing value reads "string values must be quoted":
        // true of `level = info`, misleading for `level =` with nothing after it.
        Some(span) if span.is_empty() && message.starts_with("string values must be quoted") => {
            Located {
                offset: span.start,
                key: key_at(text, span.start),
                message: "missing value after `=`".to_owned(),
            }
        }
        // "expected nothing" is how the crate ends some messages (`010`: "unexpected
        // leading zero, expected nothing"); it adds nothing.
        Some(span) => Located {
            offset: span.start,
            key: key_at(text, span.start),
            message: message
                .strip_suffix(", expected nothing")
                .unwrap_or(message)
                .to_owned(),
        },
        // The one error the crate reports without a span (measured, toml 1.2): a dotted
        // key or table header of more segments than its recursion limit (80). Point at
        // the longest key, which is that one.
        None => {
            let keys = scan_keys(text, None);
            let message = match keys.longest {
                Some((_, parts, _)) => {
                    format!(
                        "a key of {parts} dotted parts is more than the parser allows ({message})"
                    )
                }
                None => message.to_owned(),
            };
            let (offset, key) = keys
                .longest
                .map(|(offset, _, key)| (offset, key))
                .unwrap_or_default();
            Located {
                offset,
                key,
                message,
            }
        }
    }
}

/// The key path in effect at `offset`: the table header's keys followed by the key of the
/// key/value pair being written there (and those of the inline tables around it).
pub(super) fn key_at(text: &str, offset: usize) -> Vec<String> {
    scan_keys(text, Some(offset)).at.unwrap_or_default()
}

/// Runs the crate's own tokenizer and parser over `text` (the `toml` crate gives no key
/// for a syntax error, only its span) and follows the keys it reports. Only an error
/// takes this path, so a valid file is parsed once.
pub(super) fn scan_keys(text: &str, offset: Option<usize>) -> KeyScan<'_> {
    use toml_parser::parser::{parse_document, RecursionGuard};
    let source = toml_parser::Source::new(text);
    let tokens = source.lex().into_vec();
    let mut scan = KeyScan {
        source,
        offset,
        header: Vec::new(),
        in_header: false,
        pair: Vec::new(),
        frames: Vec::new(),
        open_arrays: 0,
        key_done: true,
        key_start: 0,
        at: None,
        longest: None,
    };
    // The same depth bound as the toml crate's: its parser recurses once per nested
    // array or inline table, and the guard stops it there.
    let mut guard = RecursionGuard::new(&mut scan, MAX_NESTING);
    parse_document(&tokens, &mut guard, &mut ());
    // An offset at the very end (an unclosed string, text cut before invalid UTF-8) is
    // reached by no event: the key in effect at the end is the one.
    if scan.offset.is_some() && scan.at.is_none() {
        scan.at = Some(scan.path());
    }
    scan
}

/// How deep [`scan_keys`] lets arrays and inline tables nest (the toml crate's own limit).
pub(super) const MAX_NESTING: u32 = 80;

/// The state of [`scan_keys`]: which key the parser is in.
pub(super) struct KeyScan<'i> {
    pub(super) source: toml_parser::Source<'i>,
    /// Where the wanted key is; `None` when only the longest key is wanted.
    pub(super) offset: Option<usize>,
    /// The segments of the last `[table]` header.
    pub(super) header: Vec<toml_parser::parser::Event>,
    pub(super) in_header: bool,
    /// The key of the pair being written, after those of the inline tables around it.
    pub(super) pair: Vec<toml_parser::parser::Event>,
    /// For each open inline table, how many segments of `pair` lead to it.
    pub(super) frames: Vec<usize>,
    pub(super) open_arrays: usize,
    /// The last key is complete (its `=` seen): the next segment starts a new one.
    pub(super) key_done: bool,
    /// Where the current key expression (`a.b.c` or `[a.b.c]`) starts, and how many
    /// segments of `pair` (or `header`) precede it.
    pub(super) key_start: usize,
    /// The key path at `offset`, once the parser has got there.
    pub(super) at: Option<Vec<String>>,
    /// The key expression with the most segments: (offset, segments, key path).
    pub(super) longest: Option<(usize, usize, Vec<String>)>,
}

impl KeyScan<'_> {
    /// The decoded key path of the header and pair segments now in effect.
    fn path(&self) -> Vec<String> {
        let pair: &[_] = if self.in_header { &[] } else { &self.pair };
        // A hostile key of 200,000 segments is shown shortened anyway (see `dotted`):
        // decode the first and last few only, and mark the gap with an empty-named
        // `…` segment.
        let all: Vec<_> = self.header.iter().chain(pair).collect();
        let decode = |event: &&toml_parser::parser::Event| {
            let mut name = std::borrow::Cow::Borrowed("");
            if let Some(raw) = self.source.get(**event) {
                raw.decode_key(&mut name, &mut ());
            }
            name.into_owned()
        };
        if all.len() <= KEY_SEGMENTS_SHOWN + 1 {
            return all.iter().map(decode).collect();
        }
        let mut path: Vec<String> = all.iter().take(KEY_SEGMENTS_SHOWN).map(decode).collect();
        path.push(ELLIPSIS.to_owned());
        path.extend(all.last().map(decode));
        path
    }

    /// Notes an event at `span`: once the parser reaches the offset, the key in effect is
    /// the answer. A key segment counts as reached when it covers the offset (a duplicate
    /// key's error points at the key itself); anything else counts before it is applied.
    fn reach(&mut self, span: toml_parser::Span) {
        if let Some(offset) = self.offset {
            if self.at.is_none() && (span.end() > offset || span.start() >= offset) {
                self.at = Some(self.path());
            }
        }
    }

    /// A key expression has ended: remember it when it is the longest yet.
    fn end_key(&mut self) {
        let segments = if self.in_header {
            self.header.len()
        } else {
            self.pair.len()
        };
        let parts = segments.saturating_sub(self.key_start);
        let longer = self
            .longest
            .as_ref()
            .is_none_or(|(_, most, _)| parts > *most);
        if self.offset.is_none() && parts > 1 && longer {
            let start = self.key_start_offset();
            self.longest = Some((start, parts, self.path()));
        }
    }

    fn key_start_offset(&self) -> usize {
        let segments = if self.in_header {
            &self.header
        } else {
            &self.pair
        };
        segments
            .get(self.key_start)
            .map_or(0, |event| event.span().start())
    }
}

impl toml_parser::parser::EventReceiver for KeyScan<'_> {
    fn std_table_open(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        self.header.clear();
        self.pair.clear();
        self.frames.clear();
        self.open_arrays = 0;
        self.in_header = true;
        self.key_start = 0;
    }
    fn std_table_close(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        self.end_key();
        self.in_header = false;
        self.key_done = true;
    }
    fn array_table_open(&mut self, span: toml_parser::Span, e: &mut dyn toml_parser::ErrorSink) {
        self.std_table_open(span, e);
    }
    fn array_table_close(&mut self, span: toml_parser::Span, e: &mut dyn toml_parser::ErrorSink) {
        self.std_table_close(span, e);
    }
    fn inline_table_open(
        &mut self,
        span: toml_parser::Span,
        _: &mut dyn toml_parser::ErrorSink,
    ) -> bool {
        self.reach(span);
        self.frames.push(self.pair.len());
        self.key_done = true;
        true
    }
    fn inline_table_close(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        if let Some(len) = self.frames.pop() {
            self.pair.truncate(len);
        }
        self.key_done = true;
    }
    fn array_open(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) -> bool {
        self.reach(span);
        self.open_arrays += 1;
        true
    }
    fn array_close(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        self.open_arrays = self.open_arrays.saturating_sub(1);
    }
    fn simple_key(
        &mut self,
        span: toml_parser::Span,
        encoding: Option<toml_parser::decoder::Encoding>,
        _: &mut dyn toml_parser::ErrorSink,
    ) {
        let event = toml_parser::parser::Event::new_unchecked(
            toml_parser::parser::EventKind::SimpleKey,
            encoding,
            span,
        );
        if self.in_header {
            self.header.push(event);
        } else {
            if self.key_done {
                let base = self.frames.last().copied().unwrap_or(0);
                self.pair.truncate(base);
                self.key_start = base;
                self.key_done = false;
            }
            self.pair.push(event);
        }
        self.reach(span);
    }
    fn key_val_sep(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        self.end_key();
        self.key_done = true;
    }
    fn scalar(
        &mut self,
        span: toml_parser::Span,
        _: Option<toml_parser::decoder::Encoding>,
        _: &mut dyn toml_parser::ErrorSink,
    ) {
        self.reach(span);
    }
    fn value_sep(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
    }
    fn comment(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
    }
    fn newline(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        // A pair ends with its line, unless an array or inline table is still open.
        if self.frames.is_empty() && self.open_arrays == 0 && !self.in_header {
            self.pair.clear();
            self.key_done = true;
        }
    }
    fn error(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
    }
}

/// Gives an error its line, column and dotted key.
pub(super) fn invalid(bytes: &[u8], origin: &str, e: Located) -> ConfigError {
    let (line, column) = line_column(bytes, e.offset);
    ConfigError::Invalid {
        origin: origin.to_owned(),
        line,
        column,
        key: (!e.key.is_empty()).then(|| cut(&printable(&dotted(&e.key)), MAX_KEY_BYTES)),
        message: cut(&printable(&e.message), MAX_MESSAGE_BYTES),
    }
}

/// Messages quote values as written; a control character in one (a newline in an
/// enum spelling, an escape sequence) must not break the one-line error or the terminal.
pub(super) fn printable(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error is one line of at most ~300 bytes whatever the input (SPEC §3): the key and
/// the message are each cut to a bound, values quoted in messages to [`QUOTED_CHARS`].
pub(super) const MAX_KEY_BYTES: usize = 64;
pub(super) const MAX_MESSAGE_BYTES: usize = 160;
pub(super) const QUOTED_CHARS: usize = 40;
/// Key segments shown before the gap in a longer key, and the longest segment shown.
pub(super) const KEY_SEGMENTS_SHOWN: usize = 3;
pub(super) const SEGMENT_CHARS: usize = 24;
pub(super) const ELLIPSIS: &str = "…";

/// A value as quoted in a message: its first [`QUOTED_CHARS`] characters, then `…`.
pub(super) fn short(value: &str) -> std::borrow::Cow<'_, str> {
    shorten(value, QUOTED_CHARS)
}

pub(super) fn shorten(value: &str, chars: usize) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(chars) {
        Some((end, _)) => format!("{}{ELLIPSIS}", value.get(..end).unwrap_or_default()).into(),
        None => value.into(),
    }
}

/// `names` joined with `, ` in at most `max` bytes: when they do not all fit, as many as
/// fit and then `…`, so that no name is shown cut.
pub(super) fn list_within(names: &[&str], max: usize) -> String {
    let all = names.join(", ");
    if all.len() <= max {
        return all;
    }
    let mut out = String::new();
    for name in names {
        if out.len() + name.len() + ", ".len() + ELLIPSIS.len() > max {
            break;
        }
        out.push_str(name);
        out.push_str(", ");
    }
    out.push_str(ELLIPSIS);
    out
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - ELLIPSIS.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", text.get(..end).unwrap_or_default())
}
