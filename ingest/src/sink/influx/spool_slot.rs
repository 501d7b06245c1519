//! The spool, or the reason it cannot be used (retried on the next push).

use super::stats::InfluxStats;
use super::StartError;
use crate::sink::spool::{Evicted, Spool, SpoolError};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Widens the range of dropped timestamps in `stats` by `ev`'s.
pub(super) fn note_range(stats: &InfluxStats, ev: &Evicted) {
    if ev.oldest > ev.newest {
        return; // unknown (first-format files)
    }
    let lo = stats.spool_dropped_oldest.load(Relaxed);
    if lo == 0 || ev.oldest < lo {
        stats.spool_dropped_oldest.store(ev.oldest, Relaxed);
    }
    stats.spool_dropped_newest.fetch_max(ev.newest, Relaxed);
}

/// A timestamp's minute as RFC 3339 (`2026-11-30T04:12:00Z`), `unknown` when not recorded.
pub(crate) fn minute(t: i64) -> String {
    if t == i64::MAX || t == i64::MIN || t < 0 {
        return "unknown".into();
    }
    let m = t - t.rem_euclid(60);
    humantime_serde::re::humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(m as u64),
    )
    .to_string()
}

pub(super) struct SpoolSlot {
    pub(super) dir: PathBuf,
    pub(super) max_bytes: u64,
    pub(super) spool: Option<Spool>,
    /// An error has been logged and the spool has not worked since.
    pub(super) failing: bool,
    /// What the spool has dropped for room since it was last empty (the episode): logged when
    /// it starts and summarised when the spool empties or the sink closes.
    pub(super) full: Option<Evicted>,
    pub(super) corrupt_seen: u64,
    pub(super) corrupt_points_seen: u64,
    pub(super) gone_points_seen: u64,
    /// Points a flush was answered for without the server or the spool having them: lost, or
    /// held in memory only (see [`Flushed::unstored`]).
    pub(super) unstored: u64,
}

impl SpoolSlot {
    pub(super) fn open(
        dir: &Path,
        max_bytes: u64,
        stats: &InfluxStats,
    ) -> Result<SpoolSlot, StartError> {
        let mut slot = SpoolSlot {
            dir: dir.to_path_buf(),
            max_bytes,
            spool: None,
            failing: false,
            full: None,
            corrupt_seen: 0,
            corrupt_points_seen: 0,
            gone_points_seen: 0,
            unstored: 0,
        };
        match Spool::open(dir, max_bytes) {
            Ok((s, ev)) => {
                if ev.points > 0 {
                    stats.points_spool_dropped.fetch_add(ev.points, Relaxed);
                    note_range(stats, &ev);
                    tracing::warn!(dir = %dir.display(), batches = ev.batches, points = ev.points, oldest_minute = %minute(ev.oldest), newest_minute = %minute(ev.newest), max_bytes, "Spool larger than spool_max_bytes; dropped its oldest batches");
                }
                if !s.is_empty() {
                    tracing::info!(dir = %dir.display(), batches = s.len(), points = s.points(), bytes = s.bytes(), "Spool holds batches from an earlier run; replaying them");
                }
                slot.spool = Some(s);
            }
            Err(e @ SpoolError::Locked { .. }) => return Err(StartError::Spool(e)),
            Err(e) => {
                tracing::error!(error = %e, "Spool unusable; batches the server cannot take will be dropped until it works");
                slot.failing = true;
            }
        }
        slot.sync_stats(stats);
        Ok(slot)
    }

    pub(super) fn is_empty(&self) -> bool {
        match &self.spool {
            Some(s) => s.is_empty(),
            None => true,
        }
    }

    pub(super) fn has_bucket(&self, bucket: &str) -> bool {
        self.spool.as_ref().is_some_and(|s| s.has_bucket(bucket))
    }

    /// The spool, reopened if it could not be opened before.
    pub(super) fn reopen(&mut self, stats: &InfluxStats) {
        if self.spool.is_none() {
            if let Ok((s, ev)) = Spool::open(&self.dir, self.max_bytes) {
                stats.points_spool_dropped.fetch_add(ev.points, Relaxed);
                self.spool = Some(s);
            }
        }
    }

    pub(super) fn unusable(&self) -> SpoolError {
        SpoolError::Dir {
            path: self.dir.clone(),
            source: std::io::Error::other("cannot open spool directory"),
        }
    }

    /// `f` on the spool (reopened if it could not be opened before), or why it is unusable.
    fn with_spool<T>(
        &mut self,
        stats: &InfluxStats,
        f: impl FnOnce(&mut Spool) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        self.reopen(stats);
        match self.spool.as_mut() {
            Some(s) => f(s),
            None => Err(self.unusable()),
        }
    }

    /// A write succeeded: logs the recovery if the spool was failing.
    fn writable_again(&mut self) {
        if self.failing {
            tracing::info!(dir = %self.dir.display(), "Spool writable again");
            self.failing = false;
        }
    }

    /// A write failed: whether this starts a failing episode (to be logged, once).
    fn starts_failing(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }

    /// Spools a batch if it fits without deleting older ones; false (nothing lost) if the spool
    /// is full or unusable.
    pub(super) fn push_within(
        &mut self,
        bucket: &str,
        lines: &[u8],
        points: usize,
        stats: &InfluxStats,
    ) -> bool {
        let stored = match self.with_spool(stats, |s| s.push_within(bucket, lines, points)) {
            Ok(stored) => {
                if stored {
                    self.writable_again();
                }
                stored
            }
            Err(e) => {
                if self.starts_failing() {
                    tracing::error!(error = %e, bucket, points, "Cannot spool batch; holding batches in memory (up to memory_max_bytes) until the server or the spool takes them");
                }
                false
            }
        };
        self.sync_stats(stats);
        stored
    }

    /// Spools a batch, deleting the oldest ones for room. False if the spool is unusable (the
    /// batch is then lost: counted in `points_spool_dropped`, the caller counts it per bucket).
    pub(super) fn push(
        &mut self,
        bucket: &str,
        lines: &[u8],
        points: usize,
        stats: &InfluxStats,
    ) -> bool {
        let result = self.with_spool(stats, |s| s.push(bucket, lines, points));
        let stored = result.is_ok();
        match result {
            Ok(ev) => {
                self.writable_again();
                if ev.points > 0 {
                    stats.points_spool_dropped.fetch_add(ev.points, Relaxed);
                    note_range(stats, &ev);
                    match self.full.as_mut() {
                        Some(f) => f.merge(&ev),
                        None => {
                            tracing::warn!(dir = %self.dir.display(), max_bytes = self.max_bytes, batches = ev.batches, points = ev.points, oldest_minute = %minute(ev.oldest), newest_minute = %minute(ev.newest), "Spool full; dropping its oldest batches (a summary follows when it empties)");
                            self.full = Some(ev);
                        }
                    }
                }
            }
            Err(e) => {
                stats.points_spool_dropped.fetch_add(points as u64, Relaxed);
                if self.starts_failing() {
                    tracing::error!(error = %e, bucket, points, "Cannot spool batch; dropped it (further drops are counted, not logged)");
                }
            }
        }
        self.sync_stats(stats);
        stored
    }

    /// Logs, once per episode, everything the full spool dropped.
    pub(super) fn summarise(&mut self, why: &str) {
        if let Some(ev) = self.full.take() {
            tracing::warn!(dir = %self.dir.display(), batches = ev.batches, points = ev.points, oldest_minute = %minute(ev.oldest), newest_minute = %minute(ev.newest), "{why}; points dropped while it was full");
        }
    }

    pub(super) fn sync_stats(&mut self, stats: &InfluxStats) {
        let (batches, bytes, points, corrupt, gone) = match &self.spool {
            Some(s) => (s.len() as u64, s.bytes(), s.points(), s.corrupt(), s.gone()),
            None => (0, 0, 0, Default::default(), Default::default()),
        };
        if gone.points > self.gone_points_seen {
            stats
                .points_spool_dropped
                .fetch_add(gone.points - self.gone_points_seen, Relaxed);
            self.gone_points_seen = gone.points;
        }
        if batches == 0 {
            self.summarise("Spool emptied");
        }
        stats.spool_batches.store(batches, Relaxed);
        stats.spool_bytes.store(bytes, Relaxed);
        stats.spool_points.store(points, Relaxed);
        if corrupt.files > self.corrupt_seen {
            stats
                .spool_corrupt_files
                .fetch_add(corrupt.files - self.corrupt_seen, Relaxed);
            self.corrupt_seen = corrupt.files;
        }
        // Points of corrupt files found at replay are lost: count them as dropped once.
        if corrupt.points > self.corrupt_points_seen {
            stats
                .points_spool_dropped
                .fetch_add(corrupt.points - self.corrupt_points_seen, Relaxed);
            self.corrupt_points_seen = corrupt.points;
        }
    }
}
