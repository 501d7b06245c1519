//! The writer task: batching, sending, spooling, flushes (its memory buffer: `hold.rs`).

use super::batch::{count_lines, deliver, fit, Delivery};
use super::config::InfluxConfig;
use super::http::{Failure, Http, TOO_LARGE_FLOOR};
use super::spool_slot::SpoolSlot;
use super::stats::{record, InfluxStats};
use crate::sink::backoff;
use crate::sink::lanes::Lanes;
use crate::sink::spool::time_range;
use crate::sink::{Batch, Command, Flushed, SinkStats};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

mod hold;

pub(super) struct Pending {
    pub(super) bucket: String,
    pub(super) chunks: Vec<Bytes>,
    pub(super) bytes: usize,
    pub(super) points: usize,
    pub(super) since: Instant,
}

pub(super) struct Ready {
    pub(super) bucket: String,
    pub(super) lines: Bytes,
    pub(super) points: usize,
    pub(super) since: Instant,
    pub(super) seq: u64,
    /// Held in memory because its bucket cannot be sent now and the spool could not take it:
    /// flushes no longer wait for it, and its points are counted in `unstored`.
    pub(super) parked: bool,
}

pub(super) enum Source {
    Direct { seq: u64, since: Instant },
    Spool { seq: u64 },
}

/// The sequence number of a batch in flight from memory (not from the spool, which is
/// stored already).
fn direct_seq(f: &Option<InFlight>) -> Option<u64> {
    match f.as_ref()?.source {
        Source::Direct { seq, .. } => Some(seq),
        Source::Spool { .. } => None,
    }
}

pub(super) struct InFlight {
    pub(super) source: Source,
    pub(super) bucket: String,
    pub(super) fut: Pin<Box<dyn Future<Output = Delivery> + Send>>,
}

pub(super) enum Event {
    Cmd(Option<Command>),
    Deadline,
    Done(Delivery),
    BackoffOver,
    CloseTimeout,
}

/// The writer task's state (more than 12 fields: batching, the memory buffer, the spool, the
/// per-bucket lanes and the server's state are all owned by this one task).
pub(super) struct Writer {
    pub(super) cfg: InfluxConfig,
    pub(super) http: Arc<Http>,
    pub(super) stats: Arc<InfluxStats>,
    pub(super) spool: SpoolSlot,
    pub(super) lanes: Lanes,
    pub(super) pending: Vec<Pending>,
    /// The memory buffer: batches cut and not yet sent, spooled or dropped. For each bucket,
    /// its spooled batches are older than its batches here.
    pub(super) ready: VecDeque<Ready>,
    pub(super) ready_bytes: usize,
    /// Of which parked (see [`Ready::parked`]).
    pub(super) parked_bytes: usize,
    /// Back-pressure on producers when this many bytes wait to be sent.
    pub(super) ready_limit: usize,
    /// The bucket of the batch in flight when it came from memory (its bucket's oldest there).
    pub(super) sending_direct: Option<String>,
    /// Batches cut so far; the last one settled (sent, spooled or dropped).
    pub(super) cut_seq: u64,
    pub(super) done_seq: u64,
    pub(super) flushes: Vec<(u64, oneshot::Sender<Flushed>)>,
    /// The last attempt failed: new batches go to the spool.
    pub(super) down: bool,
    pub(super) attempt: u32,
    pub(super) backoff_until: Option<Instant>,
    pub(super) warned_transient: bool,
    pub(super) warned_too_large: bool,
}

impl Writer {
    pub(super) fn new(
        cfg: InfluxConfig,
        http: Arc<Http>,
        spool: SpoolSlot,
        stats: Arc<InfluxStats>,
    ) -> Writer {
        let ready_limit = cfg.batch_max_bytes * 8;
        let lanes = Lanes::new(stats.buckets.clone(), cfg.retry_base, cfg.retry_max);
        Writer {
            cfg,
            http,
            stats,
            spool,
            lanes,
            pending: Vec::new(),
            ready: VecDeque::new(),
            ready_bytes: 0,
            parked_bytes: 0,
            ready_limit,
            sending_direct: None,
            cut_seq: 0,
            done_seq: 0,
            flushes: Vec::new(),
            down: false,
            attempt: 0,
            backoff_until: None,
            warned_transient: false,
            warned_too_large: false,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>) -> SinkStats {
        let mut inflight: Option<InFlight> = None;
        let mut open = true;
        // Set when the handles are gone: past it, what is not yet accepted is spooled.
        let mut close_by: Option<Instant> = None;
        let mut close_warned = false;
        loop {
            if close_by.is_some_and(|t| Instant::now() >= t) && self.backoff_until.is_none() {
                // Closing took too long: stop sending. With a backoff pending, `next_delivery`
                // spools what is ready; the request in flight settles (accepted or spooled) by
                // itself, and a success does not resume sending (this check runs again).
                if !close_warned && !self.ready.is_empty() {
                    tracing::warn!(
                        close_timeout = ?self.cfg.close_timeout,
                        batches = self.ready.len(),
                        "InfluxDB sink closing: time is up, spooling the batches not yet sent"
                    );
                    close_warned = true;
                }
                self.backoff_until = Some(Instant::now() + Duration::from_secs(3600));
            }
            if inflight.is_none() {
                inflight = self.next_delivery(open);
            }
            if !open && inflight.is_none() && self.ready.is_empty() {
                break;
            }
            let deadline = self
                .pending
                .iter()
                .filter(|p| p.points > 0)
                .map(|p| p.since + self.cfg.batch_max_delay)
                .min();
            let backoff = if inflight.is_none() {
                self.backoff_until.or_else(|| self.next_lane_retry())
            } else {
                None
            };
            let accepting = open
                && self.ready_bytes - self.parked_bytes < self.ready_limit
                && (self.ready_bytes as u64) < self.cfg.memory_max_bytes;
            let closing = close_by.filter(|_| self.backoff_until.is_none());
            let ev = tokio::select! {
                d = async { inflight.as_mut().expect("guarded").fut.as_mut().await }, if inflight.is_some() => Event::Done(d),
                cmd = rx.recv(), if accepting => Event::Cmd(cmd),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Event::Deadline,
                _ = tokio::time::sleep_until(backoff.unwrap_or_else(Instant::now)), if backoff.is_some() => Event::BackoffOver,
                _ = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => Event::CloseTimeout,
                // Not reachable (with nothing in flight and no backoff, a ready batch is started,
                // and `accepting` is false only when batches are ready), but never panic on it.
                else => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Event::BackoffOver
                }
            };
            match ev {
                Event::Cmd(Some(Command::Write(b))) => self.append(b),
                Event::Cmd(Some(Command::Flush(tx))) => {
                    self.cut_all();
                    self.flushes.push((self.cut_seq, tx));
                }
                Event::Cmd(None) => {
                    open = false;
                    close_by = Some(Instant::now() + self.cfg.close_timeout);
                    self.cut_all();
                }
                // Only wakes the loop: the check at its top does the work.
                Event::CloseTimeout => {}
                Event::Deadline => {
                    let now = Instant::now();
                    let due: Vec<usize> = (0..self.pending.len())
                        .filter(|&i| {
                            self.pending[i].points > 0
                                && self.pending[i].since + self.cfg.batch_max_delay <= now
                        })
                        .collect();
                    for i in due {
                        self.cut(i);
                    }
                }
                Event::Done(d) => {
                    let f = inflight.take().expect("a delivery was in flight");
                    self.settle(f.source, f.bucket, d);
                }
                Event::BackoffOver => {
                    if self.backoff_until.is_some_and(|t| t <= Instant::now()) {
                        self.backoff_until = None;
                    }
                }
            }
            self.sync_memory();
            self.answer_flushes(direct_seq(&inflight));
        }
        self.answer_flushes(None);
        self.spool
            .summarise("Sink closing before the spool emptied");
        let s = self.stats.snapshot();
        SinkStats {
            points_written: s.points_written,
            bytes_written: s.bytes_written,
            points_dropped: s.points_rejected + s.points_spool_dropped,
        }
    }

    /// The next request to start, if any: the spool first (oldest), then ready batches. While
    /// closing, nothing is replayed from the spool and, if the server is failing, ready batches
    /// go to the spool instead of waiting for the backoff.
    pub(super) fn next_delivery(&mut self, open: bool) -> Option<InFlight> {
        if self.backoff_until.is_some() {
            if !open {
                self.spool_ready();
            }
            return None;
        }
        if !open {
            self.spool_at_close();
        }
        let now = Instant::now();
        if open && !self.spool.is_empty() {
            let lanes = &self.lanes;
            let front = self
                .spool
                .spool
                .as_mut()
                .and_then(|s| s.read_first(|b| lanes.sendable(b, now)));
            self.spool.sync_stats(&self.stats);
            if let Some(b) = front {
                let fut = Box::pin(deliver(self.http.clone(), b.bucket.clone(), b.lines));
                return Some(InFlight {
                    source: Source::Spool { seq: b.seq },
                    bucket: b.bucket,
                    fut,
                });
            }
        }
        let i = self
            .ready
            .iter()
            .position(|r| self.lanes.sendable(&r.bucket, now))?;
        let r = self.take_ready(i);
        self.sending_direct = Some(r.bucket.clone());
        let fut = Box::pin(deliver(self.http.clone(), r.bucket.clone(), r.lines));
        Some(InFlight {
            source: Source::Direct {
                seq: r.seq,
                since: r.since,
            },
            bucket: r.bucket,
            fut,
        })
    }

    pub(super) fn settle(&mut self, source: Source, bucket: String, d: Delivery) {
        self.stats.points_written.fetch_add(d.points, Relaxed);
        self.stats.bytes_written.fetch_add(d.bytes, Relaxed);
        if d.rejected > 0 {
            self.stats.points_rejected.fetch_add(d.rejected, Relaxed);
            if let Some((status, message, line)) = &d.first_reject {
                tracing::warn!(bucket, dropped = d.rejected, status, message = %message, first_line = %line, "InfluxDB rejected lines; dropped only those");
            }
        }
        let progressed = d.points > 0 || d.rejected > 0;
        if progressed || d.rest.is_none() {
            self.lanes.accepted(&bucket, d.points);
        }
        if matches!(source, Source::Direct { .. }) {
            self.sending_direct = None;
        }
        match (source, d.rest) {
            (Source::Direct { seq, since }, None) => {
                record(&self.stats.write_latency, since.elapsed());
                self.done_seq = self.done_seq.max(seq);
                self.recovered();
            }
            (Source::Direct { seq, since }, Some((rest, f))) => {
                self.failed(&bucket, f);
                // Back to the front of memory (the oldest of its bucket outside the spool),
                // then to the spool with the others that cannot be sent, as room allows.
                let points = count_lines(&rest);
                self.ready_bytes += rest.len();
                self.ready.push_front(Ready {
                    bucket,
                    lines: rest,
                    points,
                    since,
                    seq,
                    parked: false,
                });
                self.spool_blocked();
            }
            (Source::Spool { seq }, None) => {
                if let Some(s) = self.spool.spool.as_mut() {
                    if let Err(e) = s.pop_front(seq) {
                        tracing::error!(dir = %s.dir().display(), error = %e, "Cannot delete a replayed spool file; it will be sent again after a restart");
                    }
                }
                self.recovered();
            }
            (Source::Spool { seq }, Some((rest, f))) => {
                if let Some(s) = self.spool.spool.as_mut() {
                    if progressed {
                        if let Err(e) = s.replace_front(seq, &rest, count_lines(&rest)) {
                            tracing::error!(error = %e, "Cannot rewrite a partly replayed spool file; it will be replayed whole");
                        }
                    } else {
                        s.release();
                    }
                }
                self.failed(&bucket, f);
            }
        }
        self.spool.sync_stats(&self.stats);
        self.note_evicted();
    }

    pub(super) fn recovered(&mut self) {
        if self.down {
            tracing::info!(url = %self.cfg.url, spooled_batches = self.stats.spool_batches.load(Relaxed), "InfluxDB writes recovered");
        }
        self.down = false;
        self.attempt = 0;
        self.backoff_until = None;
        self.warned_transient = false;
    }

    pub(super) fn failed(&mut self, bucket: &str, f: Failure) {
        if let Failure::Refused { status, message } = &f {
            // This bucket only: its lane waits, the others keep flowing.
            self.lanes.refused(bucket, *status, message);
            return;
        }
        self.down = true;
        let delay = match &f {
            // At least what the server asked for; never a busy loop on `Retry-After: 0`.
            Failure::Transient {
                retry_after: Some(ra),
                ..
            } => (*ra).max(self.cfg.retry_base),
            _ => backoff::delay(self.cfg.retry_base, self.cfg.retry_max, self.attempt),
        };
        self.attempt = self.attempt.saturating_add(1);
        self.backoff_until = Some(Instant::now() + delay);
        match f {
            Failure::Transient { why, retry_after } => {
                if !self.warned_transient {
                    tracing::warn!(url = %self.cfg.url, error = %why, retry_in = ?delay, retry_after = ?retry_after, "InfluxDB write failed; spooling batches until it recovers");
                    self.warned_transient = true;
                } else {
                    tracing::debug!(error = %why, retry_in = ?delay, "InfluxDB write failed again");
                }
            }
            Failure::TooLarge {
                sent,
                lines,
                message,
            } => {
                if !self.warned_too_large {
                    tracing::error!(url = %self.cfg.url, body_bytes = sent, line_protocol_bytes = lines, floor = TOO_LARGE_FLOOR, message = %message, retry_in = ?delay, "InfluxDB refuses request bodies as too large (413) even at the splitting floor: the server's body limit (nginx client_max_body_size, InfluxDB max-body-size) is below body_bytes; keeping the data and retrying (further 413s are counted in too_large)");
                    self.warned_too_large = true;
                } else {
                    tracing::debug!(body_bytes = sent, retry_in = ?delay, "InfluxDB answered 413 again");
                }
            }
            Failure::Refused { .. } => unreachable!("handled above"),
        }
    }

    /// Answers the flushes whose batches have all settled: delivered (up to `done_seq`),
    /// spooled, or parked (counted in `unstored`). Buckets are delivered in their own lanes,
    /// so a later batch of one bucket can be accepted while an earlier one of another is
    /// still in memory (failed and waiting for its retry) or in flight (`inflight`): a flush
    /// waits for those too, or a restart after it would have lost them.
    pub(super) fn answer_flushes(&mut self, inflight: Option<u64>) {
        let unsettled = self
            .ready
            .iter()
            .filter(|r| !r.parked)
            .map(|r| r.seq)
            .chain(inflight)
            .min()
            .unwrap_or(u64::MAX);
        let done = self.done_seq.min(unsettled.saturating_sub(1));
        let mut i = 0;
        while i < self.flushes.len() {
            if self.flushes[i].0 <= done {
                let (_, tx) = self.flushes.swap_remove(i);
                let _ = tx.send(Flushed {
                    unstored: self.spool.unstored,
                });
            } else {
                i += 1;
            }
        }
    }

    pub(super) fn pending_index(&mut self, bucket: &str) -> usize {
        if let Some(i) = self.pending.iter().position(|p| p.bucket == bucket) {
            return i;
        }
        self.pending.push(Pending {
            bucket: bucket.to_owned(),
            chunks: Vec::new(),
            bytes: 0,
            points: 0,
            since: Instant::now(),
        });
        self.pending.len() - 1
    }

    /// Adds whole lines to the bucket's pending batch, cutting batches as they fill up. Slices
    /// of `lines` are kept as they are (no copy) until a batch is cut.
    pub(super) fn append(&mut self, b: Batch) {
        let mut lines = b.lines;
        if lines.last().is_some_and(|&c| c != b'\n') {
            let mut m = BytesMut::with_capacity(lines.len() + 1);
            m.extend_from_slice(&lines);
            m.put_u8(b'\n');
            lines = m.freeze();
        }
        let i = self.pending_index(&b.bucket);
        let (max_b, max_p) = (self.cfg.batch_max_bytes, self.cfg.batch_max_points);
        while !lines.is_empty() {
            let p = &self.pending[i];
            let (mut len, mut pts) = fit(&lines, max_b.saturating_sub(p.bytes), max_p - p.points);
            if len == 0 {
                if p.points > 0 {
                    self.cut(i);
                    continue;
                }
                // One line longer than a whole batch: it goes alone.
                len = memchr::memchr(b'\n', &lines).map_or(lines.len(), |x| x + 1);
                pts = 1;
            }
            let chunk = lines.split_to(len);
            let p = &mut self.pending[i];
            if p.points == 0 {
                p.since = Instant::now();
            }
            p.bytes += chunk.len();
            p.points += pts;
            p.chunks.push(chunk);
            if !lines.is_empty() || p.points >= max_p || p.bytes >= max_b {
                self.cut(i);
            }
        }
    }

    pub(super) fn cut_all(&mut self) {
        for i in 0..self.pending.len() {
            if self.pending[i].points > 0 {
                self.cut(i);
            }
        }
    }

    pub(super) fn cut(&mut self, i: usize) {
        let p = &mut self.pending[i];
        let lines = if p.chunks.len() == 1 {
            p.chunks.pop().expect("one chunk")
        } else {
            let mut m = BytesMut::with_capacity(p.bytes);
            for c in p.chunks.drain(..) {
                m.extend_from_slice(&c);
            }
            m.freeze()
        };
        self.cut_seq += 1;
        let r = Ready {
            bucket: p.bucket.clone(),
            lines,
            points: p.points,
            since: p.since,
            seq: self.cut_seq,
            parked: false,
        };
        p.bytes = 0;
        p.points = 0;
        self.place(r);
    }
}
