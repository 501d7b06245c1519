//! The window stage: what the CSV snapshots mean over time.
//!
//! - **Change detection.** Every rewrite of the files repeats up to 14 minutes already seen. Each
//!   (file, host, stat) series keeps the last 16 minutes it saw in a flat ring; a point is
//!   emitted only when its minute is new or its value changed.
//! - **Join.** A samples value for (host, stat, minute) is written as `elapsed_time` (average x
//!   occurrences, float) and `occurrences` (integer) when counters.csv has the same host, stat and
//!   minute. If counters.csv has not reached that minute yet, the value waits (at most
//!   [`TableConfig::join_wait`]); a stat counters.csv does not have is written as `value`.
//!   When the counters value of a minute changes later, the joined samples point is rewritten.
//! - **Rollups.** Per stat and minute across all hosts, in the rollups bucket: counters `sum` and
//!   `hosts` (tag `file=counters`); samples occurrence-weighted `mean`, `p50`/`p90`/`p99` from an
//!   HDR histogram of per-host averages weighted by occurrences, exact `max`, `occurrences` and
//!   `hosts` (tag `file=samples`). A minute is written once it has settled (the newest minute
//!   seen in that file is at least [`TableConfig::settle_minutes`] later), rewritten if a value
//!   of it changes afterwards, and in any case before its data leaves the ring.
//!
//! Hot path: host and stat names are interned once (dense ids, escaped line-protocol forms kept
//! beside them); the series after the previous row's is tried first (rows come in the same
//! order every minute), else one lookup in the row's host's index; per-series state lives in
//! flat arrays; lines are written straight into reused per-bucket buffers handed out in chunks.
//! Nothing is allocated per row once a series exists. A large snapshot
//! ([`TableConfig::parse_ahead_bytes`]) is cut into chunks of whole lines: a second thread
//! parses the next free chunk, this one applies the chunks in file order and parses a free
//! chunk itself whenever the other thread's rows are not ready, so both cores parse when
//! parsing is the slower stage (a rewrite) and the other core parses ahead when applying is
//! (a first snapshot). In a first snapshot the parse thread also faults in the series
//! array's pages just ahead of the applying thread (`prefault`), and in a first counters
//! snapshot it writes part of the points' line protocol: the applying thread records each
//! row's points in jobs, written by whichever thread is free and handed out in order
//! (`defer`).
//! A rewrite's values that repeat the previous rewrite's, shifted by one minute, are recognised
//! by a hash of their text and not parsed or compared again ([`Row::same_tail`], checked
//! against the series' last applied row).
//!
//! State is bounded: 16 minutes per series, 16 minute slots for rollups, one histogram.

mod ahead;
mod defer;
mod points;
mod prefault;
mod state;

pub use ahead::Ahead;
pub use state::TABLE_STATE;

use crate::csvrow::{parse_values, same_name, Kind, Reader, Reason, Row, RowError, Value};
use crate::lineproto::{Field, LineEncoder};
use bytes::{Bytes, BytesMut};
use defer::{Deferred, Job};
use hdrhistogram::Histogram;
use points::{escape_name, PointWriter};
use prefault::{Prefault, Progress};
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Rows per batch handed from the parse stage to the table (about 86 KB), and batches in
/// circulation (allocated once per snapshot by the applying thread, handed back and forth):
/// room for the parse thread to read a whole chunk ([`TableConfig::parse_chunk_bytes`])
/// ahead while the applying thread reads one of its own.
const AHEAD_ROWS: usize = 256;
const AHEAD_BATCHES: usize = 16;

/// What the parse thread hands over: a batch of rows (with how many are filled), or the end
/// of a chunk (its records, the line after it and its memo).
enum Parsed<'a> {
    Rows(Vec<Ahead<'a>>, usize),
    Chunk(u64, u64, Vec<u32>),
}

/// The text of a job of counters points ([`defer`]) written by the parse thread: its number,
/// text and points, and the emptied job. On a channel of its own, not behind rows.
struct Written(u64, (Bytes, usize), Job);

/// What the applying thread hands the parse thread: an empty batch to fill, or a job of
/// counters points to write ([`defer`]).
enum Back<'a> {
    Batch(Vec<Ahead<'a>>),
    Job(u64, Job),
}

/// The starts of the chunks of about `size` bytes of whole lines that `data[..end]` is cut
/// into, and `end` last.
fn chunk_starts(data: &[u8], end: usize, size: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    let mut at = 0;
    while end - at > size {
        match memchr::memchr(b'\n', &data[at + size.max(1) - 1..end]) {
            Some(i) if at + size.max(1) + i < end => {
                at += size.max(1) + i;
                cuts.push(at);
            }
            _ => break,
        }
    }
    cuts.push(end);
    cuts
}
/// Adds the counts of series `cs` (ids from `first`) in the minutes of `mask` (as [`bit`]s of
/// the window ending at `top`) to `csum` (sum, hosts) by `stat * RING + slot`.
fn sum_series(
    cs: &[CSeries],
    first: usize,
    big: &HashMap<u64, u64, Fx>,
    top: i64,
    mask: u16,
    csum: &mut [(u64, i64)],
) {
    for (i, c) in cs.iter().enumerate() {
        add_series(c, (first + i) as u32, big, top, mask, csum);
    }
}

/// Adds the counts of series `c` (id `id`) in the minutes of `mask` (as [`bit`]s of the window
/// ending at `top`) to `csum` (sum, hosts) by `stat * RING + slot`.
#[inline]
fn add_series(
    c: &CSeries,
    id: u32,
    big: &HashMap<u64, u64, Fx>,
    top: i64,
    mask: u16,
    csum: &mut [(u64, i64)],
) {
    let mut live = c.mask & mask;
    if c.top != top {
        // A series behind or ahead of the file's minute: its mask bits are not the
        // window's minutes.
        live = 0;
        for m in top - RING + 1..=top {
            if mask & bit(m) != 0 && has(c.top, c.mask, m) {
                live |= bit(m);
            }
        }
    }
    let row = &mut csum[c.stat as usize * RING as usize..][..RING as usize];
    while live != 0 {
        let sl = live.trailing_zeros() as usize;
        live &= live - 1;
        add_count(&mut row[sl], count(big, id, c, sl));
    }
}

/// Counters rollups summed while a snapshot's rows are applied (see [`Table::sum_counters`]):
/// each series is added once its row has changed it, so the pass over every series after the
/// rows is not needed when every series had a row.
#[derive(Default)]
struct RowSums {
    /// (sum, hosts) by `stat * RING + slot`.
    sums: Vec<(u64, i64)>,
    /// The minutes summed (as [`bit`]s of the window ending at `top`); 0: not summing.
    mask: u16,
    top: i64,
    /// Series added.
    added: usize,
    /// The sums hold every series (the last counters snapshot had a row for each, and no
    /// series changed since).
    whole: bool,
}

impl RowSums {
    /// Adds series `c` (id `id`), just changed by its row.
    #[inline]
    fn add(&mut self, c: &CSeries, id: u32, big: &HashMap<u64, u64, Fx>) {
        self.fit(c.stat);
        add_series(c, id, big, self.top, self.mask, &mut self.sums);
        self.added += 1;
    }

    /// Adds a new series of stat `stat` whose points are `changed` (minute, count): the same
    /// as [`RowSums::add`] of it, from the values at hand.
    #[inline]
    fn add_new(&mut self, stat: u32, changed: &[(i64, u64)]) {
        self.fit(stat);
        let row = &mut self.sums[stat as usize * RING as usize..][..RING as usize];
        for &(m, x) in changed {
            if m > self.top - RING && m <= self.top && self.mask & bit(m) != 0 {
                add_count(&mut row[slot(m)], x);
            }
        }
        self.added += 1;
    }

    /// Room for the sums of stat `stat` (a stat first seen in this snapshot).
    #[inline]
    fn fit(&mut self, stat: u32) {
        let need = (stat as usize + 1) * RING as usize;
        if self.sums.len() < need {
            self.sums.resize(need, (0, 0));
        }
    }
}

/// Adds a host's count to a rollup's (sum, hosts).
#[inline]
fn add_count((sum, hosts): &mut (u64, i64), x: u64) {
    *sum = sum.saturating_add(x);
    *hosts += 1;
}

/// Minutes kept per series: the 15 of a file plus one, so a minute is still known when the
/// other file is one rewrite ahead.
pub const RING: i64 = 16;
const NONE: u32 = u32::MAX;
const NO_OCC: u64 = u64::MAX;
/// HDR histogram unit: averages are recorded in thousandths (the files print 3 decimals).
pub const HDR_SCALE: f64 = 1000.0;
/// Highest recordable value in HDR units (1e12 = 1e9 in file units); larger values are clamped.
pub const HDR_HIGH: u64 = 1_000_000_000_000;
/// Significant digits of the HDR histogram (relative error at most 0.1%).
pub const HDR_SIGFIG: u8 = 3;

/// How `v0..v14` map to minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueOrder {
    /// `v_i` belongs to the row's minute minus `i` minutes.
    #[default]
    NewestFirst,
    /// The last value belongs to the row's minute, `v_i` to that minute minus `(n - 1 - i)`.
    OldestFirst,
}

/// The knobs of the window stage.
#[derive(Debug, Clone)]
pub struct TableConfig {
    pub value_order: ValueOrder,
    /// How long a samples value waits for the counters value of its minute.
    pub join_wait: Duration,
    /// A minute's rollups are written once the file's newest minute is this many minutes later.
    pub settle_minutes: i64,
    /// Output is handed to the sink in chunks of about this many bytes.
    pub chunk_bytes: usize,
    /// A row whose minute is more than this many minutes ahead of the wall clock is rejected
    /// ([`Reason::Future`]).
    pub future_minutes: i64,
    /// A snapshot of at least this many bytes is parsed on a second thread while this one
    /// applies its rows (`usize::MAX`: never).
    pub parse_ahead_bytes: usize,
    /// Such a snapshot is cut into chunks of whole lines of about this many bytes, each
    /// parsed by whichever thread is free first and applied in file order.
    pub parse_chunk_bytes: usize,
    /// With at least this many counters series, the pass over all of them that sums the
    /// rollups of minutes settled for the first time runs on two threads.
    pub parallel_series: usize,
    /// What the snapshots are (the pipeline puts the directory and the file names here): a
    /// saved table state is restored only into a table of the same source.
    pub source: String,
    /// Values a rewrite repeats from the previous one are recognised by hash and not parsed
    /// again ([`Reader::with_memo`]); `false` parses every value (a reference for tests).
    pub skip_repeats: bool,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            value_order: ValueOrder::NewestFirst,
            join_wait: Duration::from_secs(30),
            settle_minutes: 14,
            chunk_bytes: 256 * 1024,
            future_minutes: 5,
            parse_ahead_bytes: 1 << 20,
            parse_chunk_bytes: 256 * 1024,
            parallel_series: 1 << 16,
            source: String::new(),
            skip_repeats: true,
        }
    }
}

/// Which bucket a chunk of lines belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Counters,
    Samples,
    Rollups,
}

impl Bucket {
    pub const ALL: [Bucket; 3] = [Bucket::Counters, Bucket::Samples, Bucket::Rollups];
}

/// What to do with a last line that has no newline (it may be a row still being written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Leave it for a later snapshot.
    Wait,
    /// The file has been quiet for the quiet time: the line is a row if the snapshot passes
    /// the completeness rule ([`Table::ingest_at`]).
    Quiet,
    /// No more writes will come (`--once`): the line is a row.
    Complete,
}

/// Receives whole lines of one bucket and how many points they hold.
pub type Emit<'e> = dyn FnMut(Bucket, Bytes, usize) + 'e;

/// What one snapshot held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Records read (non-blank lines of the parsable part): always `rows + bad_total()`.
    pub records: u64,
    /// Good rows.
    pub rows: u64,
    /// Skipped rows per [`Reason`] (indexed by [`Reason::index`]).
    pub bad: [u64; Reason::COUNT],
    /// The first few skipped rows, with line and byte.
    pub first_errors: Vec<RowError>,
    /// Bytes left at the end because the last line may still be being written.
    pub incomplete_tail: usize,
    /// Points written while ingesting this snapshot, per bucket (counters, samples, rollups).
    pub points: [u64; 3],
    /// Good rows whose older values repeated their series' previous row, shifted by a minute:
    /// only the two newest were parsed ([`Reader::with_memo`]).
    pub repeats: u64,
    /// Rows the parse stage took for repeats whose series had not applied the row they
    /// repeat (a new series, or its previous row was rejected): all values parsed here.
    pub reparsed: u64,
}

impl FileReport {
    /// Reason and line of each row in [`FileReport::first_errors`].
    #[cfg(test)]
    fn first_reasons(&self) -> Vec<(Reason, u64)> {
        self.first_errors
            .iter()
            .map(|e| (e.reason, e.line))
            .collect()
    }

    /// How many skipped rows are kept in [`FileReport::first_errors`].
    pub const FIRST_ERRORS: usize = 5;

    pub fn bad_total(&self) -> u64 {
        self.bad.iter().sum()
    }

    fn skip(&mut self, e: RowError) {
        self.bad[e.reason.index()] += 1;
        if self.first_errors.len() < Self::FIRST_ERRORS {
            self.first_errors.push(e);
        }
    }
}

/// A small, fast hash for names and series keys (not DoS-resistant; the input is our own
/// platform's files).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
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

type Fx = BuildHasherDefault<FxHasher>;

/// Interned names with their escaped line-protocol forms.
#[derive(Default)]
struct Names {
    map: HashMap<Box<[u8]>, u32, Fx>,
    raw: Vec<Box<str>>,
    /// Escaped forms, each followed by [`points::NAME_PAD`] zero bytes (copied in whole 32-byte
    /// blocks, [`points::copy_blocks`]); their lengths in `esc_len`.
    esc: Vec<Box<[u8]>>,
    esc_len: Vec<u32>,
}

impl Names {
    #[inline]
    fn id(&mut self, s: &str, enc: &mut LineEncoder, host: bool) -> u32 {
        if let Some(&id) = self.map.get(s.as_bytes()) {
            return id;
        }
        let id = self.raw.len() as u32;
        let (esc, len) = escape_name(enc, s, host);
        self.map.insert(s.as_bytes().into(), id);
        self.raw.push(s.into());
        self.esc.push(esc);
        self.esc_len.push(len);
        id
    }

    /// The escaped line-protocol form of name `id`.
    #[inline]
    fn esc(&self, id: u32) -> &[u8] {
        &self.esc[id as usize][..self.esc_len[id as usize] as usize]
    }
}

/// Series ids by key (`host << 32 | stat`), for one file: one small table per host, keyed by
/// stat. Rows come grouped by host, so the table being looked up stays in the CPU's cache (one
/// table of all series costs a cache miss per row: a fifth of a first snapshot's time). The
/// key is not stored: it is in the series itself (`key_of(id)`), so a slot is the 4-byte id
/// plus hashbrown's control byte (1,000,000 series of 500 hosts: about 10 MB).
#[derive(Default)]
struct SeriesIndex {
    hosts: Vec<hashbrown::HashTable<u32>>,
    len: usize,
    /// The host inserted into last.
    last: usize,
}

#[inline]
fn series_key(host: u32, stat: u32) -> u64 {
    (host as u64) << 32 | stat as u64
}

#[inline]
fn key_hash(key: u64) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(key);
    h.finish()
}

impl SeriesIndex {
    #[inline]
    fn get(&self, key: u64, key_of: impl Fn(u32) -> u64) -> Option<u32> {
        let t = self.hosts.get((key >> 32) as usize)?;
        t.find(key_hash(key), |&id| key_of(id) == key).copied()
    }

    /// Adds a series not in the index yet.
    #[inline]
    fn insert(&mut self, key: u64, id: u32, key_of: impl Fn(u32) -> u64) {
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

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One counters.csv series: the last [`RING`] minutes.
struct CSeries {
    host: u32,
    stat: u32,
    /// The samples series of the same host and stat, or [`NONE`].
    link: u32,
    /// Generation of the last snapshot that had this series (duplicate detection).
    seen: u32,
    top: i64,
    mask: u16,
    /// Counts; [`BIG`] means the count is in [`Table::big`].
    vals: [u32; RING as usize],
    /// [`Row::keep`] of the last row applied (0: unknown; 48 bits, low 32 here, high 16 in
    /// `keep_hi`, in what would be padding: the series stays 96 bytes): a row whose
    /// [`Row::same_tail`] equals it repeats that row's values, shifted by one minute, but for
    /// the two newest.
    keep_lo: u32,
    keep_hi: u16,
}

// 96 bytes a series (the state memory documented in docs/ingest.md).
const _: () = assert!(std::mem::size_of::<CSeries>() == 96);

impl CSeries {
    #[inline]
    fn keep(&self) -> u64 {
        (self.keep_hi as u64) << 32 | self.keep_lo as u64
    }

    #[inline]
    fn set_keep(&mut self, keep: u64) {
        debug_assert!(keep <= crate::csvrow::KEEP_MASK);
        self.keep_lo = keep as u32;
        self.keep_hi = (keep >> 32) as u16;
    }
}

/// Marks a count that does not fit in `u32` (kept in a side table: per-series state stays
/// 96 bytes for the common case).
const BIG: u32 = u32::MAX;

/// One samples.csv series.
struct SSeries {
    host: u32,
    stat: u32,
    link: u32,
    seen: u32,
    top: i64,
    /// Minutes with an average.
    mask: u16,
    /// Minutes whose point has been written with the current average and `occ`.
    emitted: u16,
    avg: [f64; RING as usize],
    /// Occurrences the written point used, [`NO_OCC`] when it was written as `value`.
    occ: [u64; RING as usize],
    /// As [`CSeries::keep`].
    keep: u64,
}

/// The minute (index) of value `i` of a row of `n` values whose own minute is `t`.
#[inline]
fn minute_of(order: ValueOrder, t: i64, i: usize, n: usize) -> i64 {
    match order {
        ValueOrder::NewestFirst => t - i as i64,
        ValueOrder::OldestFirst => t - (n - 1 - i) as i64,
    }
}

#[inline]
fn big_key(id: u32, sl: usize) -> u64 {
    (id as u64) << 8 | sl as u64
}

/// Count of a counters series in ring slot `sl`.
#[inline]
fn count(big: &HashMap<u64, u64, Fx>, id: u32, c: &CSeries, sl: usize) -> u64 {
    match c.vals[sl] {
        BIG => big.get(&big_key(id, sl)).copied().unwrap_or(0),
        v => v as u64,
    }
}

#[inline]
fn slot(m: i64) -> usize {
    m.rem_euclid(RING) as usize
}

#[inline]
fn bit(m: i64) -> u16 {
    1 << slot(m)
}

#[inline]
fn has(top: i64, mask: u16, m: i64) -> bool {
    m <= top && m > top - RING && mask & bit(m) != 0
}

/// Moves a ring's newest minute to `t`, forgetting minutes that fall out.
#[inline]
fn advance(top: &mut i64, mask: &mut u16, t: i64) {
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

#[derive(Clone, Copy)]
struct RollSlot {
    minute: i64,
    written: bool,
}

struct Pending {
    sid: u32,
    minute: i64,
    deadline: Instant,
}

/// Change detection, join and rollups over successive snapshots of both files.
pub struct Table {
    cfg: TableConfig,
    hosts: Names,
    stats: Names,
    name_enc: LineEncoder,
    cmap: SeriesIndex,
    smap: SeriesIndex,
    cs: Vec<CSeries>,
    /// Counts of `u32::MAX` and above, by (series, slot).
    big: HashMap<u64, u64, Fx>,
    ss: Vec<SSeries>,
    /// Series of each stat id, per file: ids below `members_upto` (a new series is added in
    /// one pass when the members are next needed, [`Table::sync_members`], not by a random
    /// write per new row).
    members: [Vec<Vec<u32>>; 2],
    members_upto: [usize; 2],
    /// Per stat id: ring slots whose written rollup is out of date, per file.
    dirty: [Vec<u16>; 2],
    roll: [[RollSlot; RING as usize]; 2],
    /// The file's newest minute, per file: the minute most of its valid rows carry in the
    /// latest snapshot (settling is counted from it; one odd row cannot move it).
    top: [i64; 2],
    /// The newest minute any series of the file holds: minutes older than this minus
    /// [`RING`] have left the rings, so their rollups are written before it moves.
    horizon: [i64; 2],
    /// Per file: a snapshot ended in a newline once (the platform ends its rows with one),
    /// and the record count of the last snapshot.
    ends_nl: [bool; 2],
    last_records: [u64; 2],
    gen: [u32; 2],
    /// Series of the previous row, per file; host of the previous row.
    last: [u32; 2],
    last_host: u32,
    /// Per stat id: the stat of the counters row that last followed one of its rows (a
    /// guess at the next row's stat, checked by name).
    stat_after: Vec<u32>,
    pending: VecDeque<Pending>,
    out: [BytesMut; 2],
    out_points: [usize; 2],
    rollups: LineEncoder,
    points: PointWriter,
    /// A first snapshot's counters points, recorded to be written by either thread
    /// ([`defer`]); `None`: written at once.
    defer: Option<Deferred>,
    hist: Histogram<u64>,
    written: [u64; 3],
    /// Counters rollups (sum, hosts) computed in one pass over all series for the minutes
    /// being settled for the first time, by `stat * RING + slot`; valid for the slots whose
    /// minute is in `csum_minute` (see [`Table::sum_counters`]).
    csum: Vec<(u64, i64)>,
    /// The second thread's sums ([`TableConfig::parallel_series`]).
    csum_other: Vec<(u64, i64)>,
    csum_minute: [i64; RING as usize],
    /// Counters rollups summed while the rows are applied.
    row_sums: RowSums,
    /// The parse stage's memo per file ([`Reader::with_memo`]).
    memo: [Vec<u32>; 2],
    /// Rows applied as repeats, and rows taken for repeats but parsed in full (see
    /// [`FileReport::repeats`]).
    repeats: [u64; 2],
    /// Where the last snapshot's time went ([`Table::last_phases`]).
    phases: Phases,
}

/// Wall time of the phases of one snapshot ([`Table::last_phases`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Reading the rows and applying them (parse, validation, change detection, line
    /// protocol of the points), on one or two threads.
    pub rows: Duration,
    /// What follows the rows: the joins released and the rollups of settled minutes.
    pub rollups: Duration,
}

fn k(kind: Kind) -> usize {
    match kind {
        Kind::Counters => 0,
        Kind::Samples => 1,
    }
}

impl Table {
    pub fn new(cfg: TableConfig) -> Self {
        let empty = [RollSlot {
            minute: i64::MIN,
            written: false,
        }; RING as usize];
        Table {
            hosts: Names::default(),
            stats: Names::default(),
            name_enc: LineEncoder::with_capacity(256),
            cmap: SeriesIndex::default(),
            smap: SeriesIndex::default(),
            cs: Vec::new(),
            big: HashMap::default(),
            ss: Vec::new(),
            members: [Vec::new(), Vec::new()],
            members_upto: [0; 2],
            dirty: [Vec::new(), Vec::new()],
            roll: [empty, empty],
            top: [i64::MIN; 2],
            horizon: [i64::MIN; 2],
            ends_nl: [false; 2],
            last_records: [0; 2],
            gen: [0; 2],
            last: [NONE; 2],
            last_host: NONE,
            stat_after: Vec::new(),
            pending: VecDeque::new(),
            out: [
                BytesMut::with_capacity(cfg.chunk_bytes + 4096),
                BytesMut::with_capacity(cfg.chunk_bytes + 4096),
            ],
            out_points: [0; 2],
            rollups: LineEncoder::with_capacity(64 * 1024),
            points: PointWriter::new(),
            defer: None,
            hist: {
                // Grows to the largest average recorded (at most HDR_HIGH, values are clamped
                // to it), so clearing it per stat and minute costs no more than that needs;
                // the buckets, hence the quantiles, are those of the 1..HDR_HIGH histogram.
                let mut h =
                    Histogram::new_with_bounds(1, 2048, HDR_SIGFIG).expect("valid HDR bounds");
                h.auto(true);
                h
            },
            written: [0; 3],
            csum: Vec::new(),
            csum_other: Vec::new(),
            csum_minute: [i64::MIN; RING as usize],
            row_sums: RowSums::default(),
            memo: [Vec::new(), Vec::new()],
            repeats: [0; 2],
            phases: Phases::default(),
            cfg,
        }
    }

    /// The wall time of the phases of the last [`Table::ingest_at`] (for the log and the
    /// benchmark's breakdown).
    pub fn last_phases(&self) -> Phases {
        self.phases
    }

    /// Series known so far (counters, samples).
    pub fn series(&self) -> (usize, usize) {
        (self.cs.len(), self.ss.len())
    }

    /// Points written since the table was created (counters, samples, rollups).
    pub fn points_written(&self) -> [u64; 3] {
        self.written
    }

    /// Reads one whole-file snapshot and writes what is new or changed, with the wall clock
    /// read from the system. `tail_complete`: [`Tail::Complete`] if true, else [`Tail::Wait`].
    pub fn ingest(
        &mut self,
        kind: Kind,
        data: &[u8],
        tail_complete: bool,
        now: Instant,
        emit: &mut Emit<'_>,
    ) -> FileReport {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let tail = if tail_complete {
            Tail::Complete
        } else {
            Tail::Wait
        };
        self.ingest_at(kind, data, tail, now, wall, emit)
    }

    /// Reads one whole-file snapshot and writes what is new or changed. `wall` is the wall
    /// clock in unix seconds (rows more than [`TableConfig::future_minutes`] ahead of it are
    /// rejected); `now` drives the join wait.
    ///
    /// Every row is validated before it changes any state: its minute must not be in the
    /// future ([`Reason::Future`]) nor older than the file's window ([`Reason::TooOld`]), and
    /// its series must not have had a row in this snapshot ([`Reason::Duplicate`]). The
    /// file's newest minute is the minute most valid rows carry (all rows of a small file, an
    /// even sample of 1,024 rows of a large one), decided before any row is applied.
    ///
    /// Completeness: a last line without a newline is a row only with [`Tail::Complete`], or
    /// with [`Tail::Quiet`] when the file has never been seen ending in a newline, the line has
    /// as many values as the line before it, and the snapshot has at least as many records as
    /// the previous one (a half-written file has fewer).
    pub fn ingest_at(
        &mut self,
        kind: Kind,
        data: &[u8],
        tail: Tail,
        now: Instant,
        wall: i64,
        emit: &mut Emit<'_>,
    ) -> FileReport {
        let started = Instant::now();
        let before = self.written;
        let mut rep = FileReport::default();
        let f = k(kind);
        if kind == Kind::Counters {
            // The series are about to change.
            self.row_sums.whole = false;
            self.row_sums.mask = 0;
        }
        let g = &mut self.gen[f];
        *g = g.wrapping_add(1);
        let gen = *g;
        // First snapshot of a file: size the series array once instead of growing it.
        let known = match kind {
            Kind::Counters => self.cs.len(),
            Kind::Samples => self.ss.len(),
        };
        if known == 0 {
            // Rows estimated from the first 64 KiB, with a quarter more: counting every
            // newline took 15 ms at 1,000,000 rows, and memory reserved but never written is
            // not resident (a file of shorter rows further on grows the array).
            let sample = &data[..data.len().min(1 << 16)];
            let lines = memchr::memchr_iter(b'\n', sample).count() + 1;
            let rows = (data.len() as u128 * lines as u128 * 5 / 4 / sample.len().max(1) as u128)
                .min(data.len() as u128 / 2 + 1) as usize;
            match kind {
                Kind::Counters => self.cs.reserve_exact(rows),
                Kind::Samples => self.ss.reserve_exact(rows),
            }
        }
        // A first snapshot: the array's spare room, and where it is (see `prefault`).
        let series_at = self.series_len_at(kind).1;
        let mut prefault = (known == 0).then(|| match kind {
            Kind::Counters => Prefault::spare(&mut self.cs),
            Kind::Samples => Prefault::spare(&mut self.ss),
        });
        if data.last() == Some(&b'\n') {
            self.ends_nl[f] = true;
        }
        let tail_ok = match tail {
            Tail::Wait => false,
            Tail::Complete => true,
            Tail::Quiet => self.tail_is_complete(kind, data),
        };
        let latest = wall.div_euclid(60) + self.cfg.future_minutes;
        let newest_first = self.cfg.value_order == ValueOrder::NewestFirst;
        // The previous snapshot's memo is read while this one's is written (sized once:
        // growing it would hold both sizes at once).
        let prev = std::mem::take(&mut self.memo[f]);
        let memo_on = self.cfg.skip_repeats;
        let memo_cap = if memo_on {
            prev.len() + prev.len() / 16 + 16
        } else {
            0
        };
        let pipelined = data.len() >= self.cfg.parse_ahead_bytes;
        let mut reader = Reader::new(data, kind, tail_ok);
        if memo_on && !pipelined {
            reader = reader.with_memo(&prev, Vec::with_capacity(memo_cap), newest_first);
        }
        let repeats_before = self.repeats;
        if let Some((m, n, total)) = file_minute(&data[..reader.parsable_len()], kind, latest) {
            // Back only with a strict majority: a few odd rows (or half a file) cannot.
            if m >= self.top[f] || 2 * n > total {
                self.set_file_minute(kind, m);
            }
        }
        let oldest = match self.top[f] {
            i64::MIN => i64::MIN,
            t => t - RING,
        };
        if kind == Kind::Counters {
            self.start_row_sums(known == 0);
        }
        // Rows by reference: a row is about 300 bytes, not copied again on its way.
        let mut apply = |t: &mut Table, r: Result<&Row<'_>, RowError>| match r {
            Err(e) => rep.skip(e),
            Ok(row) => {
                let m = row.minute() / 60;
                let res = if m > latest {
                    Err(Reason::Future)
                } else if m <= oldest {
                    Err(Reason::TooOld)
                } else {
                    match kind {
                        Kind::Counters => t.counters_row(row, gen, now),
                        Kind::Samples => t.samples_row(row, gen, now),
                    }
                };
                match res {
                    Ok(()) => rep.rows += 1,
                    Err(reason) => rep.skip(RowError {
                        reason,
                        line: row.line,
                        byte: row.byte,
                        field: 4,
                    }),
                }
                if t.out[0].len() >= t.cfg.chunk_bytes
                    || t.out[1].len() >= t.cfg.chunk_bytes
                    || t.defer.as_ref().is_some_and(|d| !d.ready.is_empty())
                {
                    t.flush(emit);
                }
            }
        };
        let (records, incomplete_tail, memo) = if pipelined {
            // Both cores: the snapshot is cut into chunks of whole lines, read in order. A
            // scoped thread claims the next chunk and parses its rows (borrowed from the
            // snapshot) into batches; this thread applies the chunks in file order, and a chunk
            // nobody has claimed when its turn comes it claims, parses and applies itself. So
            // when parsing is the slower stage (a rewrite, mostly repeats) both cores parse,
            // and when applying is (a first snapshot) the other core parses ahead.
            let end = reader.parsable_len();
            let tail = reader.incomplete_tail();
            // A first counters snapshot: its points are written by either thread ([`defer`]).
            if known == 0 && kind == Kind::Counters {
                self.defer = Some(Deferred::new(self.cfg.chunk_bytes));
            }
            let cuts = chunk_starts(data, end, self.cfg.parse_chunk_bytes);
            let chunks = cuts.len() - 1;
            let claim = AtomicUsize::new(0);
            let (claim, cuts, prev) = (&claim, &cuts[..], &prev[..]);
            let read_chunk = move |c: usize, line: u64, memo: Vec<u32>| {
                let r = Reader::range(data, kind, cuts[c], cuts[c + 1], line);
                if memo_on {
                    r.with_memo(prev, memo, newest_first)
                } else {
                    r
                }
            };
            let mut quoted = Reader::new(data, kind, tail_ok);
            // A first snapshot: the parse thread faults in the series array's pages just
            // ahead of this thread, which stores a series per row ([`prefault`]).
            let progress = Progress::new();
            let progress = &progress;
            // Jobs of points the parse thread has written ([`defer`]; their text may still be
            // behind rows in the channel).
            let jobs_written = AtomicUsize::new(0);
            let jobs_written = &jobs_written;
            let mut records = 0;
            let mut memo = Vec::with_capacity(memo_cap);
            // The memo of the chunk starting on `line`, put in place.
            let add_memo = |memo: &mut Vec<u32>, line: u64, part: &[u32]| {
                if memo_on && !part.is_empty() {
                    memo.resize(line as usize - 1, 0);
                    memo.extend_from_slice(part);
                }
            };
            std::thread::scope(|sc| {
                let (tx, rx) = std::sync::mpsc::channel::<Parsed<'_>>();
                let (written_tx, written) = std::sync::mpsc::channel::<Written>();
                let (back, spare) = std::sync::mpsc::channel::<Back<'_>>();
                for _ in 0..AHEAD_BATCHES {
                    let _ = back.send(Back::Batch(vec![Ahead::Row(Row::EMPTY); AHEAD_ROWS]));
                }
                let (mem_back, mem_spare) = std::sync::mpsc::channel::<Vec<u32>>();
                sc.spawn(move || {
                    // `next_batch`: an empty batch to fill (`None`: the applying thread is
                    // done). Everything handed over so far is taken first: jobs of points are
                    // written and their text handed back, batches put aside. So a job waits
                    // only for the batch being parsed, not for the batches queued before it.
                    let mut writer: Option<PointWriter> = None;
                    let mut write_job = |seq: u64, mut job: Job| {
                        let text = job.write(writer.get_or_insert_with(PointWriter::new));
                        jobs_written.fetch_add(1, Ordering::Relaxed);
                        written_tx.send(Written(seq, text, job)).ok()
                    };
                    let mut batches: Vec<Vec<Ahead<'_>>> = Vec::new();
                    let mut next_batch = || {
                        while let Ok(got) = spare.try_recv() {
                            match got {
                                Back::Batch(b) => batches.push(b),
                                Back::Job(seq, job) => write_job(seq, job)?,
                            }
                        }
                        if let Some(b) = batches.pop() {
                            return Some(b);
                        }
                        loop {
                            match spare.recv().ok()? {
                                Back::Batch(b) => return Some(b),
                                Back::Job(seq, job) => write_job(seq, job)?,
                            }
                        }
                    };
                    // The first line of chunk `known` (lines of chunks claimed by the other
                    // thread are counted, not parsed).
                    let (mut known, mut line) = (0, 1u64);
                    loop {
                        let c = claim.fetch_add(1, Ordering::Relaxed);
                        if c >= chunks {
                            // Jobs until the applying thread is done.
                            while next_batch().is_some() {}
                            return;
                        }
                        line +=
                            memchr::memchr_iter(b'\n', &data[cuts[known]..cuts[c]]).count() as u64;
                        let mut reader =
                            read_chunk(c, line, mem_spare.try_recv().unwrap_or_default());
                        if let Some(p) = prefault.as_mut() {
                            p.ahead_of(progress);
                        }
                        // Waits for an empty batch: memory in flight stays AHEAD_BATCHES batches.
                        let Some(mut batch) = next_batch() else {
                            return;
                        };
                        let mut n = 0;
                        while reader.next_ahead_into(&mut batch[n]) {
                            n += 1;
                            if n == AHEAD_ROWS {
                                if let Some(p) = prefault.as_mut() {
                                    p.ahead_of(progress);
                                }
                                let Some(next) = next_batch() else { return };
                                if tx
                                    .send(Parsed::Rows(std::mem::replace(&mut batch, next), n))
                                    .is_err()
                                {
                                    return;
                                }
                                n = 0;
                            }
                        }
                        let _ = tx.send(Parsed::Rows(batch, n));
                        line = reader.next_line();
                        known = c + 1;
                        let done = Parsed::Chunk(reader.records(), line, reader.take_memo());
                        if tx.send(done).is_err() {
                            return;
                        }
                    }
                });
                // Records in file order, whoever parsed them.
                let mut apply_ahead = |t: &mut Table, a: &Ahead<'_>| match a {
                    Ahead::Row(r) => apply(t, Ok(r)),
                    Ahead::Bad(e) => apply(t, Err(*e)),
                    Ahead::Quoted(start, at) => {
                        let r = quoted.quoted_line(*start, *at);
                        apply(t, r.as_ref().map_err(|e| *e));
                    }
                };
                // Once a job of points holds about a chunk of text, it goes to the parse thread,
                // or is written here while the parse thread has enough ([`defer`]).
                // The parse thread's texts: those there are (`wait`: and, if none, the next
                // one, unless none is away or the parse thread is gone).
                let take_written = |d: &mut Deferred, wait: bool| {
                    let got = match written.try_recv() {
                        Ok(w) => Some(w),
                        Err(_) if wait && d.away() > 0 => written.recv().ok(),
                        Err(_) => None,
                    };
                    let Some(Written(seq, text, job)) = got else {
                        return false;
                    };
                    d.answered(seq, text, job);
                    while let Ok(Written(seq, text, job)) = written.try_recv() {
                        d.answered(seq, text, job);
                    }
                    true
                };
                let hand_off = |t: &mut Table| {
                    let Some(d) = t.defer.as_mut() else { return };
                    take_written(d, false);
                    // At most MAX_EARLY texts wait for one the parse thread is writing.
                    while d.early() >= Deferred::MAX_EARLY && take_written(d, true) {}
                    while let Some((seq, job)) = d.next_full() {
                        if !d.may_send(jobs_written.load(Ordering::Relaxed)) {
                            d.write_here(seq, job, &mut t.points);
                            continue;
                        }
                        match back.send(Back::Job(seq, job)) {
                            Ok(()) => d.sent(),
                            Err(std::sync::mpsc::SendError(Back::Job(seq, job))) => {
                                d.write_here(seq, job, &mut t.points)
                            }
                            Err(_) => unreachable!("a job was sent"),
                        }
                    }
                };
                // A chunk this thread claimed: parsed into `own` (reused), applied in its turn.
                let mut own: Vec<Ahead<'_>> = Vec::new();
                let mut own_chunk: Option<(usize, usize, u64, u64, Vec<u32>)> = None;
                let parse_own = |own: &mut Vec<_>, c: usize, line: u64| {
                    let mut reader = read_chunk(c, line, Vec::new());
                    let mut n = 0;
                    loop {
                        if n == own.len() {
                            own.push(Ahead::Row(Row::EMPTY));
                        }
                        if !reader.next_ahead_into(&mut own[n]) {
                            break;
                        }
                        n += 1;
                    }
                    (
                        c,
                        n,
                        reader.records(),
                        reader.next_line(),
                        reader.take_memo(),
                    )
                };
                // The first line of chunk `c`.
                let mut line = 1u64;
                for c in 0..chunks {
                    if own_chunk.is_none()
                        && claim
                            .compare_exchange(c, c + 1, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        own_chunk = Some(parse_own(&mut own, c, line));
                    }
                    if let Some((_, n, recs, next, part)) = own_chunk.take_if(|o| o.0 == c) {
                        for rows in own[..n].chunks(AHEAD_ROWS) {
                            for a in rows {
                                apply_ahead(self, a);
                            }
                            hand_off(self);
                        }
                        let (len, at) = self.series_len_at(kind);
                        progress.publish(len - known, at != series_at);
                        records += recs;
                        add_memo(&mut memo, line, &part);
                        line = next;
                        continue;
                    }
                    // The other thread's: while none of its rows are ready, this thread
                    // parses the next chunk nobody has claimed (one at a time).
                    loop {
                        let parsed = match rx.try_recv() {
                            Ok(p) => p,
                            Err(std::sync::mpsc::TryRecvError::Empty) => {
                                if own_chunk.is_none() {
                                    let c2 = claim.fetch_add(1, Ordering::Relaxed);
                                    if c2 < chunks {
                                        let at = line
                                            + memchr::memchr_iter(b'\n', &data[cuts[c]..cuts[c2]])
                                                .count()
                                                as u64;
                                        own_chunk = Some(parse_own(&mut own, c2, at));
                                        continue;
                                    }
                                }
                                match rx.recv() {
                                    Ok(p) => p,
                                    Err(_) => break,
                                }
                            }
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                        };
                        match parsed {
                            Parsed::Rows(batch, n) => {
                                for a in &batch[..n] {
                                    apply_ahead(self, a);
                                }
                                let (len, at) = self.series_len_at(kind);
                                progress.publish(len - known, at != series_at);
                                let _ = back.send(Back::Batch(batch));
                                hand_off(self);
                            }
                            Parsed::Chunk(n, next, part) => {
                                records += n;
                                add_memo(&mut memo, line, &part);
                                let _ = mem_back.send(part);
                                line = next;
                                break;
                            }
                        }
                    }
                }
                // The last job is written here, and every job away is answered.
                hand_off(self);
                if let Some(d) = self.defer.as_mut() {
                    d.write_last(&mut self.points);
                    // Stops early only if the parse thread panicked (the scope passes it on).
                    while d.away() > 0 && take_written(d, true) {}
                }
            });
            (records, tail, memo)
        } else {
            while let Some(r) = reader.next() {
                apply(self, r.as_ref().map_err(|e| *e));
            }
            (
                reader.records(),
                reader.incomplete_tail(),
                reader.take_memo(),
            )
        };
        let rows_done = Instant::now();
        if kind == Kind::Counters {
            let rs = &mut self.row_sums;
            rs.whole = rs.mask != 0 && rs.added == self.cs.len() && rs.top == self.top[f];
        }
        self.memo[f] = memo;
        rep.records = records;
        rep.incomplete_tail = incomplete_tail;
        if rep.incomplete_tail == 0 {
            self.last_records[f] = rep.records;
        }
        if kind == Kind::Counters {
            self.release_pending(now);
            // A counters revision rewrites joined samples points; their settled minutes'
            // rollups are rewritten now, not at the next samples.csv snapshot.
            self.settle(Kind::Samples, false);
        }
        self.settle(kind, false);
        debug_assert!(self.defer.as_ref().is_none_or(Deferred::all_done));
        self.flush(emit);
        self.defer = None;
        self.phases = Phases {
            rows: rows_done - started,
            rollups: rows_done.elapsed(),
        };
        for (p, (a, b)) in rep.points.iter_mut().zip(self.written.iter().zip(before)) {
            *p = a - b;
        }
        rep.repeats = self.repeats[0] - repeats_before[0];
        rep.reparsed = self.repeats[1] - repeats_before[1];
        rep
    }

    /// The completeness rule for a quiet file's last line without a newline (see
    /// [`Table::ingest_at`]).
    fn tail_is_complete(&self, kind: Kind, data: &[u8]) -> bool {
        let f = k(kind);
        if data.last() == Some(&b'\n') || data.is_empty() {
            return true;
        }
        if self.ends_nl[f] {
            return false;
        }
        let Some(nl) = memchr::memrchr(b'\n', data) else {
            return self.last_records[f] <= 1;
        };
        let prev_start = data[..nl]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let values = |line: &[u8]| {
            Reader::new(line, kind, true)
                .next()
                .and_then(|r| r.ok().map(|r| r.values().len()))
        };
        let (prev, last) = (values(&data[prev_start..=nl]), values(&data[nl + 1..]));
        if prev.is_none() || prev != last {
            return false;
        }
        let records = memchr::memchr_iter(b'\n', data).count() as u64 + 1;
        records >= self.last_records[f]
    }

    /// Sets the file's newest minute from a snapshot. A move back by a whole window or more is
    /// a clock step of the node that writes the files: the old window's rollups are written
    /// now, and the file is followed from its new minutes.
    fn set_file_minute(&mut self, kind: Kind, m: i64) {
        let f = k(kind);
        let old = self.top[f];
        if old != i64::MIN && m + RING <= old {
            self.settle(kind, true);
            self.horizon[f] = m;
        }
        self.top[f] = m;
        self.advance_horizon(kind, m);
    }

    /// A series of the file reaches minute `t`: first write the rollups of minutes about to
    /// leave the rings, so that a jump of several minutes loses none.
    fn advance_horizon(&mut self, kind: Kind, t: i64) {
        let f = k(kind);
        let old = self.horizon[f];
        if t <= old {
            return;
        }
        if old != i64::MIN {
            for m in old - RING + 1..=old.min(t - RING) {
                self.roll_minute(kind, m);
            }
        }
        self.horizon[f] = t;
    }

    /// Writes samples values whose wait for the counters value is over.
    pub fn tick(&mut self, now: Instant, emit: &mut Emit<'_>) {
        while let Some(p) = self.pending.front() {
            if p.deadline > now {
                break;
            }
            let p = self.pending.pop_front().unwrap();
            self.try_sample(p.sid, p.minute, now, true);
        }
        self.settle(Kind::Samples, false);
        self.flush(emit);
    }

    /// Writes the samples values waiting for a minute that counters.csv has now reached without
    /// their counters value (stats with no counters row: `system.*`, `accounting.openCalls`),
    /// instead of leaving them to wait for `join_wait`. Joined values are written by
    /// [`Table::counters_row`] as their counters value arrives.
    fn release_pending(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let (ss, cs, top) = (&self.ss, &self.cs, self.top[0]);
        let mut due = Vec::new();
        self.pending.retain(|p| {
            let ser = &ss[p.sid as usize];
            let past = if ser.link != NONE {
                cs[ser.link as usize].top >= p.minute
            } else {
                top >= p.minute
            };
            if past {
                due.push((p.sid, p.minute));
            }
            !past
        });
        for (sid, m) in due {
            self.try_sample(sid, m, now, false);
        }
    }

    /// When [`Table::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.deadline)
    }

    /// No more snapshots will come (`--once`): stop waiting, write every minute's rollups.
    pub fn finish(&mut self, now: Instant, emit: &mut Emit<'_>) {
        while let Some(p) = self.pending.pop_front() {
            self.try_sample(p.sid, p.minute, now, true);
        }
        self.settle(Kind::Counters, true);
        self.settle(Kind::Samples, true);
        self.flush(emit);
    }

    /// Hands out everything encoded so far.
    pub fn flush(&mut self, emit: &mut Emit<'_>) {
        if let Some(d) = &mut self.defer {
            for (text, n) in d.ready.drain(..) {
                emit(Bucket::Counters, text, n);
            }
        }
        for (i, b) in [Bucket::Counters, Bucket::Samples].into_iter().enumerate() {
            if self.out_points[i] > 0 {
                emit(b, self.out[i].split().freeze(), self.out_points[i]);
                self.out_points[i] = 0;
                self.out[i].reserve(self.cfg.chunk_bytes + 4096);
            }
        }
        if self.rollups.lines() > 0 {
            let n = self.rollups.lines();
            emit(Bucket::Rollups, self.rollups.take(), n);
        }
    }

    /// The length of the series array of `kind`, and its address.
    fn series_len_at(&self, kind: Kind) -> (usize, usize) {
        match kind {
            Kind::Counters => (self.cs.len(), self.cs.as_ptr() as usize),
            Kind::Samples => (self.ss.len(), self.ss.as_ptr() as usize),
        }
    }

    /// The host id, usually the previous row's (rows are grouped by host).
    #[inline]
    fn host_id(&mut self, host: &str) -> u32 {
        let last = self.last_host as usize;
        if last < self.hosts.raw.len()
            && same_name(self.hosts.raw[last].as_bytes(), host.as_bytes())
        {
            return self.last_host;
        }
        self.last_host = self.hosts.id(host, &mut self.name_enc, true);
        self.last_host
    }

    /// The values of `row` to apply to a series whose last applied row had [`Row::keep`]
    /// `keep` and whose newest minute is `top`: the row's own (all but the two newest left out
    /// when they repeat that row, [`Row::same_tail`]), or `None` when the parse stage left
    /// values out that this series has not seen (read them with [`parse_values`]).
    #[inline]
    fn same_tail<'r>(&mut self, row: &'r Row<'_>, keep: u64, top: i64) -> Option<&'r [Value]> {
        if row.same_tail == 0 {
            return Some(row.values());
        }
        // The clock-step reset (a row a whole window back) forgets the ring: never with a
        // repeat, whose minute is one after the last row's.
        if keep == row.same_tail && row.minute() / 60 + RING > top {
            self.repeats[0] += 1;
            Some(row.values())
        } else {
            self.repeats[1] += 1;
            None
        }
    }

    fn ensure_stat(&mut self, s: u32) {
        let n = s as usize + 1;
        for f in 0..2 {
            if self.members[f].len() < n {
                self.members[f].resize_with(n, Vec::new);
                self.dirty[f].resize(n, 0);
            }
        }
    }

    fn counters_row(&mut self, row: &Row<'_>, gen: u32, now: Instant) -> Result<(), Reason> {
        let h = self.host_id(row.host);
        // Rows come in the same order every minute: try the series after the previous row's
        // before hashing the stat name and looking the series up.
        let pred = self.last[0].wrapping_add(1) as usize;
        let (id, s) = match self.cs.get(pred) {
            Some(c)
                if c.host == h
                    && same_name(
                        self.stats.raw[c.stat as usize].as_bytes(),
                        row.stat.as_bytes(),
                    ) =>
            {
                (pred as u32, c.stat)
            }
            _ => {
                // Hosts list their stats in the same order: try the stat that followed the
                // previous row's last time before hashing the name (a first snapshot of 500
                // hosts x 2,000 stats looks up 2,000 names, not 1,000,000).
                let prev = self.cs.get(self.last[0] as usize).map_or(NONE, |c| c.stat);
                let s = match self.stat_after.get(prev as usize) {
                    Some(&p)
                        if p != NONE
                            && same_name(
                                self.stats.raw[p as usize].as_bytes(),
                                row.stat.as_bytes(),
                            ) =>
                    {
                        p
                    }
                    _ => {
                        let s = self.stats.id(row.stat, &mut self.name_enc, false);
                        if prev != NONE {
                            if self.stat_after.len() <= prev as usize {
                                self.stat_after.resize(prev as usize + 1, NONE);
                            }
                            self.stat_after[prev as usize] = s;
                        }
                        s
                    }
                };
                let key = series_key(h, s);
                self.ensure_stat(s);
                let cs = &self.cs;
                let ckey = |id: u32| series_key(cs[id as usize].host, cs[id as usize].stat);
                match self.cmap.get(key, ckey) {
                    Some(id) => (id, s),
                    None => return self.new_counters_series(row, h, s, gen, now),
                }
            }
        };
        self.last[0] = id;
        let t = row.minute() / 60;
        if self.cs[id as usize].seen == gen {
            return Err(Reason::Duplicate);
        }
        let full;
        let values =
            match self.same_tail(row, self.cs[id as usize].keep(), self.cs[id as usize].top) {
                Some(v) => v,
                None => {
                    full = parse_values(row.values_text, Kind::Counters)?;
                    &full.0[..full.1]
                }
            };
        self.advance_horizon(Kind::Counters, t);
        let order_n = values.len();
        let order = self.cfg.value_order;
        let ser = &mut self.cs[id as usize];
        ser.seen = gen;
        ser.set_keep(row.keep);
        if t + RING <= ser.top {
            // The file went back a whole window (clock step): follow it from this row.
            ser.top = t;
            ser.mask = 0;
        }
        advance(&mut ser.top, &mut ser.mask, t);
        let link = ser.link;
        let floor = ser.top - RING;
        let mut changed = [(0i64, 0u64); crate::csvrow::MAX_VALUES];
        let mut nc = 0;
        for (i, v) in values.iter().enumerate() {
            let m = minute_of(order, t, i, order_n);
            if m <= floor {
                continue;
            }
            let x = match *v {
                Value::Int(x) => x,
                _ => continue,
            };
            let sl = slot(m);
            let b = bit(m);
            if ser.mask & b != 0 {
                let same = match ser.vals[sl] {
                    BIG => self.big.get(&big_key(id, sl)) == Some(&x),
                    v => v as u64 == x,
                };
                if same {
                    continue;
                }
            }
            if x >= BIG as u64 {
                ser.vals[sl] = BIG;
                self.big.insert(big_key(id, sl), x);
            } else {
                if ser.vals[sl] == BIG {
                    self.big.remove(&big_key(id, sl));
                }
                ser.vals[sl] = x as u32;
            }
            ser.mask |= b;
            changed[nc] = (m, x);
            nc += 1;
        }
        if self.row_sums.mask != 0 {
            self.row_sums.add(&self.cs[id as usize], id, &self.big);
        }
        self.counters_points(h, s, link, &changed[..nc], now);
        Ok(())
    }

    /// A row of a series not seen before: the series is put together here and stored once
    /// (no read of the fresh memory it goes to), and every value is a new point.
    #[cold]
    #[inline(never)]
    fn new_counters_series(
        &mut self,
        row: &Row<'_>,
        h: u32,
        s: u32,
        gen: u32,
        now: Instant,
    ) -> Result<(), Reason> {
        let full;
        let values = match self.same_tail(row, 0, i64::MIN) {
            Some(v) => v,
            None => {
                full = parse_values(row.values_text, Kind::Counters)?;
                &full.0[..full.1]
            }
        };
        let t = row.minute() / 60;
        self.advance_horizon(Kind::Counters, t);
        let id = self.cs.len() as u32;
        let key = series_key(h, s);
        let link = if self.smap.is_empty() {
            NONE
        } else {
            let ss = &self.ss;
            self.smap
                .get(key, |id| {
                    series_key(ss[id as usize].host, ss[id as usize].stat)
                })
                .unwrap_or(NONE)
        };
        if link != NONE {
            self.ss[link as usize].link = id;
        }
        let mut ser = CSeries {
            host: h,
            stat: s,
            link,
            seen: gen,
            top: t,
            mask: 0,
            vals: [0; RING as usize],
            keep_lo: row.keep as u32,
            keep_hi: (row.keep >> 32) as u16,
        };
        let order = self.cfg.value_order;
        let n = values.len();
        let mut changed = [(0i64, 0u64); crate::csvrow::MAX_VALUES];
        let mut nc = 0;
        for (i, v) in values.iter().enumerate() {
            let m = minute_of(order, t, i, n);
            let x = match *v {
                Value::Int(x) if m > t - RING => x,
                _ => continue,
            };
            let sl = slot(m);
            if ser.mask & bit(m) != 0 {
                continue;
            }
            if x >= BIG as u64 {
                ser.vals[sl] = BIG;
                self.big.insert(big_key(id, sl), x);
            } else {
                ser.vals[sl] = x as u32;
            }
            ser.mask |= bit(m);
            changed[nc] = (m, x);
            nc += 1;
        }
        self.cs.push(ser);
        if self.row_sums.mask != 0 {
            self.row_sums.add_new(s, &changed[..nc]);
        }
        let cs = &self.cs;
        self.cmap.insert(key, id, |id| {
            series_key(cs[id as usize].host, cs[id as usize].stat)
        });
        self.last[0] = id;
        self.counters_points(h, s, link, &changed[..nc], now);
        Ok(())
    }

    /// Writes the counters points `changed` (minute, count) of host `h` and stat `s`, marks
    /// their rollups and joins the samples series `link`.
    #[inline]
    fn counters_points(&mut self, h: u32, s: u32, link: u32, changed: &[(i64, u64)], now: Instant) {
        if changed.is_empty() {
            return;
        }
        let nc = changed.len();
        let (st, ho) = (&self.stats, &self.hosts);
        let stat = (&st.esc[s as usize][..], st.esc_len[s as usize] as usize);
        let host = (&ho.esc[h as usize][..], ho.esc_len[h as usize] as usize);
        match &mut self.defer {
            Some(d) => d.push(stat, host, changed),
            None => {
                self.points.counters(&mut self.out[0], stat, host, changed);
                self.out_points[0] += nc;
            }
        }
        self.written[0] += nc as u64;
        for &(m, _) in changed {
            self.mark_dirty(Kind::Counters, s, m);
            if link != NONE {
                self.try_sample(link, m, now, false);
            }
        }
    }

    fn samples_row(&mut self, row: &Row<'_>, gen: u32, now: Instant) -> Result<(), Reason> {
        let h = self.host_id(row.host);
        let pred = self.last[1].wrapping_add(1) as usize;
        let id = match self.ss.get(pred) {
            Some(c)
                if c.host == h
                    && same_name(
                        self.stats.raw[c.stat as usize].as_bytes(),
                        row.stat.as_bytes(),
                    ) =>
            {
                pred as u32
            }
            _ => {
                let s = self.stats.id(row.stat, &mut self.name_enc, false);
                let key = series_key(h, s);
                let (cs, ss) = (&self.cs, &self.ss);
                let skey = |id: u32| series_key(ss[id as usize].host, ss[id as usize].stat);
                match self.smap.get(key, skey) {
                    Some(id) => id,
                    None => {
                        let id = self.ss.len() as u32;
                        let link = self
                            .cmap
                            .get(key, |id| {
                                series_key(cs[id as usize].host, cs[id as usize].stat)
                            })
                            .unwrap_or(NONE);
                        if link != NONE {
                            self.cs[link as usize].link = id;
                        }
                        self.ss.push(SSeries {
                            host: h,
                            stat: s,
                            link,
                            seen: 0,
                            top: i64::MIN,
                            mask: 0,
                            emitted: 0,
                            avg: [0.0; RING as usize],
                            occ: [NO_OCC; RING as usize],
                            keep: 0,
                        });
                        let ss = &self.ss;
                        self.smap.insert(key, id, |id| {
                            series_key(ss[id as usize].host, ss[id as usize].stat)
                        });
                        self.ensure_stat(s);
                        id
                    }
                }
            }
        };
        self.last[1] = id;
        let t = row.minute() / 60;
        if self.ss[id as usize].seen == gen {
            return Err(Reason::Duplicate);
        }
        let full;
        let values = match self.same_tail(row, self.ss[id as usize].keep, self.ss[id as usize].top)
        {
            Some(v) => v,
            None => {
                full = parse_values(row.values_text, Kind::Samples)?;
                &full.0[..full.1]
            }
        };
        self.advance_horizon(Kind::Samples, t);
        let n = values.len();
        let mut changed = [0i64; crate::csvrow::MAX_VALUES];
        let mut nc = 0;
        {
            let order = self.cfg.value_order;
            let ser = &mut self.ss[id as usize];
            ser.seen = gen;
            ser.keep = row.keep;
            if t + RING <= ser.top {
                // The file went back a whole window (clock step): follow it from this row.
                ser.top = t;
                ser.mask = 0;
                ser.emitted = 0;
            }
            advance(&mut ser.top, &mut ser.mask, t);
            let floor = ser.top - RING;
            for (i, v) in values.iter().enumerate() {
                let m = minute_of(order, t, i, n);
                let a = match *v {
                    Value::Float(a) if m > floor => a,
                    _ => continue,
                };
                let sl = slot(m);
                let b = bit(m);
                if ser.mask & b != 0 && ser.avg[sl].to_bits() == a.to_bits() {
                    continue;
                }
                if ser.mask & b == 0 {
                    // A new minute in this slot: nothing written for it yet.
                    ser.occ[sl] = NO_OCC;
                    ser.emitted &= !b;
                }
                ser.avg[sl] = a;
                ser.mask |= b;
                ser.emitted &= !b;
                changed[nc] = m;
                nc += 1;
            }
        }
        for &m in &changed[..nc] {
            self.try_sample(id, m, now, false);
        }
        Ok(())
    }

    /// Writes the samples point of (series, minute) if it is due, or queues it to wait for the
    /// counters value.
    fn try_sample(&mut self, sid: u32, m: i64, now: Instant, expired: bool) {
        let ser = &self.ss[sid as usize];
        if !has(ser.top, ser.mask, m) {
            return;
        }
        let sl = slot(m);
        let b = bit(m);
        let a = ser.avg[sl];
        let joined = if ser.link != NONE {
            let c = &self.cs[ser.link as usize];
            has(c.top, c.mask, m).then(|| count(&self.big, ser.link, c, sl))
        } else {
            None
        };
        let occ = match joined {
            Some(o) => o,
            // Written joined before: every later write keeps the joined fields (InfluxDB
            // keeps a field a later write leaves out), with the last occurrences known.
            None if ser.occ[sl] != NO_OCC => ser.occ[sl],
            None => {
                let counters_past = if ser.link != NONE {
                    self.cs[ser.link as usize].top >= m
                } else {
                    self.top[0] >= m
                };
                if !(counters_past || expired || self.cfg.join_wait.is_zero()) {
                    if ser.emitted & b == 0 {
                        self.pending.push_back(Pending {
                            sid,
                            minute: m,
                            deadline: now + self.cfg.join_wait,
                        });
                    }
                    return;
                }
                NO_OCC
            }
        };
        if ser.emitted & b != 0 && ser.occ[sl] == occ {
            return;
        }
        let e = if occ == NO_OCC { a } else { a * occ as f64 };
        if !e.is_finite() {
            return; // not representable in line protocol; the row's values were finite
        }
        // Schema: `value` (the average) always; `elapsed_time` and `occurrences` once joined.
        let out = &mut self.out[1];
        out.extend_from_slice(self.stats.esc(ser.stat));
        out.extend_from_slice(b",hostname=");
        out.extend_from_slice(self.hosts.esc(ser.host));
        out.extend_from_slice(b" value=");
        write_float(out, a);
        if occ != NO_OCC {
            out.extend_from_slice(b",elapsed_time=");
            write_float(out, e);
            out.extend_from_slice(b",occurrences=");
            out.extend_from_slice(itoa::Buffer::new().format(occ).as_bytes());
            out.extend_from_slice(b"i");
        }
        out.extend_from_slice(b" ");
        out.extend_from_slice(itoa::Buffer::new().format(m * 60).as_bytes());
        out.extend_from_slice(b"\n");
        self.out_points[1] += 1;
        self.written[1] += 1;
        let stat = ser.stat;
        let ser = &mut self.ss[sid as usize];
        ser.emitted |= b;
        ser.occ[sl] = occ;
        self.mark_dirty(Kind::Samples, stat, m);
    }

    fn mark_dirty(&mut self, kind: Kind, stat: u32, m: i64) {
        let f = k(kind);
        let r = self.roll[f][slot(m)];
        if r.written && r.minute == m {
            self.dirty[f][stat as usize] |= bit(m);
        }
    }

    /// Writes the rollups of settled minutes (all minutes in the window with `all`), and
    /// rewrites those of written minutes that changed. A samples minute with a value still
    /// waiting for its counters value waits too (it would be contradicted by the join), except
    /// the oldest minute of the window, which is about to be forgotten.
    fn settle(&mut self, kind: Kind, all: bool) {
        let f = k(kind);
        let top = self.top[f];
        if top == i64::MIN {
            return;
        }
        let waiting = if kind == Kind::Samples && !all {
            self.waiting_minutes()
        } else {
            0
        };
        if kind == Kind::Counters {
            let mut first = 0u16;
            for m in top - RING + 1..=top {
                let r = self.roll[f][slot(m)];
                if (all || top - m >= self.cfg.settle_minutes) && !(r.written && r.minute == m) {
                    first |= bit(m);
                }
            }
            self.sum_counters(top, first);
        }
        for m in top - RING + 1..=top {
            if all || top - m >= self.cfg.settle_minutes {
                if waiting & bit(m) != 0 && m > top - RING + 1 {
                    continue;
                }
                self.roll_minute(kind, m);
            }
        }
        self.csum_minute = [i64::MIN; RING as usize];
    }

    /// Computes the counters rollups of the minutes in `mask` (as [`bit`]s of the window
    /// ending at `top`) for every stat in one sequential pass over the series, for
    /// [`Table::roll_counters`]: a first write rolls up every stat, and the series of one stat
    /// are spread over the whole table (one cache miss per series and minute otherwise).
    fn sum_counters(&mut self, top: i64, mask: u16) {
        let stats = self.dirty[0].len();
        // Per-stat scratch of 16 x 16 bytes: beyond 64k stats, roll up stat by stat.
        if mask == 0 || stats > 1 << 16 {
            return;
        }
        let n = stats * RING as usize;
        self.csum.clear();
        let rs = &self.row_sums;
        if rs.whole && rs.top == top && mask & !rs.mask == 0 {
            // Summed while the rows were applied: every series had a row.
            self.csum.extend_from_slice(&rs.sums);
            self.csum.resize(n, (0, 0));
        } else if self.cs.len() >= self.cfg.parallel_series.max(2) {
            // Two threads, one half of the series each (the pass reads every series: memory
            // bound, about 10 ms at 1,000,000 series on one core); sums saturate, so adding
            // the halves' sums gives the same.
            self.csum.resize(n, (0, 0));
            let other = &mut self.csum_other;
            other.clear();
            other.resize(n, (0, 0));
            let mid = self.cs.len() / 2;
            let (a, b) = self.cs.split_at(mid);
            let (big, csum) = (&self.big, &mut self.csum);
            std::thread::scope(|sc| {
                sc.spawn(|| sum_series(b, mid, big, top, mask, other));
                sum_series(a, 0, big, top, mask, csum);
            });
            for (x, y) in self.csum.iter_mut().zip(&self.csum_other) {
                x.0 = x.0.saturating_add(y.0);
                x.1 += y.1;
            }
        } else {
            self.csum.resize(n, (0, 0));
            sum_series(&self.cs, 0, &self.big, top, mask, &mut self.csum);
        }
        for m in top - RING + 1..=top {
            if mask & bit(m) != 0 {
                self.csum_minute[slot(m)] = m;
            }
        }
    }

    /// Starts summing the counters rollups while a snapshot's rows are applied
    /// ([`RowSums`]): the minutes the settle after the rows rolls up for the first time (every
    /// minute of the window in a first snapshot, for the settle of all minutes that ends a
    /// `--once` run). Sums saturate, so the order series are added in does not matter.
    fn start_row_sums(&mut self, first: bool) {
        let top = self.top[0];
        let stats = self.dirty[0].len();
        if top == i64::MIN || stats > 1 << 16 {
            return;
        }
        let mut mask = 0u16;
        for m in top - RING + 1..=top {
            let r = self.roll[0][slot(m)];
            if (first || top - m >= self.cfg.settle_minutes) && !(r.written && r.minute == m) {
                mask |= bit(m);
            }
        }
        let rs = &mut self.row_sums;
        rs.sums.clear();
        rs.sums.resize(stats * RING as usize, (0, 0));
        rs.mask = mask;
        rs.top = top;
        rs.added = 0;
    }

    /// Minutes (as [`bit`]s) with a samples value not written yet because it waits for its
    /// counters value.
    fn waiting_minutes(&self) -> u16 {
        let mut mask = 0;
        // Only minutes of the file's window: a value of a host gone for 16 minutes or more,
        // still waiting (a long `join_wait`), must not hold up the minute of the same ring slot.
        let floor = self.top[1].saturating_sub(RING);
        for p in &self.pending {
            let s = &self.ss[p.sid as usize];
            if p.minute > floor && has(s.top, s.mask, p.minute) && s.emitted & bit(p.minute) == 0 {
                mask |= bit(p.minute);
            }
        }
        mask
    }

    /// Adds the series created since the last call to `members`, in id order.
    fn sync_members(&mut self, f: usize) {
        let n = [self.cs.len(), self.ss.len()][f];
        for id in self.members_upto[f]..n {
            let stat = match f {
                0 => self.cs[id].stat,
                _ => self.ss[id].stat,
            };
            self.members[f][stat as usize].push(id as u32);
        }
        self.members_upto[f] = n;
    }

    /// Writes minute `m`'s rollups for every stat the first time, then only for changed stats.
    fn roll_minute(&mut self, kind: Kind, m: i64) {
        let f = k(kind);
        if kind == Kind::Samples {
            self.sync_members(f);
        }
        let sl = slot(m);
        let b = bit(m);
        let r = self.roll[f][sl];
        let first = !(r.written && r.minute == m);
        if first {
            self.roll[f][sl] = RollSlot {
                minute: m,
                written: true,
            };
        }
        for stat in 0..self.dirty[f].len() {
            if first || self.dirty[f][stat] & b != 0 {
                self.dirty[f][stat] &= !b;
                match kind {
                    Kind::Counters => self.roll_counters(stat, m),
                    Kind::Samples => self.roll_samples(stat, m),
                }
            }
        }
    }

    fn roll_counters(&mut self, stat: usize, m: i64) {
        let (mut sum, mut hosts) = (0u64, 0i64);
        if self.csum_minute[slot(m)] == m {
            (sum, hosts) = self.csum[stat * RING as usize + slot(m)];
        } else {
            // The members are brought up to date only here: with the sums there is no need
            // (filing 1,000,000 new series by stat took about 20 ms).
            self.sync_members(0);
            for &id in &self.members[0][stat] {
                let c = &self.cs[id as usize];
                if has(c.top, c.mask, m) {
                    sum = sum.saturating_add(count(&self.big, id, c, slot(m)));
                    hosts += 1;
                }
            }
        }
        if hosts == 0 {
            return;
        }
        let fields = [
            ("sum", Field::Int(sum.min(i64::MAX as u64) as i64)),
            ("hosts", Field::Int(hosts)),
        ];
        if self.rollups.push(
            &self.stats.raw[stat],
            &[("file", "counters")],
            &fields,
            m * 60,
        ) {
            self.written[2] += 1;
        }
    }

    /// Samples rollup of one stat and minute. Its field set is always the same seven fields,
    /// so no rewrite can leave a stale field in InfluxDB: `hosts`, `occurrences` (of the
    /// joined hosts, 0 when none), and `mean`, `p50`, `p90`, `p99`, `max` of the per-host
    /// averages weighted by occurrences (1 for a host written as `value`; a host with 0
    /// occurrences carries no weight; when no host has any weight, each host counts once).
    fn roll_samples(&mut self, stat: usize, m: i64) {
        let sl = slot(m);
        let ss = &self.ss;
        if !self.members[1][stat].iter().any(|&id| {
            let s = &ss[id as usize];
            has(s.top, s.mask, m)
        }) {
            return;
        }
        let (mut hosts, mut occ_total) = (0i64, 0u64);
        let (mut wsum, mut wtotal, mut max, mut min) = (0f64, 0u64, f64::NAN, f64::NAN);
        for unweighted in [false, true] {
            if !self.hist.is_empty() {
                self.hist.reset();
            }
            (hosts, occ_total, wsum, wtotal, max, min) = (0, 0, 0.0, 0, f64::NAN, f64::NAN);
            for &id in &self.members[1][stat] {
                let s = &self.ss[id as usize];
                if !has(s.top, s.mask, m) {
                    continue;
                }
                hosts += 1;
                let a = s.avg[sl];
                // Weight: the occurrences the point was written with; 1 for a stat with none.
                let w = if s.emitted & bit(m) != 0 && s.occ[sl] != NO_OCC {
                    occ_total = occ_total.saturating_add(s.occ[sl]);
                    s.occ[sl]
                } else {
                    1
                };
                let w = if unweighted { 1 } else { w };
                if w == 0 {
                    continue;
                }
                wsum += a * w as f64;
                wtotal = wtotal.saturating_add(w);
                max = if max.is_nan() { a } else { max.max(a) };
                min = if min.is_nan() { a } else { min.min(a) };
                let v = ((a * HDR_SCALE).round() as u64).min(HDR_HIGH);
                let _ = self.hist.record_n(v, w);
            }
            if wtotal > 0 || hosts == 0 {
                break;
            }
        }
        if hosts == 0 {
            return;
        }
        // HDR quantiles are exact to HDR_SIGFIG digits; clamped to the exact extremes so that a
        // single host reads back its own average.
        let q = |h: &Histogram<u64>, p: f64| {
            (h.value_at_quantile(p) as f64 / HDR_SCALE).clamp(min, max)
        };
        let fields = [
            ("hosts", Field::Int(hosts)),
            (
                "occurrences",
                Field::Int(occ_total.min(i64::MAX as u64) as i64),
            ),
            ("mean", Field::Float(wsum / wtotal as f64)),
            ("p50", Field::Float(q(&self.hist, 0.50))),
            ("p90", Field::Float(q(&self.hist, 0.90))),
            ("p99", Field::Float(q(&self.hist, 0.99))),
            ("max", Field::Float(max)),
        ];
        if self.rollups.push(
            &self.stats.raw[stat],
            &[("file", "samples")],
            &fields,
            m * 60,
        ) {
            self.written[2] += 1;
        }
    }
}

/// Rows read to find a large file's newest minute (evenly spread over the file).
const MINUTE_SAMPLE: usize = 1024;

/// The minute most valid rows of a snapshot carry (ties: the newest), ignoring rows after
/// `latest`, with how many of the rows read carry it and how many were valid; `None` without a
/// valid row. A snapshot of up to [`MINUTE_SAMPLE`] lines is read
/// whole, a larger one at [`MINUTE_SAMPLE`] evenly spread lines.
fn file_minute(data: &[u8], kind: Kind, latest: i64) -> Option<(i64, usize, usize)> {
    let mut mins: Vec<i64> = Vec::with_capacity(MINUTE_SAMPLE);
    let mut take = |line: &[u8]| {
        if let Some(Ok(row)) = Reader::new(line, kind, true).next() {
            let t = row.minute() / 60;
            if t <= latest {
                mins.push(t);
            }
        }
    };
    let lines = memchr::memchr_iter(b'\n', data)
        .take(MINUTE_SAMPLE + 1)
        .count();
    if lines <= MINUTE_SAMPLE {
        data.split(|&b| b == b'\n').for_each(&mut take);
    } else {
        let mut last = usize::MAX;
        for i in 0..MINUTE_SAMPLE {
            let off = i * data.len() / MINUTE_SAMPLE;
            let start = match off {
                0 => 0,
                o => match memchr::memchr(b'\n', &data[o - 1..]) {
                    Some(j) => o + j,
                    None => break,
                },
            };
            if start >= data.len() || start == last {
                continue;
            }
            last = start;
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |j| start + j);
            take(&data[start..end]);
        }
    }
    mins.sort_unstable();
    let (mut best, mut best_n) = (None, 0);
    let mut i = 0;
    while i < mins.len() {
        let j = mins[i..].iter().take_while(|&&m| m == mins[i]).count();
        if j >= best_n {
            best = Some(mins[i]);
            best_n = j;
        }
        i += j;
    }
    best.map(|m| (m, best_n, mins.len()))
}

/// The same float form as [`LineEncoder`]: whole numbers without exponent or `.0`, otherwise
/// the shortest representation that reads back as the same `f64`.
fn write_float(buf: &mut BytesMut, f: f64) {
    if f == f.trunc() && f.abs() < 1e15 {
        buf.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
    } else {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    }
}

/// The fuzz target's checks on arbitrary bytes (`ingest/fuzz`, and the corpus replay in the
/// normal suite): the CSV kernel and the table must not panic; every row is either good or a
/// typed error, and rows never start beyond the parsable part of the snapshot.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use crate::csvrow::Reader;
    for kind in [Kind::Counters, Kind::Samples] {
        for complete in [false, true] {
            let mut r = Reader::new(data, kind, complete);
            while let Some(row) = r.next() {
                match row {
                    Ok(row) => {
                        assert!((row.byte as usize) < data.len() && row.values().len() <= 15)
                    }
                    Err(e) => assert!((e.byte as usize) < data.len()),
                }
            }
            assert!(r.incomplete_tail() <= data.len());
        }
    }
    let mut t = Table::new(TableConfig {
        settle_minutes: 0,
        ..TableConfig::default()
    });
    let now = Instant::now();
    t.ingest(Kind::Counters, data, true, now, &mut |_, _, _| {});
    t.ingest(Kind::Samples, data, false, now, &mut |_, _, _| {});
    t.finish(now, &mut |_, _, _| {});
}

#[cfg(test)]
mod tests;
