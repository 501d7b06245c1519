//! A first snapshot's counters points, written by whichever thread is free.
//!
//! In a first snapshot every value is a new point: 15 lines per row, 1.2 GB of line protocol
//! for 1,000,000 rows, about half of the applying thread's work, while the parse thread waits
//! for it. So in a first counters snapshot read on two threads the applying thread does not
//! write those lines itself: it records each row's points (pointers to its escaped names, its
//! changed minutes and values) in a [`Job`], and a job that holds a chunk of text
//! ([`super::TableConfig::chunk_bytes`]) goes to the parse thread, which writes it between
//! two batches of rows. While the parse thread has [`Deferred::MAX_AWAY`] jobs not yet written
//! (counted when it has written them), the applying thread writes the next one itself.
//!
//! Jobs are numbered and their texts handed out in that order, one chunk per job: the counters
//! lines come out exactly as the applying thread writes them otherwise. A text written ahead
//! of its turn waits; at most [`Deferred::MAX_EARLY`] do before the applying thread waits for
//! the parse thread.
//!
//! Memory: a job's text goes into a buffer of one size, allocated by the applying thread, and
//! the buffer is kept: once the sink has written the text out and dropped it, the next job
//! takes the same memory back ([`BytesMut::try_reclaim`]). Texts in fresh allocations each
//! left the allocator holding freed pages (10-20 MiB more at the peak, and page faults).

use super::points::{PointWriter, PREFIX_FAST};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};

/// The points of one row: its escaped names (each padded, [`super::points::NAME_PAD`], and
/// `*_pad` the length with the padding) and how many of the job's `changed` are its.
struct JobRow {
    stat: *const u8,
    stat_pad: usize,
    sl: usize,
    host: *const u8,
    host_pad: usize,
    hl: usize,
    n: usize,
}

/// The counters points of consecutive rows, to be written.
#[derive(Default)]
pub(super) struct Job {
    rows: Vec<JobRow>,
    /// (minute, count) of every row's points, row after row.
    changed: Vec<(i64, u64)>,
    /// At least the bytes the points take (see [`Job::push`]).
    bytes: usize,
    /// Where they are written (given by [`Deferred::take`]).
    out: BytesMut,
}

// SAFETY: a job holds pointers to escaped names of the table (`Names::stat_padded`). The table never
// frees or changes a name while it exists: `Names` only grows, and each name is its own boxed
// allocation, which does not move when the vector of boxes grows. A job is written within the
// `Table::ingest_at` call that made it (every job sent to the parse thread is answered before
// the call's thread scope ends), which holds the table mutably, so the names outlive it.
unsafe impl Send for Job {}

impl Job {
    /// Records the points `changed` of the stat and host whose escaped names are
    /// `stat[..sl]` and `host[..hl]`, each padded.
    #[inline]
    pub(super) fn push(
        &mut self,
        (stat, sl): (&[u8], usize),
        (host, hl): (&[u8], usize),
        changed: &[(i64, u64)],
    ) {
        self.rows.push(JobRow {
            stat: stat.as_ptr(),
            stat_pad: stat.len(),
            sl,
            host: host.as_ptr(),
            host_pad: host.len(),
            hl,
            n: changed.len(),
        });
        self.changed.extend_from_slice(changed);
        // A point is the prefix (names, `,hostname=`, ` value=`), at most 19 digits and `i`,
        // then a space, at most 12 digits of seconds and a newline: 17 + 20 + 14 bytes more
        // than the names. 7 bytes of slack a point more, so that the writer's room for a
        // row's points ([`PointWriter::counters`] reserves whole blocks) is always there
        // and the buffer never grows.
        self.bytes += changed.len() * (sl + hl + 17 + 20 + 21);
    }

    /// Points recorded.
    pub(super) fn points(&self) -> usize {
        self.changed.len()
    }

    /// Writes the points, in the order recorded, and splits the text off its buffer (which
    /// stays with the job, empty); the job is left empty.
    pub(super) fn write(&mut self, w: &mut PointWriter) -> (Bytes, usize) {
        let mut at = 0;
        for r in &self.rows {
            // SAFETY: see `unsafe impl Send for Job`: the names are alive and unchanged, and
            // `stat_pad`/`host_pad` are the lengths of their allocations.
            let (stat, host) = unsafe {
                (
                    std::slice::from_raw_parts(r.stat, r.stat_pad),
                    std::slice::from_raw_parts(r.host, r.host_pad),
                )
            };
            let changed = &self.changed[at..at + r.n];
            w.counters(&mut self.out, (stat, r.sl), (host, r.hl), changed);
            at += r.n;
        }
        let n = self.changed.len();
        self.rows.clear();
        self.changed.clear();
        self.bytes = 0;
        (self.out.split().freeze(), n)
    }
}

/// The jobs of one snapshot: the one being filled, those full, those away, and the texts in
/// order.
pub(super) struct Deferred {
    /// The job being filled, and its number.
    pub(super) job: Job,
    seq: u64,
    /// Jobs taken once they held `chunk` bytes of points, to be handed out.
    full: VecDeque<(u64, Job)>,
    chunk: usize,
    /// The number of the next text to hand out, and texts written ahead of their turn.
    turn: u64,
    early: BTreeMap<u64, (Bytes, usize)>,
    /// Texts in turn, to be handed out.
    pub(super) ready: VecDeque<(Bytes, usize)>,
    /// Jobs sent to the parse thread, and those of them not yet answered.
    sent: usize,
    away: usize,
    /// Emptied jobs, for reuse.
    spare: Vec<Job>,
    /// The buffers of texts handed out (empty, sharing their memory with the text), oldest
    /// first.
    buffers: VecDeque<BytesMut>,
}

impl Deferred {
    /// Jobs the parse thread may hold before the applying thread writes its own.
    pub(super) const MAX_AWAY: usize = 2;
    /// Texts written ahead of their turn before the applying thread waits for the parse
    /// thread's.
    pub(super) const MAX_EARLY: usize = 2;
    /// Buffers kept to take their memory back.
    const BUFFERS: usize = 16;

    /// Jobs of `chunk` bytes of text (the table's [`super::TableConfig::chunk_bytes`]).
    pub(super) fn new(chunk: usize) -> Self {
        Deferred {
            job: Job::default(),
            seq: 0,
            full: VecDeque::new(),
            chunk,
            turn: 0,
            early: BTreeMap::new(),
            ready: VecDeque::new(),
            sent: 0,
            away: 0,
            spare: Vec::new(),
            buffers: VecDeque::new(),
        }
    }

    /// Records a row's points ([`Job::push`]); a job that holds a chunk of text is put aside
    /// ([`Deferred::next_full`]).
    #[inline]
    pub(super) fn push(
        &mut self,
        stat: (&[u8], usize),
        host: (&[u8], usize),
        changed: &[(i64, u64)],
    ) {
        self.job.push(stat, host, changed);
        if self.job.bytes >= self.chunk {
            let full = self.take();
            self.full.push_back(full);
        }
    }

    /// The next job put aside, and its number.
    pub(super) fn next_full(&mut self) -> Option<(u64, Job)> {
        self.full.pop_front()
    }

    /// The job filled so far and its number, with room for its text; an empty one takes its
    /// place.
    pub(super) fn take(&mut self) -> (u64, Job) {
        let next = self.spare.pop().unwrap_or_default();
        let mut job = std::mem::replace(&mut self.job, next);
        // One size for the text of every full job: `chunk` bytes and less than a row (at most
        // 15 points of a prefix of up to PREFIX_FAST bytes) more. So any buffer whose text is
        // gone takes the next job.
        let size = self.chunk + 4096 + 15 * (PREFIX_FAST + 64);
        let need = (job.bytes + 4096).max(size);
        let free = self.buffers.iter_mut().position(|b| b.try_reclaim(need));
        job.out = match free.and_then(|i| self.buffers.remove(i)) {
            Some(b) => b,
            None => {
                if self.buffers.len() >= Self::BUFFERS {
                    // Its text is still out: it is freed with the text.
                    self.buffers.pop_front();
                }
                BytesMut::with_capacity(need)
            }
        };
        self.seq += 1;
        (self.seq - 1, job)
    }

    /// The text of job `seq` (and the job, emptied, for reuse).
    pub(super) fn done(&mut self, seq: u64, text: (Bytes, usize), mut job: Job) {
        self.buffers.push_back(std::mem::take(&mut job.out));
        self.spare.push(job);
        self.early.insert(seq, text);
        while let Some(t) = self.early.remove(&self.turn) {
            if t.1 > 0 {
                self.ready.push_back(t);
            }
            self.turn += 1;
        }
    }

    /// Whether the next job may go to the parse thread, which has written `written` of
    /// those sent: it holds fewer than [`Deferred::MAX_AWAY`] unwritten.
    pub(super) fn may_send(&self, written: usize) -> bool {
        self.sent - written < Self::MAX_AWAY
    }

    /// A job was sent to the parse thread.
    pub(super) fn sent(&mut self) {
        self.sent += 1;
        self.away += 1;
    }

    /// Jobs sent and not yet answered.
    pub(super) fn away(&self) -> usize {
        self.away
    }

    /// The parse thread's text of job `seq` ([`Deferred::done`]).
    pub(super) fn answered(&mut self, seq: u64, text: (Bytes, usize), job: Job) {
        self.away -= 1;
        self.done(seq, text, job);
    }

    /// Writes job `seq` on this thread.
    pub(super) fn write_here(&mut self, seq: u64, mut job: Job, w: &mut PointWriter) {
        let text = job.write(w);
        self.done(seq, text, job);
    }

    /// Writes the job being filled, if it holds points, on this thread: the snapshot's last.
    pub(super) fn write_last(&mut self, w: &mut PointWriter) {
        if self.job.points() > 0 {
            let (seq, job) = self.take();
            self.write_here(seq, job, w);
        }
    }

    /// Texts written ahead of their turn.
    pub(super) fn early(&self) -> usize {
        self.early.len()
    }

    /// Every job taken has been answered and its text is in `ready`.
    pub(super) fn all_done(&self) -> bool {
        self.turn == self.seq && self.away == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::points::escape_name;

    fn name(s: &str, host: bool) -> (Box<[u8]>, usize) {
        let mut enc = crate::lineproto::LineEncoder::with_capacity(64);
        let (b, l) = escape_name(&mut enc, s, host);
        (b, l as usize)
    }

    /// Texts written out of turn are handed out in the order their jobs were taken, and a
    /// job's text is what the point writer writes for its rows.
    #[test]
    fn texts_come_out_in_the_order_taken() {
        let (st, sl) = name("calls in", false);
        let (h1, l1) = name("cp1", true);
        let (h2, l2) = name("cp,2", true);
        let mut d = Deferred::new(1 << 20);
        let mut w = PointWriter::new();
        let mut jobs = Vec::new();
        for (i, (h, l)) in [(&h1, l1), (&h2, l2), (&h1, l1)].into_iter().enumerate() {
            let x = i as u64;
            d.job.push((&st, sl), (h, l), &[(100, 7 + x), (99, 70 + x)]);
            jobs.push(d.take());
        }
        let mut direct = BytesMut::new();
        w.counters(&mut direct, (&st, sl), (&h1, l1), &[(100, 7), (99, 70)]);
        // Written out of turn: 2, 0, 1.
        let (s2, mut j2) = jobs.pop().unwrap();
        let (s1, mut j1) = jobs.pop().unwrap();
        let (s0, mut j0) = jobs.pop().unwrap();
        let t2 = j2.write(&mut w);
        d.done(s2, t2, j2);
        assert!(d.ready.is_empty());
        let t0 = j0.write(&mut w);
        assert_eq!(t0.0, direct.freeze());
        d.done(s0, t0, j0);
        assert_eq!(d.ready.len(), 1);
        let t1 = j1.write(&mut w);
        d.done(s1, t1, j1);
        let got: Vec<String> = d
            .ready
            .iter()
            .map(|(b, n)| format!("{n}:{}", String::from_utf8_lossy(b)))
            .collect();
        assert_eq!(
            got,
            [
                "2:calls\\ in,hostname=cp1 value=7i 6000\n\
                 calls\\ in,hostname=cp1 value=70i 5940\n",
                "2:calls\\ in,hostname=cp\\,2 value=8i 6000\n\
                 calls\\ in,hostname=cp\\,2 value=71i 5940\n",
                "2:calls\\ in,hostname=cp1 value=9i 6000\n\
                 calls\\ in,hostname=cp1 value=72i 5940\n",
            ]
        );
        assert!(d.all_done());
    }

    /// A full job's text goes into a buffer of one size; once the text is dropped (written
    /// out by the sink), the next job takes the same memory back, and while it is out a new
    /// buffer is used.
    #[test]
    fn a_buffer_is_taken_back_once_its_text_is_gone() {
        let (st, sl) = name("s", false);
        let (h, hl) = name("h", true);
        let mut d = Deferred::new(1000);
        let mut w = PointWriter::new();
        let mut text_of_next = |d: &mut Deferred| {
            // Rows of 2 points (2 x 60 estimated bytes) until the job holds a chunk.
            while d.full.is_empty() {
                d.push((&st, sl), (&h, hl), &[(100, 1), (99, 2)]);
            }
            let (seq, mut job) = d.next_full().unwrap();
            assert_eq!(job.points(), 18);
            let at = job.out.as_ptr();
            let text = job.write(&mut w);
            assert_eq!(text.0.as_ptr(), at);
            assert_eq!((text.0.len(), text.1), (9 * 2 * 27, 18));
            let at = text.0.as_ptr();
            d.done(seq, text, job);
            // Handed out (to the sink).
            let (text, _) = d.ready.pop_front().unwrap();
            assert_eq!(text.as_ptr(), at);
            text
        };
        let first = text_of_next(&mut d);
        let second = text_of_next(&mut d);
        // The first text is still out: the second went into another buffer.
        assert_ne!(first.as_ptr(), second.as_ptr());
        let first_at = first.as_ptr();
        drop(first);
        let third = text_of_next(&mut d);
        assert_eq!(third.as_ptr(), first_at);
        assert!(d.all_done());
    }
}
