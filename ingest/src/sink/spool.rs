//! Bounded on-disk spool for batches the server could not take.
//!
//! One file per batch in the spool directory, named by a sequence number (`00000000000000000042.batch`)
//! so that a directory listing sorted by name is the order the batches were spooled in. Replay takes
//! the oldest first, which keeps the order of every bucket.
//!
//! Each file is written atomically: a `.tmp` file is written and `fsync`ed, renamed to its final
//! name, and the directory is `fsync`ed. A crash leaves either the whole file or a `.tmp` file,
//! never half a batch under a `.batch` name. Format (little endian):
//!
//! | bytes     | content                                                   |
//! |-----------|-----------------------------------------------------------|
//! | 0..8      | magic `SRWSPOL2`                                          |
//! | 8..12     | CRC-32 of every byte from offset 12 to the end            |
//! | 12..14    | bucket name length                                        |
//! | 14..18    | points (lines)                                            |
//! | 18..22    | body length (compressed)                                  |
//! | 22..30    | oldest timestamp of the lines (seconds, i64)              |
//! | 30..38    | newest timestamp of the lines                             |
//! | 38..42    | line-protocol length before compression                   |
//! | 42..      | bucket name (UTF-8), then the line protocol, deflate (zlib) |
//!
//! Line protocol of the platform's files shrinks about 15 times (see docs/sink.md for the
//! measured bytes per hour of outage). Files of the first format (`SRWSPOL1`: a 22-byte header
//! without the timestamps, the line protocol not compressed) left by an older srewatch are
//! still read.
//!
//! A file that is torn (`.tmp` left by a crash), short, long, or fails its CRC is counted, logged
//! and moved to `corrupt/` inside the spool directory for inspection; it never stops the sink.
//! A file removed by someone else is "gone" (a warning, its points counted as lost), not corrupt;
//! a spool directory removed while running is recreated and locked again at the next write
//! ([`crate::state_dir::StateDir`], shared with the checkpoint).
//!
//! Replay can skip buckets ([`Spool::read_first`]): a refused bucket's batches wait while the
//! others' are sent, each bucket still oldest first.
//!
//! The spool is bounded by `max_bytes` (sum of file sizes): before a new batch is written, the
//! oldest batches are deleted until it fits, and their points are counted as dropped. A directory
//! that cannot be written is an error for that one batch (the caller counts it); the spool keeps
//! working with what it has. A `lock` file (`flock`) keeps two processes from sharing a directory.

use crate::state_dir::{StateDir, StateError, TempName};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC_V1: &[u8; 8] = b"SRWSPOL1";
const HEADER_V1: usize = 22;
const MAGIC: &[u8; 8] = b"SRWSPOL2";
const HEADER: usize = 42;
/// zlib level for spooled batches: 6 (the default) gives most of level 9's ratio at several
/// times its speed; spooling happens only during outages.
const LEVEL: u32 = 6;
const SUFFIX: &str = ".batch";
const TMP_SUFFIX: &str = ".tmp";
const CORRUPT_DIR: &str = "corrupt";

/// Why the spool could not do something.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create or open spool directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("spool directory {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error("cannot write spool file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("batch of {size} bytes is larger than the whole spool ({max} bytes)")]
    TooLarge { size: u64, max: u64 },
}

impl SpoolError {
    /// Short fixed name, usable as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            SpoolError::Dir { .. } => "dir",
            SpoolError::Locked { .. } => "locked",
            SpoolError::Write { .. } => "write",
            SpoolError::TooLarge { .. } => "too_large",
        }
    }
}

/// One spooled batch, as known from its header.
#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    bucket: String,
    points: u32,
    size: u64,
    /// Timestamp range of the lines (`i64::MAX`, `i64::MIN` for first-format files).
    oldest: i64,
    newest: i64,
}

/// A batch read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub seq: u64,
    pub bucket: String,
    pub lines: Bytes,
    pub points: usize,
}

/// What pushing a batch cost: the oldest batches deleted to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub batches: u64,
    pub points: u64,
    /// Oldest and newest timestamp (seconds) of the points deleted; `i64::MAX` / `i64::MIN`
    /// when none (or only files of the first format, which do not record them).
    pub oldest: i64,
    pub newest: i64,
}

impl Default for Evicted {
    fn default() -> Self {
        Evicted {
            batches: 0,
            points: 0,
            oldest: i64::MAX,
            newest: i64::MIN,
        }
    }
}

impl Evicted {
    /// Adds `other` (a later eviction) to this one.
    pub fn merge(&mut self, other: &Evicted) {
        self.batches += other.batches;
        self.points += other.points;
        self.oldest = self.oldest.min(other.oldest);
        self.newest = self.newest.max(other.newest);
    }
}

/// Set aside while opening or reading: counted once per file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    pub files: u64,
    /// Points of corrupt files whose header could still be read (0 when it could not).
    pub points: u64,
}

/// The spool directory and its index (kept in memory, rebuilt from the directory at open).
#[derive(Debug)]
pub struct Spool {
    /// The directory: its lock and the atomic writes of batch files.
    state: StateDir,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    bytes: u64,
    points: u64,
    next_seq: u64,
    /// The front batch handed out by [`Spool::read_front`] and not yet settled: never evicted.
    busy: Option<u64>,
    /// Files set aside since open (including at open).
    corrupt: Corrupt,
    /// Files removed by someone else since open (their points are lost).
    gone: Corrupt,
    /// Batches waiting per bucket: a bucket's new batch goes behind its spooled ones.
    per_bucket: std::collections::HashMap<String, usize>,
    /// Batches deleted for room, per bucket, not yet taken by [`Spool::take_evicted`].
    evicted_log: Vec<(String, Evicted)>,
}

impl Spool {
    /// Opens (creating) `dir`, takes its lock, and indexes the batches found there. Torn and
    /// corrupt files are set aside and counted in [`Spool::corrupt`]; if the batches found exceed
    /// `max_bytes`, the oldest are deleted (returned as [`Evicted`]).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spool, Evicted), SpoolError> {
        let dir_err = |source| SpoolError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        let state = StateDir::open_with(dir, "Spool", TempName::Suffix(TMP_SUFFIX)).map_err(
            |e| match e {
                StateError::Dir { path, source } => SpoolError::Dir { path, source },
                StateError::Locked { path } => SpoolError::Locked { path },
            },
        )?;
        let mut spool = Spool {
            state,
            max_bytes,
            entries: VecDeque::new(),
            bytes: 0,
            points: 0,
            next_seq: 1,
            busy: None,
            corrupt: Corrupt::default(),
            gone: Corrupt::default(),
            per_bucket: Default::default(),
            evicted_log: Vec::new(),
        };
        let mut found = Vec::new();
        for item in fs::read_dir(dir).map_err(dir_err)? {
            let Ok(item) = item else { continue };
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(SUFFIX) {
                match stem.parse::<u64>() {
                    Ok(seq) => found.push(seq),
                    Err(_) => spool.set_aside(name, "unexpected file name", 0),
                }
            } else if name.ends_with(TMP_SUFFIX) {
                spool.set_aside(name, "torn write (temporary file left by a crash)", 0);
            }
        }
        found.sort_unstable();
        for seq in found {
            let name = file_name(seq);
            match read_header(&dir.join(&name)) {
                Ok(e) => {
                    spool.bytes += e.size;
                    spool.points += u64::from(e.points);
                    *spool.per_bucket.entry(e.bucket.clone()).or_default() += 1;
                    spool.entries.push_back(Entry { seq, ..e });
                }
                Err(_) if is_gone(&dir.join(&name)) => spool.note_gone(&name, 0),
                Err(why) => spool.set_aside(&name, &why, 0),
            }
            spool.next_seq = seq + 1;
        }
        let evicted = spool.make_room(0);
        Ok((spool, evicted))
    }

    pub fn dir(&self) -> &Path {
        self.state.path()
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes on disk (sum of the batch files).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Points waiting.
    pub fn points(&self) -> u64 {
        self.points
    }

    /// Files set aside as corrupt since open.
    pub fn corrupt(&self) -> Corrupt {
        self.corrupt
    }

    /// Files found removed by someone else since open.
    pub fn gone(&self) -> Corrupt {
        self.gone
    }

    /// Whether batches of `bucket` are waiting.
    pub fn has_bucket(&self, bucket: &str) -> bool {
        self.per_bucket.get(bucket).is_some_and(|&n| n > 0)
    }

    /// The batches deleted for room since the last call, per bucket, in the order deleted.
    pub fn take_evicted(&mut self) -> Vec<(String, Evicted)> {
        std::mem::take(&mut self.evicted_log)
    }

    /// Like [`Spool::push`] but never deletes a batch for room: `Ok(false)` (nothing written)
    /// when the batch does not fit in what is left.
    pub fn push_within(
        &mut self,
        bucket: &str,
        lines: &[u8],
        points: usize,
    ) -> Result<bool, SpoolError> {
        if self.bytes >= self.max_bytes {
            return Ok(false);
        }
        self.push_inner(bucket, lines, points, false)
            .map(|e| e.is_some())
    }

    /// Writes one batch behind all the others. Deletes the oldest batches (never the one handed
    /// out by [`Spool::read_front`]) when the spool would exceed its size.
    pub fn push(
        &mut self,
        bucket: &str,
        lines: &[u8],
        points: usize,
    ) -> Result<Evicted, SpoolError> {
        self.push_inner(bucket, lines, points, true)
            .map(|e| e.unwrap_or_default())
    }

    /// [`Spool::push`]; without `evict`, `Ok(None)` when the batch does not fit.
    fn push_inner(
        &mut self,
        bucket: &str,
        lines: &[u8],
        points: usize,
        evict: bool,
    ) -> Result<Option<Evicted>, SpoolError> {
        if bucket.len() > u16::MAX as usize || lines.len() > u32::MAX as usize {
            return Err(SpoolError::TooLarge {
                size: lines.len() as u64,
                max: self.max_bytes,
            });
        }
        let body = compress(lines);
        let size = (HEADER + bucket.len() + body.len()) as u64;
        if size > self.max_bytes {
            return Err(SpoolError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        if !evict && self.bytes + size > self.max_bytes {
            return Ok(None);
        }
        let (oldest, newest) = time_range(lines);
        let evicted = self.make_room(size);
        let seq = self.next_seq;
        self.write_file(seq, bucket, &body, lines.len(), points, (oldest, newest))?;
        self.next_seq += 1;
        *self.per_bucket.entry(bucket.to_owned()).or_default() += 1;
        self.entries.push_back(Entry {
            seq,
            bucket: bucket.to_owned(),
            points: points as u32,
            size,
            oldest,
            newest,
        });
        self.bytes += size;
        self.points += points as u64;
        Ok(Some(evicted))
    }

    /// Reads the oldest batch and marks it busy (not evicted until settled with
    /// [`Spool::pop_front`], [`Spool::replace_front`] or [`Spool::release`]). Corrupt files met
    /// on the way are set aside and counted; the next good batch is returned.
    pub fn read_front(&mut self) -> Option<Spooled> {
        self.read_first(|_| true)
    }

    /// Reads the oldest batch of a bucket `wanted` accepts and marks it busy, as
    /// [`Spool::read_front`]: each bucket's batches still come out oldest first.
    pub fn read_first(&mut self, wanted: impl Fn(&str) -> bool) -> Option<Spooled> {
        loop {
            let i = self.entries.iter().position(|e| wanted(&e.bucket))?;
            let e = self.entries[i].clone();
            let name = file_name(e.seq);
            let path = self.dir().join(&name);
            match read_batch(&path) {
                Ok((bucket, lines, points)) => {
                    self.busy = Some(e.seq);
                    return Some(Spooled {
                        seq: e.seq,
                        bucket,
                        lines,
                        points,
                    });
                }
                Err(why) => {
                    self.forget(i);
                    if is_gone(&path) {
                        self.note_gone(&name, u64::from(e.points));
                    } else {
                        self.set_aside(&name, &why, u64::from(e.points));
                    }
                }
            }
        }
    }

    /// The busy batch was delivered: deletes it.
    pub fn pop_front(&mut self, seq: u64) -> io::Result<()> {
        self.busy = None;
        let Some(i) = self.entries.iter().position(|e| e.seq == seq) else {
            return Ok(());
        };
        self.forget(i);
        match fs::remove_file(self.dir().join(file_name(seq))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Part of the busy front batch was delivered: the rest replaces it, keeping its place.
    pub fn replace_front(
        &mut self,
        seq: u64,
        lines: &[u8],
        points: usize,
    ) -> Result<(), SpoolError> {
        self.busy = None;
        let Some(i) = self.entries.iter().position(|e| e.seq == seq) else {
            return Ok(());
        };
        let front = self.entries[i].clone();
        if points == 0 {
            let _ = self.pop_front(seq);
            return Ok(());
        }
        let body = compress(lines);
        let range = time_range(lines);
        self.write_file(seq, &front.bucket, &body, lines.len(), points, range)?;
        let size = (HEADER + front.bucket.len() + body.len()) as u64;
        let e = &mut self.entries[i];
        self.bytes = self.bytes - e.size + size;
        self.points = self.points - u64::from(e.points) + points as u64;
        e.size = size;
        e.points = points as u32;
        (e.oldest, e.newest) = range;
        Ok(())
    }

    /// The busy front batch could not be delivered: it stays first in line.
    pub fn release(&mut self) {
        self.busy = None;
    }

    fn forget(&mut self, i: usize) {
        if let Some(e) = self.entries.remove(i) {
            self.bytes -= e.size;
            self.points -= u64::from(e.points);
            self.count_out(&e.bucket);
        }
    }

    fn count_out(&mut self, bucket: &str) {
        if let Some(n) = self.per_bucket.get_mut(bucket) {
            *n -= 1;
            if *n == 0 {
                self.per_bucket.remove(bucket);
            }
        }
    }

    /// A batch file removed by someone else: counted and logged as gone, not corrupt.
    fn note_gone(&mut self, name: &str, points: u64) {
        self.gone.files += 1;
        self.gone.points += points;
        tracing::warn!(file = %self.dir().join(name).display(), points, "Spool file gone (removed by someone else); its points are lost");
    }

    /// Deletes the oldest batches (skipping the busy one) until `extra` more bytes fit.
    fn make_room(&mut self, extra: u64) -> Evicted {
        let mut ev = Evicted::default();
        while self.bytes + extra > self.max_bytes {
            let idx = match (self.busy, self.entries.front()) {
                (Some(b), Some(f)) if f.seq == b => 1,
                _ => 0,
            };
            let Some(e) = self.entries.remove(idx) else {
                break;
            };
            let _ = fs::remove_file(self.dir().join(file_name(e.seq)));
            self.bytes -= e.size;
            self.points -= u64::from(e.points);
            self.count_out(&e.bucket);
            let one = Evicted {
                batches: 1,
                points: u64::from(e.points),
                oldest: e.oldest,
                newest: e.newest,
            };
            ev.merge(&one);
            self.evicted_log.push((e.bucket, one));
        }
        ev
    }

    /// Writes a batch file; `body` is the compressed line protocol of `raw_len` bytes.
    fn write_file(
        &self,
        seq: u64,
        bucket: &str,
        body: &[u8],
        raw_len: usize,
        points: usize,
        (oldest, newest): (i64, i64),
    ) -> Result<(), SpoolError> {
        let lines = body;
        let name = file_name(seq);
        let dst = self.dir().join(&name);
        let mut head = [0u8; HEADER];
        head[..8].copy_from_slice(MAGIC);
        head[12..14].copy_from_slice(&(bucket.len() as u16).to_le_bytes());
        head[14..18].copy_from_slice(&(points as u32).to_le_bytes());
        head[18..22].copy_from_slice(&(lines.len() as u32).to_le_bytes());
        head[22..30].copy_from_slice(&oldest.to_le_bytes());
        head[30..38].copy_from_slice(&newest.to_le_bytes());
        head[38..42].copy_from_slice(&(raw_len as u32).to_le_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&head[12..]);
        crc.update(bucket.as_bytes());
        crc.update(lines);
        head[8..12].copy_from_slice(&crc.sum().to_le_bytes());
        self.state
            .write_atomic_with(&name, |f| {
                f.write_all(&head)?;
                f.write_all(bucket.as_bytes())?;
                f.write_all(lines)
            })
            .map_err(|source| SpoolError::Write { path: dst, source })
    }

    /// Moves a bad file to `corrupt/` (or deletes it if that fails), counts and logs it.
    fn set_aside(&mut self, name: &str, why: &str, points: u64) {
        self.corrupt.files += 1;
        self.corrupt.points += points;
        let from = self.dir().join(name);
        let aside = self.dir().join(CORRUPT_DIR);
        let to = aside.join(name);
        let moved = fs::create_dir_all(&aside).and_then(|_| fs::rename(&from, &to));
        match moved {
            Ok(()) => {
                tracing::error!(file = %from.display(), moved_to = %to.display(), reason = why, points, "Corrupt spool file set aside")
            }
            Err(e) => {
                let _ = fs::remove_file(&from);
                tracing::error!(file = %from.display(), reason = why, points, error = %e, "Corrupt spool file deleted (cannot move it aside)");
            }
        }
    }
}

/// Whether `path` no longer exists (removed by someone else).
fn is_gone(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

/// A parsed header: its length, bucket length, points, body length, time range, raw length
/// (`None` for the first format, whose body is not compressed).
struct Header {
    len: usize,
    blen: usize,
    points: u32,
    range: (i64, i64),
    raw: Option<usize>,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8]) -> i64 {
    i64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Parses the header at the start of `head` (at least [`HEADER`] bytes, or the whole file if
/// shorter) of a file of `file_len` bytes.
fn parse_header(head: &[u8], file_len: u64) -> Result<Header, String> {
    let short = || format!("short file ({file_len} bytes)");
    let v1 = match head.get(..8) {
        Some(m) if m == MAGIC => false,
        Some(m) if m == MAGIC_V1 => true,
        Some(_) => return Err("bad magic".into()),
        None => return Err(short()),
    };
    let len = if v1 { HEADER_V1 } else { HEADER };
    if head.len() < len {
        return Err(short());
    }
    let blen = u16::from_le_bytes([head[12], head[13]]) as usize;
    let points = le32(&head[14..]);
    let body = le32(&head[18..]) as usize;
    let want = (len + blen + body) as u64;
    if file_len != want {
        return Err(format!("size {file_len} bytes, header says {want}"));
    }
    let (range, raw) = if v1 {
        ((i64::MAX, i64::MIN), None)
    } else {
        (
            (le64(&head[22..]), le64(&head[30..])),
            Some(le32(&head[38..]) as usize),
        )
    };
    Ok(Header {
        len,
        blen,
        points,
        range,
        raw,
    })
}

/// Header check at open: magic and exact size, without reading the body.
fn read_header(path: &Path) -> Result<Entry, String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut head = Vec::with_capacity(HEADER);
    (&mut f)
        .take(HEADER as u64)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let h = parse_header(&head, len)?;
    let bucket = head
        .get(h.len..h.len + h.blen)
        .map(<[u8]>::to_vec)
        .map_or_else(
            || {
                let mut b = head[h.len..].to_vec();
                let mut rest = vec![0u8; h.blen - b.len()];
                f.read_exact(&mut rest).map_err(|e| e.to_string())?;
                b.extend_from_slice(&rest);
                Ok::<_, String>(b)
            },
            Ok,
        )?;
    let bucket = String::from_utf8(bucket).map_err(|_| "bucket name is not UTF-8".to_string())?;
    Ok(Entry {
        seq: 0,
        bucket,
        points: h.points,
        size: len,
        oldest: h.range.0,
        newest: h.range.1,
    })
}

/// Full read with CRC check and decompression, at replay.
fn read_batch(path: &Path) -> Result<(String, Bytes, usize), String> {
    let data = fs::read(path).map_err(|e| e.to_string())?;
    let h = parse_header(&data, data.len() as u64)?;
    let mut crc = flate2::Crc::new();
    crc.update(&data[12..]);
    if crc.sum().to_le_bytes() != data[8..12] {
        return Err("CRC mismatch".into());
    }
    let start = h.len + h.blen;
    let bucket = std::str::from_utf8(&data[h.len..start])
        .map_err(|_| "bucket name is not UTF-8".to_string())?
        .to_owned();
    let lines = match h.raw {
        None => Bytes::from(data).slice(start..),
        Some(raw) => {
            let mut out = Vec::with_capacity(raw);
            flate2::read::ZlibDecoder::new(&data[start..])
                .read_to_end(&mut out)
                .map_err(|e| format!("cannot decompress: {e}"))?;
            if out.len() != raw {
                return Err(format!(
                    "decompressed to {} bytes, header says {raw}",
                    out.len()
                ));
            }
            Bytes::from(out)
        }
    };
    Ok((bucket, lines, h.points as usize))
}

/// zlib-compresses a batch for the spool.
fn compress(lines: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(lines.len() / 8 + 64),
        flate2::Compression::new(LEVEL),
    );
    z.write_all(lines).expect("writing to a Vec cannot fail");
    z.finish().expect("writing to a Vec cannot fail")
}

/// Oldest and newest timestamp (the last field of each line); `(i64::MAX, i64::MIN)` if none.
pub(crate) fn time_range(lines: &[u8]) -> (i64, i64) {
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for line in lines.split(|&b| b == b'\n') {
        let Some(sp) = memchr::memrchr(b' ', line) else {
            continue;
        };
        let Some(t) = std::str::from_utf8(&line[sp + 1..])
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
        else {
            continue;
        };
        lo = lo.min(t);
        hi = hi.max(t);
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(SUFFIX))
            .collect();
        v.sort();
        v
    }

    fn drain(s: &mut Spool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some(b) = s.read_front() {
            out.push((
                b.bucket.clone(),
                String::from_utf8(b.lines.to_vec()).unwrap(),
            ));
            s.pop_front(b.seq).unwrap();
        }
        out
    }

    /// `n` lines like the file pipeline's counters points, minutes `m0..m0+n/100`.
    fn counters_lines(n: usize, m0: i64) -> String {
        let mut t = String::new();
        for i in 0..n {
            let m = m0 + (i / 100) as i64;
            t.push_str(&format!(
                "request.http.<GET>.{},hostname=sre-cp{}-site{} value={}i {}\n",
                i % 100,
                i % 37,
                i % 7,
                (i * 7919) % 200,
                m * 60
            ));
        }
        t
    }

    #[test]
    fn batches_are_stored_compressed_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 30).unwrap();
        let text = counters_lines(5000, 29_000_000);
        s.push("counters", text.as_bytes(), 5000).unwrap();
        let on_disk = fs::metadata(dir.path().join(file_name(1))).unwrap().len();
        assert_eq!(s.bytes(), on_disk);
        assert!(
            on_disk * 5 < text.len() as u64,
            "{on_disk} bytes on disk for {} bytes of line protocol",
            text.len()
        );
        let (mut s2, _) = {
            drop(s);
            Spool::open(dir.path(), 1 << 30).unwrap()
        };
        assert_eq!(drain(&mut s2), vec![("counters".into(), text)]);
    }

    #[test]
    fn evictions_name_the_minutes_they_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 30).unwrap();
        for k in 0..3 {
            let text = counters_lines(200, 29_000_000 + 2 * k);
            s.push("counters", text.as_bytes(), 200).unwrap();
        }
        // Room for about 2.5 batches: the two oldest go, minutes 29000000..=29000003.
        s.max_bytes = s.bytes() * 5 / 6;
        let text = counters_lines(200, 29_000_006);
        let ev = s.push("counters", text.as_bytes(), 200).unwrap();
        assert_eq!(
            ev,
            Evicted {
                batches: 2,
                points: 400,
                oldest: 29_000_000 * 60,
                newest: 29_000_003 * 60
            }
        );
    }

    #[test]
    fn first_format_files_are_still_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"a value=1i 60\nb value=2i 60\n";
        let mut f = Vec::new();
        f.extend_from_slice(MAGIC_V1);
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&8u16.to_le_bytes());
        f.extend_from_slice(&2u32.to_le_bytes());
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(b"counters");
        f.extend_from_slice(body);
        let mut crc = flate2::Crc::new();
        crc.update(&f[12..]);
        f[8..12].copy_from_slice(&crc.sum().to_le_bytes());
        fs::write(dir.path().join(file_name(7)), &f).unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((s.len(), s.points(), s.bytes()), (1, 2, f.len() as u64));
        assert_eq!(
            drain(&mut s),
            vec![("counters".into(), String::from_utf8(body.to_vec()).unwrap())]
        );
    }

    #[test]
    fn order_is_kept_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, ev) = Spool::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(ev, Evicted::default());
            s.push("counters", b"a value=1i 60\n", 1).unwrap();
            s.push("samples", b"b value=0.5 60\nc value=1.5 60\n", 2)
                .unwrap();
            s.push("counters", b"d value=2i 120\n", 1).unwrap();
            assert_eq!((s.len(), s.points()), (3, 4));
            let files: u64 = batch_files(dir.path())
                .iter()
                .map(|n| fs::metadata(dir.path().join(n)).unwrap().len())
                .sum();
            assert_eq!(s.bytes(), files);
            assert_eq!(
                files,
                (3 * HEADER + 8 + 7 + 8) as u64
                    + [
                        &b"a value=1i 60\n"[..],
                        b"b value=0.5 60\nc value=1.5 60\n",
                        b"d value=2i 120\n"
                    ]
                    .iter()
                    .map(|l| compress(l).len() as u64)
                    .sum::<u64>()
            );
        }
        let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((s.len(), s.points()), (3, 4));
        assert_eq!(
            drain(&mut s),
            vec![
                ("counters".into(), "a value=1i 60\n".into()),
                ("samples".into(), "b value=0.5 60\nc value=1.5 60\n".into()),
                ("counters".into(), "d value=2i 120\n".into()),
            ]
        );
        assert_eq!((s.len(), s.bytes(), s.points()), (0, 0, 0));
        assert!(batch_files(dir.path()).is_empty());
        // Sequence numbers continue after the ones found, so new batches sort last.
        s.push("x", b"e v=1i 1\n", 1).unwrap();
        assert_eq!(batch_files(dir.path()), vec![format!("{:020}.batch", 4)]);
    }

    /// What evicting `n` batches of one point each, all at second 60, reports.
    fn evicted_at_60(n: u64) -> Evicted {
        Evicted {
            batches: n,
            points: n,
            oldest: 60,
            newest: 60,
        }
    }

    #[test]
    fn full_spool_drops_oldest_but_not_the_busy_one() {
        let dir = tempfile::tempdir().unwrap();
        let line = b"m value=1i 60\n";
        let size = (HEADER + 1 + compress(line).len()) as u64;
        let (mut s, _) = Spool::open(dir.path(), size * 3).unwrap();
        for _ in 0..3 {
            assert_eq!(s.push("b", line, 1).unwrap(), Evicted::default());
        }
        assert_eq!(s.push("b", line, 1).unwrap(), evicted_at_60(1));
        assert_eq!(
            batch_files(dir.path()),
            (2..=4).map(file_name).collect::<Vec<_>>()
        );
        // The front (seq 2) is being replayed: the next eviction takes seq 3 instead.
        let front = s.read_front().unwrap();
        assert_eq!(front.seq, 2);
        assert_eq!(s.push("b", line, 1).unwrap(), evicted_at_60(1));
        assert_eq!(batch_files(dir.path()), [2, 4, 5].map(file_name).to_vec());
        s.pop_front(2).unwrap();
        assert_eq!((s.len(), s.bytes(), s.points()), (2, 2 * size, 2));
        // A batch larger than the whole spool is refused, nothing evicted.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let big: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        assert!(matches!(
            s.push("b", &big, 1),
            Err(SpoolError::TooLarge { .. })
        ));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn open_evicts_down_to_a_smaller_bound() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
            for i in 0..5 {
                s.push("b", format!("m value={i}i 60\n").as_bytes(), 1)
                    .unwrap();
            }
        }
        let size = (HEADER + 1 + compress(b"m value=0i 60\n").len()) as u64;
        let (mut s, ev) = Spool::open(dir.path(), size * 2).unwrap();
        assert_eq!(ev, evicted_at_60(3));
        let got: Vec<String> = drain(&mut s).into_iter().map(|(_, l)| l).collect();
        assert_eq!(got, vec!["m value=3i 60\n", "m value=4i 60\n"]);
    }

    #[test]
    fn corrupt_and_torn_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
            for i in 1..=4 {
                s.push("b", format!("m value={i}i 60\n").as_bytes(), 1)
                    .unwrap();
            }
        }
        // 1: truncated (size check at open); 3: one body byte flipped (CRC check at replay);
        // a torn temporary file and a stray name.
        let p1 = dir.path().join(file_name(1));
        let d = fs::read(&p1).unwrap();
        fs::write(&p1, &d[..d.len() - 3]).unwrap();
        let p3 = dir.path().join(file_name(3));
        let mut d = fs::read(&p3).unwrap();
        let n = d.len();
        d[n - 5] ^= 0x01;
        fs::write(&p3, d).unwrap();
        fs::write(
            dir.path().join(format!("{}.tmp", file_name(5))),
            b"SRWSPOL1 half",
        )
        .unwrap();
        fs::write(dir.path().join("junk.batch"), b"").unwrap();

        let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            s.corrupt(),
            Corrupt {
                files: 3,
                points: 0
            }
        );
        assert_eq!(s.len(), 3);
        let got: Vec<String> = drain(&mut s).into_iter().map(|(_, l)| l).collect();
        assert_eq!(got, vec!["m value=2i 60\n", "m value=4i 60\n"]);
        assert_eq!(
            s.corrupt(),
            Corrupt {
                files: 4,
                points: 1
            }
        );
        let mut aside: Vec<String> = fs::read_dir(dir.path().join(CORRUPT_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        aside.sort();
        assert_eq!(
            aside,
            vec![
                file_name(1),
                file_name(3),
                format!("{}.tmp", file_name(5)),
                "junk.batch".to_string()
            ]
        );
        // New sequence numbers continue past the highest `.batch` name found (4).
        s.push("b", b"m value=9i 60\n", 1).unwrap();
        assert_eq!(batch_files(dir.path()), vec![file_name(5)]);
    }

    #[test]
    fn replace_front_keeps_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push("b", b"a v=1i 1\nb v=2i 1\nc v=3i 1\n", 3).unwrap();
        s.push("b", b"d v=4i 1\n", 1).unwrap();
        let f = s.read_front().unwrap();
        s.replace_front(f.seq, b"b v=2i 1\nc v=3i 1\n", 2).unwrap();
        assert_eq!(s.points(), 3);
        let got: Vec<String> = drain(&mut s).into_iter().map(|(_, l)| l).collect();
        assert_eq!(got, vec!["b v=2i 1\nc v=3i 1\n", "d v=4i 1\n"]);
    }

    #[test]
    fn second_open_of_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20),
            Err(SpoolError::Locked { .. })
        ));
    }

    #[test]
    fn a_file_removed_by_someone_else_is_gone_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push("b", b"a v=1i 60\n", 1).unwrap();
        s.push("b", b"b v=2i 120\n", 1).unwrap();
        fs::remove_file(dir.path().join(file_name(1))).unwrap();
        let f = s.read_front().unwrap();
        assert_eq!((f.seq, &f.lines[..]), (2, &b"b v=2i 120\n"[..]));
        assert_eq!(s.corrupt(), Corrupt::default());
        assert_eq!(
            s.gone(),
            Corrupt {
                files: 1,
                points: 1
            }
        );
        assert!(!dir.path().join(CORRUPT_DIR).exists());
    }

    #[test]
    fn a_removed_spool_directory_is_recreated_and_locked_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let (mut s, _) = Spool::open(&spool, 1 << 20).unwrap();
        fs::remove_dir_all(&spool).unwrap();
        s.push("b", b"a v=1i 60\n", 1).unwrap();
        assert_eq!(batch_files(&spool), vec![file_name(1)]);
        // The new directory is locked again: a second srewatch cannot take it.
        assert!(matches!(
            Spool::open(&spool, 1 << 20),
            Err(SpoolError::Locked { .. })
        ));
        assert_eq!(
            drain(&mut s),
            vec![("b".to_string(), "a v=1i 60\n".to_string())]
        );
    }

    #[test]
    fn read_first_skips_other_buckets_and_keeps_each_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push("held", b"h v=1i 60\n", 1).unwrap();
        s.push("c", b"c v=1i 60\n", 1).unwrap();
        s.push("held", b"h v=2i 120\n", 1).unwrap();
        s.push("c", b"c v=2i 120\n", 1).unwrap();
        assert!(s.has_bucket("held") && s.has_bucket("c") && !s.has_bucket("x"));
        let mut got = Vec::new();
        while let Some(f) = s.read_first(|b| b != "held") {
            got.push(String::from_utf8(f.lines.to_vec()).unwrap());
            s.pop_front(f.seq).unwrap();
        }
        assert_eq!(got, vec!["c v=1i 60\n", "c v=2i 120\n"]);
        assert!(!s.has_bucket("c"));
        assert_eq!((s.len(), s.points()), (2, 2));
        let f = s.read_first(|_| true).unwrap();
        assert_eq!(&f.lines[..], b"h v=1i 60\n");
    }

    #[test]
    fn push_within_never_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 300).unwrap();
        assert!(s.push_within("b", b"a v=1i 60\n", 1).unwrap());
        let before = (s.len(), s.bytes());
        let big: String = (0..40)
            .map(|i| format!("m{i} v={i}i {}\n", i * 60))
            .collect();
        assert!(!s.push_within("b", big.as_bytes(), 40).unwrap());
        assert_eq!((s.len(), s.bytes()), before);
        assert!(s.take_evicted().is_empty());
    }

    #[test]
    fn unwritable_dir_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            Spool::open(&file, 1 << 20),
            Err(SpoolError::Dir { .. })
        ));
    }
}
