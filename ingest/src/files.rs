//! The CSV file pipeline: [`crate::follow`] → [`crate::csvrow`] → [`crate::table`] → sink.
//!
//! [`run`] follows the files until shutdown; [`once`] reads them once, stops waiting for joins,
//! writes every minute's rollups, and returns. Snapshots are parsed on a blocking thread (with a
//! second, parse-ahead thread for a large one, see [`crate::table::TableConfig`]), each file's
//! buffer is handed back to the follower for its next read, and their lines are handed to the
//! [`SinkHandle`] in chunks as they are encoded, with back-pressure, so memory stays bounded by
//! the snapshot and the per-series state.
//!
//! Bad rows are skipped and counted per file and reason; the first
//! [`BAD_ROWS_LOGGED`] of each file are logged with line and byte, and a summary is logged
//! whenever a snapshot's counts differ from the previous snapshot's (a bad row that stays in
//! the file is not logged again every minute).

use crate::checkpoint::{Checkpoint, StateDir, FILES_CHECKPOINT};
use crate::csvrow::{Kind, Reason};
use crate::follow::{FileProblem, FollowConfig, FollowError, Followed, Follower, ReadError};
use crate::sink::{SinkClosed, SinkHandle};
use crate::table::TABLE_STATE;
use crate::table::{
    Bucket, FileReport, LineMark, Phases, RollupMode, Table, TableConfig, Tail, ValueOrder,
};
use bytes::Bytes;
use serde::Deserialize;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How many bad rows per file are logged one by one.
pub const BAD_ROWS_LOGGED: usize = 5;

/// `[ingest]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Directory holding the files.
    pub dir: PathBuf,
    pub counters_file: String,
    pub samples_file: String,
    /// `"newest_first"` (v0 is the row's minute) or `"oldest_first"`.
    pub value_order: ValueOrder,
    /// How long a samples value waits for the counters value of its minute.
    #[serde(with = "humantime_serde")]
    pub join_wait: Duration,
    /// A minute's rollups are written once the file's newest minute is this much later
    /// (rounded up to whole minutes; 14m: the minute is in its last rewrite).
    #[serde(with = "humantime_serde")]
    pub settle_time: Duration,
    /// `"live"`: a minute's rollups are written as soon as it has data, rewritten while its
    /// values change, with `settled` true once it has settled; `"settled"`: only once settled.
    pub rollups: RollupMode,
    /// A last row without a newline may be ingested once the file has not changed for this
    /// long (see the completeness rule in [`crate::table::Table::ingest_at`]).
    #[serde(with = "humantime_serde")]
    pub quiet_time: Duration,
    /// A row whose minute is further ahead of the wall clock than this is rejected
    /// (`future`), rounded up to whole minutes.
    #[serde(with = "humantime_serde")]
    pub future_tolerance: Duration,
    /// Full rescan of the files, for filesystems without inotify.
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
    /// A file is read this long after the last event of a burst.
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// A file larger than this many bytes is refused (and never read past it).
    pub max_file_bytes: u64,
    pub counters_bucket: String,
    pub samples_bucket: String,
    pub rollups_bucket: String,
}

/// Default [`FilesConfig::max_file_bytes`]: 512 MiB (a 1,000,000-row counters.csv is about
/// 116 MB).
pub const MAX_FILE_BYTES: u64 = 512 << 20;

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            dir: PathBuf::from("/var/log/sre"),
            counters_file: "counters.csv".into(),
            samples_file: "samples.csv".into(),
            value_order: ValueOrder::NewestFirst,
            join_wait: Duration::from_secs(30),
            settle_time: Duration::from_secs(14 * 60),
            rollups: RollupMode::Live,
            quiet_time: Duration::from_secs(2),
            future_tolerance: Duration::from_secs(5 * 60),
            rescan_interval: Duration::from_secs(10),
            debounce: Duration::from_millis(250),
            max_file_bytes: MAX_FILE_BYTES,
            counters_bucket: "counters".into(),
            samples_bucket: "samples".into(),
            rollups_bucket: "rollups".into(),
        }
    }
}

impl FilesConfig {
    /// Bad values as (key path, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut add = |k: &str, r: String| bad.push((format!("ingest.{k}"), r));
        if self.dir.as_os_str().is_empty() {
            add("dir", "must not be empty".into());
        }
        for (k, v) in [
            ("counters_file", &self.counters_file),
            ("samples_file", &self.samples_file),
        ] {
            if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                add(k, format!("must be a file name in `dir`, got {v:?}"));
            }
        }
        if self.counters_file == self.samples_file {
            add("samples_file", "must differ from counters_file".into());
        }
        let range = |v: Duration, lo: Duration, hi: Duration| v >= lo && v <= hi;
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        for (k, v, lo, hi) in [
            ("join_wait", self.join_wait, s(0), s(600)),
            ("settle_time", self.settle_time, s(0), s(14 * 60)),
            ("quiet_time", self.quiet_time, ms(0), s(60)),
            ("future_tolerance", self.future_tolerance, s(60), s(3600)),
            ("rescan_interval", self.rescan_interval, ms(100), s(3600)),
            ("debounce", self.debounce, ms(0), s(10)),
        ] {
            if !range(v, lo, hi) {
                add(
                    k,
                    format!(
                        "must be between {} and {}, got {}",
                        humantime_serde::re::humantime::format_duration(lo),
                        humantime_serde::re::humantime::format_duration(hi),
                        humantime_serde::re::humantime::format_duration(v)
                    ),
                );
            }
        }
        if self.max_file_bytes < 1024 {
            add(
                "max_file_bytes",
                format!("must be at least 1024, got {}", self.max_file_bytes),
            );
        }
        for (k, v) in [
            ("counters_bucket", &self.counters_bucket),
            ("samples_bucket", &self.samples_bucket),
            ("rollups_bucket", &self.rollups_bucket),
        ] {
            if v.is_empty() {
                add(k, "must not be empty".into());
            }
        }
        bad
    }

    fn table(&self) -> TableConfig {
        TableConfig {
            value_order: self.value_order,
            join_wait: self.join_wait,
            settle_minutes: self.settle_time.as_secs().div_ceil(60) as i64,
            rollups: self.rollups,
            future_minutes: self.future_tolerance.as_secs().div_ceil(60) as i64,
            source: format!(
                "{}\n{}\n{}",
                self.dir.display(),
                self.counters_file,
                self.samples_file
            ),
            ..TableConfig::default()
        }
    }

    fn bucket(&self, b: Bucket) -> &str {
        match b {
            Bucket::Counters => &self.counters_bucket,
            Bucket::Samples => &self.samples_bucket,
            Bucket::Rollups => &self.rollups_bucket,
        }
    }
}

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("the sink has stopped")]
    Sink(#[from] SinkClosed),
    #[error("ingest task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What the pipeline did, per file (counters, samples).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilesStats {
    pub snapshots: [u64; 2],
    pub rows: [u64; 2],
    pub bad: [[u64; Reason::COUNT]; 2],
    /// Points per bucket (counters, samples, rollups).
    pub points: [u64; 3],
    /// Points not sent again because the checkpoint shows the server already has them.
    pub points_skipped: u64,
    /// Per file: why it cannot be read now (`None`: readable or not there yet).
    pub problem: [Option<FileProblem>; 2],
    /// Per file: problems that started (or changed cause) so far.
    pub problems: [u64; 2],
}

impl FilesStats {
    fn set_problems(&mut self, p: &[(Option<FileProblem>, u64)]) {
        for (i, (now, count)) in p.iter().take(2).enumerate() {
            self.problem[i] = *now;
            self.problems[i] = *count;
        }
    }
}

/// Lines sent and not yet acknowledged after which a snapshot waits for the sink's
/// acknowledgement before going on (bounds the checkpoint's pending list: 16 bytes a line).
const ACK_EVERY: usize = 1 << 20;

struct Pipeline {
    cfg: Arc<FilesConfig>,
    table: Option<Table>,
    sink: SinkHandle,
    stats: FilesStats,
    logged: [usize; 2],
    last_bad: [[u64; Reason::COUNT]; 2],
    /// With a state directory: what the server has acknowledged (see [`crate::checkpoint`]).
    ck: Option<Checkpoint>,
    state: Option<Arc<StateDir>>,
    /// [`crate::sink::Flushed::unstored`] at the last acknowledgement.
    unstored: u64,
    /// [`crate::sink::Flushed::unstored`] when the table state was last saved, and when the
    /// sink last lost lines (see [`Pipeline::commit`]).
    unstored_at_save: u64,
    lost_at: Option<std::time::Instant>,
}

/// After the sink lost lines, the table state is not saved for this long (the window and two
/// minutes): a restart meanwhile starts from the state saved before the loss, so it sends the
/// lost points again while the files still have them.
const NO_SAVE_AFTER_LOSS: Duration = Duration::from_secs(17 * 60);

/// Milliseconds with a tenth, for the log.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn kind_of(file: usize) -> Kind {
    if file == 0 {
        Kind::Counters
    } else {
        Kind::Samples
    }
}

impl Pipeline {
    fn new(cfg: Arc<FilesConfig>, sink: SinkHandle) -> Self {
        let table = Table::new(cfg.table());
        Pipeline {
            cfg,
            table: Some(table),
            sink,
            stats: FilesStats::default(),
            logged: [0; 2],
            last_bad: [[0; Reason::COUNT]; 2],
            ck: None,
            state: None,
            unstored: 0,
            unstored_at_save: 0,
            lost_at: None,
        }
    }

    /// Sends only what the server does not have yet, and records what it acknowledges in
    /// `state` (loading the record saved there by the previous run).
    /// The table starts from the state saved there (see [`crate::table::TABLE_STATE`]).
    fn with_state(mut self, state: Arc<StateDir>) -> Self {
        self.ck = Some(Checkpoint::load(&state, FILES_CHECKPOINT));
        self.table = Some(Table::load(
            &state,
            TABLE_STATE,
            self.cfg.table(),
            std::time::Instant::now(),
            std::time::SystemTime::now(),
        ));
        self.state = Some(state);
        self
    }

    /// Waits until the sink has acknowledged everything written so far, then records it in the
    /// checkpoint and (with `save`) writes the checkpoint file and the table state.
    ///
    /// The table state is saved only when every line the table emitted has been acknowledged:
    /// then "emitted" in the saved state means "the server has it", and a new process started
    /// from it sends exactly what changed. When the sink lost lines since the last save (it
    /// could neither deliver nor spool them), the state is not saved for
    /// [`NO_SAVE_AFTER_LOSS`]: the file on disk stays the one from before the loss.
    async fn commit(&mut self, save: bool) -> Result<(), FilesError> {
        let flushed = self.sink.flush_acked().await?;
        let (Some(mut ck), Some(state)) = (self.ck.take(), self.state.clone()) else {
            return Ok(());
        };
        // Points the sink could neither deliver nor spool since the last acknowledgement: the
        // lines since then are not recorded (a restart sends them again).
        let stored = flushed.unstored == self.unstored;
        self.unstored = flushed.unstored;
        if flushed.unstored != self.unstored_at_save {
            self.unstored_at_save = flushed.unstored;
            self.lost_at = Some(std::time::Instant::now());
        }
        let save_table = save
            && self
                .lost_at
                .is_none_or(|t| t.elapsed() >= NO_SAVE_AFTER_LOSS);
        let table = if save_table { self.table.take() } else { None };
        let skipped_before = self.stats.points_skipped;
        let (ck, skipped, table) = tokio::task::spawn_blocking(move || {
            if stored {
                ck.ack();
            } else {
                ck.forget_pending();
            }
            if save {
                if let Err(e) = ck.save(&state) {
                    tracing::warn!(dir = %state.path().display(), error = %e, "Cannot write the checkpoint; a restart would send the window again");
                }
            }
            if let Some(t) = &table {
                let start = std::time::Instant::now();
                let wall = std::time::SystemTime::now();
                match state.write_atomic_with(TABLE_STATE, |f| t.write_state(f, start, wall)) {
                    Ok(bytes) => tracing::debug!(
                        bytes,
                        ms = start.elapsed().as_millis() as u64,
                        "Table state saved"
                    ),
                    Err(e) => {
                        tracing::warn!(dir = %state.path().display(), error = %e, "Cannot write the table state; a restart would start from an older one")
                    }
                }
            }
            let s = ck.stats.skipped;
            (ck, s, table)
        })
        .await?;
        if let Some(t) = table {
            self.table = Some(t);
        }
        self.stats.points_skipped = skipped;
        if skipped_before == 0 && skipped > 0 {
            tracing::info!(
                points_skipped = skipped,
                "Points the server already had before the restart were not sent again"
            );
        }
        self.ck = Some(ck);
        Ok(())
    }

    /// Parses one snapshot on a blocking thread, streaming its lines to the sink. Gives the
    /// snapshot's buffer back (emptied) for the next read. `read`: how long reading the file
    /// took (for the log).
    async fn ingest(
        &mut self,
        file: usize,
        mut data: Vec<u8>,
        tail: Tail,
        finish: bool,
        read: Duration,
    ) -> Result<Vec<u8>, FilesError> {
        let mut table = self.table.take().expect("table present between snapshots");
        let mut ck = self.ck.take();
        let mut unstored = self.unstored;
        let sink = self.sink.clone();
        let cfg = self.cfg.clone();
        let rt = tokio::runtime::Handle::current();
        let now = tokio::time::Instant::now().into_std();
        let joined = tokio::task::spawn_blocking(move || {
            let mut res = Ok(());
            let mut points = [0u64; 3];
            // With a checkpoint, the table hands it each line's series and minute.
            table.mark_lines(ck.is_some());
            let mut emit = |b: Bucket, lines: Bytes, n: usize, marks: &[LineMark]| {
                points[b as usize] += n as u64;
                if res.is_ok() {
                    let bucket = cfg.bucket(b);
                    res = send(&rt, &sink, &mut ck, &mut unstored, bucket, lines, n, marks);
                }
            };
            let mut phases = Phases::default();
            let rep = if data.is_empty() && finish {
                FileReport::default()
            } else {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let rep = table.ingest_at_marked(kind_of(file), &data, tail, now, wall, &mut emit);
                phases = table.last_phases();
                rep
            };
            data.clear();
            if finish {
                let started = std::time::Instant::now();
                table.finish_marked(now, &mut emit);
                phases.rollups += started.elapsed();
            }
            (table, rep, res, points, ck, unstored, data, phases)
        })
        .await;
        let (table, rep, res, points, ck, unstored, data, phases) = joined?;
        self.table = Some(table);
        self.ck = ck;
        self.unstored = unstored;
        for (a, b) in self.stats.points.iter_mut().zip(points) {
            *a += b;
        }
        self.report(file, &rep, read, phases);
        res?;
        Ok(data)
    }

    /// Writes samples values whose wait is over.
    async fn tick(&mut self) -> Result<(), FilesError> {
        let table = self.table.as_mut().expect("table present");
        let mut out: Vec<(Bucket, Bytes, usize, Vec<LineMark>)> = Vec::new();
        table.mark_lines(self.ck.is_some());
        table.tick_marked(tokio::time::Instant::now().into_std(), &mut |b, l, n, m| {
            out.push((b, l, n, m.to_vec()))
        });
        for (b, lines, n, marks) in out {
            self.stats.points[b as usize] += n as u64;
            let (lines, n) = match self.ck.as_mut() {
                Some(ck) => ck.filter_marked(self.cfg.bucket(b), lines, &marks),
                None => (lines, n),
            };
            self.sink.write(self.cfg.bucket(b), lines, n).await?;
        }
        Ok(())
    }

    fn report(&mut self, file: usize, rep: &FileReport, read: Duration, phases: Phases) {
        let name = if file == 0 {
            &self.cfg.counters_file
        } else {
            &self.cfg.samples_file
        };
        self.stats.snapshots[file] += 1;
        self.stats.rows[file] += rep.rows;
        for (a, b) in self.stats.bad[file].iter_mut().zip(rep.bad) {
            *a += b;
        }
        for e in &rep.first_errors {
            if self.logged[file] >= BAD_ROWS_LOGGED {
                break;
            }
            self.logged[file] += 1;
            tracing::warn!(file = %name, line = e.line, byte = e.byte, field = e.field, reason = e.reason.as_str(), "Skipped bad row");
        }
        if rep.bad != self.last_bad[file] {
            self.last_bad[file] = rep.bad;
            let per_reason: Vec<String> = Reason::ALL
                .iter()
                .filter(|r| rep.bad[r.index()] > 0)
                .map(|r| format!("{}={}", r.as_str(), rep.bad[r.index()]))
                .collect();
            tracing::warn!(file = %name, bad_rows = rep.bad_total(), reasons = %per_reason.join(","), "Bad rows in file changed");
        }
        tracing::debug!(
            file = %name,
            rows = rep.rows,
            bad_rows = rep.bad_total(),
            incomplete_tail_bytes = rep.incomplete_tail,
            counters_points = rep.points[0],
            samples_points = rep.points[1],
            rollups_points = rep.points[2],
            repeats = rep.repeats,
            reparsed = rep.reparsed,
            read_ms = ms(read),
            rows_ms = ms(phases.rows),
            rollups_ms = ms(phases.rollups),
            "Ingested snapshot"
        );
    }
}

/// Hands lines to the sink, through the checkpoint when there is one (with the table's marks
/// of the lines); past [`ACK_EVERY`] unacknowledged lines, waits for the sink's
/// acknowledgement and records them.
#[allow(clippy::too_many_arguments)]
fn send(
    rt: &tokio::runtime::Handle,
    sink: &SinkHandle,
    ck: &mut Option<Checkpoint>,
    unstored: &mut u64,
    bucket: &str,
    lines: Bytes,
    n: usize,
    marks: &[LineMark],
) -> Result<(), SinkClosed> {
    let Some(ck) = ck.as_mut() else {
        return rt.block_on(sink.write(bucket, lines, n));
    };
    let (lines, n) = ck.filter_marked(bucket, lines, marks);
    rt.block_on(sink.write(bucket, lines, n))?;
    if ck.pending() >= ACK_EVERY {
        let f = rt.block_on(sink.flush_acked())?;
        if f.unstored == *unstored {
            ck.ack();
        } else {
            ck.forget_pending();
        }
        *unstored = f.unstored;
    }
    Ok(())
}

/// Follows the files in `cfg.dir` until `shutdown` completes, then flushes the sink.
pub async fn run(
    cfg: FilesConfig,
    sink: SinkHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<FilesStats, FilesError> {
    run_with_stats(cfg, sink, shutdown, Default::default()).await
}

/// [`run`], copying the counters into `live` after each snapshot and tick (for the service's
/// health reports).
pub async fn run_with_stats(
    cfg: FilesConfig,
    sink: SinkHandle,
    shutdown: impl Future<Output = ()>,
    live: Arc<std::sync::Mutex<FilesStats>>,
) -> Result<FilesStats, FilesError> {
    run_with_state(cfg, sink, shutdown, live, None).await
}

/// [`run_with_stats`] with a state directory: only points the server does not have yet are
/// sent, also after a restart (see [`crate::checkpoint`]).
pub async fn run_with_state(
    cfg: FilesConfig,
    sink: SinkHandle,
    shutdown: impl Future<Output = ()>,
    live: Arc<std::sync::Mutex<FilesStats>>,
    state: Option<Arc<StateDir>>,
) -> Result<FilesStats, FilesError> {
    let cfg = Arc::new(cfg);
    let names = vec![cfg.counters_file.clone(), cfg.samples_file.clone()];
    let fcfg = FollowConfig {
        debounce: cfg.debounce,
        rescan: cfg.rescan_interval,
        quiet: cfg.quiet_time,
        max_bytes: cfg.max_file_bytes,
    };
    let mut follower = Follower::new(&cfg.dir, &names, fcfg)?;
    tracing::info!(dir = %cfg.dir.display(), counters = %cfg.counters_file, samples = %cfg.samples_file, "Following files");
    let mut p = Pipeline::new(cfg, sink);
    if let Some(state) = state {
        p = p.with_state(state);
    }
    tokio::pin!(shutdown);
    loop {
        let deadline = p
            .table
            .as_ref()
            .and_then(|t| t.next_deadline())
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = &mut shutdown => break,
            ev = follower.next_event() => {
                let snap = match ev {
                    Followed::Snapshot(s) => s,
                    Followed::Problems => {
                        p.stats.set_problems(&follower.problems());
                        if let Ok(mut l) = live.lock() {
                            l.clone_from(&p.stats);
                        }
                        continue;
                    }
                };
                let tail = if snap.tail_complete {
                    Tail::Quiet
                } else {
                    Tail::Wait
                };
                let read = follower.read_time(snap.file);
                let buf = p.ingest(snap.file, snap.data, tail, false, read).await?;
                follower.recycle(snap.file, buf);
                p.commit(true).await?;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                p.tick().await?;
                p.commit(false).await?;
            }
        }
        if let Ok(mut l) = live.lock() {
            l.clone_from(&p.stats);
        }
    }
    p.commit(true).await?;
    Ok(p.stats)
}

/// Reads both files once (a missing file is logged and skipped; a file that cannot be read is
/// logged as an error with its cause, counted in [`FilesStats::problems`] and skipped), writes
/// every point and every minute's rollups, flushes the sink. A last row without a newline
/// counts as complete.
pub async fn once(cfg: &FilesConfig, sink: SinkHandle) -> Result<FilesStats, FilesError> {
    let mut cfg = cfg.clone();
    if cfg.rollups == RollupMode::Live {
        // Every minute settles at the end: each rollup is written once, with `settled=true`.
        cfg.rollups = RollupMode::Final;
    }
    let cfg = Arc::new(cfg);
    let mut p = Pipeline::new(cfg.clone(), sink);
    let files = [&cfg.counters_file, &cfg.samples_file];
    let mut data = Vec::new();
    for (i, name) in files.iter().enumerate() {
        let path = cfg.dir.join(name);
        data.clear();
        let started = std::time::Instant::now();
        match crate::follow::read_into(&path, &mut data, cfg.max_file_bytes) {
            Ok(()) => {}
            Err(ReadError::Missing) => {
                tracing::warn!(file = %path.display(), "File not found, skipped");
            }
            Err(ReadError::Problem(e)) => {
                p.stats.problem[i] = Some(e);
                p.stats.problems[i] += 1;
                let access = (e == FileProblem::PermissionDenied)
                    .then(|| crate::follow::access_context(&path));
                tracing::error!(file = %path.display(), cause = e.cause(), access, hint = e.hint(), "Cannot read file, skipped: {e}");
            }
        }
        let last = i == files.len() - 1;
        if !data.is_empty() || last {
            data = p
                .ingest(i, data, Tail::Complete, last, started.elapsed())
                .await?;
        }
    }
    p.sink.flush().await?;
    Ok(p.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            FilesConfig::default().validate(),
            Vec::<(String, String)>::new()
        );
    }

    #[test]
    fn validate_names_keys() {
        let cfg = FilesConfig {
            samples_file: "counters.csv".into(),
            counters_file: "a/b".into(),
            rescan_interval: Duration::from_millis(1),
            settle_time: Duration::from_secs(3600),
            rollups_bucket: String::new(),
            ..FilesConfig::default()
        };
        let keys: Vec<String> = cfg.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                "ingest.counters_file",
                "ingest.settle_time",
                "ingest.rescan_interval",
                "ingest.rollups_bucket"
            ]
        );
        let cfg = FilesConfig {
            future_tolerance: Duration::from_secs(10),
            ..FilesConfig::default()
        };
        assert_eq!(
            cfg.validate(),
            vec![(
                "ingest.future_tolerance".to_string(),
                "must be between 1m and 1h, got 10s".to_string()
            )]
        );
        assert_eq!(FilesConfig::default().table().future_minutes, 5);
        let cfg = FilesConfig {
            samples_file: "counters.csv".into(),
            ..FilesConfig::default()
        };
        assert_eq!(
            cfg.validate(),
            vec![(
                "ingest.samples_file".to_string(),
                "must differ from counters_file".to_string()
            )]
        );
    }

    #[test]
    fn settle_rounds_up_to_minutes() {
        let cfg = FilesConfig {
            settle_time: Duration::from_secs(61),
            ..FilesConfig::default()
        };
        assert_eq!(cfg.table().settle_minutes, 2);
        assert_eq!(FilesConfig::default().table().settle_minutes, 14);
    }
}
