//! The slow path: a line with a double quote, unescaped field by field into the reader's
//! scratch buffer.

use super::*;

impl<'a> Reader<'a> {
    /// The slow path: a line with at least one double quote, parsed field by field into the
    /// scratch buffer. One record per line: a quoted field that does not close before the end
    /// of its line makes that line an [`Reason::UnclosedQuote`], and the next line parses
    /// normally.
    pub(crate) fn quoted(
        &mut self,
        start: usize,
        line_no: u64,
    ) -> Option<Result<Row<'_>, RowError>> {
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
