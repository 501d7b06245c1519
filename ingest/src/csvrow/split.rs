//! Splitting a line: the commas of the fixed fields and of the values found 16 bytes at a
//! time (SWAR), the general split of any line into fields, and the check for quotes.

use super::*;

/// The first `N` commas of the line at the start of `rest`, where the line ends (without the
/// CR of a CRLF), where the next one starts, and its last comma (the `N`th if none follows),
/// in one pass 16 bytes at a time. `None` (a line the general way reads) when a double quote
/// comes before the line's end, the line has fewer than `N` commas, or fewer than 16 bytes
/// are left before the `N`th comma.
#[inline]
pub(super) fn line_parts<const N: usize>(rest: &[u8]) -> Option<([usize; N], usize, usize, usize)> {
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
pub(super) fn masks16(c: &[u8]) -> (u32, u32) {
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
pub(super) fn masks(c: &[u8]) -> (u32, u32) {
    bit_masks(c, |b| b == b'"' || b == b'\n')
}

/// Bits of the bytes of `c` (at most 32): (commas, bytes for which `other` holds).
#[inline]
pub(super) fn bit_masks(c: &[u8], other: impl Fn(u8) -> bool) -> (u32, u32) {
    let (mut comma, mut rest) = (0, 0);
    for (i, &b) in c.iter().enumerate() {
        comma |= ((b == b',') as u32) << i;
        rest |= (other(b) as u32) << i;
    }
    (comma, rest)
}

/// One line split at its commas by [`split_line`].
pub(super) struct Split {
    /// Offset of the line's newline (`None`: the line runs to the end of the data).
    pub(super) newline: Option<usize>,
    /// The line has a double quote: the fields are not split (see [`Reader::quoted_line`]).
    pub(super) quoted: bool,
    /// The line is empty (a CR before the newline counts as part of the line ending).
    pub(super) blank: bool,
    /// Fields stored (at most [`MAX_FIELDS`]).
    pub(super) fields: usize,
    /// More than [`MAX_FIELDS`] fields.
    pub(super) too_many: bool,
}

/// Bit `i` set where byte `i` of the 16 at `c` is a comma, a double quote or a newline.
#[inline(always)]
pub(super) fn specials16(c: &[u8]) -> u32 {
    let (comma, stop) = masks16(c);
    comma | stop
}

/// [`specials16`] for fewer than 16 bytes (or any target).
#[inline]
pub(super) fn specials(c: &[u8]) -> u32 {
    let (comma, stop) = masks(c);
    comma | stop
}

/// Splits the first line of `rest` at its commas into `fields`, in one pass over its bytes
/// 16 at a time (commas, quotes and the newline found together), without the CR of a CRLF
/// ending. A line with a quote is only measured.
#[inline]
pub(super) fn split_line<'a>(rest: &'a [u8], fields: &mut [&'a [u8]; MAX_FIELDS]) -> Split {
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
