//! Live counters of the InfluxDB sink and their snapshot.

use crate::sink::lanes::{BucketView, BucketViews};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Live counters of the InfluxDB sink, shared with whoever reports health. One field per
/// exported figure (more than 12 fields): each is one counter of the same sink, updated by
/// the writer and read together by [`InfluxStats::snapshot`].
#[derive(Debug)]
pub struct InfluxStats {
    pub(super) points_written: AtomicU64,
    pub(super) bytes_written: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) requests: AtomicU64,
    pub(super) request_failures: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) points_rejected: AtomicU64,
    pub(super) points_spool_dropped: AtomicU64,
    pub(super) spool_batches: AtomicU64,
    pub(super) spool_bytes: AtomicU64,
    pub(super) spool_points: AtomicU64,
    pub(super) spool_corrupt_files: AtomicU64,
    pub(super) spool_dropped_oldest: AtomicI64,
    pub(super) spool_dropped_newest: AtomicI64,
    pub(super) write_latency: Mutex<Histogram<u64>>,
    pub(super) request_latency: Mutex<Histogram<u64>>,
    pub(super) memory_batches: AtomicU64,
    pub(super) memory_points: AtomicU64,
    pub(super) too_large: AtomicU64,
    pub(super) buckets: BucketViews,
}

/// A copy of [`InfluxStats`] at one moment (more than 12 fields: one per exported figure,
/// as in [`InfluxStats`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InfluxSnapshot {
    /// Points the server accepted.
    pub points_written: u64,
    /// Line-protocol bytes the server accepted (before gzip).
    pub bytes_written: u64,
    /// Request body bytes sent (after gzip), retries and bisection included.
    pub bytes_sent: u64,
    pub requests: u64,
    /// Requests that failed for a reason that may pass: network, timeout, 429, 5xx.
    pub request_failures: u64,
    /// Requests answered 401, 403 or 404 (token, org or bucket refused).
    pub refused: u64,
    /// Lines the server rejected on their own (400/413/422), dropped.
    pub points_rejected: u64,
    /// Points dropped because the spool was full (oldest first) or could not be written.
    pub points_spool_dropped: u64,
    pub spool_batches: u64,
    pub spool_bytes: u64,
    pub spool_points: u64,
    /// Spool files found torn or corrupt and set aside.
    pub spool_corrupt_files: u64,
    /// Oldest and newest timestamp (seconds) of the points the spool dropped because it was
    /// full, over the sink's life; 0 when none (or unknown).
    pub spool_dropped_oldest: i64,
    pub spool_dropped_newest: i64,
    /// From a batch's first line reaching the sink to the server accepting it, for batches sent
    /// without going through the spool.
    pub write_latency: Latency,
    /// HTTP round trips of accepted requests.
    pub request_latency: Latency,
    /// Batches and points waiting in memory (behind the spool, for a refused bucket, or while
    /// the spool cannot take them).
    pub memory_batches: u64,
    pub memory_points: u64,
    /// Requests answered 413 at the splitting floor (the data was kept, not dropped).
    pub too_large: u64,
    /// Per bucket: refused or not, points written and lost.
    pub buckets: BTreeMap<String, BucketView>,
}

/// Latency summary in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

pub(super) fn histogram() -> Mutex<Histogram<u64>> {
    Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds"))
}

pub(super) fn record(h: &Mutex<Histogram<u64>>, d: Duration) {
    if let Ok(mut h) = h.lock() {
        h.saturating_record((d.as_micros() as u64).max(1));
    }
}

pub(super) fn summary(h: &Mutex<Histogram<u64>>) -> Latency {
    match h.lock() {
        Ok(h) if !h.is_empty() => Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        },
        _ => Latency::default(),
    }
}

impl InfluxStats {
    pub(super) fn new() -> Self {
        InfluxStats {
            points_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            request_failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            points_rejected: AtomicU64::new(0),
            points_spool_dropped: AtomicU64::new(0),
            spool_batches: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            spool_points: AtomicU64::new(0),
            spool_corrupt_files: AtomicU64::new(0),
            spool_dropped_oldest: AtomicI64::new(0),
            spool_dropped_newest: AtomicI64::new(0),
            write_latency: histogram(),
            request_latency: histogram(),
            memory_batches: AtomicU64::new(0),
            memory_points: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            buckets: BucketViews::default(),
        }
    }

    /// A copy of the write-latency histogram (microseconds), for a Prometheus histogram.
    pub fn write_latency_histogram(&self) -> Histogram<u64> {
        match self.write_latency.lock() {
            Ok(h) => h.clone(),
            Err(_) => Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds"),
        }
    }

    pub fn snapshot(&self) -> InfluxSnapshot {
        InfluxSnapshot {
            points_written: self.points_written.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            requests: self.requests.load(Relaxed),
            request_failures: self.request_failures.load(Relaxed),
            refused: self.refused.load(Relaxed),
            points_rejected: self.points_rejected.load(Relaxed),
            points_spool_dropped: self.points_spool_dropped.load(Relaxed),
            spool_batches: self.spool_batches.load(Relaxed),
            spool_bytes: self.spool_bytes.load(Relaxed),
            spool_points: self.spool_points.load(Relaxed),
            spool_corrupt_files: self.spool_corrupt_files.load(Relaxed),
            spool_dropped_oldest: self.spool_dropped_oldest.load(Relaxed),
            spool_dropped_newest: self.spool_dropped_newest.load(Relaxed),
            write_latency: summary(&self.write_latency),
            request_latency: summary(&self.request_latency),
            memory_batches: self.memory_batches.load(Relaxed),
            memory_points: self.memory_points.load(Relaxed),
            too_large: self.too_large.load(Relaxed),
            buckets: self.buckets.lock().map(|b| b.clone()).unwrap_or_default(),
        }
    }
}
