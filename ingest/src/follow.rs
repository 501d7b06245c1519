//! The source stage: follows `counters.csv` and `samples.csv` in one directory and yields each
//! refresh as a whole-file [`Snapshot`].
//!
//! The platform refreshes the files every minute, and the usual tailing tricks fail on some of
//! the ways it can do so: a rewrite of the same or a larger size (size-based truncation
//! detection misses it), a rewrite whose first line is unchanged (first-line fingerprints miss
//! it), a rename over the old file (a watch on the file itself goes silent), and a reader that
//! keeps an old offset after a truncate (duplicates). So there are no offsets here: every read is
//! the whole file, compared by content (length + 64-bit hash) with the last snapshot handed out.
//! Change detection per value happens downstream in [`crate::table`].
//!
//! - notify watches the **directory**, so in-place rewrites, truncate-then-write, rename over,
//!   and delete-then-recreate are all seen; events for other names are ignored;
//! - a periodic rescan covers filesystems without inotify (and a directory that does not exist
//!   yet); it skips the read when size, mtime, ctime and inode are unchanged and the mtime is
//!   more than 2 s old (coarse-mtime filesystems);
//! - bursts of events are debounced (read `debounce` after the last event, at most 8 x
//!   `debounce` after the first);
//! - a file whose last line has no newline yields a snapshot whose tail is left unparsed; once
//!   the content has not changed for `quiet`, the same content is yielded again with
//!   `tail_complete` (quiet), and the table's completeness rule decides whether that line is a
//!   whole row ([`crate::table::Table::ingest_at`], [`crate::table::Tail::Quiet`]);
//! - a missing file is waited for quietly (one log line when it goes missing, one when it is back);
//! - a file that exists but cannot be read (permission denied, not a regular file, too many open
//!   files, larger than the cap) is a [`FileProblem`]: one ERROR with the cause and a hint when
//!   it starts or its cause changes, one INFO when the file is readable again, and the current
//!   problem per file in [`Follower::problems`]; nothing is opened that could block, and no more
//!   than the cap is read (see [`read`]);
//! - a file is read into a retained buffer: the caller hands each snapshot's buffer back
//!   ([`Follower::recycle`]) once it is ingested, so a rewrite is read into memory that is
//!   already mapped (no fresh zeroed pages per snapshot), and a read whose content is unchanged
//!   keeps its buffer for the next one.

mod read;

pub use read::{access_context, open_regular, FileProblem, ReadError};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Timing of the follower.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    pub debounce: Duration,
    pub rescan: Duration,
    pub quiet: Duration,
    /// A file larger than this is refused ([`FileProblem::TooLarge`]).
    pub max_bytes: u64,
}

/// The whole content of one file at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Index of the file in the names given to [`Follower::new`] / [`Scanner::new`].
    pub file: usize,
    pub data: Vec<u8>,
    /// The last line has no newline but the file has been quiet for the quiet time: it may be a
    /// whole row, under the table's completeness rule (always `true` when the data ends in a
    /// newline).
    pub tail_complete: bool,
}

/// Why following could not start.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot create a file watcher: {0}")]
    Watcher(#[from] notify::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    len: u64,
    mtime: i128,
    ctime: i128,
    ino: u64,
    dev: u64,
}

impl Meta {
    fn of(m: &std::fs::Metadata) -> Meta {
        use std::os::unix::fs::MetadataExt;
        Meta {
            len: m.len(),
            mtime: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

struct FileState {
    path: PathBuf,
    /// (length, hash) of the last snapshot handed out.
    last: Option<(usize, u64)>,
    meta: Option<Meta>,
    /// When the content last handed out (ending without a newline) was first read.
    tail_since: Option<Instant>,
    tail_done: bool,
    missing: bool,
    /// Why the file cannot be read now, if it exists but cannot be.
    problem: Option<FileProblem>,
    /// Problems that started (or changed cause) so far.
    problems: u64,
    /// The buffer to read the next snapshot of this file into (see [`Scanner::recycle`]).
    spare: Vec<u8>,
    /// How long the last whole-file read (copy and hash) took.
    read_time: Duration,
}

/// The synchronous core of the follower: reads files and decides what is a new snapshot.
pub struct Scanner {
    files: Vec<FileState>,
    quiet: Duration,
    /// Largest file read.
    max_bytes: u64,
    /// Whole-file reads so far.
    reads: u64,
}

/// The content's hash as [`read_hashed`] computes it: 64-bit XXH3 of the content, or for a
/// file of [`SPLIT_READ`] bytes or more, of its two halves (read and hashed on two threads).
/// A change of content is missed only on a 64-bit collision, and it runs at memory speed
/// (SipHash, the previous choice, took a fifth of a rewrite's time).
fn content_hash(data: &[u8]) -> u64 {
    use xxhash_rust::xxh3::xxh3_64;
    if data.len() >= SPLIT_READ {
        let mid = data.len() / 2;
        join_halves(xxh3_64(&data[..mid]), xxh3_64(&data[mid..]))
    } else {
        xxh3_64(data)
    }
}

fn join_halves(first: u64, second: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&second.to_le_bytes(), first)
}

/// Bytes read (and hashed while still in cache) at a time by [`read_hashed`].
const READ_CHUNK: u64 = 1 << 20;

/// A file of at least this many bytes is read in two halves on two threads (copying a
/// 116 MB file out of the page cache and hashing it took 35-45 ms on one core).
const SPLIT_READ: usize = 8 << 20;

/// Reads the whole file at `path` into `buf` (replacing its content), reusing its capacity.
/// Only a regular file of at most `max` bytes is read (see [`read`]).
pub(crate) fn read_into(path: &Path, buf: &mut Vec<u8>, max: u64) -> Result<(), ReadError> {
    let (f, len) = open_for(path, buf, max)?;
    let len = buf.capacity().min(len as usize);
    if len >= SPLIT_READ {
        if read_split(&f, len, buf, false)?.is_some() {
            return Ok(());
        }
        buf.clear();
    }
    f.take(max.saturating_add(1)).read_to_end(buf)?;
    if buf.len() as u64 > max {
        buf.clear();
        return Err(ReadError::Problem(FileProblem::TooLarge { max }));
    }
    Ok(())
}

/// [`read_into`], returning the content's 64-bit XXH3 (as `xxh3_64` of the whole content),
/// computed chunk by chunk as it is read: each chunk is hashed while it is still in the CPU's
/// cache instead of in a second pass over the whole buffer.
/// Only a regular file of at most `max` bytes is read (see [`read`]).
pub(crate) fn read_hashed(path: &Path, buf: &mut Vec<u8>, max: u64) -> Result<u64, ReadError> {
    let (mut f, len) = open_for(path, buf, max)?;
    let len = buf.capacity().min(len as usize);
    if len >= SPLIT_READ {
        if let Some(h) = read_split(&f, len, buf, true)? {
            return Ok(h);
        }
        // The file changed size while it was read: once more, from the start, in one piece.
        buf.clear();
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    loop {
        let at = buf.len();
        if (&mut f).take(READ_CHUNK).read_to_end(buf)? == 0 {
            break;
        }
        if buf.len() as u64 > max {
            buf.clear();
            return Err(ReadError::Problem(FileProblem::TooLarge { max }));
        }
        h.update(&buf[at..]);
    }
    Ok(if buf.len() >= SPLIT_READ {
        content_hash(buf)
    } else {
        h.digest()
    })
}

/// Reads the `len` bytes of `f` into the empty `buf` (with room for them) in two halves, one
/// on a second thread (for a fresh buffer, each thread also takes half of its page faults),
/// with `hash` each hashed chunk by chunk as it is read: [`content_hash`] of the content (0
/// without `hash`). `None` when `f` does not have exactly `len` bytes (it changed while read).
fn read_split(
    f: &std::fs::File,
    len: usize,
    buf: &mut Vec<u8>,
    hash: bool,
) -> std::io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    assert!(buf.is_empty() && buf.capacity() >= len);
    let fd = f.as_raw_fd();
    // The two threads write disjoint ranges of `buf`'s spare capacity through a raw pointer
    // (no reference to memory not yet written is made), and `buf` is not touched meanwhile.
    let base = buf.as_mut_ptr() as usize;
    let half = |from: usize, to: usize| -> std::io::Result<Option<u64>> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut at = from;
        while at < to {
            let want = (to - at).min(READ_CHUNK as usize);
            // SAFETY: `base + at .. base + at + want` lies in `buf`'s capacity (`to <= len`),
            // written by this thread only.
            let n = unsafe {
                libc::pread(
                    fd,
                    (base + at) as *mut libc::c_void,
                    want,
                    at as libc::off_t,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            if hash {
                // SAFETY: these `n` bytes were just written by pread.
                h.update(unsafe {
                    std::slice::from_raw_parts((base + at) as *const u8, n as usize)
                });
            }
            at += n as usize;
        }
        Ok(Some(h.digest()))
    };
    let mid = len / 2;
    let (first, second) = std::thread::scope(|sc| {
        let second = sc.spawn(|| half(mid, len));
        (half(0, mid), second.join().expect("a read does not panic"))
    });
    let (Some(first), Some(second)) = (first?, second?) else {
        return Ok(None);
    };
    // Nothing past `len`: a file that grew is read again.
    let mut probe = [0u8; 1];
    // SAFETY: one byte into a local buffer.
    let n = unsafe {
        libc::pread(
            fd,
            probe.as_mut_ptr() as *mut libc::c_void,
            1,
            len as libc::off_t,
        )
    };
    if n != 0 {
        return Ok(None);
    }
    // SAFETY: both halves of `0..len` were written (each read loop ran to its end).
    unsafe { buf.set_len(len) };
    Ok(Some(join_halves(first, second)))
}

/// Opens `path` (a regular file of at most `max` bytes, [`read::open_regular`]) and empties
/// `buf`, sized for the file. A file that does not grow while it is read is then read without
/// growing the buffer (read_to_end probes for the end without reserving more).
fn open_for(path: &Path, buf: &mut Vec<u8>, max: u64) -> Result<(std::fs::File, u64), ReadError> {
    let (f, file_len) = read::open_regular(path, max)?;
    let len = file_len as usize;
    buf.clear();
    if buf.capacity() < len {
        // Dropped before the new one is allocated (growing it would copy the old bytes), with
        // room for a file that grows a little from one rewrite to the next (pages never
        // written are not resident).
        *buf = Vec::new();
        buf.reserve_exact(len + len / 16);
    } else if buf.capacity() > 2 * len + (1 << 20) {
        // A file that shrank a lot gives its memory back.
        *buf = Vec::new();
        buf.reserve_exact(len);
    }
    Ok((f, file_len))
}

impl Scanner {
    pub fn new(dir: &Path, names: &[String], quiet: Duration) -> Self {
        let files = names
            .iter()
            .map(|n| FileState {
                path: dir.join(n),
                last: None,
                meta: None,
                tail_since: None,
                tail_done: false,
                missing: false,
                problem: None,
                problems: 0,
                spare: Vec::new(),
                read_time: Duration::ZERO,
            })
            .collect();
        Scanner {
            files,
            quiet,
            max_bytes: u64::MAX,
            reads: 0,
        }
    }

    /// Refuses files larger than `max` bytes ([`FileProblem::TooLarge`]).
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    /// Per file: the problem it has now (`None`: readable or missing) and how many problems
    /// started or changed cause so far.
    pub fn problems(&self) -> Vec<(Option<FileProblem>, u64)> {
        self.files.iter().map(|f| (f.problem, f.problems)).collect()
    }

    /// Whole-file reads so far (each costs a copy and a hash of the file).
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Hands back the buffer of a snapshot of file `i` that has been ingested: the next read
    /// of that file reuses it (the larger of it and the buffer kept already).
    pub fn recycle(&mut self, i: usize, buf: Vec<u8>) {
        let spare = &mut self.files[i].spare;
        if buf.capacity() > spare.capacity() {
            *spare = buf;
        }
    }

    pub fn path(&self, i: usize) -> &Path {
        &self.files[i].path
    }

    /// How long the last whole-file read of file `i` (copy and hash) took.
    pub fn read_time(&self, i: usize) -> Duration {
        self.files[i].read_time
    }

    /// Looks at file `i`: a snapshot when its content differs from the last one handed out, or
    /// when its unfinished last line has now been quiet long enough. `force` reads the file
    /// even when its metadata looks unchanged.
    pub fn check(&mut self, i: usize, now: Instant, force: bool) -> Option<Snapshot> {
        let quiet = self.quiet;
        let max = self.max_bytes;
        let f = &mut self.files[i];
        let meta = match std::fs::metadata(&f.path) {
            Ok(m) => match read::check_meta(&m, max) {
                Ok(()) => Meta::of(&m),
                Err(p) => {
                    f.mark_problem(p);
                    return None;
                }
            },
            Err(e) => {
                f.mark_error(ReadError::from(e));
                return None;
            }
        };
        let tail_due = f
            .tail_since
            .is_some_and(|t| !f.tail_done && now.duration_since(t) >= quiet);
        if !force && !tail_due && f.meta == Some(meta) && !recent(meta.mtime) {
            return None;
        }
        self.reads += 1;
        let mut data = std::mem::take(&mut f.spare);
        let started = Instant::now();
        let read = read_hashed(&f.path, &mut data, max);
        f.read_time = started.elapsed();
        let hash = match read {
            Ok(h) => h,
            Err(e) => {
                f.spare = data;
                f.mark_error(e);
                return None;
            }
        };
        if f.missing {
            f.missing = false;
            tracing::info!(file = %f.path.display(), "File is back");
        }
        if let Some(p) = f.problem.take() {
            tracing::info!(file = %f.path.display(), was = %p, "File is readable again");
        }
        f.meta = Some(meta);
        let ends_nl = data.is_empty() || data.last() == Some(&b'\n');
        let sig = (data.len(), hash);
        if f.last == Some(sig) {
            if !ends_nl
                && !f.tail_done
                && f.tail_since.is_some_and(|t| now.duration_since(t) >= quiet)
            {
                f.tail_done = true;
                return Some(Snapshot {
                    file: i,
                    data,
                    tail_complete: true,
                });
            }
            f.spare = data;
            return None;
        }
        f.last = Some(sig);
        f.tail_done = ends_nl || quiet.is_zero();
        f.tail_since = (!ends_nl).then_some(now);
        Some(Snapshot {
            file: i,
            data,
            tail_complete: f.tail_done,
        })
    }

    /// When a file's unfinished last line will have been quiet long enough.
    pub fn tail_deadline(&self) -> Option<Instant> {
        self.files
            .iter()
            .filter(|f| !f.tail_done)
            .filter_map(|f| f.tail_since)
            .map(|t| t + self.quiet)
            .min()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FileState {
    fn mark_missing(&mut self) {
        self.problem = None;
        if !self.missing {
            self.missing = true;
            tracing::info!(file = %self.path.display(), "Waiting for file");
        }
        self.meta = None;
    }

    fn mark_error(&mut self, e: ReadError) {
        match e {
            ReadError::Missing => self.mark_missing(),
            ReadError::Problem(p) => self.mark_problem(p),
        }
    }

    /// The file exists but cannot be read: logged when the problem starts or its cause
    /// changes, not at every rescan.
    fn mark_problem(&mut self, p: FileProblem) {
        self.meta = None;
        self.missing = false;
        if self.problem == Some(p) {
            return;
        }
        self.problem = Some(p);
        self.problems += 1;
        let file = self.path.display();
        match p {
            FileProblem::PermissionDenied => tracing::error!(
                %file,
                cause = p.cause(),
                access = %read::access_context(&self.path),
                hint = p.hint(),
                "Cannot read file: permission denied"
            ),
            FileProblem::Io(_) => tracing::warn!(
                %file,
                cause = p.cause(),
                error = %p,
                hint = p.hint(),
                "Cannot read file"
            ),
            _ => tracing::error!(
                %file,
                cause = p.cause(),
                error = %p,
                hint = p.hint(),
                "Cannot read file: {p}"
            ),
        }
    }
}

/// Whether an mtime is within the last 2 s (then metadata cannot prove the file unchanged).
fn recent(mtime_ns: i128) -> bool {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    now - mtime_ns < 2_000_000_000
}

/// An event a read causes (inotify reports opens, and closes without writing): our own reads
/// of the file would otherwise each trigger the next read. A close after writing, a modify, a
/// create, a rename or a delete still counts.
fn is_own_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_)
                | AccessKind::Read
                | AccessKind::Close(AccessMode::Read | AccessMode::Execute)
        )
    )
}

/// Sent by the watcher when the watched directory itself is removed.
const REWATCH: usize = usize::MAX;

/// Follows the files: notify on the directory, periodic rescan, debounce, quiet time.
pub struct Follower {
    scanner: Scanner,
    cfg: FollowConfig,
    dir: PathBuf,
    names: Vec<String>,
    tx: mpsc::UnboundedSender<usize>,
    rx: mpsc::UnboundedReceiver<usize>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Inode of the directory the watcher was set on: a directory replaced or removed needs a
    /// new watch.
    watched_ino: Option<u64>,
    watch_failed: bool,
    next_rescan: Instant,
    /// Per file: (first, last) event of the current burst.
    dirty: Vec<Option<(Instant, Instant)>>,
    queue: std::collections::VecDeque<Snapshot>,
    /// [`Scanner::problems`] as last reported by [`Follower::next_event`].
    reported: Vec<(Option<FileProblem>, u64)>,
}

/// What [`Follower::next_event`] saw.
#[derive(Debug)]
pub enum Followed {
    Snapshot(Snapshot),
    /// A file's problem started, changed or ended: see [`Follower::problems`].
    Problems,
}

impl Follower {
    /// Starts watching `dir` for `names`. The first call to [`Follower::next`] reads every file
    /// that exists.
    pub fn new(dir: &Path, names: &[String], cfg: FollowConfig) -> Result<Self, FollowError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut f = Follower {
            scanner: Scanner::new(dir, names, cfg.quiet).with_max_bytes(cfg.max_bytes),
            dir: dir.to_path_buf(),
            names: names.to_vec(),
            tx,
            rx,
            watcher: None,
            watched_ino: None,
            watch_failed: false,
            next_rescan: Instant::now(),
            dirty: vec![None; names.len()],
            queue: Default::default(),
            reported: vec![(None, 0); names.len()],
            cfg,
        };
        f.watch();
        Ok(f)
    }

    fn watch(&mut self) {
        use notify::Watcher;
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&self.dir).ok().map(|m| m.ino());
        if self.watcher.is_some() {
            if ino == self.watched_ino {
                return;
            }
            self.watcher = None; // the directory was removed or replaced
        }
        let names = self.names.clone();
        let tx = self.tx.clone();
        let dir = self.dir.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if is_own_read(&ev.kind) {
                    return;
                }
                if ev.kind.is_remove() && ev.paths.iter().any(|p| p == &dir) {
                    let _ = tx.send(REWATCH);
                }
                for p in &ev.paths {
                    if let Some(i) = p
                        .file_name()
                        .and_then(|n| names.iter().position(|x| n == x.as_str()))
                    {
                        let _ = tx.send(i);
                    }
                }
            }
        };
        let result = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match result {
            Ok(w) => {
                if self.watch_failed {
                    tracing::info!(dir = %self.dir.display(), "Watching directory");
                }
                self.watch_failed = false;
                self.watcher = Some(w);
                self.watched_ino = ino;
            }
            Err(e) => {
                if !self.watch_failed {
                    tracing::info!(dir = %self.dir.display(), error = %e, "Cannot watch directory yet, rescanning");
                }
                self.watch_failed = true;
            }
        }
    }

    /// Whole-file reads so far ([`Scanner::reads`]).
    pub fn reads(&self) -> u64 {
        self.scanner.reads()
    }

    /// Per file: its problem now and how many so far ([`Scanner::problems`]).
    pub fn problems(&self) -> Vec<(Option<FileProblem>, u64)> {
        self.scanner.problems()
    }

    /// How long the last whole-file read of file `i` took ([`Scanner::read_time`]).
    pub fn read_time(&self, i: usize) -> Duration {
        self.scanner.read_time(i)
    }

    /// Hands back the buffer of an ingested snapshot of file `i`, for the next read of that file
    /// ([`Scanner::recycle`]).
    pub fn recycle(&mut self, i: usize, buf: Vec<u8>) {
        self.scanner.recycle(i, buf);
    }

    /// The next snapshot. Cancel-safe: a snapshot read but not yet returned stays queued.
    pub async fn next(&mut self) -> Snapshot {
        loop {
            if let Followed::Snapshot(s) = self.next_event().await {
                return s;
            }
        }
    }

    /// The next snapshot, or a change of a file's problem ([`Follower::problems`]).
    /// Cancel-safe like [`Follower::next`].
    pub async fn next_event(&mut self) -> Followed {
        loop {
            if let Some(s) = self.queue.pop_front() {
                return Followed::Snapshot(s);
            }
            let problems = self.scanner.problems();
            if problems != self.reported {
                self.reported = problems;
                return Followed::Problems;
            }
            let mut deadline = self.next_rescan;
            let max_wait = self.cfg.debounce * 8;
            for (first, last) in self.dirty.iter().flatten() {
                deadline = deadline.min((*last + self.cfg.debounce).min(*first + max_wait));
            }
            if let Some(t) = self.scanner.tail_deadline() {
                deadline = deadline.min(t);
            }
            tokio::select! {
                ev = self.rx.recv() => {
                    if ev == Some(REWATCH) {
                        // The directory went away: watch again at the next rescan (its inode may
                        // be reused by a new directory, so the inode check alone cannot tell).
                        self.watcher = None;
                        self.watched_ino = None;
                    } else if let Some(i) = ev {
                        let now = Instant::now();
                        let d = &mut self.dirty[i];
                        *d = Some((d.map_or(now, |(first, _)| first), now));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    let rescan = now >= self.next_rescan;
                    if rescan {
                        self.next_rescan = now + self.cfg.rescan;
                        self.watch();
                    }
                    let tail_due = self.scanner.tail_deadline().is_some_and(|t| t <= now);
                    for i in 0..self.scanner.len() {
                        let due = self.dirty[i].is_some_and(|(first, last)| (last + self.cfg.debounce).min(first + max_wait) <= now);
                        if due {
                            self.dirty[i] = None;
                        }
                        if due || rescan || tail_due {
                            if let Some(s) = self.scanner.check(i, now, due) {
                                self.queue.push_back(s);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names() -> Vec<String> {
        vec!["counters.csv".into(), "samples.csv".into()]
    }

    /// Operations the platform (or an operator) may do to a file.
    #[derive(Debug, Clone)]
    enum Op {
        /// Overwrite from offset 0 without truncating first (same or larger size).
        InPlace(Vec<u8>),
        TruncateThenWrite(Vec<u8>),
        RenameOver(Vec<u8>),
        Delete,
        AppendPartial(Vec<u8>),
        Wait(Duration),
    }

    fn apply(path: &Path, op: &Op, model: &mut Option<Vec<u8>>) {
        match op {
            Op::InPlace(d) => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .unwrap();
                f.write_all(d).unwrap();
                let m = model.get_or_insert_with(Vec::new);
                if m.len() < d.len() {
                    m.resize(d.len(), 0);
                }
                m[..d.len()].copy_from_slice(d);
            }
            Op::TruncateThenWrite(d) => {
                std::fs::write(path, d).unwrap();
                *model = Some(d.clone());
            }
            Op::RenameOver(d) => {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, d).unwrap();
                std::fs::rename(&tmp, path).unwrap();
                *model = Some(d.clone());
            }
            Op::Delete => {
                let _ = std::fs::remove_file(path);
                *model = None;
            }
            Op::AppendPartial(d) => {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .unwrap();
                f.write_all(d).unwrap();
                model.get_or_insert_with(Vec::new).extend_from_slice(d);
            }
            Op::Wait(_) => {}
        }
    }

    fn content(seed: u64, lines: usize, first_line_fixed: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for l in 0..lines {
            let v = if first_line_fixed && l == 0 { 0 } else { seed };
            out.extend_from_slice(format!("cp1,stat{l},t,60,{v}\n").as_bytes());
        }
        out
    }

    /// Random write / rename / truncate / delete / partial-append / wait sequences against a
    /// simple model: after each step, the scanner yields a snapshot exactly when the file's
    /// content differs from the last snapshot (or its unfinished tail has become quiet), and
    /// the snapshot is the file's whole content.
    #[test]
    fn model_based_refreshes() {
        let dir = tempfile::tempdir().unwrap();
        let quiet = Duration::from_secs(2);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20 {
            let path = dir.path().join("counters.csv");
            let _ = std::fs::remove_file(&path);
            let mut sc = Scanner::new(dir.path(), &names(), quiet);
            let mut model: Option<Vec<u8>> = None;
            let mut last: Option<Vec<u8>> = None;
            let mut tail: Option<(Instant, bool)> = None; // (since, done)
            let mut now = Instant::now();
            for step in 0..40 {
                let n = (rnd() % 4 + 1) as usize;
                let op = match rnd() % 7 {
                    0 => Op::InPlace(content(rnd() % 3, n, true)),
                    1 => Op::TruncateThenWrite(content(rnd() % 3, n, false)),
                    2 => Op::RenameOver(content(rnd() % 3, n, rnd() % 2 == 0)),
                    3 => Op::Delete,
                    4 => Op::AppendPartial(b"cp9,partial,t,60,1".to_vec()),
                    5 => Op::Wait(Duration::from_secs(rnd() % 4)),
                    _ => Op::TruncateThenWrite(Vec::new()),
                };
                apply(&path, &op, &mut model);
                if let Op::Wait(d) = op {
                    now += d;
                }
                let got = sc.check(0, now, false);
                let want = match &model {
                    None => None,
                    Some(m) if Some(m) != last.as_ref() => {
                        last = Some(m.clone());
                        let nl = m.is_empty() || m.ends_with(b"\n");
                        tail = (!nl).then_some((now, false));
                        Some(Snapshot {
                            file: 0,
                            data: m.clone(),
                            tail_complete: nl,
                        })
                    }
                    Some(m) => match tail {
                        Some((since, false)) if now.duration_since(since) >= quiet => {
                            tail = Some((since, true));
                            Some(Snapshot {
                                file: 0,
                                data: m.clone(),
                                tail_complete: true,
                            })
                        }
                        _ => None,
                    },
                };
                assert_eq!(got, want, "round {round} step {step} op {op:?}");
                if let Some(s) = got {
                    sc.recycle(s.file, s.data);
                }
            }
        }
    }

    /// A rewrite is read into the buffer of the snapshot handed back (no fresh memory per
    /// snapshot); a read whose content is unchanged keeps it for the next one.
    #[test]
    fn chunked_read_hashes_as_the_whole_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.csv");
        for len in [
            0,
            1,
            READ_CHUNK as usize - 1,
            READ_CHUNK as usize,
            2 * READ_CHUNK as usize + 12_345,
            SPLIT_READ - 1,
            SPLIT_READ,
            SPLIT_READ + 3 * READ_CHUNK as usize + 7,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let mut buf = Vec::new();
            let h = read_hashed(&path, &mut buf, u64::MAX).unwrap();
            assert_eq!(buf, data);
            assert_eq!(h, content_hash(&data), "len {len}");
            // Again into the same buffer, and without the hash.
            let h = read_hashed(&path, &mut buf, u64::MAX).unwrap();
            assert_eq!(
                (buf.len(), h),
                (data.len(), content_hash(&data)),
                "len {len}"
            );
            let mut plain = vec![1, 2, 3];
            read_into(&path, &mut plain, u64::MAX).unwrap();
            assert!(plain == data, "len {len}");
        }
    }

    /// The two-thread read gives up (and the caller reads the file again in one piece) when
    /// the file is not exactly as long as its metadata said: longer or shorter.
    #[test]
    fn a_split_read_of_a_file_of_another_length_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.csv");
        let data: Vec<u8> = (0..SPLIT_READ + 1001)
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        for (len, whole) in [
            (data.len(), true),
            (data.len() - 1, false),
            (data.len() + 1, false),
            (data.len() + 4096, false),
        ] {
            let mut buf = Vec::with_capacity(len);
            let got = read_split(&f, len, &mut buf, true).unwrap();
            if whole {
                assert_eq!(got, Some(content_hash(&data)));
                assert!(buf == data);
            } else {
                assert_eq!(got, None, "len {len}");
                assert!(buf.is_empty(), "len {len}");
            }
        }
    }

    #[test]
    fn rewrites_are_read_into_the_recycled_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.csv");
        let mut sc = Scanner::new(dir.path(), &names(), Duration::from_secs(1));
        let now = Instant::now();
        std::fs::write(&path, content(1, 1000, false)).unwrap();
        let first = sc.check(0, now, true).unwrap().data;
        let ptr = first.as_ptr();
        sc.recycle(0, first);
        assert_eq!(sc.check(0, now, true), None, "same content, no snapshot");
        // The other file's reads do not take this file's buffer.
        std::fs::write(dir.path().join("samples.csv"), b"").unwrap();
        let empty = sc.check(1, now, true).unwrap();
        sc.recycle(1, empty.data);
        assert_eq!(sc.check(1, now, true), None);
        std::fs::write(&path, content(2, 1000, false)).unwrap();
        let second = sc.check(0, now, true).unwrap().data;
        assert_eq!(second, content(2, 1000, false));
        assert_eq!(second.as_ptr(), ptr, "read into the recycled buffer");
    }

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    /// A FIFO, then a file over the cap, then a good file: each problem is recorded once (not
    /// at every check) and the good file is read. Nothing blocks on the FIFO.
    #[test]
    fn follow_problems_are_recorded_once_per_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.csv");
        mkfifo(&path);
        let mut sc =
            Scanner::new(dir.path(), &names(), Duration::from_secs(1)).with_max_bytes(1024);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(sc.check(0, now, true), None);
        }
        assert_eq!(
            sc.problems(),
            vec![(Some(FileProblem::NotRegular("fifo")), 1), (None, 0)]
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, vec![b'x'; 1025]).unwrap();
        assert_eq!(sc.check(0, now, true), None);
        assert_eq!(sc.check(0, now, true), None);
        assert_eq!(
            sc.problems()[0],
            (Some(FileProblem::TooLarge { max: 1024 }), 2)
        );
        std::fs::write(&path, b"a\n").unwrap();
        assert_eq!(sc.check(0, now, true).unwrap().data, b"a\n");
        assert_eq!(sc.problems()[0], (None, 2));
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(sc.check(0, now, true), None);
        assert_eq!(
            sc.problems()[0],
            (Some(FileProblem::NotRegular("directory")), 3)
        );
    }

    /// Out of descriptors: "too many open files", not "waiting for file".
    #[test]
    fn follow_problem_too_many_open_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("counters.csv"), b"a\n").unwrap();
        let mut sc = Scanner::new(dir.path(), &names(), Duration::from_secs(1));
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain rlimit calls on a local struct.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) };
        let low = libc::rlimit {
            rlim_cur: 128.min(old.rlim_cur),
            rlim_max: old.rlim_max,
        };
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) };
        let mut held = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
        }
        let got = sc.check(0, Instant::now(), true);
        drop(held);
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
        assert_eq!(got, None);
        assert_eq!(sc.problems()[0], (Some(FileProblem::TooManyOpenFiles), 1));
        assert_eq!(sc.check(0, Instant::now(), true).unwrap().data, b"a\n");
    }

    #[test]
    fn missing_file_then_created() {
        let dir = tempfile::tempdir().unwrap();
        let mut sc = Scanner::new(dir.path(), &names(), Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(sc.check(1, now, false), None);
        assert_eq!(sc.check(1, now, false), None);
        std::fs::write(dir.path().join("samples.csv"), b"a\n").unwrap();
        assert_eq!(
            sc.check(1, now, false),
            Some(Snapshot {
                file: 1,
                data: b"a\n".to_vec(),
                tail_complete: true
            })
        );
    }

    async fn next_within(f: &mut Follower, d: Duration) -> Option<Snapshot> {
        tokio::time::timeout(d, f.next()).await.ok()
    }

    /// Debounce and quiet time run on tokio's clock: with paused time they take no real time.
    #[tokio::test(start_paused = true)]
    async fn quiet_time_completes_the_last_row() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FollowConfig {
            debounce: Duration::from_millis(100),
            rescan: Duration::from_secs(3600),
            quiet: Duration::from_secs(5),
            max_bytes: u64::MAX,
        };
        std::fs::write(dir.path().join("counters.csv"), b"h,a,t,60,1\nh,b,t,60,2").unwrap();
        let mut f = Follower::new(dir.path(), &names(), cfg).unwrap();
        let s = next_within(&mut f, Duration::from_secs(1)).await.unwrap();
        assert_eq!((s.file, s.tail_complete), (0, false));
        let start = Instant::now();
        let s = next_within(&mut f, Duration::from_secs(60)).await.unwrap();
        assert!(s.tail_complete);
        assert_eq!(s.data, b"h,a,t,60,1\nh,b,t,60,2");
        assert!(Instant::now() - start >= Duration::from_secs(5));
        assert!(Instant::now() - start < Duration::from_secs(6));
        // Nothing more: the same content is not yielded again.
        assert_eq!(next_within(&mut f, Duration::from_secs(30)).await, None);
    }

    /// A rescan finds a change that produced no event (the watcher is bypassed by using a
    /// directory the follower does not watch yet: it is created after the follower starts).
    #[tokio::test(start_paused = true)]
    async fn rescan_finds_a_directory_created_later() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sre");
        let cfg = FollowConfig {
            debounce: Duration::from_millis(100),
            rescan: Duration::from_secs(10),
            quiet: Duration::from_secs(1),
            max_bytes: u64::MAX,
        };
        let mut f = Follower::new(&dir, &names(), cfg).unwrap();
        assert_eq!(next_within(&mut f, Duration::from_secs(5)).await, None);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("samples.csv"), b"x\n").unwrap();
        let s = next_within(&mut f, Duration::from_secs(11)).await.unwrap();
        assert_eq!((s.file, s.data.as_slice()), (1, &b"x\n"[..]));
    }

    #[tokio::test]
    async fn reading_a_file_does_not_trigger_another_read() {
        // inotify reports our own open and close-after-read of the file; they must not count
        // as a change (else every read triggers the next: a core busy re-reading and hashing
        // an unchanged file).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("counters.csv"), b"h,a,t,60,1\n").unwrap();
        let cfg = FollowConfig {
            debounce: Duration::from_millis(0),
            rescan: Duration::from_secs(3600),
            quiet: Duration::from_secs(3600),
            max_bytes: u64::MAX,
        };
        let mut f = Follower::new(dir.path(), &names(), cfg).unwrap();
        let wait = Duration::from_secs(5);
        assert!(next_within(&mut f, wait).await.is_some());
        let reads = f.reads();
        assert!(next_within(&mut f, Duration::from_millis(500))
            .await
            .is_none());
        assert_eq!(f.reads(), reads, "reads while nothing changed");
        // A real change is still seen.
        std::fs::write(dir.path().join("counters.csv"), b"h,a,t,60,2\n").unwrap();
        let s = next_within(&mut f, wait).await.unwrap();
        assert_eq!(s.data, b"h,a,t,60,2\n");
    }

    /// Each way the platform refreshes a file is seen through notify alone (the rescan is an
    /// hour away), with real time and a short debounce.
    #[tokio::test]
    async fn notify_sees_every_refresh_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.csv");
        std::fs::write(&path, b"h,a,t,60,1\nh,b,t,60,2\n").unwrap();
        let cfg = FollowConfig {
            debounce: Duration::from_millis(30),
            rescan: Duration::from_secs(3600),
            quiet: Duration::from_secs(3600),
            max_bytes: u64::MAX,
        };
        let mut f = Follower::new(dir.path(), &names(), cfg).unwrap();
        let wait = Duration::from_secs(5);
        assert_eq!(
            next_within(&mut f, wait).await.unwrap().data,
            b"h,a,t,60,1\nh,b,t,60,2\n"
        );
        let mut model = None;
        let steps: Vec<(&str, Op, &[u8])> = vec![
            (
                "same size, first line unchanged",
                Op::InPlace(b"h,a,t,60,1\nh,b,t,60,3\n".to_vec()),
                b"h,a,t,60,1\nh,b,t,60,3\n",
            ),
            (
                "larger, in place",
                Op::InPlace(b"h,a,t,60,1\nh,b,t,60,3\nh,c,t,60,4\n".to_vec()),
                b"h,a,t,60,1\nh,b,t,60,3\nh,c,t,60,4\n",
            ),
            (
                "rename over",
                Op::RenameOver(b"h,a,t,120,5\n".to_vec()),
                b"h,a,t,120,5\n",
            ),
            (
                "truncate then write",
                Op::TruncateThenWrite(b"h,a,t,180,6\n".to_vec()),
                b"h,a,t,180,6\n",
            ),
        ];
        for (what, op, want) in steps {
            apply(&path, &op, &mut model);
            let s = next_within(&mut f, wait)
                .await
                .unwrap_or_else(|| panic!("{what}: no snapshot"));
            assert_eq!(s.data, want, "{what}");
        }
        apply(&path, &Op::Delete, &mut model);
        assert_eq!(next_within(&mut f, Duration::from_millis(300)).await, None);
        apply(
            &path,
            &Op::TruncateThenWrite(b"h,a,t,240,7\n".to_vec()),
            &mut model,
        );
        assert_eq!(
            next_within(&mut f, wait).await.unwrap().data,
            b"h,a,t,240,7\n",
            "delete and recreate"
        );
    }

    /// The directory itself is removed and created again: the next rescan sets a new watch, and
    /// later refreshes are seen through notify again.
    #[tokio::test]
    async fn directory_recreated_is_watched_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sre");
        std::fs::create_dir(&dir).unwrap();
        let cfg = FollowConfig {
            debounce: Duration::from_millis(30),
            rescan: Duration::from_millis(300),
            quiet: Duration::from_secs(60),
            max_bytes: u64::MAX,
        };
        let mut f = Follower::new(&dir, &names(), cfg).unwrap();
        std::fs::write(dir.join("counters.csv"), b"a\n").unwrap();
        assert_eq!(
            next_within(&mut f, Duration::from_secs(5))
                .await
                .unwrap()
                .data,
            b"a\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("counters.csv"), b"b\n").unwrap();
        assert_eq!(
            next_within(&mut f, Duration::from_secs(5))
                .await
                .unwrap()
                .data,
            b"b\n"
        );
        // Give the rescan time to set the new watch, then stop relying on rescans.
        assert_eq!(next_within(&mut f, Duration::from_millis(700)).await, None);
        assert!(f.watcher.is_some());
        f.cfg.rescan = Duration::from_secs(3600);
        f.next_rescan = Instant::now() + Duration::from_secs(3600);
        std::fs::write(dir.join("counters.csv"), b"c\n").unwrap();
        assert_eq!(
            next_within(&mut f, Duration::from_secs(5))
                .await
                .unwrap()
                .data,
            b"c\n"
        );
    }
}
