//! The parse-ahead side of the CSV kernel, used by the two-thread driver ([`super::pipeline`]):
//! a record that can travel to another thread ([`Ahead`]), a reader of a range of lines, and
//! the read of a quoted line that the parse thread left to the applying one.

use crate::csvrow::{Kind, Reader, Row, RowError};

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

impl<'a> Reader<'a> {
    /// A reader of the lines of `data[start..end]` only, the first of them line `line`
    /// (1-based) of `data`: `start` is the start of a line, and `end` the start of a line or
    /// the end of the part of `data` that is read as rows ([`Reader::parsable_len`] of a
    /// reader of the whole snapshot). Several such readers over consecutive ranges read the
    /// same records as one reader over the whole, with the same lines and bytes, so a
    /// snapshot can be read on several threads.
    pub fn range(data: &'a [u8], kind: Kind, start: usize, end: usize, line: u64) -> Self {
        debug_assert!(start <= end && end <= data.len());
        let mut r = Reader::new(data, kind, true);
        r.pos = start;
        r.end = end;
        r.line = line;
        r
    }

    /// The line the next record starts on (1-based).
    pub fn next_line(&self) -> u64 {
        self.line
    }

    /// The next record, rows borrowed from the snapshot only; a line with quotes is left to
    /// [`Reader::quoted_line`] (the records count includes it).
    pub fn next_ahead(&mut self) -> Option<Ahead<'a>> {
        let mut a = Ahead::Row(Row::EMPTY);
        self.next_ahead_into(&mut a).then_some(a)
    }

    /// Reads the line with quotes at byte `start` (line `line_no`) that
    /// [`Reader::next_ahead`] of a reader over the same snapshot returned as
    /// [`Ahead::Quoted`], into this reader's scratch buffer.
    pub fn quoted_line(&mut self, start: usize, line_no: u64) -> Result<Row<'_>, RowError> {
        self.quoted(start, line_no)
            .expect("a quoted line always reads as a row or an error")
    }
}
