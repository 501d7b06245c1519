//! Counters points as line protocol, written fast: `<stat>,hostname=<host> value=<n>i <t>`.
//!
//! The prefix (escaped names, tag and field key) is put together once per row in a padded
//! buffer, then each point is written straight into the buffer's spare room in whole 32-byte
//! block copies from padded sources, with its digits in place: no memcpy call per piece.
//! Names are escaped by the project's [`LineEncoder`], so escaping has one definition.

use crate::lineproto::{Field, LineEncoder};
use bytes::BytesMut;

/// `,hostname=` and ` value=`, padded for whole-word copies.
const HOSTNAME_TAG: [u8; 16] = *b",hostname=______";
const VALUE_FIELD: [u8; 8] = *b" value=_";

/// Zero bytes after each escaped name (see [`copy_blocks`]).
pub(super) const NAME_PAD: usize = 32;

/// Copies `len` bytes from `src` to `dst` in whole 32-byte blocks (no memcpy call for a short
/// piece of unknown length): up to 31 bytes past `len` are read and written too.
///
/// # Safety
/// `src` readable and `dst` writable for `len.div_ceil(32) * 32` bytes, not overlapping.
#[inline(always)]
unsafe fn copy_blocks(src: *const u8, dst: *mut u8, len: usize) {
    for c in 0..len.div_ceil(32) {
        // SAFETY: within the caller's guarantee.
        unsafe { std::ptr::copy_nonoverlapping(src.add(c * 32), dst.add(c * 32), 32) };
    }
}

/// Line-protocol prefixes up to this long take the fast path of [`PointWriter::counters`].
pub(super) const PREFIX_FAST: usize = 256;
/// Digits of the largest count (`i64::MAX`).
const MAX_DIGITS: usize = 19;
/// Bytes of a cached timestamp text (`" <unix seconds>\n"`, padded).
const TS_TEXT: usize = 24;

/// Writes the decimal digits of `x` at `dst`; returns how many. A count below 1,000 is one
/// 4-byte copy from [`SMALL`] (the bytes after its digits are left for the caller to write
/// over).
///
/// # Safety
/// `dst` must be valid for writing [`MAX_DIGITS`] bytes (`x <= i64::MAX`).
#[inline]
unsafe fn write_digits(dst: *mut u8, mut x: u64) -> usize {
    if x < 1000 {
        // SAFETY: 4 bytes <= MAX_DIGITS (caller's guarantee).
        unsafe { std::ptr::copy_nonoverlapping(SMALL[x as usize].as_ptr(), dst, 4) };
        return SMALL[x as usize][3] as usize;
    }
    debug_assert!(x <= i64::MAX as u64);
    let n = x.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut i = n;
    while x >= 100 {
        let d = (x % 100) as usize;
        x /= 100;
        i -= 2;
        // SAFETY: i + 1 < n <= MAX_DIGITS (caller's guarantee).
        unsafe {
            *dst.add(i) = DIGIT_PAIRS[2 * d];
            *dst.add(i + 1) = DIGIT_PAIRS[2 * d + 1];
        }
    }
    // SAFETY: as above, for the last one or two digits at 0..i.
    unsafe {
        if x >= 10 {
            *dst = DIGIT_PAIRS[2 * x as usize];
            *dst.add(1) = DIGIT_PAIRS[2 * x as usize + 1];
        } else {
            *dst = b'0' + x as u8;
        }
    }
    n
}

/// The digits of each count below 1,000, in 4 bytes: the digits, then zeros, and the number of
/// digits in the last byte (a point's `i` and timestamp are written over it). Most per-minute
/// counts are small: one 4-byte copy instead of the division loop.
static SMALL: [[u8; 4]; 1000] = {
    let mut t = [[0u8; 4]; 1000];
    let mut x = 0;
    while x < 1000 {
        let (n, d) = if x < 10 {
            (1, [b'0' + x as u8, 0, 0])
        } else if x < 100 {
            (2, [b'0' + (x / 10) as u8, b'0' + (x % 10) as u8, 0])
        } else {
            (
                3,
                [
                    b'0' + (x / 100) as u8,
                    b'0' + (x / 10 % 10) as u8,
                    b'0' + (x % 10) as u8,
                ],
            )
        };
        t[x] = [d[0], d[1], d[2], n];
        x += 1;
    }
    t
};

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// `" <unix seconds>\n"` of recent minutes, by minute modulo [`TS_SLOTS`]: most points of a
/// snapshot share the same 15 timestamps.
const TS_SLOTS: usize = 16;

struct TsCache {
    minute: [i64; TS_SLOTS],
    text: [[u8; TS_TEXT]; TS_SLOTS],
    len: [u8; TS_SLOTS],
}

impl TsCache {
    fn new() -> Self {
        TsCache {
            minute: [i64::MIN; TS_SLOTS],
            text: [[0; TS_TEXT]; TS_SLOTS],
            len: [0; TS_SLOTS],
        }
    }

    #[inline]
    fn get(&mut self, m: i64) -> &[u8] {
        let (text, len) = self.get_padded(m);
        &text[..len]
    }

    /// The text of minute `m` in its padded array, with its length.
    #[inline]
    fn get_padded(&mut self, m: i64) -> (&[u8; TS_TEXT], usize) {
        let sl = m.rem_euclid(TS_SLOTS as i64) as usize;
        if self.minute[sl] != m {
            let mut ib = itoa::Buffer::new();
            let d = ib.format(m * 60).as_bytes();
            let t = &mut self.text[sl];
            t[0] = b' ';
            t[1..1 + d.len()].copy_from_slice(d);
            t[1 + d.len()] = b'\n';
            self.len[sl] = (d.len() + 2) as u8;
            self.minute[sl] = m;
        }
        (&self.text[sl], self.len[sl] as usize)
    }
}

/// The escaped line-protocol form of a name followed by [`NAME_PAD`] zero bytes, and its
/// length: a stat is a measurement, a host the value of the `hostname` tag.
pub(super) fn escape_name(enc: &mut LineEncoder, s: &str, host: bool) -> (Box<[u8]>, u32) {
    enc.clear();
    let esc = if host {
        enc.push("m", &[("hostname", s)], &[("v", Field::Int(0))], 0);
        let b = enc.take();
        b[b"m,hostname=".len()..b.len() - b" v=0i 0\n".len()].to_vec()
    } else {
        enc.push(s, &[], &[("v", Field::Int(0))], 0);
        let b = enc.take();
        b[..b.len() - b" v=0i 0\n".len()].to_vec()
    };
    let len = esc.len() as u32;
    let mut padded = esc;
    padded.resize(len as usize + NAME_PAD, 0);
    (padded.into(), len)
}

/// Writes counters points; owns its scratch.
pub(super) struct PointWriter {
    /// A point's prefix up to [`PREFIX_FAST`] bytes, with room for whole-block copies.
    pbuf: Box<[u8; PREFIX_FAST + 64]>,
    /// A longer prefix.
    prefix: Vec<u8>,
    ts: TsCache,
}

impl PointWriter {
    pub(super) fn new() -> Self {
        PointWriter {
            pbuf: Box::new([0; PREFIX_FAST + 64]),
            prefix: Vec::new(),
            ts: TsCache::new(),
        }
    }

    /// The marks of the lines [`PointWriter::counters`] writes for `changed` of a stat and a
    /// host whose escaped names are `sl` and `hl` bytes long, appended to `marks`.
    pub(super) fn marks(
        &mut self,
        sl: usize,
        hl: usize,
        changed: &[(i64, u64)],
        marks: &mut Vec<super::LineMark>,
    ) {
        let series = sl + b",hostname=".len() + hl;
        for &(m, x) in changed {
            // `value=`, the digits, `i`.
            let fields = b"value=".len() + x.checked_ilog10().unwrap_or(0) as usize + 1 + 1;
            marks.push(super::LineMark {
                len: (series + 1 + fields + self.ts.get(m).len()) as u32,
                series: series as u32,
                fields: fields as u32,
                minute: m as i32,
            });
        }
    }

    /// Appends to `out` the points `changed` (minute, count) of the stat and host whose
    /// escaped names are `stat[..sl]` and `host[..hl]`, each padded by [`NAME_PAD`] zero bytes.
    #[inline(always)]
    pub(super) fn counters(
        &mut self,
        out: &mut BytesMut,
        (stat, sl): (&[u8], usize),
        (host, hl): (&[u8], usize),
        changed: &[(i64, u64)],
    ) {
        let nc = changed.len();
        let plen = sl + b",hostname=".len() + hl + b" value=".len();
        if plen <= PREFIX_FAST {
            assert!(stat.len() >= sl + NAME_PAD && host.len() >= hl + NAME_PAD);
            let pbuf = &mut self.pbuf;
            // SAFETY: the names are readable up to their length rounded up to 32 (padded by
            // NAME_PAD = 32 bytes, checked above); `pbuf` has PREFIX_FAST + 64 bytes and every
            // write ends before plen + 32 <= PREFIX_FAST + 32; the two literals are 16 and 8
            // bytes.
            unsafe {
                let p = pbuf.as_mut_ptr();
                copy_blocks(stat.as_ptr(), p, sl);
                std::ptr::copy_nonoverlapping(HOSTNAME_TAG.as_ptr(), p.add(sl), 16);
                copy_blocks(host.as_ptr(), p.add(sl + 10), hl);
                std::ptr::copy_nonoverlapping(VALUE_FIELD.as_ptr(), p.add(sl + 10 + hl), 8);
            }
            let most = plen.div_ceil(32) * 32 + MAX_DIGITS + 1 + TS_TEXT;
            out.reserve(nc * most);
            let spare = out.spare_capacity_mut();
            assert!(spare.len() >= nc * most);
            let dst0 = spare.as_mut_ptr() as *mut u8;
            let mut at = 0;
            for &(m, x) in changed {
                let ts = self.ts.get_padded(m);
                // SAFETY: each point writes at most `most` bytes from `dst0 + at`, and
                // `at <= (points so far) * most`, within the `nc * most` bytes of spare room
                // checked above; the sources are `pbuf` (read up to plen rounded up to 32,
                // within its PREFIX_FAST + 64 bytes), the digits (MAX_DIGITS bytes, of which
                // only the count's are kept: a small count's fourth byte is written over by the
                // `i` or the timestamp) and the cache's TS_TEXT bytes. `set_len` below covers
                // only bytes written.
                unsafe {
                    let dst = dst0.add(at);
                    copy_blocks(pbuf.as_ptr(), dst, plen);
                    let mut n = plen;
                    n += write_digits(dst.add(n), x);
                    *dst.add(n) = b'i';
                    n += 1;
                    std::ptr::copy_nonoverlapping(ts.0.as_ptr(), dst.add(n), TS_TEXT);
                    at += n + ts.1;
                }
            }
            // SAFETY: the `at` bytes after the current length were written above.
            unsafe { out.set_len(out.len() + at) };
        } else {
            let prefix = &mut self.prefix;
            prefix.clear();
            prefix.extend_from_slice(&stat[..sl]);
            prefix.extend_from_slice(b",hostname=");
            prefix.extend_from_slice(&host[..hl]);
            prefix.extend_from_slice(b" value=");
            out.reserve(nc * (prefix.len() + 40));
            let mut ib = itoa::Buffer::new();
            for &(m, x) in changed {
                out.extend_from_slice(prefix);
                out.extend_from_slice(ib.format(x).as_bytes());
                out.extend_from_slice(b"i");
                out.extend_from_slice(self.ts.get(m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_written_as_their_decimal_text() {
        let mut enc = LineEncoder::with_capacity(256);
        let stat = escape_name(&mut enc, "request.INVITE", false);
        let host = escape_name(&mut enc, "cp 1", true);
        let mut counts: Vec<u64> = (0..=1_100).collect();
        for k in 1..=18 {
            let p = 10u64.pow(k);
            counts.extend([p - 1, p, p + 1]);
        }
        counts.extend([u32::MAX as u64, i64::MAX as u64]);
        // Consecutive minutes, as a row's values are, each count once.
        let changed: Vec<(i64, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, &x)| (27_536_551 - i as i64, x))
            .collect();
        let mut w = PointWriter::new();
        let mut out = BytesMut::new();
        for part in changed.chunks(15) {
            w.counters(
                &mut out,
                (&stat.0, stat.1 as usize),
                (&host.0, host.1 as usize),
                part,
            );
        }
        let want: String = changed
            .iter()
            .map(|(m, x)| format!("request.INVITE,hostname=cp\\ 1 value={x}i {}\n", m * 60))
            .collect();
        assert_eq!(std::str::from_utf8(&out).unwrap(), want);
    }
}
