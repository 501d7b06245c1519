//! The memo of a rewrite ([`Reader::with_memo`]): the hash of a row's older values, and the
//! rows that repeat the previous snapshot's, read from their two newest values.

use super::*;

/// A hash of `text` and `minute`, never 0.
#[inline]
pub(super) fn tail_hash(text: &[u8], minute: i64) -> u64 {
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
pub(super) fn build_with_memo<'a>(
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
pub(super) fn newest_two(n: usize, newest_first: bool) -> [usize; 2] {
    if newest_first {
        [0, 1]
    } else {
        [n - 2, n - 1]
    }
}

impl<'a> Reader<'a> {
    /// The fast path of a memo hit (newest first): the line at the start of `rest` is read
    /// as a row in `slot` if the text after its `v1` hashes to `hint` (see
    /// [`Reader::with_memo`]). Only the fixed fields and the two newest values are split
    /// and parsed; the rest of the line is hashed, not split. `false` (nothing consumed):
    /// read the line the general way.
    #[inline]
    pub(super) fn repeat(&mut self, rest: &'a [u8], hint: u32, slot: &mut Ahead<'a>) -> bool {
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
}
