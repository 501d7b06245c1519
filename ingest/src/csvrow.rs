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

use memchr::memchr;

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

/// A record read by [`Reader::next_ahead`], which can run ahead of the consumer on another
/// thread: everything but a quoted line borrows only the snapshot.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // rows travel in reused batches: boxing would allocate per row
pub enum Ahead<'a> {
    Row(Row<'a>),
    Bad(RowError),
    /// A line with a double quote: its fields are unescaped into a scratch buffer, so the
    /// consumer reads it with [`Reader::quoted_line`] (start byte, 1-based line).
    Quoted(usize, u64),
}

/// Reads the rows of one snapshot.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    line: u64,
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

    /// A reader of the lines of `data[start..end]` only, the first of them line `line`
    /// (1-based) of `data`: `start` is the start of a line, and `end` the start of a line or
    /// the end of the part of `data` that is read as rows ([`Reader::parsable_len`] of a
    /// reader of the whole snapshot). Several such readers over consecutive ranges read the
    /// same records as one reader over the whole, with the same lines and bytes, so a
    /// snapshot can be read on several threads.
    pub fn range(data: &'a [u8], kind: Kind, start: usize, end: usize, line: u64) -> Self {
        debug_assert!(start <= end && end <= data.len());
        Reader {
            pos: start,
            end,
            line,
            ..Reader::new(data, kind, true)
        }
    }

    /// The line the next record starts on (1-based).
    pub fn next_line(&self) -> u64 {
        self.line
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

    /// The next record, rows borrowed from the snapshot only; a line with quotes is left to
    /// [`Reader::quoted_line`] (the records count includes it).
    pub fn next_ahead(&mut self) -> Option<Ahead<'a>> {
        let mut a = Ahead::Row(Row::EMPTY);
        self.next_ahead_into(&mut a).then_some(a)
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

    /// The fast path of a memo hit (newest first): the line at the start of `rest` is read
    /// as a row in `slot` if the text after its `v1` hashes to `hint` (see
    /// [`Reader::with_memo`]). Only the fixed fields and the two newest values are split
    /// and parsed; the rest of the line is hashed, not split. `false` (nothing consumed):
    /// read the line the general way.
    #[inline]
    fn repeat(&mut self, rest: &'a [u8], hint: u32, slot: &mut Ahead<'a>) -> bool {
        // The commas ending host, stat, ISO time, unix time, v0 and v1 (none: a quote, fewer
        // than 6 values, or near the end of the data: the general way).
        let Some((commas, line_end, next, last_comma)) = line_parts::<6>(rest) else {
            return false;
        };
        let v2 = commas[5] + 1;
        let Some(time) = self.time_of(&rest[commas[2] + 1..commas[3]]) else {
            return false;
        };
        let minute = time.div_euclid(60);
        let same = tail_hash(&rest[v2..line_end], minute);
        if same as u32 != hint {
            return false;
        }
        // `v1` up to the comma before the last value (`v1` alone with 3 values).
        let keep = tail_hash(&rest[commas[4] + 1..last_comma], minute + 1);
        let (k, line_no, byte) = self.take_line(next);
        let r = row_slot(slot);
        let fields = head_fields(rest, &commas);
        let v = [
            &rest[commas[3] + 1..commas[4]],
            &rest[commas[4] + 1..commas[5]],
        ];
        let res = head_into_at(&fields, Some(time), line_no, byte, r).and_then(|()| {
            for (i, f) in v.iter().enumerate() {
                let p = match self.kind {
                    Kind::Counters => parse_count(f),
                    Kind::Samples => parse_average(f),
                };
                r.values[i] = p.map_err(|e| err(e, line_no, byte, FIXED + i + 1))?;
            }
            Ok(())
        });
        match res {
            Ok(()) => {
                // The older values repeat text already read: left out (`len` 2).
                r.len = 2;
                r.keep = keep;
                r.same_tail = same;
                r.values_text = &rest[commas[3] + 1..line_end];
                self.remember(k, keep as u32);
            }
            Err(e) => {
                self.remember(k, 0);
                *slot = Ahead::Bad(e);
            }
        }
        true
    }

    /// The fast path of a counters.csv row: the fixed fields are split, and the values are
    /// classified and converted together ([`count_values`]) instead of being split first
    /// and parsed one by one. `false` (nothing consumed) for
    /// anything but plain digits and commas after the time (a sign, a quote, a long number, too
    /// many values, ...): the general way reads it and reports the exact error.
    #[inline]
    fn counts_row(&mut self, rest: &'a [u8], slot: &mut Ahead<'a>) -> bool {
        // The commas ending host, stat, ISO time and unix time.
        let Some((commas, line_end, next, _)) = line_parts::<4>(rest) else {
            return false;
        };
        let v0 = commas[3] + 1;
        let text = &rest[v0..line_end];
        let Some(Counts {
            vals,
            n,
            commas: at,
        }) = count_values(rest, v0, line_end)
        else {
            return false;
        };
        // The commas: `comma(0)` after v0, `comma(1)` after v1, `comma(nc - 1)` before the
        // last value, `comma(nc - 2)` before that one (used with 3 values or more).
        let nc = n - 1;
        let comma = |i: usize| at[i] as usize;
        let (k, line_no, byte) = self.take_line(next);
        let r = row_slot(slot);
        let fields = head_fields(rest, &commas);
        let time = self.time_of(fields[3]);
        if let Err(e) = head_into_at(&fields, time, line_no, byte, r) {
            self.remember(k, 0);
            *slot = Ahead::Bad(e);
            return true;
        }
        for (slot, &x) in r.values.iter_mut().zip(&vals[..n]) {
            *slot = Value::Int(x);
        }
        r.len = n as u8;
        if self.memo.is_some() {
            let minute = r.time.div_euclid(60);
            let mut keep = 0;
            if n >= 3 {
                // v1 up to the comma before the last value.
                keep = tail_hash(&text[comma(0) + 1..comma(nc - 1)], minute + 1);
                let hint = self.hints.get(k).copied().unwrap_or(0);
                if hint != 0 {
                    // As `build_with_memo`: a repeat's older values are left out, so the
                    // table takes them as repeated (or reads them again from the text).
                    let older = if self.newest_first {
                        &text[comma(1) + 1..]
                    } else {
                        &text[..comma(nc - 2)]
                    };
                    let same = tail_hash(older, minute);
                    if same as u32 == hint {
                        let newest = newest_two(n, self.newest_first);
                        for (i, v) in r.values[..n].iter_mut().enumerate() {
                            if !newest.contains(&i) {
                                *v = Value::Missing;
                            }
                        }
                        r.same_tail = same;
                    }
                }
            }
            r.keep = keep;
            r.values_text = text;
            self.remember(k, keep as u32);
        }
        true
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

    /// Reads the line with quotes at byte `start` (line `line_no`) that
    /// [`Reader::next_ahead`] of a reader over the same snapshot returned as
    /// [`Ahead::Quoted`], into this reader's scratch buffer.
    pub fn quoted_line(&mut self, start: usize, line_no: u64) -> Result<Row<'_>, RowError> {
        self.quoted(start, line_no)
            .expect("a quoted line always reads as a row or an error")
    }

    /// The slow path: a line with at least one double quote, parsed field by field into the
    /// scratch buffer. One record per line: a quoted field that does not close before the end
    /// of its line makes that line an [`Reason::UnclosedQuote`], and the next line parses
    /// normally.
    fn quoted(&mut self, start: usize, line_no: u64) -> Option<Result<Row<'_>, RowError>> {
        let (line_end, next) = match memchr(b'\n', &self.data[start..self.end]) {
            Some(i) => (start + i, start + i + 1),
            None => (self.end, self.end),
        };
        let data = &self.data[..line_end];
        self.pos = self.pos.max(next);
        self.line = self.line.max(line_no + 1);
        self.scratch.clear();
        let mut ranges = [(0usize, 0usize); MAX_FIELDS];
        let mut n = 0;
        let mut too_many = false;
        let mut i = start;
        loop {
            let field_start = self.scratch.len();
            if i < data.len() && data[i] == b'"' {
                i += 1;
                loop {
                    match memchr(b'"', &data[i..]) {
                        Some(q) => {
                            self.scratch.extend_from_slice(&data[i..i + q]);
                            i += q + 1;
                            if i < data.len() && data[i] == b'"' {
                                self.scratch.push(b'"');
                                i += 1;
                            } else {
                                break;
                            }
                        }
                        None => {
                            return Some(Err(err(Reason::UnclosedQuote, line_no, start, n + 1)));
                        }
                    }
                }
            }
            // Unquoted, or anything after the closing quote up to the separator: literal.
            while i < data.len() && data[i] != b',' {
                self.scratch.push(data[i]);
                i += 1;
            }
            if n < MAX_FIELDS {
                ranges[n] = (field_start, self.scratch.len());
                n += 1;
            } else {
                too_many = true;
            }
            if i >= data.len() {
                break;
            }
            i += 1; // comma
        }
        // A CR before the row's newline belongs to the line ending.
        if let Some(last) = n.checked_sub(1) {
            let (a, b) = ranges[last];
            if b > a && self.scratch[b - 1] == b'\r' {
                ranges[last].1 -= 1;
            }
        }
        if too_many {
            return Some(Err(err(Reason::TooManyValues, line_no, start, 0)));
        }
        let mut fields: [&[u8]; MAX_FIELDS] = [&[]; MAX_FIELDS];
        for (f, &(a, b)) in fields.iter_mut().zip(&ranges[..n]) {
            *f = &self.scratch[a..b];
        }
        Some(build(&fields[..n], self.kind, line_no, start))
    }
}

/// The first `N` commas of the line at the start of `rest`, where the line ends (without the
/// CR of a CRLF), where the next one starts, and its last comma (the `N`th if none follows),
/// in one pass 16 bytes at a time. `None` (a line the general way reads) when a double quote
/// comes before the line's end, the line has fewer than `N` commas, or fewer than 16 bytes
/// are left before the `N`th comma.
#[inline]
fn line_parts<const N: usize>(rest: &[u8]) -> Option<([usize; N], usize, usize, usize)> {
    let mut commas = [0usize; N];
    let mut found = 0;
    let mut last = 0;
    let mut base = 0;
    loop {
        let whole = base + 16 <= rest.len();
        if !whole && found < N {
            return None;
        }
        let (comma, stop) = if whole {
            masks16(&rest[base..])
        } else {
            masks(&rest[base..])
        };
        // Commas before the first quote or newline of the block.
        let before = match stop {
            0 => u32::MAX,
            _ => {
                let t = stop.trailing_zeros() as usize;
                if rest[base + t] == b'"' {
                    return None;
                }
                (1 << t) - 1
            }
        };
        let mut m = comma & before;
        while found < N && m != 0 {
            commas[found] = base + m.trailing_zeros() as usize;
            m &= m - 1;
            found += 1;
        }
        if m != 0 {
            last = base + 31 - m.leading_zeros() as usize;
        }
        if stop != 0 || !whole {
            if found < N {
                return None;
            }
            let (end, next) = match stop {
                0 => (rest.len(), rest.len()),
                _ => {
                    let e = base + stop.trailing_zeros() as usize;
                    (e, e + 1)
                }
            };
            let from = commas[N - 1] + 1;
            let end = if end > from && rest[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            return Some((commas, end, next, last.max(commas[N - 1])));
        }
        base += 16;
    }
}

/// Bits of the 16 bytes at `c`: (commas, double quotes and newlines).
#[inline(always)]
fn masks16(c: &[u8]) -> (u32, u32) {
    debug_assert!(c.len() >= 16);
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is enabled (cfg), and `c` has at least 16 readable bytes.
        unsafe {
            let v = _mm_loadu_si128(c.as_ptr() as *const __m128i);
            let comma = _mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8));
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let nl = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8));
            (
                _mm_movemask_epi8(comma) as u32,
                _mm_movemask_epi8(_mm_or_si128(quote, nl)) as u32,
            )
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        masks(&c[..16])
    }
}

/// [`masks16`] for fewer than 16 bytes (or any target).
#[inline]
fn masks(c: &[u8]) -> (u32, u32) {
    bit_masks(c, |b| b == b'"' || b == b'\n')
}

/// Bits of the bytes of `c` (at most 32): (commas, bytes for which `other` holds).
#[inline]
fn bit_masks(c: &[u8], other: impl Fn(u8) -> bool) -> (u32, u32) {
    let (mut comma, mut rest) = (0, 0);
    for (i, &b) in c.iter().enumerate() {
        comma |= ((b == b',') as u32) << i;
        rest |= (other(b) as u32) << i;
    }
    (comma, rest)
}

/// The values of a counters.csv row read by [`count_values`].
struct Counts {
    vals: [u64; MAX_VALUES],
    /// Values (commas + 1).
    n: usize,
    /// The offsets of the commas between them, from the first value's start.
    commas: [u16; MAX_VALUES],
}

/// The values `rest[v0..end]` of a counters.csv row when they are plain digits and commas:
/// at most [`MAX_VALUES`] values of at most 18 digits (no overflow, below `i64::MAX`), an
/// empty value 0. The bytes are classified 16 at a time and the commas taken from the mask,
/// and a value of up to 8 digits is converted from one 8-byte word (SWAR): no branch per
/// byte (a branch on each comma mispredicted on nearly every value). `None` for anything
/// else: the general way reads it.
#[inline]
fn count_values(rest: &[u8], v0: usize, end: usize) -> Option<Counts> {
    let len = end - v0;
    if len > 20 * MAX_VALUES {
        return None;
    }
    let mut c = Counts {
        vals: [0; MAX_VALUES],
        n: 0,
        commas: [0; MAX_VALUES],
    };
    let mut nc = 0;
    let mut base = 0;
    while base < len {
        let at = v0 + base;
        let (comma, other) = if at + 16 <= rest.len() {
            digit_masks16(&rest[at..])
        } else {
            digit_masks(&rest[at..rest.len().min(at + 16)])
        };
        let valid = if len - base >= 16 {
            0xffff
        } else {
            (1u32 << (len - base)) - 1
        };
        let mut m = comma & valid;
        if other & valid != 0 || nc + m.count_ones() as usize >= MAX_VALUES {
            return None;
        }
        while m != 0 {
            c.commas[nc] = (base + m.trailing_zeros() as usize) as u16;
            nc += 1;
            m &= m - 1;
        }
        base += 16;
    }
    let mut from = v0;
    for i in 0..=nc {
        let to = if i == nc {
            end
        } else {
            v0 + c.commas[i] as usize
        };
        c.vals[i] = digits(rest, from, to)?;
        from = to + 1;
    }
    c.n = nc + 1;
    Some(c)
}

/// The number `rest[from..to]`, all ASCII digits (checked by the caller), empty 0; `None`
/// above 18 digits.
#[inline(always)]
fn digits(rest: &[u8], from: usize, to: usize) -> Option<u64> {
    let n = to - from;
    if n <= 8 && to >= 8 {
        // The 8 bytes ending at `to`, the bytes before the number made '0'.
        let w = u64::from_le_bytes(rest[to - 8..to].try_into().expect("8 bytes"));
        let before = u64::MAX.checked_shr(8 * n as u32).unwrap_or(0);
        Some(eight_digits(
            (w & !before) | (0x3030_3030_3030_3030 & before),
        ))
    } else if n <= 18 {
        let mut v = 0u64;
        for &b in &rest[from..to] {
            v = v * 10 + (b - b'0') as u64;
        }
        Some(v)
    } else {
        None
    }
}

/// Eight ASCII digits, the first in the lowest byte, as a number.
#[inline(always)]
fn eight_digits(w: u64) -> u64 {
    let w = (w & 0x0f0f_0f0f_0f0f_0f0f).wrapping_mul(2561) >> 8;
    let w = (w & 0x00ff_00ff_00ff_00ff).wrapping_mul(6_553_601) >> 16;
    (w & 0x0000_ffff_0000_ffff).wrapping_mul(42_949_672_960_001) >> 32
}

/// Bits of the 16 bytes at `c`: (commas, bytes neither a comma nor an ASCII digit).
#[inline(always)]
fn digit_masks16(c: &[u8]) -> (u32, u32) {
    debug_assert!(c.len() >= 16);
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is enabled (cfg), and `c` has at least 16 readable bytes.
        unsafe {
            let v = _mm_loadu_si128(c.as_ptr() as *const __m128i);
            let comma = _mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8));
            // Signed compares: bytes of 0x80 and above are negative, so not digits.
            let digit = _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8(b'0' as i8 - 1)),
                _mm_cmplt_epi8(v, _mm_set1_epi8(b'9' as i8 + 1)),
            );
            let ok = _mm_movemask_epi8(_mm_or_si128(comma, digit)) as u32;
            (_mm_movemask_epi8(comma) as u32, !ok & 0xffff)
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        digit_masks(&c[..16])
    }
}

/// [`digit_masks16`] for fewer than 16 bytes (or any target).
#[inline]
fn digit_masks(c: &[u8]) -> (u32, u32) {
    bit_masks(c, |b| !(b == b',' || b.is_ascii_digit()))
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

/// One line split at its commas by [`split_line`].
struct Split {
    /// Offset of the line's newline (`None`: the line runs to the end of the data).
    newline: Option<usize>,
    /// The line has a double quote: the fields are not split (see [`Reader::quoted_line`]).
    quoted: bool,
    /// The line is empty (a CR before the newline counts as part of the line ending).
    blank: bool,
    /// Fields stored (at most [`MAX_FIELDS`]).
    fields: usize,
    /// More than [`MAX_FIELDS`] fields.
    too_many: bool,
}

/// Bit `i` set where byte `i` of the 16 at `c` is a comma, a double quote or a newline.
#[inline(always)]
fn specials16(c: &[u8]) -> u32 {
    let (comma, stop) = masks16(c);
    comma | stop
}

/// [`specials16`] for fewer than 16 bytes (or any target).
#[inline]
fn specials(c: &[u8]) -> u32 {
    let (comma, stop) = masks(c);
    comma | stop
}

/// Splits the first line of `rest` at its commas into `fields`, in one pass over its bytes
/// 16 at a time (commas, quotes and the newline found together), without the CR of a CRLF
/// ending. A line with a quote is only measured.
#[inline]
fn split_line<'a>(rest: &'a [u8], fields: &mut [&'a [u8]; MAX_FIELDS]) -> Split {
    let mut sp = Split {
        newline: None,
        quoted: false,
        blank: false,
        fields: 0,
        too_many: false,
    };
    let mut from = 0;
    let mut base = 0;
    let end = loop {
        if base >= rest.len() {
            break rest.len();
        }
        let mut m = if base + 16 <= rest.len() {
            specials16(&rest[base..])
        } else {
            specials(&rest[base..])
        };
        let mut end = None;
        while m != 0 {
            let j = base + m.trailing_zeros() as usize;
            m &= m - 1;
            match rest[j] {
                b',' => {
                    if sp.fields == MAX_FIELDS - 1 {
                        sp.too_many = true;
                    } else if !sp.too_many {
                        fields[sp.fields] = &rest[from..j];
                        sp.fields += 1;
                        from = j + 1;
                    }
                }
                b'\n' => {
                    end = Some(j);
                    break;
                }
                _ => {
                    sp.quoted = true;
                    sp.newline = memchr(b'\n', &rest[j..]).map(|i| j + i);
                    return sp;
                }
            }
        }
        if let Some(j) = end {
            sp.newline = Some(j);
            break j;
        }
        base += 16;
    };
    let line_end = if end > 0 && rest[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    sp.blank = line_end == 0;
    fields[sp.fields] = &rest[from.min(line_end)..line_end];
    sp.fields += 1;
    sp
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

/// A hash of `text` and `minute`, never 0.
#[inline]
fn tail_hash(text: &[u8], minute: i64) -> u64 {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(text, minute as u64) & KEEP_MASK;
    h | (h == 0) as u64
}

/// [`Row::keep`] and [`Row::same_tail`] are 48-bit hashes (they fit in a series' padding): a
/// row taken for a repeat of a series' previous row whose text differs is accepted with a
/// chance of 2^-48 (at 1,000,000 such rows a minute, once in about 500 years).
pub const KEEP_MASK: u64 = (1 << 48) - 1;

/// [`build_into`] for a reader with a memo (see [`Reader::with_memo`]): computes
/// [`Row::keep`], and when the text of all values but the two newest hashes to `hint` (the low
/// 32 bits of the previous snapshot's `keep` at this position), parses only the two newest.
#[allow(clippy::too_many_arguments)]
#[inline]
fn build_with_memo<'a>(
    line: &'a [u8],
    fields: &[&'a [u8]],
    kind: Kind,
    line_no: u64,
    byte: usize,
    hint: u32,
    newest_first: bool,
    r: &mut Row<'a>,
) -> Result<(), RowError> {
    let n = fields.len().saturating_sub(FIXED);
    let time = if n >= 3 { parse_time(fields[3]) } else { None };
    let Some(time) = time else {
        // Fewer than 3 values, or a bad time (reported by `build_into`): no memo.
        return build_into(fields, kind, line_no, byte, r);
    };
    let v = &fields[FIXED..];
    let minute = time.div_euclid(60);
    let keep = tail_hash(span(line, v[1], v[n - 2]), minute + 1);
    let values_text = span(line, v[0], v[n - 1]);
    let same = if hint == 0 {
        0
    } else if newest_first {
        tail_hash(span(line, v[2], v[n - 1]), minute)
    } else {
        tail_hash(span(line, v[0], v[n - 3]), minute)
    };
    if same == 0 || same as u32 != hint {
        build_into(fields, kind, line_no, byte, r)?;
    } else {
        // The two newest values only: the rest repeats text already read.
        head_into(fields, line_no, byte, r)?;
        let newest = newest_two(n, newest_first);
        r.values[..n].fill(Value::Missing);
        for i in newest {
            let p = match kind {
                Kind::Counters => parse_count(v[i]),
                Kind::Samples => parse_average(v[i]),
            };
            r.values[i] = p.map_err(|e| err(e, line_no, byte, FIXED + i + 1))?;
        }
        r.len = n as u8;
        r.same_tail = same;
    }
    r.keep = keep;
    r.values_text = values_text;
    Ok(())
}

/// The indices of the two newest of a row's `n` values (`n >= 2`), which a repeat parses.
#[inline]
fn newest_two(n: usize, newest_first: bool) -> [usize; 2] {
    if newest_first {
        [0, 1]
    } else {
        [n - 2, n - 1]
    }
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

/// A count: empty is 0; digits only; at most `i64::MAX`.
pub fn parse_count(f: &[u8]) -> Result<Value, Reason> {
    if f.is_empty() {
        return Ok(Value::Int(0));
    }
    if f[0] == b'-' {
        return Err(if f.len() > 1 && f[1..].iter().all(u8::is_ascii_digit) {
            Reason::Negative
        } else {
            Reason::BadNumber
        });
    }
    if f.len() <= 18 {
        // At most 10^18 - 1: no overflow to check.
        let mut v: u64 = 0;
        for &b in f {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Err(Reason::BadNumber);
            }
            v = v * 10 + d as u64;
        }
        return Ok(Value::Int(v));
    }
    let mut v: u64 = 0;
    for &b in f {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(Reason::BadNumber);
        }
        v = match v.checked_mul(10).and_then(|v| v.checked_add(d as u64)) {
            Some(v) => v,
            None => return Err(Reason::Overflow),
        };
    }
    if v > i64::MAX as u64 {
        return Err(Reason::Overflow);
    }
    Ok(Value::Int(v))
}

/// An average: empty is no data; a plain decimal (optionally with an exponent), finite, >= 0.
pub fn parse_average(f: &[u8]) -> Result<Value, Reason> {
    if f.is_empty() {
        return Ok(Value::Missing);
    }
    let (neg, body) = match f[0] {
        b'-' => (true, &f[1..]),
        _ => (false, f),
    };
    let ok_start = matches!(body.first(), Some(b'0'..=b'9' | b'.'));
    if !ok_start
        || !body
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(Reason::BadNumber);
    }
    // Only ASCII from here on.
    let s = std::str::from_utf8(body).map_err(|_| Reason::BadNumber)?;
    let v: f64 = s.parse().map_err(|_| Reason::BadNumber)?;
    if !v.is_finite() {
        return Err(Reason::Overflow);
    }
    if neg && v != 0.0 {
        return Err(Reason::Negative);
    }
    Ok(Value::Float(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// host, stat, time, values, line
    type Owned = (String, String, i64, Vec<Value>, u64);
    /// host, stat, time, values
    type Bytes4 = (Vec<u8>, Vec<u8>, i64, Vec<Value>);

    fn rows(data: &[u8], kind: Kind, complete: bool) -> Vec<Result<Owned, RowError>> {
        let mut r = Reader::new(data, kind, complete);
        let mut out = Vec::new();
        while let Some(x) = r.next() {
            out.push(x.map(|row| {
                (
                    row.host.to_string(),
                    row.stat.to_string(),
                    row.time,
                    row.values().to_vec(),
                    row.line,
                )
            }));
        }
        out
    }

    fn ints(v: &[u64]) -> Vec<Value> {
        v.iter().map(|&x| Value::Int(x)).collect()
    }

    #[test]
    fn guide_counters_rows() {
        let data = b"sre32-cp2-testbed,custom.fleg_relay,2022-05-10T16:31:00,1652193060,,,,,,,,,,,,,\n\
sre32-cp2-testbed,profiling.cp.CAC test.Extract Contacts,2022-05-10T16:31:00,1652193060,12,11,13,12,12,12,12,12,12,12,12,12,12,12\n";
        let got = rows(data, Kind::Counters, false);
        assert_eq!(
            got,
            vec![
                Ok((
                    "sre32-cp2-testbed".into(),
                    "custom.fleg_relay".into(),
                    1652193060,
                    ints(&[0; 13]),
                    1
                )),
                Ok((
                    "sre32-cp2-testbed".into(),
                    "profiling.cp.CAC test.Extract Contacts".into(),
                    1652193060,
                    ints(&[12, 11, 13, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12]),
                    2
                )),
            ]
        );
    }

    #[test]
    fn guide_samples_row() {
        let data = b"sre32-cp2-testbed,accounting.openCalls,2022-05-10T16:32:01,1652193121,3800.000,3800.000,3800.000,3700.000,3566.667,3833.333,3833.333,3866.667\r\nh,profiling.cp.CAC test.503,x,1652193121,,,0.113\r\n";
        let got = rows(data, Kind::Samples, false);
        let f = |v: &[f64]| v.iter().map(|&x| Value::Float(x)).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                Ok((
                    "sre32-cp2-testbed".into(),
                    "accounting.openCalls".into(),
                    1652193121,
                    f(&[3800.0, 3800.0, 3800.0, 3700.0, 3566.667, 3833.333, 3833.333, 3866.667]),
                    1
                )),
                Ok((
                    "h".into(),
                    "profiling.cp.CAC test.503".into(),
                    1652193121,
                    vec![Value::Missing, Value::Missing, Value::Float(0.113)],
                    2
                )),
            ]
        );
        let mut r = Reader::new(data, Kind::Samples, false);
        assert_eq!(r.next().unwrap().unwrap().minute(), 1652193120);
    }

    #[test]
    fn quoted_fields() {
        let data =
            "\"cp,1\",\"stat \"\"q\"\" <a>/b, c ü\",2022,60,\"5\",6\r\nh,\"multi\nline\",t,120,1\n";
        let got = rows(data.as_bytes(), Kind::Counters, false);
        assert_eq!(
            got,
            vec![
                Ok((
                    "cp,1".into(),
                    "stat \"q\" <a>/b, c ü".into(),
                    60,
                    ints(&[5, 6]),
                    1
                )),
                // One record per line: a quote that does not close on its line spoils that line.
                Err(RowError {
                    reason: Reason::UnclosedQuote,
                    line: 2,
                    byte: 47,
                    field: 2
                }),
                Ok(("line\"".into(), "t".into(), 1, vec![], 3)),
            ]
        );
        let data2 = "h,\"a\nb\",t,60,1\nh,c,t,60,\n";
        let got = rows(data2.as_bytes(), Kind::Counters, false);
        assert_eq!(got[2], Ok(("h".into(), "c".into(), 60, ints(&[0]), 3)));
    }

    #[test]
    fn incomplete_tail_is_left() {
        let data = b"h,a,t,60,1,2\nh,b,t,60,3,";
        let mut r = Reader::new(data, Kind::Counters, false);
        assert_eq!(r.next().unwrap().unwrap().stat, "a");
        assert!(r.next().is_none());
        assert_eq!(r.incomplete_tail(), 11);
        // Once the file is quiet the last row counts.
        let got = rows(data, Kind::Counters, true);
        assert_eq!(got[1], Ok(("h".into(), "b".into(), 60, ints(&[3, 0]), 2)));
        // A quote still open at the end of its line spoils that line only; the unfinished
        // last line is left.
        let data = b"h,a,t,60,1\nh,\"b\nstill";
        let mut r = Reader::new(data, Kind::Counters, false);
        assert!(r.next().unwrap().is_ok());
        assert_eq!(r.next().unwrap().unwrap_err().reason, Reason::UnclosedQuote);
        assert!(r.next().is_none());
        assert_eq!(r.incomplete_tail(), 5);
        assert_eq!(r.records(), 2);
        let got = rows(data, Kind::Counters, true);
        assert_eq!(
            got[1],
            Err(RowError {
                reason: Reason::UnclosedQuote,
                line: 2,
                byte: 11,
                field: 2
            })
        );
        assert_eq!(got[2].as_ref().unwrap_err().reason, Reason::MissingFields);
        // Only a partial line: nothing.
        assert!(rows(b"h,a,t,6", Kind::Counters, false).is_empty());
    }

    #[test]
    fn bad_rows() {
        let data = b"h,a,t\n\
h,a,t,60,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\n\
,a,t,60,1\n\
h,,t,60,1\n\
h,\xff,t,60,1\n\
h,a,t,6x,1\n\
h,a,t,,1\n\
h,a,t,60.5,1\n\
h,a,t,60,1x\n\
h,a,t,60,-3\n\
h,a,t,60,99999999999999999999\n\
h,a,t,60,9223372036854775808\n\
\n\
h,a,t,60,9223372036854775807\n";
        let got = rows(data, Kind::Counters, false);
        let reasons: Vec<_> = got
            .iter()
            .map(|r| {
                r.as_ref()
                    .map(|_| ())
                    .map_err(|e| (e.reason, e.line, e.field))
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                Err((Reason::MissingFields, 1, 0)),
                Err((Reason::TooManyValues, 2, 0)),
                Err((Reason::EmptyName, 3, 1)),
                Err((Reason::EmptyName, 4, 2)),
                Err((Reason::InvalidUtf8, 5, 2)),
                Err((Reason::BadTimestamp, 6, 4)),
                Err((Reason::BadTimestamp, 7, 4)),
                Err((Reason::BadTimestamp, 8, 4)),
                Err((Reason::BadNumber, 9, 5)),
                Err((Reason::Negative, 10, 5)),
                Err((Reason::Overflow, 11, 5)),
                Err((Reason::Overflow, 12, 5)),
                Ok(()),
            ]
        );
        assert_eq!(got[12].as_ref().unwrap().3, ints(&[i64::MAX as u64]));
        // Byte offsets point at the row start.
        let mut r = Reader::new(b"h,a,t,60,1\nh,b,t,x,1\n", Kind::Counters, false);
        r.next();
        assert_eq!(r.next().unwrap().unwrap_err().byte, 11);
    }

    #[test]
    fn bad_averages() {
        for (text, want) in [
            (&b"abc"[..], Err(Reason::BadNumber)),
            (b"nan", Err(Reason::BadNumber)),
            (b"inf", Err(Reason::BadNumber)),
            (b"1e999", Err(Reason::Overflow)),
            (b"-0.5", Err(Reason::Negative)),
            (b"+1", Err(Reason::BadNumber)),
            (b"1.2.3", Err(Reason::BadNumber)),
            (b"0.113", Ok(Value::Float(0.113))),
            (b".5", Ok(Value::Float(0.5))),
            (b"1e3", Ok(Value::Float(1000.0))),
            (b"", Ok(Value::Missing)),
        ] {
            assert_eq!(
                parse_average(text),
                want,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let got = rows(b"h,a,t,60,1.0,x\n", Kind::Samples, false);
        assert_eq!(
            got[0],
            Err(RowError {
                reason: Reason::BadNumber,
                line: 1,
                byte: 0,
                field: 6
            })
        );
    }

    /// Observation 2 of issue 9: a stray `"` before one value of a middle row makes that one
    /// line bad (`unclosed_quote`); every other line parses, and every line is accounted for.
    #[test]
    fn a_stray_quote_spoils_one_line_only() {
        let mut data = String::new();
        for i in 0..6 {
            let q = if i == 2 { "\"" } else { "" };
            data += &format!("cp1,stat{i},t,60,1,{q}2,3\n");
        }
        for complete in [false, true] {
            let got = rows(data.as_bytes(), Kind::Counters, complete);
            let summary: Vec<_> = got
                .iter()
                .map(|r| {
                    r.as_ref()
                        .map(|o| (o.1.clone(), o.4))
                        .map_err(|e| (e.reason, e.line))
                })
                .collect();
            let mut want: Vec<Result<(String, u64), (Reason, u64)>> = (0..6)
                .map(|i| Ok((format!("stat{i}"), i as u64 + 1)))
                .collect();
            want[2] = Err((Reason::UnclosedQuote, 3));
            assert_eq!(summary, want, "tail_complete={complete}");
        }
    }

    /// A naive reference parser: split into lines (one record per line), then each line into
    /// fields the slow, obvious way (RFC 4180 quoting within the line), then apply the same
    /// field rules. The kernel must agree with it on every input.
    fn naive(data: &[u8], kind: Kind) -> Vec<Result<Bytes4, Reason>> {
        let mut out = Vec::new();
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        for raw in lines {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.is_empty() {
                continue;
            }
            let mut rec: Vec<Vec<u8>> = Vec::new();
            let mut field = Vec::new();
            let mut in_q = false;
            let mut at_start = true;
            let mut i = 0;
            while i < raw.len() {
                let b = raw[i];
                if in_q {
                    if b == b'"' {
                        if raw.get(i + 1) == Some(&b'"') {
                            field.push(b'"');
                            i += 1;
                        } else {
                            in_q = false;
                        }
                    } else {
                        field.push(b);
                    }
                } else if b == b'"' && at_start {
                    in_q = true;
                    at_start = false;
                } else if b == b',' {
                    rec.push(std::mem::take(&mut field));
                    at_start = true;
                } else {
                    field.push(b);
                    at_start = false;
                }
                i += 1;
            }
            if in_q {
                out.push(Err(Reason::UnclosedQuote));
                continue;
            }
            rec.push(field);
            if rec.len() > MAX_FIELDS {
                out.push(Err(Reason::TooManyValues));
                continue;
            }
            let refs: Vec<&[u8]> = rec.iter().map(|f| &f[..]).collect();
            out.push(
                build(&refs, kind, 0, 0)
                    .map(|row| {
                        (
                            row.host.as_bytes().to_vec(),
                            row.stat.as_bytes().to_vec(),
                            row.time,
                            row.values().to_vec(),
                        )
                    })
                    .map_err(|e| e.reason),
            );
        }
        out
    }

    /// A deterministic pseudo-random sequence (xorshift64) from `seed` (not 0).
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// The values fast path against [`parse_values`]: every length of number from 0 to 20
    /// digits, at every position in the first 24 bytes of a line and further on.
    #[test]
    fn count_values_as_parse_values() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let head = (next() % 24) as usize;
            let mut line: Vec<u8> = (0..head).map(|i| b"h,s,t,1"[i % 7]).collect();
            let v0 = line.len();
            let n = next() % 17 + 1;
            for i in 0..n {
                if i > 0 {
                    line.push(b',');
                }
                let digits = match next() % 4 {
                    0 => next() % 21,
                    _ => next() % 9,
                };
                for _ in 0..digits {
                    line.push(b'0' + (next() % 10) as u8);
                }
            }
            if next().is_multiple_of(8) {
                let at = v0 + (next() as usize) % (line.len() - v0 + 1);
                line.insert(
                    at,
                    [b'-', b'x', b'/', b':', 0xc3, b' '][(next() % 6) as usize],
                );
            }
            let end = line.len();
            line.extend_from_slice(b"\nnext,line");
            let text = &line[v0..end];
            let want = match parse_values(text, Kind::Counters) {
                Ok((v, n))
                    if text.split(|&b| b == b',').all(|f| f.len() <= 18)
                        && text.iter().all(|&b| b == b',' || b.is_ascii_digit()) =>
                {
                    Some(v[..n].to_vec())
                }
                _ => None,
            };
            let got = count_values(&line, v0, end).map(|c| {
                let commas: Vec<usize> = text
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b',')
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(
                    &c.commas[..c.n - 1]
                        .iter()
                        .map(|&x| x as usize)
                        .collect::<Vec<_>>(),
                    &commas
                );
                c.vals[..c.n]
                    .iter()
                    .map(|&x| Value::Int(x))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn differential_against_naive_parser() {
        // Deterministic pseudo-random rows built from pieces that exercise every path.
        let pieces: &[&[u8]] = &[
            b"h",
            b"cp1",
            b"a b",
            b"\"q,1\"",
            b"\"x\"\"y\"",
            b"\"l\nm\"",
            b"",
            b"60",
            b"1652193121",
            b"12",
            b"0.113",
            b"-1",
            b"x",
            b"\xc3\xbc",
            b"\xff",
            b"99999999999999999999",
            b"1e5",
            b"\r",
            b"\"",
            b"\"\"",
            b"7.",
        ];
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..3000 {
            let mut data = Vec::new();
            let nrows = next() % 4 + 1;
            for _ in 0..nrows {
                let nf = next() % 22;
                for f in 0..nf {
                    if f > 0 {
                        data.push(b',');
                    }
                    // Keep the fixed fields mostly well-formed so values get exercised.
                    let p: &[u8] = match f {
                        0 | 1 if !next().is_multiple_of(3) => b"host",
                        3 if !next().is_multiple_of(4) => b"120",
                        _ => pieces[(next() % pieces.len() as u64) as usize],
                    };
                    data.extend_from_slice(p);
                }
                data.extend_from_slice(if next().is_multiple_of(3) {
                    b"\r\n"
                } else {
                    b"\n"
                });
            }
            for kind in [Kind::Counters, Kind::Samples] {
                let mut r = Reader::new(&data, kind, true);
                let mut fast = Vec::new();
                while let Some(x) = r.next() {
                    fast.push(
                        x.map(|row| {
                            (
                                row.host.as_bytes().to_vec(),
                                row.stat.as_bytes().to_vec(),
                                row.time,
                                row.values().to_vec(),
                            )
                        })
                        .map_err(|e| e.reason),
                    );
                }
                assert_eq!(
                    fast,
                    naive(&data, kind),
                    "input {:?}",
                    String::from_utf8_lossy(&data)
                );
            }
        }
    }

    /// The one-pass line scan of the fast paths against a plain reading of its contract.
    #[test]
    fn line_parts_as_documented() {
        fn plain<const N: usize>(rest: &[u8]) -> Option<([usize; N], usize, usize, usize)> {
            let stop = rest.iter().position(|&b| b == b'\n' || b == b'"');
            if stop.is_some_and(|i| rest[i] == b'"') {
                return None;
            }
            let s = stop.unwrap_or(rest.len());
            let commas: Vec<usize> = (0..s).filter(|&i| rest[i] == b',').collect();
            // The N commas in whole 16-byte blocks.
            if commas.len() < N || commas[N - 1] >= rest.len() / 16 * 16 {
                return None;
            }
            let next = stop.map_or(rest.len(), |i| i + 1);
            let mut end = s;
            if end > commas[N - 1] + 1 && rest[end - 1] == b'\r' {
                end -= 1;
            }
            Some((
                commas[..N].try_into().unwrap(),
                end,
                next,
                *commas.last().unwrap(),
            ))
        }
        let bytes = b",,,,,\n\r\"abc";
        let mut next = xorshift(0x1234_5678_9abc_def1);
        for _ in 0..200_000 {
            let len = (next() % 70) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next() as usize;
                    // Mostly letters, so that lines run over several blocks.
                    if r.is_multiple_of(4) {
                        bytes[r / 4 % bytes.len()]
                    } else {
                        b'0' + (r % 10) as u8
                    }
                })
                .collect();
            assert_eq!(line_parts::<4>(&line), plain::<4>(&line), "{line:?}");
            assert_eq!(line_parts::<6>(&line), plain::<6>(&line), "{line:?}");
        }
    }

    /// Readers of consecutive ranges of whole lines ([`Reader::range`], as the table's chunks
    /// on two threads) read the same records as one reader of the whole snapshot: rows and
    /// errors with their lines and bytes, the records count and the memo.
    #[test]
    fn ranges_read_as_the_whole() {
        let lines: &[&[u8]] = &[
            b"cp1,a,t,1652193120,5,4,3,2\n",
            b"cp1,b b,t,1652193120,,,,7\r\n",
            b"\n",
            b"cp2,\"q,1\",t,1652193120,1,2,3\n",
            b"cp2,a,t,x,1,2,3\n",
            b"cp3,a,t,1652193120,-1,2,3\n",
            b"\r\n",
            b"cp3,c,t,1652193120,0.5,2,3,4,5,6\n",
            b"cp4\n",
            b"cp4,\"a,t,1652193120,1,2\n",
            b"cp5,a,t,1652193120,99999999999999999999,1,1\n",
        ];
        type Rec = Result<(String, String, i64, Vec<Value>, u64, u64, u64), RowError>;
        let read = |r: &mut Reader<'_>, out: &mut Vec<Rec>| {
            while let Some(x) = r.next() {
                out.push(x.map(|row| {
                    let v = row.values().to_vec();
                    let (h, s) = (row.host.to_string(), row.stat.to_string());
                    (h, s, row.time, v, row.line, row.byte, row.keep)
                }));
            }
        };
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for case in 0..400 {
            let n = (next() % 9 + 1) as usize;
            let mut data = Vec::new();
            let mut starts = vec![0];
            for _ in 0..n {
                data.extend_from_slice(lines[(next() % lines.len() as u64) as usize]);
                starts.push(data.len());
            }
            if case % 3 == 0 {
                // A last line without a newline, left unparsed.
                data.extend_from_slice(b"cp9,z,t,1652193120,1");
            }
            for kind in [Kind::Counters, Kind::Samples] {
                let mut whole = Reader::new(&data, kind, false).with_memo(&[], Vec::new(), true);
                let mut want = Vec::new();
                read(&mut whole, &mut want);
                let end = whole.parsable_len();
                let want_memo = whole.take_memo();
                // Every way to cut the lines into up to three ranges.
                for a in 0..starts.len() {
                    for b in a..starts.len() {
                        let cuts = [0, starts[a], starts[b], end];
                        let (mut got, mut records, mut memo) = (Vec::new(), 0, Vec::new());
                        let mut line = 1;
                        for w in cuts.windows(2) {
                            let mut r = Reader::range(&data, kind, w[0], w[1], line).with_memo(
                                &[],
                                Vec::new(),
                                true,
                            );
                            read(&mut r, &mut got);
                            records += r.records();
                            let part = r.take_memo();
                            if !part.is_empty() {
                                memo.resize(line as usize - 1, 0);
                                memo.extend_from_slice(&part);
                            }
                            line = r.next_line();
                            assert_eq!(
                                line,
                                1 + data[..w[1]].iter().filter(|&&c| c == b'\n').count() as u64
                            );
                        }
                        let what = format!(
                            "{kind:?} cut at {a}, {b}: {:?}",
                            String::from_utf8_lossy(&data)
                        );
                        assert_eq!(got, want, "{what}");
                        assert_eq!(records, whole.records(), "{what}");
                        assert_eq!(memo, want_memo, "{what}");
                    }
                }
            }
        }
    }

    /// The memo of a rewrite ([`Reader::with_memo`]): rows that repeat the previous snapshot's
    /// row at the same position, shifted by one minute, are read from two values, and every
    /// row reads as exactly what a reader without memo gives.
    mod repeats {
        use super::*;

        const T: i64 = 1652193060;

        /// How a record of the second snapshot was read.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Got {
            /// `same_tail != 0`, read by the fast path: `values()` is exactly `[v0, v1]`.
            Repeat,
            /// `same_tail != 0`, read by the general path (split in full): `values()` has
            /// all `n` values, the two newest parsed and the others [`Value::Missing`].
            RepeatSplit,
            /// `same_tail == 0`: every value parsed.
            Full,
            Bad(Reason),
        }
        use Got::{Bad, Full, Repeat, RepeatSplit};

        /// host, stat, time, values, line, byte
        type Whole = (String, String, i64, Vec<Value>, u64, u64);

        fn whole(row: &Row<'_>, values: Vec<Value>) -> Whole {
            (
                row.host.to_string(),
                row.stat.to_string(),
                row.time,
                values,
                row.line,
                row.byte,
            )
        }

        /// Every record of `data` read without memo.
        fn plain(data: &[u8], kind: Kind, complete: bool) -> (Vec<Result<Whole, RowError>>, u64) {
            let mut r = Reader::new(data, kind, complete);
            let mut out = Vec::new();
            while let Some(x) = r.next() {
                out.push(x.map(|row| whole(&row, row.values().to_vec())));
            }
            (out, r.incomplete_tail() as u64)
        }

        /// Every record of `data` read with `memo`: (record, keep, same_tail, values, text).
        #[allow(clippy::type_complexity)]
        fn with_memo(
            data: &[u8],
            kind: Kind,
            complete: bool,
            memo: &[u32],
            newest_first: bool,
        ) -> (
            Vec<Result<(Whole, u64, u64, Vec<u8>), RowError>>,
            Vec<u32>,
            u64,
        ) {
            let mut r = Reader::new(data, kind, complete).with_memo(memo, Vec::new(), newest_first);
            let mut out = Vec::new();
            while let Some(x) = r.next() {
                out.push(x.map(|row| {
                    (
                        whole(&row, row.values().to_vec()),
                        row.keep,
                        row.same_tail,
                        row.values_text.to_vec(),
                    )
                }));
            }
            let records = r.records();
            assert_eq!(records, out.len() as u64);
            let tail = r.incomplete_tail() as u64;
            let memo = r.take_memo();
            (out, memo, tail)
        }

        /// A reader of `cur` (newest first) with `memo`, the memo of the snapshot before it.
        fn after<'a>(cur: &'a [u8], kind: Kind, complete: bool, memo: &'a [u32]) -> Reader<'a> {
            Reader::new(cur, kind, complete).with_memo(memo, Vec::new(), true)
        }

        /// [`second_read_as_is`] with a long row that repeats (its values all equal: in either
        /// order) after `prev` and `cur`, so that their own rows are not near the end of the
        /// data: a row whose 6th comma is not in a whole 16-byte block of the data takes the
        /// general path ([`the_last_line_without_newline`]).
        fn second_read(
            prev: &str,
            cur: &str,
            kind: Kind,
            complete: bool,
            newest_first: bool,
        ) -> Vec<Got> {
            let pad = |t: i64| line("zz", "trailer", t, &["12"; 15]);
            let mut got = second_read_as_is(
                &(prev.to_string() + &pad(T)),
                &(cur.to_string() + &pad(T + 60)),
                kind,
                complete,
                newest_first,
            );
            // The memo is by line: the trailer repeats when it is on the same one.
            let lines = |s: &str| s.lines().count();
            let trailer = match (lines(prev) == lines(cur), newest_first) {
                (false, _) => Full,
                (true, true) => Repeat,
                (true, false) => RepeatSplit,
            };
            assert_eq!(got.pop(), Some(trailer), "the trailer");
            got
        }

        /// Reads `prev` then `cur` with the memo, checks every record of `cur` against a reader
        /// without memo (all values, errors with reason, line, byte and field), the older
        /// values of a repeat left out as documented, `same_tail` equal to the full `keep` of
        /// the previous snapshot's row at the same position, and `keep` and the memo
        /// independent of the hints. How each record of `cur` was read.
        fn second_read_as_is(
            prev: &str,
            cur: &str,
            kind: Kind,
            complete: bool,
            newest_first: bool,
        ) -> Vec<Got> {
            let (first, memo, _) = with_memo(prev.as_bytes(), kind, true, &[], newest_first);
            // The keep of each line's record (0 for a bad one, a blank line or none).
            let mut prev_keep: Vec<u64> = Vec::new();
            for r in &first {
                let (line, keep) = match r {
                    Ok(r) => (r.0 .4, r.1),
                    Err(e) => (e.line, 0),
                };
                prev_keep.resize(line as usize, 0);
                prev_keep[line as usize - 1] = keep;
            }
            for r in first.iter().flatten() {
                assert_eq!(r.2, 0, "no memo, no repeat");
            }
            assert_eq!(
                memo,
                prev_keep.iter().map(|&k| k as u32).collect::<Vec<_>>(),
                "the memo holds the low 32 bits of each line's keep"
            );
            let (want, want_tail) = plain(cur.as_bytes(), kind, complete);
            let (got, memo_after, tail) =
                with_memo(cur.as_bytes(), kind, complete, &memo, newest_first);
            // The same snapshot read without hints: keeps and memo must not depend on them.
            let (fresh, fresh_memo, _) =
                with_memo(cur.as_bytes(), kind, complete, &[], newest_first);
            assert_eq!(tail, want_tail);
            assert_eq!(got.len(), want.len(), "records");
            assert_eq!(memo_after, fresh_memo, "memo");
            let mut how = Vec::new();
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                let g = match (g, w) {
                    (Err(g), Err(w)) => {
                        assert_eq!(g, w, "record {k}");
                        how.push(Bad(g.reason));
                        continue;
                    }
                    (Ok(g), Ok(_)) => g,
                    _ => panic!("record {k}: {g:?}, want {w:?}"),
                };
                let (row, keep, same_tail, text) = g;
                let w = w.as_ref().unwrap();
                assert_eq!(*keep, fresh[k].as_ref().unwrap().1, "record {k}: keep");
                if *same_tail == 0 {
                    assert_eq!(row, w, "record {k}");
                    how.push(Full);
                    continue;
                }
                assert_eq!(
                    *same_tail,
                    prev_keep[row.4 as usize - 1],
                    "record {k}: same_tail is the keep of the row it repeats"
                );
                let (vals, n) = parse_values(text, kind).unwrap();
                let mut all = row.clone();
                all.3 = vals[..n].to_vec();
                assert_eq!(&all, w, "record {k}: all values from values_text");
                let n = w.3.len();
                if newest_first && row.3.len() == 2 {
                    // Only v0 and v1 split and parsed.
                    assert_eq!(row.3, w.3[..2], "record {k}: values()");
                    how.push(Repeat);
                } else {
                    // The general path: the two newest parsed, the rest missing.
                    let newest = if newest_first { 0..2 } else { n - 2..n };
                    let mut v = vec![Value::Missing; n];
                    v[newest.clone()].copy_from_slice(&w.3[newest]);
                    assert_eq!(row.3, v, "record {k}: values()");
                    how.push(RepeatSplit);
                }
            }
            how
        }

        fn line(host: &str, stat: &str, t: i64, vals: &[&str]) -> String {
            format!("{host},{stat},2022-05-10T16:31:00,{t},{}\n", vals.join(","))
        }

        fn gen_file(
            f: fn(&mut Vec<u8>, usize, usize, i64) -> std::io::Result<()>,
            t: i64,
        ) -> String {
            let mut out = Vec::new();
            f(&mut out, 3, 4, t).unwrap();
            String::from_utf8(out).unwrap()
        }

        #[test]
        fn a_rewrite_one_minute_later_repeats_every_row() {
            for kind in [Kind::Counters, Kind::Samples] {
                let file = |t| match kind {
                    Kind::Counters => gen_file(crate::gen::counters, t),
                    Kind::Samples => gen_file(crate::gen::samples, t),
                };
                for k in 1..4 {
                    let (prev, cur) = (file(T + 60 * (k - 1)), file(T + 60 * k));
                    assert_eq!(
                        second_read(&prev, &cur, kind, false, true),
                        vec![Repeat; 12],
                        "{kind:?} rewrite {k}"
                    );
                }
                // The memo a repeat leaves is the one the next rewrite needs: three in a row.
                let (_, memo, _) = with_memo(file(T).as_bytes(), kind, false, &[], true);
                let (got, memo, _) = with_memo(file(T + 60).as_bytes(), kind, false, &memo, true);
                assert!(got.iter().all(|r| r.as_ref().unwrap().2 != 0));
                let (got, _, _) = with_memo(file(T + 120).as_bytes(), kind, false, &memo, true);
                assert!(got.iter().all(|r| r.as_ref().unwrap().2 != 0), "{kind:?}");
            }
        }

        /// The exact values of a repeat, by hand: v0 and v1 only, the rest from the text.
        #[test]
        fn a_repeat_parses_two_values_and_keeps_the_text() {
            let prev = line("cp1", "a", T, &["5", "40", "30", "20", "10"]);
            let cur = line("cp1", "a", T + 60, &["6", "41", "40", "30", "20"]);
            let (_, memo, _) = with_memo(prev.as_bytes(), Kind::Counters, false, &[], true);
            let mut r = after(cur.as_bytes(), Kind::Counters, false, &memo);
            let row = r.next().unwrap().unwrap();
            assert_ne!(row.same_tail, 0);
            assert_eq!(row.values(), ints(&[6, 41]));
            assert_eq!(row.values_text, b"6,41,40,30,20");
            assert_eq!(
                (row.host, row.stat, row.time, row.line, row.byte),
                ("cp1", "a", T + 60, 1, 0)
            );
            let (vals, n) = parse_values(row.values_text, Kind::Counters).unwrap();
            assert_eq!(vals[..n], ints(&[6, 41, 40, 30, 20])[..]);
        }

        #[test]
        fn a_changed_older_value_is_not_a_repeat() {
            let prev = line("cp1", "a", T, &["5", "40", "30", "20", "10", "9", "8"])
                + &line("cp2", "a", T, &["1", "2", "3", "4", "5", "6", "7"]);
            // cp1's v5 (the old v4) revised from 10 to 11; cp2 shifted as it should be.
            let cur = line(
                "cp1",
                "a",
                T + 60,
                &["6", "41", "40", "30", "20", "11", "9"],
            ) + &line("cp2", "a", T + 60, &["0", "1", "2", "3", "4", "5", "6"]);
            assert_eq!(
                second_read(&prev, &cur, Kind::Counters, false, true),
                [Full, Repeat]
            );
            // v1 (the old v0, a partial minute) may be revised; the last value (the old v5)
            // may not.
            for (vals, want) in [
                (["6", "99", "40", "30", "20", "10", "9"], Repeat),
                (["6", "41", "40", "30", "20", "10", "90"], Full),
            ] {
                let cur = line("cp1", "a", T + 60, &vals);
                assert_eq!(
                    second_read(&prev, &cur, Kind::Counters, false, true),
                    [want],
                    "{vals:?}"
                );
            }
        }

        /// The hash is seeded with the minute: values equal in every position (a shift changes
        /// no text) repeat only one minute later.
        #[test]
        fn only_one_minute_later_is_a_repeat() {
            let v = ["12"; 15];
            let prev = line("cp1", "a", T, &v);
            for (dt, want) in [
                (0, Full),
                (30, Full),
                (60, Repeat),
                (119, Repeat),
                (120, Full),
                (-60, Full),
            ] {
                let cur = line("cp1", "a", T + dt, &v);
                assert_eq!(
                    second_read(&prev, &cur, Kind::Counters, false, true),
                    [want],
                    "{dt} s later"
                );
            }
            // Shifted values in the same minute: not a repeat either.
            let prev = line("cp1", "a", T, &["5", "4", "3", "2"]);
            let cur = line("cp1", "a", T, &["6", "5", "4", "3"]);
            assert_eq!(
                second_read(&prev, &cur, Kind::Counters, false, true),
                [Full]
            );
        }

        #[test]
        fn the_memo_is_by_position() {
            let a = |t, v: &[&str]| line("cp1", "a", t, v);
            let b = |t, v: &[&str]| line("cp2", "a", t, v);
            let prev = a(T, &["5", "4", "3"]) + &b(T, &["9", "8", "7"]);
            // Swapped: neither row is at its old position.
            let cur = b(T + 60, &["1", "9", "8"]) + &a(T + 60, &["6", "5", "4"]);
            assert_eq!(
                second_read(&prev, &cur, Kind::Counters, false, true),
                [Full, Full]
            );
            // The next rewrite in the new order repeats again.
            let next = b(T + 120, &["1", "1", "9"]) + &a(T + 120, &["6", "6", "5"]);
            assert_eq!(
                second_read(&cur, &next, Kind::Counters, false, true),
                [Repeat, Repeat]
            );
            // The memo is by line (so that a snapshot can be read in chunks on several
            // threads): blank lines move the rows after them, like any line (the platform
            // writes none).
            let blanks = format!(
                "\n{}\r\n\n{}",
                b(T + 120, &["1", "1", "9"]),
                a(T + 120, &["6", "6", "5"])
            );
            assert_eq!(
                second_read(&cur, &blanks, Kind::Counters, false, true),
                [Full, Full]
            );
            // A blank line at the end moves nothing (the last row, near the end of the data,
            // takes the general path).
            let blank_after = next.clone() + "\n";
            assert_eq!(
                second_read_as_is(&cur, &blank_after, Kind::Counters, false, true),
                [Repeat, RepeatSplit]
            );
            // A row inserted before: everything after it is one position off.
            let ins = line("cp0", "a", T + 120, &["1", "1", "1"]) + &next;
            assert_eq!(
                second_read(&cur, &ins, Kind::Counters, false, true),
                [Full, Full, Full]
            );
        }

        #[test]
        fn a_line_with_a_quote_is_never_a_repeat() {
            let prev = line("cp1", "a", T, &["5", "4", "3", "2"])
                + &line("cp2", "a", T, &["5", "4", "3", "2"]);
            // A quoted host; a quoted older value (same numbers); a stray quote (bad line).
            for (cur, want) in [
                (line("\"cp1\"", "a", T + 60, &["6", "5", "4", "3"]), Full),
                (line("cp1", "a", T + 60, &["6", "5", "\"4\"", "3"]), Full),
                (
                    line("cp1", "a", T + 60, &["6", "5", "4", "\"3"]),
                    Bad(Reason::UnclosedQuote),
                ),
                (line("cp1", "a", T + 60, &["\"6\"", "5", "4", "3"]), Full),
            ] {
                let cur = cur + &line("cp2", "a", T + 60, &["6", "5", "4", "3"]);
                assert_eq!(
                    second_read(&prev, &cur, Kind::Counters, false, true),
                    [want, Repeat],
                    "{cur}"
                );
                // After a quoted line, its position holds no memo: the next rewrite reads it
                // in full even if it repeats.
                let next = line("cp1", "a", T + 120, &["7", "6", "5", "4"])
                    + &line("cp2", "a", T + 120, &["7", "6", "5", "4"]);
                assert_eq!(
                    second_read(&cur, &next, Kind::Counters, false, true),
                    [Full, Repeat],
                    "{cur}"
                );
            }
        }

        #[test]
        fn crlf_rows_repeat_with_exact_values() {
            let crlf = |s: String| s.replace('\n', "\r\n");
            let prev =
                line("cp1", "a", T, &["5", "4", "3", "2"]) + &line("cp2", "a", T, &["5", "4", "3"]);
            let cur = line("cp1", "a", T + 60, &["6", "5", "4", "3"])
                + &line("cp2", "a", T + 60, &["6", "5", "4"]);
            for (p, c) in [
                (crlf(prev.clone()), crlf(cur.clone())),
                (prev.clone(), crlf(cur.clone())),
                (crlf(prev.clone()), cur.clone()),
            ] {
                for kind in [Kind::Counters, Kind::Samples] {
                    assert_eq!(
                        second_read(&p, &c, kind, false, true),
                        [Repeat, Repeat],
                        "{c:?}"
                    );
                    assert_eq!(
                        second_read(&p, &c, kind, true, true),
                        [Repeat, Repeat],
                        "{c:?}"
                    );
                }
            }
            // The CR is not part of the values' text.
            let (_, memo, _) = with_memo(crlf(prev).as_bytes(), Kind::Counters, false, &[], true);
            let c = crlf(cur);
            let mut r = after(c.as_bytes(), Kind::Counters, false, &memo);
            assert_eq!(r.next().unwrap().unwrap().values_text, b"6,5,4,3");
            assert_eq!(r.next().unwrap().unwrap().values_text, b"6,5,4");
        }

        #[test]
        fn three_values_repeat_two_never() {
            let at = |t, v: &[&str]| line("cp1", "a", t, v);
            // (previous values, current values one minute later, what the second read is)
            let cases: [(&[&str], &[&str], _); 6] = [
                (&["5", "4", "3"], &["6", "5", "4"], Repeat),
                (&["5", "4"], &["6", "5"], Full),
                (&["5", "5"], &["5", "5"], Full),
                (&["5", "4", "3"], &["6", "5"], Full),
                // One value more or fewer than the row it would repeat.
                (&["5", "4", "3"], &["6", "5", "4", "3"], Full),
                (&["5", "4", "3", "2"], &["6", "5", "4"], Full),
            ];
            for kind in [Kind::Counters, Kind::Samples] {
                for (prev, cur, want) in cases {
                    assert_eq!(
                        second_read(&at(T, prev), &at(T + 60, cur), kind, false, true),
                        [want],
                        "{kind:?} {prev:?} -> {cur:?}"
                    );
                }
            }
        }

        #[test]
        fn empty_values_repeat_as_text() {
            for kind in [Kind::Counters, Kind::Samples] {
                // An empty last value: the row's text ends in a comma.
                let prev = line("cp1", "a", T, &["5", "4", "", ""])
                    + &line("cp2", "a", T, &["5", "", "3", ""]);
                let cur = line("cp1", "a", T + 60, &["6", "5", "4", ""])
                    + &line("cp2", "a", T + 60, &["", "5", "", "3"]);
                assert_eq!(
                    second_read(&prev, &cur, kind, false, true),
                    [Repeat, Repeat],
                    "{kind:?}"
                );
                // One more empty value is one more value: not a repeat.
                let cur = line("cp1", "a", T + 60, &["6", "5", "4", "", ""])
                    + &line("cp2", "a", T + 60, &["", "5", "", "3", ""]);
                assert_eq!(
                    second_read(&prev, &cur, kind, false, true),
                    [Full, Full],
                    "{kind:?}"
                );
                // All empty but v0 and v1.
                let prev = line("cp1", "a", T, &["", "", "", "", ""]);
                let cur = line("cp1", "a", T + 60, &["1", "", "", "", ""]);
                assert_eq!(
                    second_read(&prev, &cur, kind, false, true),
                    [Repeat],
                    "{kind:?}"
                );
            }
            let prev = line("cp1", "a", T, &["5", "4", "", ""]);
            let cur = line("cp1", "a", T + 60, &["6", "5", "4", ""]);
            let (_, memo, _) = with_memo(prev.as_bytes(), Kind::Samples, false, &[], true);
            let mut r = after(cur.as_bytes(), Kind::Samples, false, &memo);
            let row = r.next().unwrap().unwrap();
            assert_eq!(row.values_text, b"6,5,4,");
            let (vals, n) = parse_values(row.values_text, Kind::Samples).unwrap();
            assert_eq!(
                vals[..n],
                [
                    Value::Float(6.0),
                    Value::Float(5.0),
                    Value::Float(4.0),
                    Value::Missing
                ]
            );
        }

        /// A bad v0 or v1 in a row whose older values repeat: the same error (reason, line,
        /// byte, field) as without memo, and no memo for the next rewrite at that position.
        #[test]
        fn a_bad_newest_value_is_the_same_error() {
            let prev =
                line("cp0", "a", T, &["1", "1", "1"]) + &line("cp1", "a", T, &["5", "4", "3", "2"]);
            for (v0, v1, want, field) in [
                ("x", "5", Reason::BadNumber, 5),
                ("6", "x", Reason::BadNumber, 6),
                ("-6", "5", Reason::Negative, 5),
                ("6", "-5", Reason::Negative, 6),
                ("99999999999999999999", "5", Reason::Overflow, 5),
                ("x", "y", Reason::BadNumber, 5),
            ] {
                let cur = line("cp0", "a", T + 60, &["1", "1", "1"])
                    + &line("cp1", "a", T + 60, &[v0, v1, "4", "3"]);
                assert_eq!(
                    second_read(&prev, &cur, Kind::Counters, false, true),
                    [Repeat, Bad(want)],
                    "{v0},{v1}"
                );
                let e = plain(cur.as_bytes(), Kind::Counters, false).0[1]
                    .clone()
                    .unwrap_err();
                let byte = cur.find('\n').unwrap() as u64 + 1;
                assert_eq!((e.line, e.byte, e.field), (2, byte, field), "{v0},{v1}");
                let next = line("cp0", "a", T + 120, &["1", "1", "1"])
                    + &line("cp1", "a", T + 120, &["7", "6", "5", "4"]);
                assert_eq!(
                    second_read(&cur, &next, Kind::Counters, false, true),
                    [Repeat, Full]
                );
            }
            // Samples: the same.
            let prev = line("cp1", "a", T + 1, &["0.5", "0.25", "0.125"]);
            for (v0, v1, want, field) in [
                ("abc", "0.5", Reason::BadNumber, 5),
                ("0.75", "-0.5", Reason::Negative, 6),
                ("1e999", "0.5", Reason::Overflow, 5),
            ] {
                let cur = line("cp1", "a", T + 61, &[v0, v1, "0.25"]);
                assert_eq!(
                    second_read(&prev, &cur, Kind::Samples, false, true),
                    [Bad(want)]
                );
                let e = plain(cur.as_bytes(), Kind::Samples, false).0[0]
                    .clone()
                    .unwrap_err();
                assert_eq!((e.reason, e.field), (want, field));
            }
            // A bad older value, or too many values, can never be a repeat: the row it would
            // repeat had to be good.
            let prev = line("cp1", "a", T, &["5", "4", "x", "2"]);
            let cur = line("cp1", "a", T + 60, &["6", "5", "4", "x"]);
            assert_eq!(
                second_read(&prev, &cur, Kind::Counters, false, true),
                [Bad(Reason::BadNumber)]
            );
            let sixteen: Vec<String> = (0..16).map(|i| i.to_string()).collect();
            let sixteen: Vec<&str> = sixteen.iter().map(|s| s.as_str()).collect();
            let mut shifted = vec!["99"];
            shifted.extend_from_slice(&sixteen[..15]);
            assert_eq!(
                second_read(
                    &line("cp1", "a", T, &sixteen),
                    &line("cp1", "a", T + 60, &shifted),
                    Kind::Counters,
                    false,
                    true
                ),
                [Bad(Reason::TooManyValues)]
            );
            // Fifteen values, the most a row may have, do repeat.
            assert_eq!(
                second_read(
                    &line("cp1", "a", T, &sixteen[..15]),
                    &line("cp1", "a", T + 60, &shifted[..15]),
                    Kind::Counters,
                    false,
                    true
                ),
                [Repeat]
            );
        }

        /// The last line without a newline: a repeat once the file is quiet, left unread
        /// otherwise; a short last line (too close to the end of the data for the 16-byte
        /// scan) is found by the general path, which leaves the older values missing.
        #[test]
        fn the_last_line_without_newline() {
            let prev = line("cp1", "a", T, &["5", "4", "3", "2", "1"])
                + &line("cp2", "a", T, &["50", "40", "30", "20", "10"]);
            let cur = line("cp1", "a", T + 60, &["6", "5", "4", "3", "2"])
                + &line("cp2", "a", T + 60, &["60", "50", "40", "30", "20"]);
            let cut = cur.trim_end_matches('\n');
            assert_eq!(
                second_read_as_is(&prev, cut, Kind::Counters, true, true),
                [Repeat, Repeat]
            );
            // Until then the parsable part ends after cp1's row, 47 bytes whose 6th comma (at
            // 40) is not in a whole 16-byte block: the general path.
            assert_eq!(
                second_read_as_is(&prev, cut, Kind::Counters, false, true),
                [RepeatSplit]
            );
            // "h,a,t,120,6,5,4": the 6th comma is in the last 16 bytes.
            let prev = "h,a,t,60,5,4,3\n";
            let (_, memo, _) = with_memo(prev.as_bytes(), Kind::Counters, false, &[], true);
            // 15 bytes: the general path; 16 or more: the fast one.
            for (cur, want) in [
                ("h,a,t,120,6,5,4", RepeatSplit),
                ("h,a,t,120,6,5,4\n", Repeat),
                ("h,a,t,120,6,5,4\r\n", Repeat),
            ] {
                assert_eq!(
                    second_read_as_is(prev, cur, Kind::Counters, true, true),
                    [want],
                    "{cur:?}"
                );
            }
            let mut r = after(b"h,a,t,120,6,5,4", Kind::Counters, true, &memo);
            let row = r.next().unwrap().unwrap();
            assert_ne!(row.same_tail, 0);
            assert_eq!(row.values(), [Value::Int(6), Value::Int(5), Value::Missing]);
            assert_eq!(row.values_text, b"6,5,4");
        }

        /// The parse stage fills one slot after the other in place
        /// ([`Reader::next_ahead_into`]): a slot that held a repeat, a full row or an error
        /// reads the next record exactly as a new one.
        #[test]
        fn one_slot_filled_in_place_reads_every_record_as_new() {
            let rows = [
                ("cp0", vec!["5", "4", "3", "2", "1", "9", "8", "7"]),
                ("cp1", vec!["5", "4"]),
                ("cp2", vec!["50", "40", "30", "20", "10"]),
                ("cp3", vec!["5", "x", "3", "2", "1"]),
                (
                    "cp4",
                    vec![
                        "15", "14", "13", "12", "11", "10", "9", "8", "7", "6", "5", "4", "3", "2",
                        "1",
                    ],
                ),
                ("cp5", vec!["1", "2", "3"]),
            ];
            let file = |k: i64| {
                let mut out = String::new();
                for (i, (h, v)) in rows.iter().enumerate() {
                    // Shifted k minutes: k new values in front, the oldest dropped.
                    let mut vals: Vec<String> = (0..k).map(|j| (100 + j).to_string()).collect();
                    vals.extend(v.iter().map(|s| s.to_string()));
                    vals.truncate(v.len());
                    let host = if i == 4 && k == 1 {
                        "\"cp4\"".to_string()
                    } else {
                        h.to_string()
                    };
                    out += &line(
                        &host,
                        "a",
                        T + 60 * k,
                        &vals.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    );
                    if i == 2 {
                        out += "cp2b,a,t,1,-1\n\n";
                    }
                }
                out
            };
            for kind in [Kind::Counters, Kind::Samples] {
                let mut memo = Vec::new();
                for k in 0..3 {
                    let text = file(k);
                    let data = text.as_bytes();
                    let mut r = after(data, kind, false, &memo);
                    let mut quoted = Reader::new(data, kind, false);
                    let mut slot = Ahead::Row(Row::EMPTY);
                    let mut got = Vec::new();
                    let mut repeats = 0;
                    while r.next_ahead_into(&mut slot) {
                        got.push(match &slot {
                            Ahead::Row(row) if row.same_tail != 0 => {
                                repeats += 1;
                                let (v, n) = parse_values(row.values_text, kind).unwrap();
                                Ok(whole(row, v[..n].to_vec()))
                            }
                            Ahead::Row(row) => Ok(whole(row, row.values().to_vec())),
                            Ahead::Bad(e) => Err(*e),
                            Ahead::Quoted(start, line) => quoted
                                .quoted_line(*start, *line)
                                .map(|row| whole(&row, row.values().to_vec())),
                        });
                    }
                    assert_eq!(got, plain(data, kind, false).0, "{kind:?} rewrite {k}");
                    // cp0, cp2 and cp5 (cp4 was quoted a minute before: no memo).
                    assert_eq!(repeats, [0, 3, 3][k as usize], "{kind:?} rewrite {k}");
                    let next = r.take_memo();
                    memo = next;
                }
            }
        }

        /// Oldest first (the last value is the row's own minute): the repeat is found by the
        /// general path, the two newest are the last two values.
        #[test]
        fn oldest_first_repeats_through_the_general_path() {
            for kind in [Kind::Counters, Kind::Samples] {
                let prev = line("cp1", "a", T, &["1", "2", "3", "4", "5", "6", "7", "8"])
                    + &line("cp2", "a", T, &["1", "2", "3"]);
                let cur = line(
                    "cp1",
                    "a",
                    T + 60,
                    &["2", "3", "4", "5", "6", "7", "9", "4"],
                ) + &line("cp2", "a", T + 60, &["2", "4", "0"]);
                assert_eq!(
                    second_read(&prev, &cur, kind, false, false),
                    [RepeatSplit, RepeatSplit],
                    "{kind:?}"
                );
                // The newest-first shift is not a repeat oldest first, nor the other way round.
                let nf = line(
                    "cp1",
                    "a",
                    T + 60,
                    &["0", "1", "2", "3", "4", "5", "6", "7"],
                ) + &line("cp2", "a", T + 60, &["0", "1", "2"]);
                assert_eq!(second_read(&prev, &nf, kind, false, false), [Full, Full]);
                assert_eq!(second_read(&prev, &cur, kind, false, true), [Full, Full]);
                // A changed older value; the same minute; two minutes later; a bad newest value
                // (the error without memo).
                for (t, last, want) in [
                    (T + 60, ["0", "6", "7", "9", "4"], Full),
                    (T, ["5", "6", "7", "9", "4"], Full),
                    (T + 120, ["5", "6", "7", "9", "4"], Full),
                    (T + 60, ["5", "6", "7", "9", "x"], Bad(Reason::BadNumber)),
                ] {
                    let vals = [["2", "3", "4"].as_slice(), &last].concat();
                    let cur = line("cp1", "a", t, &vals);
                    assert_eq!(
                        second_read(&prev, &cur, kind, false, false),
                        [want],
                        "{vals:?} at {t}"
                    );
                }
            }
        }
    }
}
