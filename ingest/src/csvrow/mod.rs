//! The CSV kernel: one snapshot of `counters.csv` or `samples.csv` as `&[u8]` in, borrowed rows
//! out. No I/O, no allocation per row (a quoted field with `""` escapes is unescaped into one
//! scratch buffer reused for the whole snapshot).
//!
//! A row is `hostname,stat name,ISO time,unix time,v0,...,v14`:
//! - fields may be quoted (`"a,b"`, `"say ""hi"""`); one record per line (the platform writes
//!   no newline inside a field), so a quote problem spoils only its own line
//!   ([`Reason::UnclosedQuote`]) and the next line parses normally;
//! - rows end in LF or CRLF; blank lines are skipped;
//! - a row may have fewer than 15 values (absent values carry no data);
//! - counters: an empty value is 0 occurrences; samples: an empty value is no data;
//! - the ISO time is informational (the platform writes it in local time) and is not checked.
//!
//! The last line of a snapshot without a trailing newline may be a row the platform is still
//! writing: unless the caller says the file has been quiet ([`Reader::new`]'s `tail_complete`),
//! it is left unparsed and reported by [`Reader::incomplete_tail`]. Incomplete input is normal
//! control flow, not an error.
//!
//! A bad row is a [`RowError`] with its [`Reason`], 1-based line and byte offset; the reader
//! goes on with the next row.
//!
//! Fast paths (the result is the same as the general one, which reads anything they do not):
//! - a counters.csv row whose values are plain digits and commas is read in one pass over the
//!   value bytes, split and parsed together;
//! - with [`Reader::with_memo`], a row whose text after `v1` repeats, shifted by one minute, the
//!   row on the same line of the previous snapshot is split only up to `v1`: the platform
//!   rewrites each row every minute with the values shifted by one and only the newest one or
//!   two new ([`Row::same_tail`]; the consumer checks the full hash against its series).

mod memo;
mod numbers;
mod quoted;
mod split;

pub use memo::KEEP_MASK;
pub use numbers::{parse_average, parse_count};

pub(crate) use crate::table::Ahead;
use memchr::memchr;
use memo::{build_with_memo, newest_two, tail_hash};
use split::{line_parts, split_line};

/// The most values a row may carry.
pub const MAX_VALUES: usize = 15;
const FIXED: usize = 4;
const MAX_FIELDS: usize = FIXED + MAX_VALUES;

/// Which file a snapshot comes from: it decides how values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Integer counts; an empty field is 0.
    Counters,
    /// Float averages; an empty field is no data.
    Samples,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counters => "counters",
            Kind::Samples => "samples",
        }
    }
}

/// One value of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Samples: an empty field.
    Missing,
    /// Counters: a count (empty = 0), at most `i64::MAX`.
    Int(u64),
    /// Samples: a finite, non-negative average.
    Float(f64),
}

/// A good row, borrowed from the snapshot (or the reader's scratch buffer for quoted fields).
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// 1-based line where the row starts.
    pub line: u64,
    /// Byte offset of the row in the snapshot.
    pub byte: u64,
    pub host: &'a str,
    pub stat: &'a str,
    /// The unix time as written (samples.csv times are not minute-aligned).
    pub time: i64,
    values: [Value; MAX_VALUES],
    len: u8,
    /// What the next minute's row of this series repeats if nothing but its two newest values
    /// changes: a 48-bit hash ([`KEEP_MASK`]) of the text of `v1..v(n-2)` seeded with the next
    /// minute (0: not computed, see [`Reader::with_memo`]).
    pub keep: u64,
    /// Not 0: the parse stage left every value but the two newest unparsed
    /// ([`Value::Missing`]) because their text hashes to this, the `keep` of the row at the
    /// same position of the previous snapshot. The consumer must check that the series' last
    /// applied row had this `keep`, and otherwise read all values from
    /// [`Row::values_text`] with [`parse_values`].
    pub same_tail: u64,
    /// The text of the values (`v0` to the end of the line; empty for a quoted line).
    pub values_text: &'a [u8],
}

impl<'a> Row<'a> {
    /// A row with nothing in it, to be filled in place.
    pub const EMPTY: Row<'static> = Row {
        line: 0,
        byte: 0,
        host: "",
        stat: "",
        time: 0,
        values: [Value::Missing; MAX_VALUES],
        len: 0,
        keep: 0,
        same_tail: 0,
        values_text: &[],
    };

    /// The values present in the row, `v0` first.
    pub fn values(&self) -> &[Value] {
        &self.values[..self.len as usize]
    }

    /// Start of the minute containing [`Row::time`], in seconds.
    pub fn minute(&self) -> i64 {
        self.time.div_euclid(60) * 60
    }
}

/// Why a row was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Fewer than the 4 fixed fields.
    MissingFields,
    /// More than 15 values.
    TooManyValues,
    /// Empty hostname or stat name.
    EmptyName,
    /// Hostname or stat name is not UTF-8.
    InvalidUtf8,
    /// The unix time is not a non-negative whole number of seconds.
    BadTimestamp,
    /// A value is not a number.
    BadNumber,
    /// A value is negative.
    Negative,
    /// A count above `i64::MAX`, or an average that is not finite.
    Overflow,
    /// A quoted field never closes before the end of the file.
    UnclosedQuote,
    /// The same host and stat appear twice in one file (found by [`crate::table`]).
    Duplicate,
    /// The row's minute is further ahead of the wall clock than the tolerance (found by
    /// [`crate::table`]).
    Future,
    /// The row's minute is older than the state window of the file (found by [`crate::table`]).
    TooOld,
}

impl Reason {
    pub const COUNT: usize = 12;
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::MissingFields,
        Reason::TooManyValues,
        Reason::EmptyName,
        Reason::InvalidUtf8,
        Reason::BadTimestamp,
        Reason::BadNumber,
        Reason::Negative,
        Reason::Overflow,
        Reason::UnclosedQuote,
        Reason::Duplicate,
        Reason::Future,
        Reason::TooOld,
    ];

    /// A short fixed name, usable as a log field or metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingFields => "missing_fields",
            Reason::TooManyValues => "too_many_values",
            Reason::EmptyName => "empty_name",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::BadNumber => "bad_number",
            Reason::Negative => "negative",
            Reason::Overflow => "overflow",
            Reason::UnclosedQuote => "unclosed_quote",
            Reason::Duplicate => "duplicate",
            Reason::Future => "future",
            Reason::TooOld => "too_old",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A skipped row: why, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line} (byte {byte}), field {field}: {reason}")]
pub struct RowError {
    pub reason: Reason,
    /// 1-based line where the row starts.
    pub line: u64,
    /// Byte offset of the row in the snapshot.
    pub byte: u64,
    /// 1-based field the problem was found in (0: the row as a whole).
    pub field: u8,
}

/// Reads the rows of one snapshot.
pub struct Reader<'a> {
    data: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) end: usize,
    pub(crate) line: u64,
    kind: Kind,
    records: u64,
    scratch: Vec<u8>,
    /// By line index (line - 1): the low 32 bits of each row's [`Row::keep`] in the previous
    /// snapshot, 0 for anything else (see [`Reader::with_memo`]).
    hints: &'a [u32],
    /// The same for this snapshot, from line index `memo_base` on; `None`: no memo.
    memo: Option<Vec<u32>>,
    memo_base: usize,
    newest_first: bool,
    /// The last unix time field read by a fast path, and its value: the rows of a snapshot
    /// mostly carry the same time, so it is compared, not parsed again.
    last_time: (&'a [u8], Option<i64>),
}

impl<'a> Reader<'a> {
    /// `tail_complete`: the file has been quiet, so a last line without a newline is a whole
    /// row. Otherwise it is left for a later snapshot.
    pub fn new(data: &'a [u8], kind: Kind, tail_complete: bool) -> Self {
        let end = if tail_complete || data.last() == Some(&b'\n') {
            data.len()
        } else {
            memchr::memrchr(b'\n', data).map_or(0, |i| i + 1)
        };
        Reader {
            data,
            pos: 0,
            end,
            line: 1,
            kind,
            records: 0,
            scratch: Vec::new(),
            hints: &[],
            memo: None,
            memo_base: 0,
            newest_first: true,
            last_time: (&[], None),
        }
    }

    /// [`parse_time`] of `f`, by comparison with the last time field read when it is the
    /// same text.
    #[inline]
    fn time_of(&mut self, f: &'a [u8]) -> Option<i64> {
        if !same_name(f, self.last_time.0) {
            self.last_time = (f, parse_time(f));
        }
        self.last_time.1
    }

    /// Remembers each row's [`Row::keep`] by line in a memo (returned by
    /// [`Reader::take_memo`], written into `next`'s memory), and leaves unparsed the values
    /// of a row that repeats, shifted by one minute, the text of the row on the same line in
    /// the previous snapshot of the same file, whose memo is `prev` (or empty)
    /// ([`Row::same_tail`]). The platform
    /// rewrites its files every minute with the values shifted by one and only the newest
    /// one or two new: most of a rewrite's values are text already read. The memo is only
    /// a hint; the consumer checks the full hash against the series.
    /// `newest_first`: `v0` is the row's own minute (otherwise the last value is).
    pub fn with_memo(mut self, prev: &'a [u32], mut next: Vec<u32>, newest_first: bool) -> Self {
        next.clear();
        self.hints = prev;
        self.memo = Some(next);
        self.memo_base = (self.line - 1) as usize;
        self.newest_first = newest_first;
        self
    }

    /// The memo for the next snapshot (empty when none was given): by line index, from the
    /// reader's first line on (see [`Reader::range`]).
    pub fn take_memo(&mut self) -> Vec<u32> {
        self.memo.take().unwrap_or_default()
    }

    /// Bytes at the end of the snapshot left unparsed because they may be a row still being
    /// written (0 when the snapshot ends in a newline or `tail_complete` was given).
    pub fn incomplete_tail(&self) -> usize {
        self.data.len() - self.end
    }

    /// Length of the part of the snapshot that is read as rows.
    pub fn parsable_len(&self) -> usize {
        self.end
    }

    /// Records (non-blank lines) returned so far, good or bad: every one is either a row or
    /// a [`RowError`].
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The next row, or `None` at the end of the parsable part of the snapshot.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Row<'_>, RowError>> {
        match self.next_ahead()? {
            Ahead::Row(r) => Some(Ok(r)),
            Ahead::Bad(e) => Some(Err(e)),
            Ahead::Quoted(start, line) => Some(self.quoted_line(start, line)),
        }
    }

    /// [`Reader::next_ahead`] into `slot` (a row is written in place: a batch of rows is
    /// filled without moving them); `false` at the end.
    pub fn next_ahead_into(&mut self, slot: &mut Ahead<'a>) -> bool {
        loop {
            if self.pos >= self.end {
                return false;
            }
            let start = self.pos;
            let line_no = self.line;
            let rest = &self.data[start..self.end];
            if self.newest_first && self.memo.is_some() {
                if let Some(&hint) = self.hints.get((line_no - 1) as usize) {
                    if hint != 0 && self.repeat(rest, hint, slot) {
                        return true;
                    }
                }
            }
            if self.kind == Kind::Counters && self.counts_row(rest, slot) {
                return true;
            }
            let mut fields: [&[u8]; MAX_FIELDS] = [&[]; MAX_FIELDS];
            let sp = split_line(rest, &mut fields);
            let next = match sp.newline {
                Some(i) => start + i + 1,
                None => self.end,
            };
            if !sp.quoted {
                self.pos = next;
                self.line += 1;
                if sp.blank {
                    continue;
                }
                let k = (line_no - 1) as usize;
                self.records += 1;
                let (n, too_many) = (sp.fields, sp.too_many);
                if too_many {
                    self.remember(k, 0);
                    *slot = Ahead::Bad(err(Reason::TooManyValues, line_no, start, 0));
                    return true;
                }
                let row = row_slot(slot);
                let r = match &self.memo {
                    None => build_into(&fields[..n], self.kind, line_no, start, row),
                    Some(_) => {
                        let hint = self.hints.get(k).copied().unwrap_or(0);
                        let fields = &fields[..n];
                        build_with_memo(
                            rest,
                            fields,
                            self.kind,
                            line_no,
                            start,
                            hint,
                            self.newest_first,
                            row,
                        )
                    }
                };
                match r {
                    Ok(()) => {
                        let keep = row.keep as u32;
                        self.remember(k, keep);
                    }
                    Err(e) => {
                        self.remember(k, 0);
                        *slot = Ahead::Bad(e);
                    }
                }
                return true;
            }
            self.remember((line_no - 1) as usize, 0);
            self.records += 1;
            self.pos = next;
            self.line += 1;
            *slot = Ahead::Quoted(start, line_no);
            return true;
        }
    }

    /// Counts the line at the current position as a record whose next line starts `next`
    /// bytes on: its line index (line - 1, the memo's index), line number and byte offset.
    #[inline]
    fn take_line(&mut self, next: usize) -> (usize, u64, usize) {
        let at = ((self.line - 1) as usize, self.line, self.pos);
        self.pos += next;
        self.line += 1;
        self.records += 1;
        at
    }

    /// Records `keep` for line index `k` in the memo (blank lines between records stay 0).
    #[inline]
    fn remember(&mut self, k: usize, keep: u32) {
        if let Some(m) = &mut self.memo {
            let i = k - self.memo_base;
            if i == m.len() {
                m.push(keep);
            } else if i > m.len() {
                m.resize(i, 0);
                m.push(keep);
            } else {
                m[i] = keep;
            }
        }
    }
}

/// Host, stat, ISO time and unix time of a line whose first four commas are `c`.
#[inline]
fn head_fields<'a>(rest: &'a [u8], c: &[usize]) -> [&'a [u8]; FIXED] {
    [
        &rest[..c[0]],
        &rest[c[0] + 1..c[1]],
        &rest[c[1] + 1..c[2]],
        &rest[c[2] + 1..c[3]],
    ]
}

/// The row in `slot`, made a row if it held something else.
#[inline]
fn row_slot<'s, 'a>(slot: &'s mut Ahead<'a>) -> &'s mut Row<'a> {
    if !matches!(slot, Ahead::Row(_)) {
        *slot = Ahead::Row(Row::EMPTY);
    }
    let Ahead::Row(r) = slot else { unreachable!() };
    r
}

fn err(reason: Reason, line: u64, byte: usize, field: usize) -> RowError {
    RowError {
        reason,
        line,
        byte: byte as u64,
        field: field as u8,
    }
}

fn build<'a>(fields: &[&'a [u8]], kind: Kind, line: u64, byte: usize) -> Result<Row<'a>, RowError> {
    let mut r = Row::EMPTY;
    build_into(fields, kind, line, byte, &mut r)?;
    Ok(r)
}

/// Reads `fields` into `r` (all of it but its stale values past [`Row::values`]).
#[inline]
fn build_into<'a>(
    fields: &[&'a [u8]],
    kind: Kind,
    line: u64,
    byte: usize,
    r: &mut Row<'a>,
) -> Result<(), RowError> {
    head_into(fields, line, byte, r)?;
    let raw = &fields[FIXED..];
    for (i, (slot, f)) in r.values.iter_mut().zip(raw).enumerate() {
        let v = match kind {
            Kind::Counters => parse_count(f),
            Kind::Samples => parse_average(f),
        };
        *slot = v.map_err(|e| err(e, line, byte, FIXED + i + 1))?;
    }
    r.len = raw.len() as u8;
    Ok(())
}

/// The fixed fields of a row into `r` (no values yet: `len` 0).
#[inline]
fn head_into<'a>(
    fields: &[&'a [u8]],
    line: u64,
    byte: usize,
    r: &mut Row<'a>,
) -> Result<(), RowError> {
    let time = fields.get(3).and_then(|f| parse_time(f));
    head_into_at(fields, time, line, byte, r)
}

/// [`head_into`] with the unix time field already read (`time`: [`parse_time`] of it).
#[inline]
fn head_into_at<'a>(
    fields: &[&'a [u8]],
    time: Option<i64>,
    line: u64,
    byte: usize,
    r: &mut Row<'a>,
) -> Result<(), RowError> {
    if fields.len() < FIXED {
        return Err(err(Reason::MissingFields, line, byte, 0));
    }
    let name = |i: usize| -> Result<&'a str, RowError> {
        let f = fields[i];
        let s = if f.iter().fold(0, |a, &b| a | b) < 0x80 {
            // SAFETY: ASCII only (checked above), which is valid UTF-8. The common case,
            // checked inline instead of through the general validator.
            unsafe { std::str::from_utf8_unchecked(f) }
        } else {
            std::str::from_utf8(f).map_err(|_| err(Reason::InvalidUtf8, line, byte, i + 1))?
        };
        if s.is_empty() {
            return Err(err(Reason::EmptyName, line, byte, i + 1));
        }
        Ok(s)
    };
    r.host = name(0)?;
    r.stat = name(1)?;
    r.time = time.ok_or_else(|| err(Reason::BadTimestamp, line, byte, 4))?;
    r.line = line;
    r.byte = byte as u64;
    r.len = 0;
    r.keep = 0;
    r.same_tail = 0;
    r.values_text = &[];
    Ok(())
}

/// The bytes of `line` from the start of field `first` to the end of field `last` (both
/// borrowed from `line`).
#[inline]
fn span<'a>(line: &'a [u8], first: &[u8], last: &[u8]) -> &'a [u8] {
    let a = first.as_ptr() as usize - line.as_ptr() as usize;
    let b = last.as_ptr() as usize - line.as_ptr() as usize + last.len();
    &line[a..b]
}

/// All values of a row from [`Row::values_text`] (for a row whose parse stage left some out,
/// [`Row::same_tail`]), with the number of values.
pub fn parse_values(text: &[u8], kind: Kind) -> Result<([Value; MAX_VALUES], usize), Reason> {
    let mut values = [Value::Missing; MAX_VALUES];
    let mut n = 0;
    for f in text.split(|&b| b == b',') {
        if n == MAX_VALUES {
            return Err(Reason::TooManyValues);
        }
        values[n] = match kind {
            Kind::Counters => parse_count(f),
            Kind::Samples => parse_average(f),
        }?;
        n += 1;
    }
    Ok((values, n))
}

/// `a == b` for short byte strings (names, a time field), compared inline 8 bytes at a time:
/// the check that a row is the predicted series' or carries the previous row's time, once or
/// twice per row (a call to memcmp each took a tenth of a rewrite's applying time).
#[inline(always)]
pub(crate) fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// Unix seconds: digits only, at most year ~36812 (`< 10^12`).
fn parse_time(f: &[u8]) -> Option<i64> {
    if f.is_empty() || f.len() > 12 {
        return None;
    }
    let mut v: i64 = 0;
    for &b in f {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as i64;
    }
    Some(v)
}

#[cfg(test)]
mod tests;
