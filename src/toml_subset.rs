//! A small parser for the subset of [TOML 1.0](https://toml.io/en/v1.0.0) that
//! `init.toml` needs, producing a tree in which every key and value carries its byte span.
//!
//! Responsible for: the syntax of the file and TOML's own rules (no duplicate keys, no
//! table defined twice, inline tables closed). Every error carries the byte offset it
//! happened at and, when it is inside a key/value pair, the key path, so the caller can
//! report `line:column` and the dotted key. Never panics, whatever the input; nesting is
//! bounded ([`MAX_DEPTH`]) so a hostile file cannot exhaust the stack.
//!
//! Not responsible for: what the keys mean, their types or defaults (`config.rs` walks the
//! tree), nor turning offsets into lines and columns.
//!
//! The subset. A document it accepts is valid TOML 1.0 with the same meaning, except that
//! [`Value::Unsupported`] values are not checked further (every consumer rejects them).
//! What TOML allows but the subset does not is rejected with an error naming the
//! construct:
//! - Comments: `#` to the end of the line, on their own line or after a value, also
//!   inside multi-line arrays. Control characters other than tab are errors, as in TOML.
//! - Newlines are `\n` or `\r\n`; whitespace is space and tab. A leading BOM is skipped.
//! - Keys: bare (`[A-Za-z0-9_-]+`), basic-quoted (`"..."`, with escapes) or
//!   literal-quoted (`'...'`), and dotted keys of those (`a.b."c d"`, spaces around the
//!   dots allowed), in key/value pairs, table headers and inline tables.
//! - Tables: `[a]` and `[a.b]` headers. A table may be defined only once: by a header,
//!   by dotted keys, or inline; a header may name a table that an earlier header only
//!   implied (`[a]` after `[a.b]`) and may descend through tables made by dotted keys
//!   (`[a.b.c]` after `[a]` `b.x = 1`), as TOML allows. Arrays of tables (`[[a]]`) are
//!   rejected.
//! - Values:
//!   - basic strings `"..."` with the escapes `\b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX`
//!     (others are errors, as are `\u` escapes that are not Unicode scalar values);
//!   - literal strings `'...'` (no escapes);
//!   - decimal integers: optional sign, underscores only between digits, no leading
//!     zeros, within `i64`; hexadecimal, octal and binary integers are rejected;
//!   - booleans `true` and `false`;
//!   - arrays `[...]` of any of these values, mixed types allowed, spanning lines, with
//!     comments and a trailing comma;
//!   - inline tables `{ k = v, ... }` on one line (arrays inside may span lines), no
//!     trailing comma, closed to later keys and headers.
//! - Multi-line strings (`"""`, `'''`) are rejected. Floats (`1.5`, `1e3`, `inf`, `nan`)
//!   and dates and times (`1979-05-27`, `07:32:00`, ...) are recognised only roughly and
//!   kept as [`Value::Unsupported`], so that the consumer can name the key and say what it
//!   expected; no key of `init.toml` accepts them.
//! - Any other bare word in a value position is an error ("string values must be quoted").

use std::ops::Range;

/// Arrays and inline tables nested deeper than this are rejected (bounds recursion).
pub const MAX_DEPTH: usize = 32;

/// A byte range into the parsed text, always on `char` boundaries.
pub type Span = Range<usize>;

/// A key as written: its unquoted, unescaped name and the span of its spelling (quotes
/// included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

/// A value and where it is written. For a table made by a header or by dotted keys, the
/// span is that of the key segment that first created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Value,
    pub span: Span,
}

/// A TOML value of the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    String(String),
    Integer(i64),
    Boolean(bool),
    Array(Vec<Item>),
    Table(Table),
    /// A float or date-time, kept as written: recognised so that errors can name it.
    Unsupported {
        kind: &'static str,
        text: String,
    },
}

impl Value {
    /// The TOML type name: `string`, `integer`, `boolean`, `array`, `table`, `float`,
    /// `date-time`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::String(_) => "string",
            Self::Integer(_) => "integer",
            Self::Boolean(_) => "boolean",
            Self::Array(_) => "array",
            Self::Table(_) => "table",
            Self::Unsupported { kind, .. } => kind,
        }
    }
}

/// How a table came to be: this decides what may still add keys to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Named only as a prefix of a header (`a` in `[a.b]`): a later `[a]` may define it.
    Implied,
    /// Defined by a `[header]` (or the root).
    Header,
    /// Made by a dotted key (`a.b = 1` makes `a`): more dotted keys may extend it.
    Dotted,
    /// `{ ... }`: complete as written.
    Inline,
}

/// A table: its entries in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    entries: Vec<(Key, Item)>,
    origin: Origin,
}

impl Table {
    fn new(origin: Origin) -> Self {
        Self {
            entries: Vec::new(),
            origin,
        }
    }

    /// The entries in the order they were first written.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Item)> {
        self.entries.iter().map(|(key, item)| (key, item))
    }

    pub fn get(&self, name: &str) -> Option<(&Key, &Item)> {
        self.iter().find(|(key, _)| key.name == name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(key, _)| key.name == name)
    }
}

/// Why the text is not valid (subset) TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Byte offset of the problem, on a `char` boundary, at most the text's length.
    pub offset: usize,
    /// The key path the problem belongs to, from the root; array elements appear as
    /// `[i]`. Empty when it is outside any key (for example a malformed header).
    pub key: Vec<String>,
    pub message: String,
}

/// Parses `text` into its root table.
pub fn parse(text: &str) -> Result<Table, Error> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    if text.starts_with('\u{feff}') {
        parser.pos = '\u{feff}'.len_utf8();
    }
    let mut root = Table::new(Origin::Header);
    // The table that key/value lines go into: the last header's path.
    let mut current: Vec<String> = Vec::new();
    loop {
        parser.skip_blanks();
        match parser.peek() {
            None => return Ok(root),
            Some(b'#' | b'\n' | b'\r') => parser.end_of_line(&[], "")?,
            Some(b'[') => {
                current = parser.header(&mut root)?;
                parser.end_of_line(&current, " after the table header")?;
            }
            Some(_) => {
                let path = parser.key_value(&mut root, &current)?;
                parser.end_of_line(&path, " after the value")?;
            }
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// Always on a `char` boundary: it only ever stops at an ASCII byte, the first byte
    /// of a character, or the end.
    pos: usize,
}

fn error(offset: usize, key: &[String], message: impl Into<String>) -> Error {
    Error {
        offset,
        key: key.to_vec(),
        message: message.into(),
    }
}

/// Characters TOML forbids unescaped in strings and comments: controls other than tab.
fn is_forbidden_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn is_bare_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        self.bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(s.as_bytes()))
    }

    /// The character at the cursor, for messages.
    fn char_here(&self) -> Option<char> {
        self.text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    /// Skips spaces and tabs.
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Skips a comment up to (not including) the end of its line.
    fn skip_comment(&mut self, key: &[String]) -> Result<(), Error> {
        while let Some(b) = self.peek() {
            if b == b'\n' || b == b'\r' {
                break;
            }
            if is_forbidden_control(b) {
                return Err(error(
                    self.pos,
                    key,
                    "control characters are not allowed in comments",
                ));
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// Consumes a newline (`\n` or `\r\n`); the cursor is at `\n` or `\r`.
    fn newline(&mut self, key: &[String]) -> Result<(), Error> {
        match (self.peek(), self.peek_at(1)) {
            (Some(b'\n'), _) => self.pos += 1,
            (Some(b'\r'), Some(b'\n')) => self.pos += 2,
            _ => {
                return Err(error(
                    self.pos,
                    key,
                    "a carriage return must be followed by a newline",
                ))
            }
        }
        Ok(())
    }

    /// Blanks, an optional comment, then a newline or the end of the text.
    fn end_of_line(&mut self, key: &[String], after: &str) -> Result<(), Error> {
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            self.skip_comment(key)?;
        }
        match self.peek() {
            None => Ok(()),
            Some(b'\n' | b'\r') => self.newline(key),
            Some(_) => Err(error(
                self.pos,
                key,
                format!("expected a new line or a comment{after}"),
            )),
        }
    }

    /// Blanks, newlines and comments (inside arrays).
    fn skip_blank_lines(&mut self, key: &[String]) -> Result<(), Error> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(b'\n' | b'\r') => self.newline(key)?,
                Some(b'#') => self.skip_comment(key)?,
                _ => return Ok(()),
            }
        }
    }

    /// `[a.b]`: defines the table and returns its path.
    fn header(&mut self, root: &mut Table) -> Result<Vec<String>, Error> {
        let start = self.pos;
        self.pos += 1;
        if self.peek() == Some(b'[') {
            self.pos += 1;
            self.skip_blanks();
            let names = self
                .dotted_key(&[])
                .map(|keys| keys.into_iter().map(|k| k.name).collect::<Vec<_>>())
                .unwrap_or_default();
            return Err(error(
                start,
                &names,
                "invalid type: array, expected a table (arrays of tables `[[...]]` are not supported)",
            ));
        }
        self.skip_blanks();
        let keys = self.dotted_key(&[])?;
        self.skip_blanks();
        if self.peek() != Some(b']') {
            return Err(error(
                self.pos,
                &[],
                "expected `]` to close the table header",
            ));
        }
        self.pos += 1;

        let mut path = Vec::with_capacity(keys.len());
        let mut table = root;
        for (i, key) in keys.iter().enumerate() {
            path.push(key.name.clone());
            let last = i + 1 == keys.len();
            let (index, created) = match table.position(&key.name) {
                Some(index) => (index, false),
                None => {
                    let origin = if last {
                        Origin::Header
                    } else {
                        Origin::Implied
                    };
                    table.entries.push((key.clone(), table_item(origin, key)));
                    (table.entries.len() - 1, true)
                }
            };
            let Some((_, item)) = table.entries.get_mut(index) else {
                return Err(internal(key.span.start, &path));
            };
            table = match &mut item.value {
                Value::Table(child) => {
                    match (last, created, child.origin) {
                        (true, false, Origin::Implied) => child.origin = Origin::Header,
                        (true, false, _) => {
                            return Err(error(
                                key.span.start,
                                &path,
                                "duplicate table: it is already defined above",
                            ))
                        }
                        (false, _, Origin::Inline) => {
                            return Err(error(
                                key.span.start,
                                &path,
                                "duplicate table: an inline table cannot be extended",
                            ))
                        }
                        _ => {}
                    }
                    child
                }
                other => return Err(already_holds(key, &path, other)),
            };
        }
        Ok(path)
    }

    /// `a.b = value` into the table at `current`; returns the key's full path.
    fn key_value(&mut self, root: &mut Table, current: &[String]) -> Result<Vec<String>, Error> {
        let keys = self.dotted_key(current)?;
        let mut path = current.to_vec();
        path.extend(keys.iter().map(|k| k.name.clone()));
        let item = self.after_key(&mut path, 0)?;
        let Some(table) = table_at(root, current) else {
            return Err(internal(self.pos, &path));
        };
        insert(table, &keys, item, current)?;
        Ok(path)
    }

    /// `= value` after a key whose full path is `path`.
    fn after_key(&mut self, path: &mut Vec<String>, depth: usize) -> Result<Item, Error> {
        self.skip_blanks();
        if self.peek() != Some(b'=') {
            return Err(error(self.pos, path, "expected `=` after the key"));
        }
        self.pos += 1;
        self.skip_blanks();
        self.value(path, depth)
    }

    /// One or more keys joined by dots. `context` is the path errors are reported under.
    fn dotted_key(&mut self, context: &[String]) -> Result<Vec<Key>, Error> {
        let mut keys = vec![self.key(context)?];
        loop {
            self.skip_blanks();
            if self.peek() != Some(b'.') {
                return Ok(keys);
            }
            self.pos += 1;
            self.skip_blanks();
            keys.push(self.key(context)?);
        }
    }

    fn key(&mut self, context: &[String]) -> Result<Key, Error> {
        let start = self.pos;
        let name = match self.peek() {
            Some(b'"') => {
                if self.starts_with("\"\"\"") {
                    return Err(error(start, context, "multi-line strings cannot be keys"));
                }
                self.basic_string(context)?
            }
            Some(b'\'') => {
                if self.starts_with("'''") {
                    return Err(error(start, context, "multi-line strings cannot be keys"));
                }
                self.literal_string(context)?
            }
            Some(b) if is_bare_key_byte(b) => {
                while self.peek().is_some_and(is_bare_key_byte) {
                    self.pos += 1;
                }
                self.text
                    .get(start..self.pos)
                    .unwrap_or_default()
                    .to_owned()
            }
            _ => {
                return Err(error(
                    start,
                    context,
                    "expected a key: letters, digits, `_` and `-`, or a quoted string",
                ))
            }
        };
        Ok(Key {
            name,
            span: start..self.pos,
        })
    }

    fn value(&mut self, path: &mut Vec<String>, depth: usize) -> Result<Item, Error> {
        let start = self.pos;
        if depth > MAX_DEPTH {
            return Err(error(
                start,
                path,
                format!("arrays and inline tables nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        let value = match self.peek() {
            Some(b'"') if self.starts_with("\"\"\"") => {
                return Err(error(start, path, MULTI_LINE));
            }
            Some(b'\'') if self.starts_with("'''") => {
                return Err(error(start, path, MULTI_LINE));
            }
            Some(b'"') => Value::String(self.basic_string(path)?),
            Some(b'\'') => Value::String(self.literal_string(path)?),
            Some(b'[') => Value::Array(self.array(path, depth)?),
            Some(b'{') => Value::Table(self.inline_table(path, depth)?),
            _ => self.bare_value(path)?,
        };
        Ok(Item {
            value,
            span: start..self.pos,
        })
    }

    /// `"..."`, the cursor at the opening quote; returns the unescaped text.
    fn basic_string(&mut self, key: &[String]) -> Result<String, Error> {
        self.pos += 1;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            match self.peek() {
                Some(b'"') => {
                    out.push_str(self.text.get(run..self.pos).unwrap_or_default());
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(self.text.get(run..self.pos).unwrap_or_default());
                    out.push(self.escape(key)?);
                    run = self.pos;
                }
                None | Some(b'\n' | b'\r') => return Err(self.unterminated(key, '"')),
                Some(b) if is_forbidden_control(b) => {
                    return Err(error(
                        self.pos,
                        key,
                        "control characters must be escaped in strings (e.g. \\u0001)",
                    ))
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// One escape sequence, the cursor at its backslash.
    fn escape(&mut self, key: &[String]) -> Result<char, Error> {
        let start = self.pos;
        self.pos += 1;
        let simple = match self.peek() {
            Some(b'b') => Some('\u{8}'),
            Some(b't') => Some('\t'),
            Some(b'n') => Some('\n'),
            Some(b'f') => Some('\u{c}'),
            Some(b'r') => Some('\r'),
            Some(b'"') => Some('"'),
            Some(b'\\') => Some('\\'),
            _ => None,
        };
        if let Some(c) = simple {
            self.pos += 1;
            return Ok(c);
        }
        let digits = match self.peek() {
            Some(b'u') => 4,
            Some(b'U') => 8,
            _ => {
                let shown = match self.char_here() {
                    Some(c) if !c.is_control() => format!("`\\{c}`"),
                    _ => "`\\`".to_owned(),
                };
                return Err(error(
                    start,
                    key,
                    format!(
                        "invalid escape {shown}: expected \\b, \\t, \\n, \\f, \\r, \\\", \\\\, \\uXXXX or \\UXXXXXXXX"
                    ),
                ));
            }
        };
        self.pos += 1;
        let mut code: u32 = 0;
        for _ in 0..digits {
            let digit = self.peek().and_then(|b| char::from(b).to_digit(16));
            let Some(digit) = digit else {
                return Err(error(
                    start,
                    key,
                    format!("invalid unicode escape: expected {digits} hexadecimal digits"),
                ));
            };
            code = code * 16 + digit;
            self.pos += 1;
        }
        char::from_u32(code).ok_or_else(|| {
            error(
                start,
                key,
                format!("invalid unicode escape: {code:X} is not a Unicode scalar value"),
            )
        })
    }

    /// `'...'`, the cursor at the opening quote.
    fn literal_string(&mut self, key: &[String]) -> Result<String, Error> {
        self.pos += 1;
        let run = self.pos;
        loop {
            match self.peek() {
                Some(b'\'') => {
                    let out = self.text.get(run..self.pos).unwrap_or_default().to_owned();
                    self.pos += 1;
                    return Ok(out);
                }
                None | Some(b'\n' | b'\r') => return Err(self.unterminated(key, '\'')),
                Some(b) if is_forbidden_control(b) => {
                    return Err(error(
                        self.pos,
                        key,
                        "control characters are not allowed in literal strings",
                    ))
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn unterminated(&self, key: &[String], quote: char) -> Error {
        error(
            self.pos,
            key,
            format!("unterminated string: expected a closing {quote} on the same line"),
        )
    }

    /// `[v, ...]`, the cursor at `[`; `path` is the array's key.
    fn array(&mut self, path: &mut Vec<String>, depth: usize) -> Result<Vec<Item>, Error> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_blank_lines(path)?;
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                None => return Err(error(self.pos, path, "unterminated array: expected `]`")),
                Some(_) => {}
            }
            path.push(format!("[{}]", items.len()));
            let item = self.value(path, depth + 1);
            path.pop();
            items.push(item?);
            self.skip_blank_lines(path)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                None => return Err(error(self.pos, path, "unterminated array: expected `]`")),
                Some(_) => {
                    return Err(error(
                        self.pos,
                        path,
                        "expected `,` or `]` after an array element",
                    ))
                }
            }
        }
    }

    /// `{ k = v, ... }`, the cursor at `{`; `path` is the table's key.
    fn inline_table(&mut self, path: &mut Vec<String>, depth: usize) -> Result<Table, Error> {
        self.pos += 1;
        let mut table = Table::new(Origin::Inline);
        self.skip_blanks();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(table);
        }
        loop {
            self.skip_blanks();
            if matches!(self.peek(), Some(b'\n' | b'\r')) {
                return Err(error(self.pos, path, INLINE_ONE_LINE));
            }
            if self.peek() == Some(b'}') {
                return Err(error(
                    self.pos,
                    path,
                    "a trailing comma is not allowed in an inline table",
                ));
            }
            let keys = self.dotted_key(path)?;
            let outer = path.len();
            path.extend(keys.iter().map(|k| k.name.clone()));
            let item = self.after_key(path, depth + 1);
            path.truncate(outer);
            insert(&mut table, &keys, item?, path)?;
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(table);
                }
                Some(b'\n' | b'\r') => return Err(error(self.pos, path, INLINE_ONE_LINE)),
                None => {
                    return Err(error(
                        self.pos,
                        path,
                        "unterminated inline table: expected `}`",
                    ))
                }
                Some(_) => {
                    return Err(error(
                        self.pos,
                        path,
                        "expected `,` or `}` after a value in an inline table",
                    ))
                }
            }
        }
    }

    /// An unquoted value: a boolean, an integer, or something rejected.
    fn bare_value(&mut self, path: &[String]) -> Result<Value, Error> {
        let start = self.pos;
        let ends = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'}' | b'#');
        while self.peek().is_some_and(|b| !ends(b)) {
            self.pos += 1;
        }
        // A local date-time may separate date and time by a space: `1979-05-27 07:32:00`.
        let date = |s: &str| {
            let b = s.as_bytes();
            b.len() == 10
                && b.iter().enumerate().all(|(i, c)| match i {
                    4 | 7 => *c == b'-',
                    _ => c.is_ascii_digit(),
                })
        };
        if self.peek() == Some(b' ')
            && self.peek_at(1).is_some_and(|b| b.is_ascii_digit())
            && self.text.get(start..self.pos).is_some_and(date)
        {
            self.pos += 1;
            while self.peek().is_some_and(|b| !ends(b)) {
                self.pos += 1;
            }
        }
        let token = self.text.get(start..self.pos).unwrap_or_default();
        classify(token).map_err(|message| error(start, path, message))
    }
}

const MULTI_LINE: &str =
    "multi-line strings are not supported: write a single-line string (or an array of them)";

const INLINE_ONE_LINE: &str =
    "an inline table must be on one line (TOML 1.0); use a [table] header for more keys";

fn internal(offset: usize, key: &[String]) -> Error {
    error(
        offset,
        key,
        "internal error: the table being filled is gone",
    )
}

/// A header or dotted key that would go through a key holding a plain value.
fn already_holds(key: &Key, path: &[String], value: &Value) -> Error {
    let kind = value.type_name();
    let article = if kind.starts_with(['a', 'i']) {
        "an"
    } else {
        "a"
    };
    error(
        key.span.start,
        path,
        format!("duplicate key: it already holds {article} {kind}, not a table"),
    )
}

fn table_item(origin: Origin, key: &Key) -> Item {
    Item {
        value: Value::Table(Table::new(origin)),
        span: key.span.clone(),
    }
}

/// The table at `path` (all tables, as made by headers).
fn table_at<'t>(root: &'t mut Table, path: &[String]) -> Option<&'t mut Table> {
    let mut table = root;
    for name in path {
        let index = table.position(name)?;
        table = match table.entries.get_mut(index) {
            Some((
                _,
                Item {
                    value: Value::Table(child),
                    ..
                },
            )) => child,
            _ => return None,
        };
    }
    Some(table)
}

/// Puts `item` at the dotted `keys` inside `table` (whose own path is `prefix`), making
/// the intermediate tables as dotted-key tables.
fn insert(table: &mut Table, keys: &[Key], item: Item, prefix: &[String]) -> Result<(), Error> {
    let mut path = prefix.to_vec();
    let Some((last, parents)) = keys.split_last() else {
        return Err(internal(item.span.start, &path));
    };
    let mut table = table;
    for key in parents {
        path.push(key.name.clone());
        let index = match table.position(&key.name) {
            Some(index) => index,
            None => {
                table
                    .entries
                    .push((key.clone(), table_item(Origin::Dotted, key)));
                table.entries.len() - 1
            }
        };
        // Checked on a shared borrow first: the error paths need the value too.
        match table.entries.get(index).map(|(_, item)| &item.value) {
            Some(Value::Table(child)) if child.origin == Origin::Dotted => {}
            Some(Value::Table(_)) => {
                return Err(error(
                    key.span.start,
                    &path,
                    "duplicate table: it is already defined above, dotted keys cannot extend it",
                ))
            }
            Some(other) => return Err(already_holds(key, &path, other)),
            None => return Err(internal(key.span.start, &path)),
        }
        table = match table.entries.get_mut(index) {
            Some((
                _,
                Item {
                    value: Value::Table(child),
                    ..
                },
            )) => child,
            _ => return Err(internal(key.span.start, &path)),
        };
    }
    path.push(last.name.clone());
    if table.position(&last.name).is_some() {
        return Err(error(last.span.start, &path, "duplicate key"));
    }
    table.entries.push((last.clone(), item));
    Ok(())
}

/// What an unquoted value token is.
fn classify(token: &str) -> Result<Value, String> {
    match token {
        "" => return Err("expected a value".to_owned()),
        "true" => return Ok(Value::Boolean(true)),
        "false" => return Ok(Value::Boolean(false)),
        _ => {}
    }
    let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
    let starts_with_digit = unsigned.starts_with(|c: char| c.is_ascii_digit());
    let only = |allowed: &str| unsigned.chars().all(|c| allowed.contains(c));
    let float = || Value::Unsupported {
        kind: "float",
        text: token.to_owned(),
    };
    if unsigned == "inf" || unsigned == "nan" {
        return Ok(float());
    }
    if ["0x", "0o", "0b"].iter().any(|p| unsigned.starts_with(p)) {
        return Err(format!(
            "invalid integer `{token}`: hexadecimal, octal and binary integers are not supported, write it in decimal"
        ));
    }
    let date_like = token.len() == unsigned.len()
        && starts_with_digit
        && (unsigned.contains(':') || unsigned.get(1..).is_some_and(|s| s.contains('-')));
    if date_like && only("0123456789-:.+TtZz ") {
        return Ok(Value::Unsupported {
            kind: "date-time",
            text: token.to_owned(),
        });
    }
    if !unsigned.is_empty() && only("0123456789_") {
        return integer(token, unsigned).map(Value::Integer);
    }
    if starts_with_digit && only("0123456789_.eE+-") && unsigned.contains(['.', 'e', 'E']) {
        return Ok(float());
    }
    Err(format!(
        "invalid value `{token}`: string values must be quoted"
    ))
}

/// A decimal integer: `unsigned` is `token` without its sign, only digits and `_`.
fn integer(token: &str, unsigned: &str) -> Result<i64, String> {
    let b = unsigned.as_bytes();
    let digit_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let underscores_ok = b
        .iter()
        .enumerate()
        .all(|(i, c)| *c != b'_' || (i > 0 && digit_at(i - 1) && digit_at(i + 1)));
    if !underscores_ok {
        return Err(format!(
            "invalid integer `{token}`: underscores must sit between digits"
        ));
    }
    if b.len() > 1 && b.first() == Some(&b'0') {
        return Err(format!(
            "invalid integer `{token}`: leading zeros are not allowed"
        ));
    }
    let negative = token.starts_with('-');
    let mut value: i64 = 0;
    for c in b.iter().filter(|c| c.is_ascii_digit()) {
        let digit = i64::from(c - b'0');
        // Accumulate towards the sign so that i64::MIN fits.
        let next = value.checked_mul(10).and_then(|v| {
            if negative {
                v.checked_sub(digit)
            } else {
                v.checked_add(digit)
            }
        });
        value = next.ok_or_else(|| {
            format!("invalid integer `{token}`: out of range for a 64-bit integer")
        })?;
    }
    Ok(value)
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A compact rendering of a tree: `{a=1,b="x",c=[true],d={}}`, floats and dates as
    /// `float(1.5)`.
    fn render_table(t: &Table) -> String {
        let inner: Vec<String> = t
            .iter()
            .map(|(k, item)| format!("{}={}", k.name, render(&item.value)))
            .collect();
        format!("{{{}}}", inner.join(","))
    }

    fn render(v: &Value) -> String {
        match v {
            Value::String(s) => format!("{s:?}"),
            Value::Integer(i) => i.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(|i| render(&i.value)).collect();
                format!("[{}]", inner.join(","))
            }
            Value::Table(t) => render_table(t),
            Value::Unsupported { kind, text } => format!("{kind}({text})"),
        }
    }

    fn line_col(text: &str, offset: usize) -> String {
        let before = text.get(..offset).unwrap();
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
        format!("{line}:{col}")
    }

    #[test]
    fn accepts() {
        let table: &[(&str, &str)] = &[
            ("", "{}"),
            ("\u{feff}a = 1", "{a=1}"),
            ("# only a comment", "{}"),
            ("a = 1\r\nb = 2\r\n", "{a=1,b=2}"),
            ("a=1#c\n\n\t b\t=\t2 # c\n", "{a=1,b=2}"),
            // keys
            ("A-z_09 = true", "{A-z_09=true}"),
            ("1234 = false", "{1234=false}"),
            ("\"a b\" = 1\n'c\\d' = 2", "{a b=1,c\\d=2}"),
            ("\"\" = 1", "{=1}"),
            ("\"\\u00e9\" = 1", "{é=1}"),
            ("a.b.c = 1\na.b.d = 2\na.e = 3", "{a={b={c=1,d=2},e=3}}"),
            ("a . \"b.c\" . 'd' = 1", "{a={b.c={d=1}}}"),
            ("3.14 = 1", "{3={14=1}}"),
            // tables
            ("[a]\nx = 1\n[b]\ny = 2", "{a={x=1},b={y=2}}"),
            ("[ a . b ]\nx = 1\n[a]\ny = 2", "{a={b={x=1},y=2}}"),
            ("[a]\nb.x = 1\n[a.b.c]\ny = 2", "{a={b={x=1,c={y=2}}}}"),
            ("[a] # c\n[a.b]\n[a.c]", "{a={b={},c={}}}"),
            ("[\"x y\".'z']", "{x y={z={}}}"),
            ("x = 1\n[t]", "{x=1,t={}}"),
            // strings
            (r#"s = "tab\there""#, r#"{s="tab\there"}"#),
            (
                r#"s = "\b\t\n\f\r\"\\\u00E9\U0001F600""#,
                "{s=\"\\u{8}\\t\\n\\u{c}\\r\\\"\\\\é😀\"}",
            ),
            (r"s = 'C:\path\n'", r#"{s="C:\\path\\n"}"#),
            (
                "s = \"é # not a comment\" # comment",
                "{s=\"é # not a comment\"}",
            ),
            ("s = ''", "{s=\"\"}"),
            ("s = \"a\tb\"", "{s=\"a\\tb\"}"),
            // integers
            ("i = 0", "{i=0}"),
            ("i = +0", "{i=0}"),
            ("i = -0", "{i=0}"),
            ("i = 1_000", "{i=1000}"),
            ("i = -42", "{i=-42}"),
            ("i = 9223372036854775807", "{i=9223372036854775807}"),
            ("i = -9223372036854775808", "{i=-9223372036854775808}"),
            // booleans
            ("t = true\nf = false", "{t=true,f=false}"),
            // arrays
            ("a = []", "{a=[]}"),
            ("a = [ ]", "{a=[]}"),
            ("a = [1, \"x\", true]", "{a=[1,\"x\",true]}"),
            ("a = [\n  1, # one\n  2, # two\n]", "{a=[1,2]}"),
            ("a = [\r\n1\r\n,\r\n2\r\n]", "{a=[1,2]}"),
            ("a = [[1, 2], [], ['x']]", "{a=[[1,2],[],[\"x\"]]}"),
            ("a = [{ x = 1 }, {}]", "{a=[{x=1},{}]}"),
            ("a = [ # c\n]", "{a=[]}"),
            // inline tables
            ("t = {}", "{t={}}"),
            (
                "t = {x = 1, 'y' = \"s\", z.w = [1,\n2]}",
                "{t={x=1,y=\"s\",z={w=[1,2]}}}",
            ),
            ("t = { a = { b = 1 } }", "{t={a={b=1}}}"),
            (
                "[d]\nenv = { HTTP_PROXY = \"http://p:3128\", \"A.B\" = \"1\" }",
                "{d={env={HTTP_PROXY=\"http://p:3128\",A.B=\"1\"}}}",
            ),
            // unsupported values are kept, to be rejected by the consumer
            ("f = 1.5", "{f=float(1.5)}"),
            ("f = -1e5", "{f=float(-1e5)}"),
            (
                "f = [inf, -nan, 6.626e-34]",
                "{f=[float(inf),float(-nan),float(6.626e-34)]}",
            ),
            ("d = 1979-05-27", "{d=date-time(1979-05-27)}"),
            ("d = 07:32:00", "{d=date-time(07:32:00)}"),
            (
                "d = 1979-05-27T07:32:00Z",
                "{d=date-time(1979-05-27T07:32:00Z)}",
            ),
            (
                "d = 1979-05-27 07:32:00.999-07:00",
                "{d=date-time(1979-05-27 07:32:00.999-07:00)}",
            ),
        ];
        for (text, want) in table {
            match parse(text) {
                Ok(t) => assert_eq!(render_table(&t), *want, "{text:?}"),
                Err(e) => panic!("{text:?}: {e:?}"),
            }
        }
    }

    #[test]
    fn rejects() {
        // (text, line:col, dotted key path, message fragment)
        let table: &[(&str, &str, &str, &str)] = &[
            // structure
            ("a = 1 b = 2", "1:7", "a", "expected a new line or a comment after the value"),
            ("[a] b = 1", "1:5", "a", "after the table header"),
            ("[a", "1:3", "", "expected `]` to close the table header"),
            ("[]", "1:2", "", "expected a key"),
            ("[a.]", "1:4", "", "expected a key"),
            ("= 1", "1:1", "", "expected a key"),
            ("a", "1:2", "a", "expected `=` after the key"),
            ("a.b\n= 1", "1:4", "a.b", "expected `=`"),
            ("a = 1\rb = 2", "1:6", "a", "carriage return"),
            ("# c\u{1}", "1:4", "", "control characters are not allowed in comments"),
            ("a = 1 # c\u{7f}", "1:10", "a", "control characters"),
            ("a = 1 # c\r", "1:10", "a", "carriage return"),
            ("[[a]]\nx = 1", "1:1", "a", "invalid type: array, expected a table (arrays of tables"),
            ("[[a.b]]", "1:1", "a.b", "arrays of tables"),
            // duplicates and redefinitions
            ("a = 1\na = 2", "2:1", "a", "duplicate key"),
            ("\"a\" = 1\n'a' = 2", "2:1", "a", "duplicate key"),
            ("[t]\na = 1\n[u]\n[t]", "4:2", "t", "duplicate table"),
            ("[t]\n[t.u]\n[t.u]", "3:4", "t.u", "duplicate table"),
            ("a.b = 1\n[a]", "2:2", "a", "duplicate table"),
            ("[a]\nb.c = 1\n[a.b]", "3:4", "a.b", "duplicate table"),
            ("[a.b]\n[a]\nb.c = 1", "3:1", "a.b", "dotted keys cannot extend it"),
            ("a = 1\na.b = 2", "2:1", "a", "duplicate key: it already holds an integer, not a table"),
            ("a = 1\n[a]", "2:2", "a", "duplicate key: it already holds an integer, not a table"),
            ("a = 1\n[a.b]", "2:2", "a", "duplicate key"),
            ("a = {}\n[a]", "2:2", "a", "duplicate table"),
            ("a = {b = 1}\n[a.c]", "2:2", "a", "an inline table cannot be extended"),
            ("a = {b = 1}\na.c = 2", "2:1", "a", "dotted keys cannot extend it"),
            ("a = {b = 1, b = 2}", "1:13", "a.b", "duplicate key"),
            ("a = {b.c = 1, b = 2}", "1:15", "a.b", "duplicate key"),
            ("[a]\nb = 1\n[a]\nc = 2", "3:2", "a", "duplicate table"),
            // values
            ("a =", "1:4", "a", "expected a value"),
            ("a = # c", "1:5", "a", "expected a value"),
            ("a = ,", "1:5", "a", "expected a value"),
            ("a = 8s", "1:5", "a", "invalid value `8s`: string values must be quoted"),
            ("a = yes", "1:5", "a", "string values must be quoted"),
            ("a = True", "1:5", "a", "string values must be quoted"),
            ("a = +", "1:5", "a", "string values must be quoted"),
            ("a = 0x1F", "1:5", "a", "hexadecimal, octal and binary integers are not supported"),
            ("a = 0o660", "1:5", "a", "not supported"),
            ("a = 012", "1:5", "a", "invalid integer `012`: leading zeros are not allowed"),
            ("a = -01", "1:5", "a", "leading zeros"),
            ("a = 1__0", "1:5", "a", "underscores must sit between digits"),
            ("a = _1", "1:5", "a", "underscores"),
            ("a = 1_", "1:5", "a", "underscores"),
            ("a = 9223372036854775808", "1:5", "a", "out of range for a 64-bit integer"),
            ("a = -9223372036854775809", "1:5", "a", "out of range"),
            // strings
            ("a = \"x", "1:7", "a", "unterminated string: expected a closing \""),
            ("a = \"x\ny\"", "1:7", "a", "unterminated string"),
            ("a = 'x", "1:7", "a", "unterminated string: expected a closing '"),
            ("a = \"\\x\"", "1:6", "a", "invalid escape `\\x`"),
            ("a = \"\\e\"", "1:6", "a", "invalid escape `\\e`: expected \\b, \\t, \\n, \\f, \\r, \\\", \\\\, \\uXXXX or \\UXXXXXXXX"),
            ("a = \"\\é\"", "1:6", "a", "invalid escape `\\é`"),
            ("a = \"\\", "1:6", "a", "invalid escape"),
            ("a = \"\\u12\"", "1:6", "a", "expected 4 hexadecimal digits"),
            ("a = \"\\U0011000\"", "1:6", "a", "expected 8 hexadecimal digits"),
            ("a = \"\\UFFFFFFFF\"", "1:6", "a", "FFFFFFFF is not a Unicode scalar value"),
            ("a = \"\\uD800\"", "1:6", "a", "not a Unicode scalar value"),
            ("a = \"x\u{1}\"", "1:7", "a", "control characters must be escaped"),
            ("a = 'x\u{7f}'", "1:7", "a", "control characters are not allowed in literal strings"),
            ("a = \"\"\"x\"\"\"", "1:5", "a", "multi-line strings are not supported"),
            ("a = '''x'''", "1:5", "a", "multi-line strings are not supported"),
            ("\"\"\"a\"\"\" = 1", "1:1", "", "multi-line strings cannot be keys"),
            ("\"a\nb\" = 1", "1:3", "", "unterminated string"),
            ("[t]\n\"a\\q\" = 1", "2:3", "t", "invalid escape"),
            // arrays
            ("a = [1 2]", "1:8", "a", "expected `,` or `]` after an array element"),
            ("a = [1,,]", "1:8", "a.[1]", "expected a value"),
            ("a = [,]", "1:6", "a.[0]", "expected a value"),
            ("a = [1,\n", "2:1", "a", "unterminated array"),
            ("a = [\"x\", 1.5.x]", "1:11", "a.[1]", "string values must be quoted"),
            ("a = [[1, x]]", "1:10", "a.[0].[1]", "must be quoted"),
            // inline tables
            ("t = {", "1:6", "t", "expected a key"),
            ("t = {a = 1", "1:11", "t", "unterminated inline table"),
            ("t = {a = 1,}", "1:12", "t", "a trailing comma is not allowed"),
            ("t = {a = 1 b = 2}", "1:12", "t", "expected `,` or `}`"),
            ("t = {\na = 1}", "1:6", "t", "must be on one line"),
            ("t = {a = 1,\nb = 2}", "1:12", "t", "must be on one line"),
            ("t = {a = 1\n}", "1:11", "t", "must be on one line"),
            ("t = {a = }", "1:10", "t.a", "expected a value"),
            ("t = {a.b = x}", "1:12", "t.a.b", "must be quoted"),
        ];
        for (text, at, key, fragment) in table {
            let e = match parse(text) {
                Ok(t) => panic!("{text:?}: expected an error, got {}", render_table(&t)),
                Err(e) => e,
            };
            let got = (line_col(text, e.offset), e.key.join("."));
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                (*at, *key),
                "{text:?}: {e:?}"
            );
            assert!(e.message.contains(fragment), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("a = {}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        for open in ["[", "{ b = "] {
            let deep = format!("a = {}", open.repeat(100_000));
            let e = parse(&deep).unwrap_err();
            assert!(e.message.contains("nest deeper"), "{e:?}");
        }
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "[t]\n\"k é\" = 'v'\nn = [1, [2]]\ni = { x = -3 }\n[u.v]\nd.e = true\n";
        let root = parse(text).unwrap();
        let span = |s: &Span| text.get(s.clone()).unwrap();
        let (tk, t) = root.get("t").unwrap();
        assert_eq!(span(&tk.span), "t");
        assert_eq!(span(&t.span), "t");
        let Value::Table(t) = &t.value else { panic!() };
        let (k, v) = t.get("k é").unwrap();
        assert_eq!((span(&k.span), span(&v.span)), ("\"k é\"", "'v'"));
        let (_, n) = t.get("n").unwrap();
        assert_eq!(span(&n.span), "[1, [2]]");
        let Value::Array(items) = &n.value else {
            panic!()
        };
        assert_eq!(span(&items[1].span), "[2]");
        let (_, i) = t.get("i").unwrap();
        assert_eq!(span(&i.span), "{ x = -3 }");
        let Value::Table(i) = &i.value else { panic!() };
        let (xk, x) = i.get("x").unwrap();
        assert_eq!((span(&xk.span), span(&x.span)), ("x", "-3"));
        // Tables made by a header prefix or a dotted key point at that segment.
        let (uk, u) = root.get("u").unwrap();
        assert_eq!(line_col(text, uk.span.start), "5:2");
        assert_eq!(u.span, uk.span);
        let Value::Table(u) = &u.value else { panic!() };
        let (_, v) = u.get("v").unwrap();
        assert_eq!(span(&v.span), "v");
        let Value::Table(v) = &v.value else { panic!() };
        let (dk, _) = v.get("d").unwrap();
        assert_eq!(line_col(text, dk.span.start), "6:1");
        assert_eq!(v.len(), 1);
        assert!(!v.is_empty());
    }

    /// Every key and value span of a tree lies inside the text, on char boundaries.
    fn check_spans(text: &str, t: &Table) {
        for (key, item) in t.iter() {
            assert!(text.get(key.span.clone()).is_some(), "{text:?} {key:?}");
            check_item(text, item);
        }
    }

    fn check_item(text: &str, item: &Item) {
        assert!(text.get(item.span.clone()).is_some(), "{text:?} {item:?}");
        match &item.value {
            Value::Table(t) => check_spans(text, t),
            Value::Array(items) => items.iter().for_each(|i| check_item(text, i)),
            _ => {}
        }
    }

    /// Deterministic pseudo-random numbers (xorshift64).
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Parses `text` with this module and with the config on top; neither may panic,
    /// and every offset and span they report must be usable on the text.
    fn survive(text: &str) {
        match parse(text) {
            Ok(t) => check_spans(text, &t),
            Err(e) => assert!(
                text.is_char_boundary(e.offset),
                "{text:?}: offset {} is not a char boundary",
                e.offset
            ),
        }
        if let Err(crate::config::ConfigError::Invalid { line, column, .. }) =
            crate::config::parse(text, "fuzz")
        {
            assert!(line >= 1 && column >= 1, "{text:?}");
        }
    }

    #[test]
    fn no_panic_on_prefixes_and_mutations() {
        let seeds = [
            include_str!("../init.toml.example"),
            "[dockerd]\nargs = [\"a\", 'b', [1, {x = \"\\u00e9\"}]] # c\nenv = { A = \"1\", b.c = 'x' }\n\
             [readiness.x]\nd.e = -1_000\nf = 1979-05-27 07:32:00\ng = 1.5e3\n\"q\\\"\" = true\r\n",
        ];
        let mut count = 0;
        for seed in seeds {
            for (end, _) in seed.char_indices() {
                survive(seed.get(..end).unwrap());
                count += 1;
            }
        }
        // Mutations: insert, delete, replace and duplicate characters, biased towards the
        // characters TOML gives meaning to.
        let alphabet: Vec<char> =
            "[]{}\"'=#,.\\\n\r\t -+_:0123456789aeftuxUbnrs\u{0}\u{1}é😀\u{7f}"
                .chars()
                .collect();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..6_000 {
            let seed = seeds[round % seeds.len()];
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(chars.len() + 1);
                let pick = alphabet[rng.below(alphabet.len())];
                match rng.below(4) {
                    0 => chars.insert(at, pick),
                    1 if at < chars.len() => {
                        let end = (at + 1 + rng.below(20)).min(chars.len());
                        chars.drain(at..end);
                    }
                    2 if at < chars.len() => chars[at] = pick,
                    _ => {
                        let end = (at + rng.below(30)).min(chars.len());
                        let copy: Vec<char> = chars[at..end].to_vec();
                        let to = rng.below(chars.len() + 1);
                        chars.splice(to..to, copy);
                    }
                }
            }
            let text: String = chars.into_iter().collect();
            survive(&text);
            // And every prefix of some mutants, where truncation bugs hide.
            if round % 1_000 == 0 {
                for (end, _) in text.char_indices() {
                    survive(text.get(..end).unwrap());
                }
            }
            count += 1;
        }
        assert!(count > 6_000);
    }
}
