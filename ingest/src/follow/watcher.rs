//! The watcher: notify on the directory, the periodic rescan and the debounce of bursts, over
//! a [`Scanner`].

use super::{FileProblem, FollowConfig, FollowError, Scanner, Snapshot};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
///
/// 13 fields: the watcher's channel and timers belong together, since one `next` call
/// drives them all; the scan, read and fingerprint work lives in their own types.
pub struct Follower {
    scanner: Scanner,
    pub(super) cfg: FollowConfig,
    dir: PathBuf,
    names: Vec<String>,
    tx: mpsc::UnboundedSender<usize>,
    rx: mpsc::UnboundedReceiver<usize>,
    pub(super) watcher: Option<notify::RecommendedWatcher>,
    /// Inode of the directory the watcher was set on: a directory replaced or removed needs a
    /// new watch.
    watched_ino: Option<u64>,
    watch_failed: bool,
    pub(super) next_rescan: Instant,
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
