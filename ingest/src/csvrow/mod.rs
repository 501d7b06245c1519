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
mod tests;
