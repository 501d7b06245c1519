//! The synchronous core of the follower: reads a file when asked and decides whether its content
//! is a new snapshot (content compared by [`super::fingerprint`]), with the tail's quiet time,
//! the missing file and the unreadable one.

use super::read::{self, read_hashed, ReadError};
use super::{FileProblem, Snapshot};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

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
