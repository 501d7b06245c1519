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
//!   `hosts` (tag `file=samples`). A minute has settled once the newest minute seen in that
//!   file is at least [`TableConfig::settle_minutes`] later. With [`RollupMode::Settled`] a
//!   minute is written once it has settled, rewritten if a value of it changes afterwards, and
//!   in any case before its data leaves the ring. With [`RollupMode::Live`] it is written as
//!   soon as it has data and rewritten whenever a value changes, each write carrying the field
//!   `settled` (boolean): false until the minute has settled, then one more write with true.
//!
//! Hot path: host and stat names are interned once (dense ids, escaped line-protocol forms kept
//! beside them); the series after the previous row's is tried first (rows come in the same
//! order every minute), else one lookup in the row's host's index; per-series state lives in
//! flat arrays; lines are written straight into reused per-bucket buffers handed out in chunks.
//! Nothing is allocated per row once a series exists. A rewrite's values that repeat the
//! previous rewrite's, shifted by one minute, are recognised by a hash of their text and not
//! parsed or compared again ([`Row::same_tail`], checked against the series' last applied row).
//!
//! `Table` is a façade over one type per concern:
//! - `window`: one `FileWindow` per file (its newest minute, horizon, memo, the completeness
//!   rule) and `Minutes`, the check of a row's minute made before the row changes any state;
//! - `names`: `Names`, the interned host and stat names (dense ids, escaped forms beside
//!   them); `series`: `Series` (both files' index, series arrays and rings);
//! - `rows`: the per-row work of counters.csv, and `Rows`, which validates, applies and counts
//!   each record of a snapshot; `join`: the samples rows and the join wait;
//! - `rollups`: `Rollups`, the per-minute rollups; `points`: the points' line protocol
//!   (`Out` holds what is written and not yet handed out, with each line's [`LineMark`] for
//!   the checkpoint when asked, [`Table::mark_lines`]);
//! - `pipeline`: the drivers of a snapshot's rows over one `Apply` trait: `sequential`, and
//!   `pipelined` for a large snapshot ([`TableConfig::parse_ahead_bytes`]) on two threads,
//!   with the parse-ahead reader in `ahead`, and `prefault` and `defer` for a first snapshot;
//! - `state`: the table saved and restored across a restart.
//!
//! State is bounded: 16 minutes per series, 16 minute slots for rollups, one histogram.

mod ahead;
mod defer;
mod join;
mod names;
mod pipeline;
mod points;
mod prefault;
mod rollups;
mod rows;
mod series;
mod state;
mod window;

pub use ahead::Ahead;
pub use series::FxHasher;
pub use state::TABLE_STATE;

use join::*;
use names::Names;
use pipeline::{Apply, Chunks};
use rollups::*;
use rows::Rows;
use series::*;
use window::{file_minute, FileWindow, Minutes};

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

/// When a minute's rollups are written ([`TableConfig::rollups`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupMode {
    /// As soon as the minute has data, rewritten while its values change; every write carries
    /// `settled` (false, then true once the minute has settled).
    Live,
    /// Once the minute has settled, without a `settled` field (the table's default; the
    /// `[ingest]` section's is `Live`).
    Settled,
    /// Once the minute has settled, with `settled=true`: `Live` for a run that settles every
    /// minute at its end (`--once`), where the writes before would only be overwritten.
    #[serde(skip_deserializing)]
    Final,
}

/// The knobs of the window stage.
#[derive(Debug, Clone)]
pub struct TableConfig {
    pub value_order: ValueOrder,
    /// How long a samples value waits for the counters value of its minute.
    pub join_wait: Duration,
    /// A minute's rollups are written once the file's newest minute is this many minutes later.
    pub settle_minutes: i64,
    /// Whether rollups are also written before their minute has settled.
    pub rollups: RollupMode,
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
            rollups: RollupMode::Settled,
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

/// Receives what [`Emit`] does and, when the table marks its lines ([`Table::mark_lines`]),
/// one [`LineMark`] per line of a counters or samples chunk (none for rollups, nor when the
/// table does not mark its lines).
pub type EmitMarked<'e> = dyn FnMut(Bucket, Bytes, usize, &[LineMark]) + 'e;

/// One line as the table wrote it: what the checkpoint needs of it, so that it does not parse
/// the line protocol again ([`crate::checkpoint::Checkpoint::filter_marked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineMark {
    /// Bytes of the line, with its newline.
    pub len: u32,
    /// Bytes of its series (measurement and tags), from the line's start.
    pub series: u32,
    /// Bytes of its field set, after the space that ends the series.
    pub fields: u32,
    /// Its minute (the timestamp divided by 60).
    pub minute: i32,
}

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

// 96 bytes a series (the state memory documented in docs/ingest.md).

/// Change detection, join and rollups over successive snapshots of both files.
pub struct Table {
    cfg: TableConfig,
    names: Names,
    series: Series,
    /// Per file: its window (newest minute, horizon, memo, ...).
    files: [FileWindow; 2],
    /// Samples values waiting for their counters value ([`TableConfig::join_wait`]).
    pending: Join,
    rollups: Rollups,
    out: Out,
    /// Where the last snapshot's time went ([`Table::last_phases`]).
    phases: Phases,
}

/// What the table has written and not yet handed out: the points' line protocol per bucket,
/// and the counts of points written.
struct Out {
    /// Counters and samples points' text, and how many points each holds.
    buf: [BytesMut; 2],
    points_n: [usize; 2],
    points: PointWriter,
    /// A first snapshot's counters points, recorded to be written by either thread
    /// ([`defer`]); `None`: written at once.
    defer: Option<Deferred>,
    /// Points written since the table was created (counters, samples, rollups).
    written: [u64; 3],
    /// With [`Table::mark_lines`]: the marks of the lines in `buf`, per bucket.
    marks: Option<[Vec<LineMark>; 2]>,
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
        Table {
            names: Names::new(),
            series: Series::default(),
            files: [FileWindow::new(), FileWindow::new()],
            pending: Join::default(),
            rollups: Rollups::new(),
            out: Out {
                buf: [
                    BytesMut::with_capacity(cfg.chunk_bytes + 4096),
                    BytesMut::with_capacity(cfg.chunk_bytes + 4096),
                ],
                points_n: [0; 2],
                points: PointWriter::new(),
                defer: None,
                written: [0; 3],
                marks: None,
            },
            phases: Phases::default(),
            cfg,
        }
    }

    /// The wall time of the phases of the last [`Table::ingest_at`] (for the log and the
    /// benchmark's breakdown).
    pub fn last_phases(&self) -> Phases {
        self.phases
    }

    /// Whether the counters and samples lines are handed out with their [`LineMark`]s
    /// ([`EmitMarked`]). A first counters snapshot's points are then written by the applying
    /// thread (not [`defer`]red), which records their marks as it writes them.
    pub fn mark_lines(&mut self, on: bool) {
        if on != self.out.marks.is_some() {
            self.out.marks = on.then(Default::default);
        }
    }

    /// Series known so far (counters, samples).
    pub fn series(&self) -> (usize, usize) {
        (self.series.cs.len(), self.series.ss.len())
    }

    /// Points written since the table was created (counters, samples, rollups).
    pub fn points_written(&self) -> [u64; 3] {
        self.out.written
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
        self.ingest_at_marked(kind, data, tail, now, wall, &mut |b, l, n, _| emit(b, l, n))
    }

    /// [`Table::ingest_at`], handing out the lines' marks too ([`Table::mark_lines`]).
    pub fn ingest_at_marked(
        &mut self,
        kind: Kind,
        data: &[u8],
        tail: Tail,
        now: Instant,
        wall: i64,
        emit: &mut EmitMarked<'_>,
    ) -> FileReport {
        let started = Instant::now();
        let before = self.out.written;
        let mut rep = FileReport::default();
        let f = k(kind);
        if kind == Kind::Counters {
            // The series are about to change.
            self.rollups.row_sums.whole = false;
            self.rollups.row_sums.mask = 0;
        }
        let g = &mut self.files[f].gen;
        *g = g.wrapping_add(1);
        let gen = *g;
        // First snapshot of a file: size the series array once instead of growing it.
        let known = match kind {
            Kind::Counters => self.series.cs.len(),
            Kind::Samples => self.series.ss.len(),
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
                Kind::Counters => self.series.cs.reserve_exact(rows),
                Kind::Samples => self.series.ss.reserve_exact(rows),
            }
        }
        // A first snapshot: the array's spare room, and where it is (see `prefault`).
        let series_at = self.series_len_at(kind).1;
        let prefault = (known == 0).then(|| match kind {
            Kind::Counters => Prefault::spare(&mut self.series.cs),
            Kind::Samples => Prefault::spare(&mut self.series.ss),
        });
        if data.last() == Some(&b'\n') {
            self.files[f].ends_nl = true;
        }
        let tail_ok = match tail {
            Tail::Wait => false,
            Tail::Complete => true,
            Tail::Quiet => self.files[f].tail_is_complete(kind, data),
        };
        let latest = wall.div_euclid(60) + self.cfg.future_minutes;
        let newest_first = self.cfg.value_order == ValueOrder::NewestFirst;
        // The previous snapshot's memo is read while this one's is written (sized once:
        // growing it would hold both sizes at once).
        let prev = std::mem::take(&mut self.files[f].memo);
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
        let repeats_before = (self.files[f].repeats, self.files[f].reparsed);
        if let Some((m, n, total)) = file_minute(&data[..reader.parsable_len()], kind, latest) {
            // Back only with a strict majority: a few odd rows (or half a file) cannot.
            if m >= self.files[f].top || 2 * n > total {
                self.set_file_minute(kind, m);
            }
        }
        let minutes = Minutes {
            latest,
            oldest: self.files[f].oldest(),
        };
        if kind == Kind::Counters {
            self.start_row_sums(known == 0);
        }
        // A first counters snapshot: its points are written by either thread ([`defer`]).
        if pipelined && known == 0 && kind == Kind::Counters && self.out.marks.is_none() {
            self.out.defer = Some(Deferred::new(self.cfg.chunk_bytes));
        }
        let chunk_bytes = self.cfg.parse_chunk_bytes;
        let mut rows = Rows {
            t: self,
            rep: &mut rep,
            emit,
            kind,
            gen,
            now,
            minutes,
        };
        let (records, incomplete_tail, memo) = if pipelined {
            let chunks = Chunks {
                data,
                tail_ok,
                kind,
                chunk_bytes,
                memo_on,
                prev: &prev,
                newest_first,
                memo_cap,
                prefault,
                known,
                series_at,
            };
            pipeline::pipelined(reader, chunks, &mut rows)
        } else {
            pipeline::sequential(reader, &mut rows)
        };
        let rows_done = Instant::now();
        if kind == Kind::Counters {
            let rs = &mut self.rollups.row_sums;
            rs.whole =
                rs.mask != 0 && rs.added == self.series.cs.len() && rs.top == self.files[f].top;
        }
        self.files[f].memo = memo;
        rep.records = records;
        rep.incomplete_tail = incomplete_tail;
        if rep.incomplete_tail == 0 {
            self.files[f].last_records = rep.records;
        }
        if kind == Kind::Counters {
            self.release_pending(now);
            // A counters revision rewrites joined samples points; their settled minutes'
            // rollups are rewritten now, not at the next samples.csv snapshot.
            self.settle(Kind::Samples, false);
        }
        self.settle(kind, false);
        debug_assert!(self.out.defer.as_ref().is_none_or(Deferred::all_done));
        self.flush_marked(emit);
        self.out.defer = None;
        self.phases = Phases {
            rows: rows_done - started,
            rollups: rows_done.elapsed(),
        };
        for (p, (a, b)) in rep
            .points
            .iter_mut()
            .zip(self.out.written.iter().zip(before))
        {
            *p = a - b;
        }
        rep.repeats = self.files[f].repeats - repeats_before.0;
        rep.reparsed = self.files[f].reparsed - repeats_before.1;
        rep
    }

    /// Sets the file's newest minute from a snapshot. A move back by a whole window or more is
    /// a clock step of the node that writes the files: the old window's rollups are written
    /// now, and the file is followed from its new minutes.
    fn set_file_minute(&mut self, kind: Kind, m: i64) {
        let f = k(kind);
        let old = self.files[f].top;
        if old != i64::MIN && m + RING <= old {
            self.settle(kind, true);
            self.files[f].horizon = m;
        }
        self.files[f].top = m;
        self.advance_horizon(kind, m);
    }

    /// A series of the file reaches minute `t`: first write the rollups of minutes about to
    /// leave the rings, so that a jump of several minutes loses none.
    fn advance_horizon(&mut self, kind: Kind, t: i64) {
        let f = k(kind);
        let old = self.files[f].horizon;
        if t <= old {
            return;
        }
        if old != i64::MIN {
            for m in old - RING + 1..=old.min(t - RING) {
                self.roll_minute(kind, m, true);
            }
        }
        self.files[f].horizon = t;
    }

    /// Writes samples values whose wait for the counters value is over.
    pub fn tick(&mut self, now: Instant, emit: &mut Emit<'_>) {
        self.tick_marked(now, &mut |b, l, n, _| emit(b, l, n))
    }

    /// [`Table::tick`], handing out the lines' marks too ([`Table::mark_lines`]).
    pub fn tick_marked(&mut self, now: Instant, emit: &mut EmitMarked<'_>) {
        while let Some(p) = self.pending.pop_expired(now) {
            self.try_sample(p.sid, p.minute, now, true);
        }
        self.settle(Kind::Samples, false);
        self.flush_marked(emit);
    }

    /// When [`Table::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.next_deadline()
    }

    /// No more snapshots will come (`--once`): stop waiting, write every minute's rollups.
    pub fn finish(&mut self, now: Instant, emit: &mut Emit<'_>) {
        self.finish_marked(now, &mut |b, l, n, _| emit(b, l, n))
    }

    /// [`Table::finish`], handing out the lines' marks too ([`Table::mark_lines`]).
    pub fn finish_marked(&mut self, now: Instant, emit: &mut EmitMarked<'_>) {
        while let Some(p) = self.pending.pop_front() {
            self.try_sample(p.sid, p.minute, now, true);
        }
        self.settle(Kind::Counters, true);
        self.settle(Kind::Samples, true);
        self.flush_marked(emit);
    }

    /// Hands out everything encoded so far.
    pub fn flush(&mut self, emit: &mut Emit<'_>) {
        self.flush_marked(&mut |b, l, n, _| emit(b, l, n))
    }

    /// [`Table::flush`], handing out the lines' marks too ([`Table::mark_lines`]).
    pub fn flush_marked(&mut self, emit: &mut EmitMarked<'_>) {
        if let Some(d) = &mut self.out.defer {
            for (text, n) in d.ready.drain(..) {
                emit(Bucket::Counters, text, n, &[]);
            }
        }
        for (i, b) in [Bucket::Counters, Bucket::Samples].into_iter().enumerate() {
            if self.out.points_n[i] > 0 {
                let text = self.out.buf[i].split().freeze();
                match &mut self.out.marks {
                    Some(marks) => {
                        debug_assert_eq!(marks[i].len(), self.out.points_n[i]);
                        emit(b, text, self.out.points_n[i], &marks[i]);
                        marks[i].clear();
                    }
                    None => emit(b, text, self.out.points_n[i], &[]),
                }
                self.out.points_n[i] = 0;
                self.out.buf[i].reserve(self.cfg.chunk_bytes + 4096);
            }
        }
        if self.rollups.enc.lines() > 0 {
            let n = self.rollups.enc.lines();
            emit(Bucket::Rollups, self.rollups.enc.take(), n, &[]);
        }
    }

    /// The length of the series array of `kind`, and its address.
    fn series_len_at(&self, kind: Kind) -> (usize, usize) {
        match kind {
            Kind::Counters => (self.series.cs.len(), self.series.cs.as_ptr() as usize),
            Kind::Samples => (self.series.ss.len(), self.series.ss.as_ptr() as usize),
        }
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
