//! Numbers: a counters.csv row's values classified and converted 16 bytes at a time (SWAR,
//! [`Reader::counts_row`]), and the general parsers of one count and one average.

use super::split::bit_masks;
use super::*;

/// The values of a counters.csv row read by [`count_values`].
pub(super) struct Counts {
    pub(super) vals: [u64; MAX_VALUES],
    /// Values (commas + 1).
    pub(super) n: usize,
    /// The offsets of the commas between them, from the first value's start.
    pub(super) commas: [u16; MAX_VALUES],
}

/// The values `rest[v0..end]` of a counters.csv row when they are plain digits and commas:
/// at most [`MAX_VALUES`] values of at most 18 digits (no overflow, below `i64::MAX`), an
/// empty value 0. The bytes are classified 16 at a time and the commas taken from the mask,
/// and a value of up to 8 digits is converted from one 8-byte word (SWAR): no branch per
/// byte (a branch on each comma mispredicted on nearly every value). `None` for anything
/// else: the general way reads it.
#[inline]
pub(super) fn count_values(rest: &[u8], v0: usize, end: usize) -> Option<Counts> {
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
pub(super) fn digits(rest: &[u8], from: usize, to: usize) -> Option<u64> {
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
pub(super) fn eight_digits(w: u64) -> u64 {
    let w = (w & 0x0f0f_0f0f_0f0f_0f0f).wrapping_mul(2561) >> 8;
    let w = (w & 0x00ff_00ff_00ff_00ff).wrapping_mul(6_553_601) >> 16;
    (w & 0x0000_ffff_0000_ffff).wrapping_mul(42_949_672_960_001) >> 32
}

/// Bits of the 16 bytes at `c`: (commas, bytes neither a comma nor an ASCII digit).
#[inline(always)]
pub(super) fn digit_masks16(c: &[u8]) -> (u32, u32) {
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
pub(super) fn digit_masks(c: &[u8]) -> (u32, u32) {
    bit_masks(c, |b| !(b == b',' || b.is_ascii_digit()))
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

impl<'a> Reader<'a> {
    /// The fast path of a counters.csv row: the fixed fields are split, and the values are
    /// classified and converted together ([`count_values`]) instead of being split first
    /// and parsed one by one. `false` (nothing consumed) for
    /// anything but plain digits and commas after the time (a sign, a quote, a long number, too
    /// many values, ...): the general way reads it and reports the exact error.
    #[inline]
    pub(super) fn counts_row(&mut self, rest: &'a [u8], slot: &mut Ahead<'a>) -> bool {
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
}
