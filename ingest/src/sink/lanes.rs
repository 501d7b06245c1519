//! Per-bucket delivery state of the InfluxDB sink: one lane per bucket.
//!
//! A bucket that InfluxDB refuses (401, 403, 404: token, org or bucket) is *held*: only its own
//! batches wait (in the spool, or in memory when the spool cannot take them) and are retried
//! with their own backoff, while the other buckets keep flowing. Each bucket's state is learned
//! from its first write and logged once (`InfluxDB accepts writes to bucket` /
//! `InfluxDB refuses writes to bucket`), then again only when it changes. Points lost for a
//! bucket (spool and memory both exhausted) are counted per bucket with the minutes they
//! covered.
//!
//! What the lanes know is shared with `/metrics` through [`BucketView`]s.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One bucket as seen from outside (metrics, tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BucketView {
    /// The HTTP status of the refusal while the bucket is held; `None` while it is accepted (or
    /// not yet tried).
    pub refused: Option<u16>,
    /// Refusals answered for this bucket since the start.
    pub refusals: u64,
    /// Points the server accepted for this bucket.
    pub points_written: u64,
    /// Points lost because neither the server, the memory buffer nor the spool could keep them
    /// (including the oldest spooled batches deleted for room).
    pub points_lost: u64,
    /// Oldest and newest timestamp (seconds) of the points lost; 0 when none.
    pub lost_oldest: i64,
    pub lost_newest: i64,
}

/// Shared per-bucket views, by bucket name.
pub type BucketViews = Arc<Mutex<BTreeMap<String, BucketView>>>;

#[derive(Debug, Default)]
struct Lane {
    /// Refused: the status, the refusals in a row, and when to try again.
    held: Option<(u16, u32, Instant)>,
    /// The bucket's state has been logged at least once.
    known: bool,
    /// A loss has been logged since the bucket last delivered.
    lost_logged: bool,
}

/// The writer's per-bucket state.
pub(crate) struct Lanes {
    lanes: HashMap<String, Lane>,
    views: BucketViews,
    retry_base: Duration,
    retry_max: Duration,
}

impl Lanes {
    pub(crate) fn new(views: BucketViews, retry_base: Duration, retry_max: Duration) -> Lanes {
        Lanes {
            lanes: HashMap::new(),
            views,
            retry_base,
            retry_max,
        }
    }

    fn view(&self, bucket: &str, f: impl FnOnce(&mut BucketView)) {
        if let Ok(mut v) = self.views.lock() {
            f(v.entry(bucket.to_owned()).or_default());
        }
    }

    /// Whether `bucket` is refused (held), whatever its retry time.
    pub(crate) fn is_held(&self, bucket: &str) -> bool {
        self.lanes.get(bucket).is_some_and(|l| l.held.is_some())
    }

    /// Whether a batch of `bucket` may be sent now: not held, or its retry is due.
    pub(crate) fn sendable(&self, bucket: &str, now: Instant) -> bool {
        match self.lanes.get(bucket).and_then(|l| l.held) {
            Some((_, _, at)) => at <= now,
            None => true,
        }
    }

    /// The earliest retry of a held bucket that `waiting` says has batches waiting.
    pub(crate) fn next_retry(&self, waiting: impl Fn(&str) -> bool) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|(b, l)| l.held.map(|(_, _, at)| (b, at)))
            .filter(|(b, _)| waiting(b))
            .map(|(_, at)| at)
            .min()
    }

    /// The server accepted `points` of `bucket`.
    pub(crate) fn accepted(&mut self, bucket: &str, points: u64) {
        let lane = self.lanes.entry(bucket.to_owned()).or_default();
        if let Some((status, refusals, _)) = lane.held.take() {
            tracing::info!(
                bucket,
                was = status,
                refusals,
                "InfluxDB accepts writes to bucket again; sending its held batches"
            );
        } else if !lane.known {
            tracing::info!(bucket, "InfluxDB accepts writes to bucket");
        }
        lane.known = true;
        lane.lost_logged = false;
        self.view(bucket, |v| {
            v.refused = None;
            v.points_written += points;
        });
    }

    /// The server refused `bucket` (401, 403, 404): holds it until a retry (its own backoff,
    /// exponential with jitter between `retry_base` and `retry_max`). Returns the delay.
    pub(crate) fn refused(&mut self, bucket: &str, status: u16, message: &str) -> Duration {
        let lane = self.lanes.entry(bucket.to_owned()).or_default();
        let attempt = lane.held.map_or(0, |(_, n, _)| n);
        let delay = super::backoff::delay(self.retry_base, self.retry_max, attempt);
        let changed = lane.held.map(|(s, _, _)| s) != Some(status);
        if changed {
            tracing::error!(
                bucket,
                status,
                message,
                retry_in = ?delay,
                "InfluxDB refuses writes to bucket (check the token, org and bucket); holding only this bucket's batches and retrying, other buckets keep flowing"
            );
        } else {
            tracing::debug!(bucket, status, retry_in = ?delay, "InfluxDB refused the bucket again");
        }
        lane.known = true;
        lane.held = Some((status, attempt.saturating_add(1), Instant::now() + delay));
        self.view(bucket, |v| {
            v.refused = Some(status);
            v.refusals += 1;
        });
        delay
    }

    /// `points` of `bucket` covering timestamps `oldest..=newest` are lost: counted, and logged
    /// once until the bucket delivers again.
    pub(crate) fn lost(&mut self, bucket: &str, points: u64, oldest: i64, newest: i64, why: &str) {
        if points == 0 {
            return;
        }
        let lane = self.lanes.entry(bucket.to_owned()).or_default();
        if !lane.lost_logged {
            tracing::warn!(
                bucket,
                points,
                oldest_minute = %super::influx::minute(oldest),
                newest_minute = %super::influx::minute(newest),
                why,
                "Points lost for bucket (further losses are counted in srewatch_sink_bucket_points_lost, logged again after it delivers)"
            );
            lane.lost_logged = true;
        }
        self.view(bucket, |v| {
            v.points_lost += points;
            if oldest <= newest && oldest > 0 {
                if v.lost_oldest == 0 || oldest < v.lost_oldest {
                    v.lost_oldest = oldest;
                }
                v.lost_newest = v.lost_newest.max(newest);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_bucket_is_held_alone_and_released_on_success() {
        let views = BucketViews::default();
        let mut l = Lanes::new(
            views.clone(),
            Duration::from_millis(100),
            Duration::from_millis(400),
        );
        let now = Instant::now();
        assert!(l.sendable("srewatch", now) && l.sendable("counters", now));
        let d = l.refused("srewatch", 404, "database not found");
        assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        assert!(l.is_held("srewatch") && !l.is_held("counters"));
        assert!(!l.sendable("srewatch", Instant::now()));
        assert!(l.sendable("srewatch", Instant::now() + Duration::from_millis(101)));
        assert!(l.sendable("counters", Instant::now()));
        // The second refusal doubles the backoff.
        let d = l.refused("srewatch", 404, "database not found");
        assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        l.accepted("counters", 40);
        l.lost("probe", 5, 120, 240, "test");
        {
            let v = views.lock().unwrap();
            assert_eq!(v["srewatch"].refused, Some(404));
            assert_eq!(v["srewatch"].refusals, 2);
            assert_eq!(v["counters"].points_written, 40);
            assert_eq!(
                (
                    v["probe"].points_lost,
                    v["probe"].lost_oldest,
                    v["probe"].lost_newest
                ),
                (5, 120, 240)
            );
        }
        l.accepted("srewatch", 3);
        assert!(!l.is_held("srewatch"));
        assert_eq!(views.lock().unwrap()["srewatch"].refused, None);
        assert_eq!(l.next_retry(|_| true), None);
    }
}
