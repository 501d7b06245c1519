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
//!
//! One module per concern, after Vector's file source: [`watcher`] (notify on the directory,
//! rescan, debounce: the [`Follower`]), [`scan`] (the synchronous [`Scanner`] that reads a file
//! and decides whether it is a new snapshot), [`read`] (bounded, non-blocking whole-file reads),
//! [`fingerprint`] (the content hash that tells one content from another).

mod fingerprint;
mod read;
mod scan;
mod watcher;

pub(crate) use read::read_into;
pub use read::{access_context, open_regular, FileProblem, ReadError};
pub use scan::Scanner;
pub use watcher::{Followed, Follower};

use std::time::Duration;

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

#[cfg(test)]
mod tests;
