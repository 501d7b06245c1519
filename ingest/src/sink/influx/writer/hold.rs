//! The writer's memory buffer: where a batch goes when it is cut, and what happens to batches
//! that cannot be sent now (global outage, or a refused bucket) when the spool cannot take
//! them. A child module of `influx::writer` (it works on the writer's private state).
//!
//! Rules, for each bucket: its spooled batches are older than its batches in memory, which are
//! older than its pending lines, so replaying the spool first and memory next keeps its order
//! (the server keeps the last write of a point, so order is what makes revised values win).
//!
//! - A cut batch goes to the spool when its bucket has batches there or cannot be sent now
//!   (the server is failing, or refuses the bucket), nothing of its bucket is in memory or in
//!   flight from memory, and the spool has room *without deleting anything*. Otherwise it
//!   waits in memory: live data is never what makes the spool delete older batches while the
//!   server answers.
//! - A batch in memory whose bucket cannot be sent, and that the spool cannot take, is
//!   *parked*: flushes stop waiting for it and its points count as not stored.
//! - Past `memory_max_bytes`, the oldest parked batches go to the spool anyway (which then
//!   deletes its oldest batches) or, when it is unusable, are lost, counted per bucket with the
//!   minutes they covered. Only batches that can be sent now hold the producers back.

use super::{time_range, Ready, Writer};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use tokio::time::Instant;

impl Writer {
    /// Whether batches of `bucket` cannot be sent now.
    pub(super) fn blocked(&self, bucket: &str) -> bool {
        self.down || self.lanes.is_held(bucket)
    }

    /// Whether a batch of `bucket` is in memory or in flight from it.
    fn in_memory(&self, bucket: &str) -> bool {
        self.sending_direct.as_deref() == Some(bucket)
            || self.ready.iter().any(|r| r.bucket == bucket)
    }

    /// A batch just cut: to the spool or to memory (see the module rules).
    pub(super) fn place(&mut self, mut r: Ready) {
        let wants_spool = self.spool.has_bucket(&r.bucket) || self.blocked(&r.bucket);
        if wants_spool
            && !self.in_memory(&r.bucket)
            && self
                .spool
                .push_within(&r.bucket, &r.lines, r.points, &self.stats)
        {
            self.done_seq = self.done_seq.max(r.seq);
            return;
        }
        if self.blocked(&r.bucket) {
            self.park(&mut r);
        }
        self.ready_bytes += r.lines.len();
        self.ready.push_back(r);
        self.overflow();
    }

    fn park(&mut self, r: &mut Ready) {
        if !r.parked {
            r.parked = true;
            self.parked_bytes += r.lines.len();
            self.spool.unstored += r.points as u64;
            self.done_seq = self.done_seq.max(r.seq);
        }
    }

    /// Removes the `i`-th batch from memory.
    pub(super) fn take_ready(&mut self, i: usize) -> Ready {
        let r = self.ready.remove(i).expect("index in range");
        self.ready_bytes -= r.lines.len();
        if r.parked {
            self.parked_bytes -= r.lines.len();
        }
        r
    }

    /// After a failure: the batches in memory whose bucket cannot be sent go to the spool in
    /// order while it has room; each bucket's first one that does not fit, and all its later
    /// ones, stay in memory, parked.
    pub(super) fn spool_blocked(&mut self) {
        let mut stuck: HashSet<String> = HashSet::new();
        let mut keep = VecDeque::with_capacity(self.ready.len());
        while let Some(mut r) = self.ready.pop_front() {
            if self.blocked(&r.bucket) {
                if !stuck.contains(&r.bucket)
                    && self
                        .spool
                        .push_within(&r.bucket, &r.lines, r.points, &self.stats)
                {
                    self.ready_bytes -= r.lines.len();
                    if r.parked {
                        self.parked_bytes -= r.lines.len();
                    }
                    self.done_seq = self.done_seq.max(r.seq);
                    continue;
                }
                stuck.insert(r.bucket.clone());
                self.park(&mut r);
            }
            keep.push_back(r);
        }
        self.ready = keep;
        self.overflow();
    }

    /// Past `memory_max_bytes`: the oldest batches that cannot be sent now go to the spool,
    /// deleting its oldest batches for room, or are lost when it is unusable.
    pub(super) fn overflow(&mut self) {
        while self.ready_bytes as u64 > self.cfg.memory_max_bytes {
            let Some(i) = self.ready.iter().position(|r| {
                self.blocked(&r.bucket) && self.sending_direct.as_deref() != Some(&r.bucket)
            }) else {
                break; // only sendable batches: the producers wait
            };
            let r = self.take_ready(i);
            self.spool_or_lose(r, "memory buffer full and the spool cannot take the batch");
        }
    }

    /// To the spool (deleting its oldest batches for room), or lost.
    fn spool_or_lose(&mut self, r: Ready, why: &str) {
        if !self.spool.push(&r.bucket, &r.lines, r.points, &self.stats) {
            let (oldest, newest) = time_range(&r.lines);
            self.lanes
                .lost(&r.bucket, r.points as u64, oldest, newest, why);
            if !r.parked {
                self.spool.unstored += r.points as u64;
            }
        }
        self.done_seq = self.done_seq.max(r.seq);
        self.note_evicted();
    }

    /// Counts per bucket the batches the spool deleted for room.
    pub(super) fn note_evicted(&mut self) {
        let Some(s) = self.spool.spool.as_mut() else {
            return;
        };
        for (bucket, ev) in s.take_evicted() {
            self.lanes.lost(
                &bucket,
                ev.points,
                ev.oldest,
                ev.newest,
                "spool full: its oldest batches deleted for newer ones",
            );
        }
    }

    /// Closing with the server failing: every batch in memory to the spool, in order.
    pub(super) fn spool_ready(&mut self) {
        while !self.ready.is_empty() {
            let r = self.take_ready(0);
            self.spool_or_lose(r, "sink closing and the spool cannot take the batch");
        }
    }

    /// Closing: batches that must not be sent before the spool's (their bucket has batches
    /// there) or cannot be sent (refused bucket) go to the spool.
    pub(super) fn spool_at_close(&mut self) {
        let mut i = 0;
        while i < self.ready.len() {
            let b = &self.ready[i].bucket;
            if self.sending_direct.as_deref() != Some(b)
                && (self.spool.has_bucket(b) || self.lanes.is_held(b))
            {
                let r = self.take_ready(i);
                self.spool_or_lose(r, "sink closing and the spool cannot take the batch");
            } else {
                i += 1;
            }
        }
    }

    /// The next retry of a held bucket that has something waiting, if later than now.
    pub(super) fn next_lane_retry(&self) -> Option<Instant> {
        let now = Instant::now();
        self.lanes
            .next_retry(|b| self.spool.has_bucket(b) || self.ready.iter().any(|r| r.bucket == b))
            .filter(|&t| t > now)
    }

    /// Publishes the memory buffer's depth.
    pub(super) fn sync_memory(&self) {
        self.stats
            .memory_batches
            .store(self.ready.len() as u64, Relaxed);
        let points: usize = self.ready.iter().map(|r| r.points).sum();
        self.stats.memory_points.store(points as u64, Relaxed);
    }
}
