//! Series: the per-file series index, and each series' ring of its last 16 minutes (the
//! names a series is keyed by are in `names`).

use super::*;

/// A small, fast hash for names and series keys (not DoS-resistant; the input is our own
/// platform's files).
/// Not the `rustc-hash` crate's `FxHasher`: its values differ (no final rotate), and the
/// checkpoint's bytes on disk follow these (`checkpoint::tests::the_hasher_that_orders_the_saved_record_is_pinned`).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    #[inline]
    pub(super) fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 8 {
            self.add(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
            bytes = &bytes[8..];
        }
        if bytes.len() >= 4 {
            self.add(u32::from_le_bytes(bytes[..4].try_into().unwrap()) as u64);
            bytes = &bytes[4..];
        }
        for &b in bytes {
            self.add(b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits depending only on the input's low bits, and the
        // table indexes by low bits: rotate the well-mixed high bits down.
        self.0.rotate_left(26)
    }
}

pub(super) type Fx = BuildHasherDefault<FxHasher>;

/// Series ids by key (`host << 32 | stat`), for one file: one small table per host, keyed by
/// stat. Rows come grouped by host, so the table being looked up stays in the CPU's cache (one
/// table of all series costs a cache miss per row: a fifth of a first snapshot's time). The
/// key is not stored: it is in the series itself (`key_of(id)`), so a slot is the 4-byte id
/// plus hashbrown's control byte (1,000,000 series of 500 hosts: about 10 MB).
#[derive(Default)]
pub(super) struct SeriesIndex {
    pub(super) hosts: Vec<hashbrown::HashTable<u32>>,
    pub(super) len: usize,
    /// The host inserted into last.
    pub(super) last: usize,
}

#[inline]
pub(super) fn series_key(host: u32, stat: u32) -> u64 {
    (host as u64) << 32 | stat as u64
}

#[inline]
pub(super) fn key_hash(key: u64) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(key);
    h.finish()
}

impl SeriesIndex {
    #[inline]
    pub(super) fn get(&self, key: u64, key_of: impl Fn(u32) -> u64) -> Option<u32> {
        let t = self.hosts.get((key >> 32) as usize)?;
        t.find(key_hash(key), |&id| key_of(id) == key).copied()
    }

    /// Adds a series not in the index yet.
    #[inline]
    pub(super) fn insert(&mut self, key: u64, id: u32, key_of: impl Fn(u32) -> u64) {
        let h = (key >> 32) as usize;
        if h >= self.hosts.len() {
            self.hosts.resize_with(h + 1, Default::default);
        }
        if h != self.last {
            // A new host usually has as many stats as the one before: its table is sized
            // once instead of growing (and rehashing) through every power of two.
            let before = self.hosts.get(self.last).map_or(0, |t| t.len());
            if self.hosts[h].is_empty() && before > 0 {
                self.hosts[h].reserve(before, |&id| key_hash(key_of(id)));
            }
            self.last = h;
        }
        self.hosts[h].insert_unique(key_hash(key), id, |&id| key_hash(key_of(id)));
        self.len += 1;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One counters.csv series: the last [`RING`] minutes.
pub(super) struct CSeries {
    pub(super) host: u32,
    pub(super) stat: u32,
    /// The samples series of the same host and stat, or [`NONE`].
    pub(super) link: u32,
    /// Generation of the last snapshot that had this series (duplicate detection).
    pub(super) seen: u32,
    pub(super) top: i64,
    pub(super) mask: u16,
    /// Counts; [`BIG`] means the count is in [`Series::big`].
    pub(super) vals: [u32; RING as usize],
    /// [`Row::keep`] of the last row applied (0: unknown; 48 bits, low 32 here, high 16 in
    /// `keep_hi`, in what would be padding: the series stays 96 bytes): a row whose
    /// [`Row::same_tail`] equals it repeats that row's values, shifted by one minute, but for
    /// the two newest.
    pub(super) keep_lo: u32,
    pub(super) keep_hi: u16,
}

const _: () = assert!(std::mem::size_of::<CSeries>() == 96);

impl CSeries {
    #[inline]
    pub(super) fn keep(&self) -> u64 {
        (self.keep_hi as u64) << 32 | self.keep_lo as u64
    }

    #[inline]
    pub(super) fn set_keep(&mut self, keep: u64) {
        debug_assert!(keep <= crate::csvrow::KEEP_MASK);
        self.keep_lo = keep as u32;
        self.keep_hi = (keep >> 32) as u16;
    }
}

/// Marks a count that does not fit in `u32` (kept in a side table: per-series state stays
/// 96 bytes for the common case).
pub(super) const BIG: u32 = u32::MAX;

/// One samples.csv series.
pub(super) struct SSeries {
    pub(super) host: u32,
    pub(super) stat: u32,
    pub(super) link: u32,
    pub(super) seen: u32,
    pub(super) top: i64,
    /// Minutes with an average.
    pub(super) mask: u16,
    /// Minutes whose point has been written with the current average and `occ`.
    pub(super) emitted: u16,
    pub(super) avg: [f64; RING as usize],
    /// Occurrences the written point used, [`NO_OCC`] when it was written as `value`.
    pub(super) occ: [u64; RING as usize],
    /// As [`CSeries::keep`].
    pub(super) keep: u64,
}

/// A series of either file, by its names.
pub(super) trait HostStat {
    fn host_stat(&self) -> (u32, u32);
}

impl HostStat for CSeries {
    #[inline]
    fn host_stat(&self) -> (u32, u32) {
        (self.host, self.stat)
    }
}

impl HostStat for SSeries {
    #[inline]
    fn host_stat(&self) -> (u32, u32) {
        (self.host, self.stat)
    }
}

/// The series after `last` in `series`, with its stat, when it is the row's (host id `h`, stat
/// named `stat`): rows come in the same order every minute, so it usually is, and the stat
/// name is neither hashed nor looked up.
#[inline]
pub(super) fn predicted<S: HostStat>(
    series: &[S],
    last: u32,
    h: u32,
    stat: &str,
    names: &Names,
) -> Option<(u32, u32)> {
    let pred = last.wrapping_add(1);
    let (host, s) = series.get(pred as usize)?.host_stat();
    (host == h && names.stat_is(s, stat)).then_some((pred, s))
}

/// The minute (index) of value `i` of a row of `n` values whose own minute is `t`.
#[inline]
pub(super) fn minute_of(order: ValueOrder, t: i64, i: usize, n: usize) -> i64 {
    match order {
        ValueOrder::NewestFirst => t - i as i64,
        ValueOrder::OldestFirst => t - (n - 1 - i) as i64,
    }
}

#[inline]
pub(super) fn big_key(id: u32, sl: usize) -> u64 {
    (id as u64) << 8 | sl as u64
}

/// Count of a counters series in ring slot `sl`.
#[inline]
pub(super) fn count(big: &HashMap<u64, u64, Fx>, id: u32, c: &CSeries, sl: usize) -> u64 {
    match c.vals[sl] {
        BIG => big.get(&big_key(id, sl)).copied().unwrap_or(0),
        v => v as u64,
    }
}

#[inline]
pub(super) fn slot(m: i64) -> usize {
    m.rem_euclid(RING) as usize
}

#[inline]
pub(super) fn bit(m: i64) -> u16 {
    1 << slot(m)
}

#[inline]
pub(super) fn has(top: i64, mask: u16, m: i64) -> bool {
    m <= top && m > top - RING && mask & bit(m) != 0
}

/// Moves a ring's newest minute to `t`, forgetting minutes that fall out.
#[inline]
pub(super) fn advance(top: &mut i64, mask: &mut u16, t: i64) {
    if t <= *top {
        return;
    }
    if *top == i64::MIN || t - *top >= RING {
        *mask = 0;
    } else {
        for m in *top + 1..=t {
            *mask &= !bit(m);
        }
    }
    *top = t;
}

/// Both files' series: the index and the array of each, counts too large for the ring, and
/// the guess at the next counters row's stat.
#[derive(Default)]
pub(super) struct Series {
    pub(super) cmap: SeriesIndex,
    pub(super) smap: SeriesIndex,
    pub(super) cs: Vec<CSeries>,
    /// Counts of `u32::MAX` and above, by (series, slot).
    pub(super) big: HashMap<u64, u64, Fx>,
    pub(super) ss: Vec<SSeries>,
    /// Per stat id: the stat of the counters row that last followed one of its rows (a
    /// guess at the next row's stat, checked by name).
    pub(super) stat_after: Vec<u32>,
}
