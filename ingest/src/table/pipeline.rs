//! The drivers of a snapshot's rows, both feeding one [`Apply`] in file order:
//! [`sequential`] reads every row on this thread; [`pipelined`] cuts a large snapshot
//! ([`TableConfig::parse_ahead_bytes`]) into chunks of whole lines, a second thread parses the
//! next free chunk, this one applies the chunks in file order and parses a free chunk itself
//! whenever the other thread's rows are not ready. So both cores parse when parsing is the
//! slower stage (a rewrite) and the other core parses ahead when applying is (a first
//! snapshot). In a first snapshot the parse thread also faults in the series array's pages
//! just ahead of the applying thread ([`prefault`]), and writes jobs of a first counters
//! snapshot's points handed to it ([`defer`]).

use super::*;

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
pub(super) fn chunk_starts(data: &[u8], end: usize, size: usize) -> Vec<usize> {
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

/// The applying side of a snapshot's rows: every record, in file order, from either driver.
pub(super) trait Apply {
    /// One record: a row, or why it is skipped.
    fn apply(&mut self, r: Result<&Row<'_>, RowError>);
    /// The length of the series array being filled, and its address ([`prefault`]).
    fn series_len_at(&self) -> (usize, usize);
    /// A first counters snapshot's points recorded in jobs ([`defer`]), if any, and this
    /// thread's writer of jobs.
    fn deferred(&mut self) -> (Option<&mut Deferred>, &mut PointWriter);
}

/// Reads every record of `reader` on this thread: (records, incomplete tail, memo).
pub(super) fn sequential(mut reader: Reader<'_>, t: &mut impl Apply) -> (u64, usize, Vec<u32>) {
    while let Some(r) = reader.next() {
        t.apply(r.as_ref().map_err(|e| *e));
    }
    (
        reader.records(),
        reader.incomplete_tail(),
        reader.take_memo(),
    )
}

/// What [`pipelined`] reads besides the rows of `reader`.
pub(super) struct Chunks<'d> {
    /// The snapshot; whether its last line without a newline is a row.
    pub(super) data: &'d [u8],
    pub(super) tail_ok: bool,
    pub(super) kind: Kind,
    /// The size of a chunk ([`TableConfig::parse_chunk_bytes`]).
    pub(super) chunk_bytes: usize,
    /// Reading with the memo ([`Reader::with_memo`]): the previous snapshot's, the value
    /// order, and the room to reserve for this snapshot's.
    pub(super) memo_on: bool,
    pub(super) prev: &'d [u32],
    pub(super) newest_first: bool,
    pub(super) memo_cap: usize,
    /// A first snapshot: the series array's spare room ([`prefault`]), the series known
    /// before it and the array's address.
    pub(super) prefault: Option<Prefault>,
    pub(super) known: usize,
    pub(super) series_at: usize,
}

/// Reads the records of `reader` (a reader of the whole snapshot) on two threads, applied in
/// file order by `t` on this one: (records, incomplete tail, memo), as [`sequential`].
pub(super) fn pipelined<A: Apply>(
    reader: Reader<'_>,
    c: Chunks<'_>,
    t: &mut A,
) -> (u64, usize, Vec<u32>) {
    let Chunks {
        data,
        tail_ok,
        kind,
        chunk_bytes,
        memo_on,
        prev,
        newest_first,
        memo_cap,
        mut prefault,
        known,
        series_at,
    } = c;
    // Both cores: the snapshot is cut into chunks of whole lines, read in order. A
    // scoped thread claims the next chunk and parses its rows (borrowed from the
    // snapshot) into batches; this thread applies the chunks in file order, and a chunk
    // nobody has claimed when its turn comes it claims, parses and applies itself. So
    // when parsing is the slower stage (a rewrite, mostly repeats) both cores parse,
    // and when applying is (a first snapshot) the other core parses ahead.
    let end = reader.parsable_len();
    let tail = reader.incomplete_tail();
    let cuts = chunk_starts(data, end, chunk_bytes);
    let chunks = cuts.len() - 1;
    let claim = AtomicUsize::new(0);
    let (claim, cuts) = (&claim, &cuts[..]);
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
                line += memchr::memchr_iter(b'\n', &data[cuts[known]..cuts[c]]).count() as u64;
                let mut reader = read_chunk(c, line, mem_spare.try_recv().unwrap_or_default());
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
        let mut apply_ahead = |t: &mut A, a: &Ahead<'_>| match a {
            Ahead::Row(r) => t.apply(Ok(r)),
            Ahead::Bad(e) => t.apply(Err(*e)),
            Ahead::Quoted(start, at) => {
                let r = quoted.quoted_line(*start, *at);
                t.apply(r.as_ref().map_err(|e| *e));
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
        let hand_off = |t: &mut A| {
            let (Some(d), points) = t.deferred() else {
                return;
            };
            take_written(d, false);
            // At most MAX_EARLY texts wait for one the parse thread is writing.
            while d.early() >= Deferred::MAX_EARLY && take_written(d, true) {}
            while let Some((seq, job)) = d.next_full() {
                if !d.may_send(jobs_written.load(Ordering::Relaxed)) {
                    d.write_here(seq, job, points);
                    continue;
                }
                match back.send(Back::Job(seq, job)) {
                    Ok(()) => d.sent(),
                    Err(std::sync::mpsc::SendError(Back::Job(seq, job))) => {
                        d.write_here(seq, job, points)
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
                        apply_ahead(t, a);
                    }
                    hand_off(t);
                }
                let (len, at) = t.series_len_at();
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
                                    + memchr::memchr_iter(b'\n', &data[cuts[c]..cuts[c2]]).count()
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
                            apply_ahead(t, a);
                        }
                        let (len, at) = t.series_len_at();
                        progress.publish(len - known, at != series_at);
                        let _ = back.send(Back::Batch(batch));
                        hand_off(t);
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
        hand_off(t);
        if let (Some(d), points) = t.deferred() {
            d.write_last(points);
            // Stops early only if the parse thread panicked (the scope passes it on).
            while d.away() > 0 && take_written(d, true) {}
        }
    });
    (records, tail, memo)
}
