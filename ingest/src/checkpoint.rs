//! Checkpoint: what the server has accepted (or the spool durably holds), per series and minute,
//! so that a restart sends only what is new, changed, or was never acknowledged.
//!
//! The table forgets everything when srewatch stops; after a restart it writes each file's whole
//! 15-minute window again. The checkpoint sits between the table and the sink:
//!
//! - **Filter** ([`Checkpoint::filter`]): each line the table emits is reduced to (series key,
//!   minute, value hash): the key is a 64-bit hash of bucket, measurement and tags; the value
//!   hash a 32-bit hash of the field set. A line whose minute is recorded with the same value
//!   hash is dropped (it is already stored); every other line goes on and is remembered as
//!   *pending*. The table hands the series, field set and minute of its counters and samples
//!   lines with them ([`LineMark`], [`Checkpoint::filter_marked`]): only lines without marks
//!   (the rollups) are parsed.
//! - **Acknowledge** ([`Checkpoint::ack`]): called only after [`crate::SinkHandle::flush`]
//!   returned, i.e. once the InfluxDB sink has had every earlier line accepted by the server,
//!   written to its `fsync`ed spool, or rejected on its own by the server. Only then are the
//!   pending lines recorded. A line merely encoded is never recorded (vector's file source
//!   checkpoints the same way: only what the sink acknowledged end to end).
//! - **Save** ([`Checkpoint::save`]): the record is written to the state directory atomically
//!   (temporary file, `fsync`, rename, directory `fsync`). A kill at any instant leaves the
//!   previous or the new file, both of which claim only acknowledged points: nothing is lost,
//!   and what is re-sent is at most what was not yet saved.
//!
//! Per series the record is a ring of the last [`RING`] minutes (newest minute, a presence mask,
//! one `u32` value hash per minute): 72 bytes in memory, 14 + 4 per minute on disk. Series whose
//! newest minute is more than [`RING`] minutes older than the newest minute recorded are dropped
//! at save. A corrupt or missing file means an empty record: the window is sent again, as
//! without a checkpoint, with a warning.
//!
//! False matches: a changed value is wrongly taken for the recorded one with probability 2^-32
//! per line compared (a restart of a 1,000,000-row file compares about 15 M lines).

use crate::table::{FxHasher, LineMark};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io;

pub use crate::state_dir::{StateDir, StateError};

/// Minutes kept per series (the window of 15 plus one).
pub const RING: i32 = 16;
const MAGIC: &[u8; 8] = b"SRWCKPT1";
/// File name of the file pipeline's checkpoint in the state directory.
pub const FILES_CHECKPOINT: &str = "ingest.checkpoint";

/// A stable 64-bit hash (the same in every build: it is stored on disk).
#[inline]
pub fn hash64(seed: u64, data: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(K);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
    }
    // murmur3 fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One line of line protocol as the checkpoint sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub key: u64,
    pub minute: i32,
    pub value: u32,
}

/// Splits one line (no newline) into series key, minute and value hash. `None` for a line
/// without a timestamp (never written by srewatch's encoders).
pub fn mark(bucket_seed: u64, line: &[u8]) -> Option<Mark> {
    // The series ends at the first space not escaped by a backslash.
    let mut i = 0;
    let mut end = None;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b' ' => {
                end = Some(i);
                break;
            }
            _ => i += 1,
        }
    }
    let end = end?;
    let ts_at = memchr::memrchr(b' ', line)?;
    if ts_at <= end {
        return None;
    }
    let ts: i64 = std::str::from_utf8(&line[ts_at + 1..]).ok()?.parse().ok()?;
    Some(Mark {
        key: hash64(bucket_seed, &line[..end]),
        minute: ts.div_euclid(60) as i32,
        value: (hash64(0x5eed, &line[end + 1..ts_at]) >> 32) as u32,
    })
}

/// Seed of a bucket's series keys.
pub fn bucket_seed(bucket: &str) -> u64 {
    hash64(0xb0c4e7, bucket.as_bytes())
}

#[derive(Clone, Copy)]
struct Slot {
    top: i32,
    mask: u16,
    hash: [u32; RING as usize],
}

#[inline]
fn slot_of(m: i32) -> usize {
    m.rem_euclid(RING) as usize
}

impl Slot {
    fn get(&self, m: i32) -> Option<u32> {
        (m <= self.top && m > self.top - RING && self.mask & (1 << slot_of(m)) != 0)
            .then(|| self.hash[slot_of(m)])
    }

    fn set(&mut self, m: i32, h: u32) {
        if m <= self.top - RING {
            return; // older than the ring: nothing to gain
        }
        if m > self.top {
            if m - self.top >= RING {
                self.mask = 0;
            } else {
                for x in self.top + 1..=m {
                    self.mask &= !(1 << slot_of(x));
                }
            }
            self.top = m;
        }
        self.mask |= 1 << slot_of(m);
        self.hash[slot_of(m)] = h;
    }
}

/// Counts of one checkpoint's life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Lines not sent because the server already had them.
    pub skipped: u64,
    /// Lines recorded as acknowledged.
    pub acked: u64,
    /// Files written.
    pub saves: u64,
}

/// See the module documentation.
pub struct Checkpoint {
    map: HashMap<u64, Slot, BuildHasherDefault<FxHasher>>,
    pending: Vec<Mark>,
    newest: i32,
    seeds: Vec<(String, u64)>,
    file: &'static str,
    pub stats: CheckpointStats,
}

impl Checkpoint {
    /// An empty record (nothing is known to be stored).
    pub fn empty(file: &'static str) -> Checkpoint {
        Checkpoint {
            map: HashMap::default(),
            pending: Vec::new(),
            newest: i32::MIN,
            seeds: Vec::new(),
            file,
            stats: CheckpointStats::default(),
        }
    }

    /// Loads `file` from `state`. A missing, unreadable or corrupt file gives an empty record
    /// and a warning (the window is then sent again); a corrupt one is kept as `file.bad`.
    pub fn load(state: &StateDir, file: &'static str) -> Checkpoint {
        let path = state.path().join(file);
        let mut ck = Checkpoint::empty(file);
        match state.read(file) {
            Ok(None) => {
                tracing::warn!(file = %path.display(), "No checkpoint; the files' whole window is sent again")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "Cannot read the checkpoint; the files' whole window is sent again")
            }
            Ok(Some(data)) => match ck.decode(&data) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), series = ck.map.len(), "Checkpoint loaded")
                }
                Err(why) => {
                    ck.map.clear();
                    ck.newest = i32::MIN;
                    state.set_aside(file);
                    tracing::warn!(file = %path.display(), reason = why, "Corrupt checkpoint set aside (.bad); the files' whole window is sent again");
                }
            },
        }
        ck
    }

    /// Series recorded.
    pub fn series(&self) -> usize {
        self.map.len()
    }

    /// Lines sent and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn seed(&mut self, bucket: &str) -> u64 {
        if let Some((_, s)) = self.seeds.iter().find(|(b, _)| b == bucket) {
            return *s;
        }
        let s = bucket_seed(bucket);
        self.seeds.push((bucket.to_owned(), s));
        s
    }

    /// Drops the lines of `lines` that the server already has; remembers the others as
    /// pending. Returns the lines to send and their count (the same `Bytes`, not copied, when
    /// nothing is dropped). Each line is parsed for its series, fields and minute
    /// ([`mark`]); [`Checkpoint::filter_marked`] takes them from the table instead.
    pub fn filter(&mut self, bucket: &str, lines: Bytes) -> (Bytes, usize) {
        let seed = self.seed(bucket);
        let text = lines.clone();
        let mut start = 0;
        let parsed = std::iter::from_fn(move || {
            if start >= text.len() {
                return None;
            }
            let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |x| start + x);
            let next = (end + 1).min(text.len());
            let line = (start, next, mark(seed, &text[start..end]));
            start = next;
            Some(line)
        });
        self.keep_new(lines, parsed)
    }

    /// [`Checkpoint::filter`] for lines the table wrote, with its [`LineMark`] of each: the
    /// series, fields and minute are taken from the marks, not parsed again. Without marks (the
    /// rollups), or marks that do not cover the lines exactly, the lines are parsed.
    pub fn filter_marked(
        &mut self,
        bucket: &str,
        lines: Bytes,
        marks: &[LineMark],
    ) -> (Bytes, usize) {
        let covered = marks.iter().map(|m| m.len as usize).sum::<usize>() == lines.len();
        debug_assert!(covered || marks.is_empty(), "marks do not cover the lines");
        if marks.is_empty() || !covered {
            return self.filter(bucket, lines);
        }
        let seed = self.seed(bucket);
        let text = lines.clone();
        let mut start = 0;
        let given = marks.iter().map(move |m| {
            let (at, len, series) = (start, m.len as usize, m.series as usize);
            start += len;
            let line = &text[at..at + len];
            let mk = Mark {
                key: hash64(seed, &line[..series]),
                minute: m.minute,
                value: (hash64(0x5eed, &line[series + 1..series + 1 + m.fields as usize]) >> 32)
                    as u32,
            };
            debug_assert_eq!(Some(mk), mark(seed, &line[..len - 1]), "{line:?}");
            (at, at + len, Some(mk))
        });
        self.keep_new(lines, given)
    }

    /// Keeps the lines not stored yet: each given as (start, start of the next line, its mark).
    fn keep_new(
        &mut self,
        lines: Bytes,
        marked: impl Iterator<Item = (usize, usize, Option<Mark>)>,
    ) -> (Bytes, usize) {
        let mut keep: Option<BytesMut> = None;
        let mut n = 0;
        for (start, next, mk) in marked {
            let stored = match mk {
                Some(mk) => {
                    let hit =
                        self.map.get(&mk.key).and_then(|s| s.get(mk.minute)) == Some(mk.value);
                    if !hit {
                        self.pending.push(mk);
                    }
                    hit
                }
                None => false,
            };
            if stored {
                self.stats.skipped += 1;
                if keep.is_none() {
                    let mut b = BytesMut::with_capacity(lines.len() - (next - start));
                    b.extend_from_slice(&lines[..start]);
                    keep = Some(b);
                }
            } else if lines[start..next] != *b"\n" && start < next {
                n += 1;
                if let Some(k) = keep.as_mut() {
                    k.extend_from_slice(&lines[start..next]);
                }
            }
        }
        match keep {
            Some(k) => (k.freeze(), n),
            None => (lines, n),
        }
    }

    /// Records every pending line: call only once the sink has acknowledged them
    /// ([`crate::SinkHandle::flush`] returned).
    pub fn ack(&mut self) {
        self.stats.acked += self.pending.len() as u64;
        for mk in self.pending.drain(..) {
            self.newest = self.newest.max(mk.minute);
            let s = self.map.entry(mk.key).or_insert(Slot {
                top: mk.minute,
                mask: 0,
                hash: [0; RING as usize],
            });
            s.set(mk.minute, mk.value);
        }
    }

    /// Forgets the pending lines (they were not acknowledged).
    pub fn forget_pending(&mut self) {
        self.pending.clear();
    }

    /// Writes the record (acknowledged lines only) to the state directory, atomically.
    pub fn save(&mut self, state: &StateDir) -> io::Result<()> {
        let data = self.saved_bytes();
        state.write_atomic(self.file, &data)?;
        self.stats.saves += 1;
        Ok(())
    }

    /// What [`Checkpoint::save`] writes: series older than the ring are dropped first. The
    /// model test keeps these bytes as "the file on disk" at each save without an `fsync`.
    pub fn saved_bytes(&mut self) -> Vec<u8> {
        let floor = self.newest.saturating_sub(RING);
        self.map.retain(|_, s| s.top > floor);
        self.encode()
    }

    /// `MAGIC`, CRC-32 of the rest, series count (u32), then per series: key (u64), newest
    /// minute (i32), mask (u16), one u32 hash per bit of the mask, oldest slot first. Little
    /// endian.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.map.len() * 40);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(self.map.len() as u32).to_le_bytes());
        for (k, s) in &self.map {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&s.top.to_le_bytes());
            out.extend_from_slice(&s.mask.to_le_bytes());
            for sl in 0..RING as usize {
                if s.mask & (1 << sl) != 0 {
                    out.extend_from_slice(&s.hash[sl].to_le_bytes());
                }
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(&out[12..]);
        out[8..12].copy_from_slice(&crc.sum().to_le_bytes());
        out
    }

    fn decode(&mut self, data: &[u8]) -> Result<(), &'static str> {
        if data.len() < 16 || &data[..8] != MAGIC {
            return Err("bad magic or short file");
        }
        let mut crc = flate2::Crc::new();
        crc.update(&data[12..]);
        if crc.sum().to_le_bytes() != data[8..12] {
            return Err("CRC mismatch");
        }
        let n = u32::from_le_bytes(data[12..16].try_into().expect("4 bytes")) as usize;
        let mut p = &data[16..];
        let mut take = |k: usize| -> Result<&[u8], &'static str> {
            if p.len() < k {
                return Err("truncated");
            }
            let (a, b) = p.split_at(k);
            p = b;
            Ok(a)
        };
        self.map.reserve(n);
        for _ in 0..n {
            let key = u64::from_le_bytes(take(8)?.try_into().expect("8"));
            let top = i32::from_le_bytes(take(4)?.try_into().expect("4"));
            let mask = u16::from_le_bytes(take(2)?.try_into().expect("2"));
            let mut s = Slot {
                top,
                mask,
                hash: [0; RING as usize],
            };
            for sl in 0..RING as usize {
                if mask & (1 << sl) != 0 {
                    s.hash[sl] = u32::from_le_bytes(take(4)?.try_into().expect("4"));
                }
            }
            self.newest = self.newest.max(top);
            self.map.insert(key, s);
        }
        if !p.is_empty() {
            return Err("trailing bytes");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    /// The record is saved in the order of its map, which follows the hasher: the same
    /// checkpoint bytes on disk need the same hash values. These are the table's `FxHasher`
    /// (rustc's Fx word step, then a rotate of the high bits down, `finish`); the `rustc-hash`
    /// crate's `FxHasher` gives other values (1.x has no final rotate: `0x517cc1b727220a95`
    /// for the word 1; 2.x another step), so it cannot replace it without changing those bytes.
    #[test]
    fn the_hasher_that_orders_the_saved_record_is_pinned() {
        use std::hash::Hasher;
        let word = |w: u64| {
            let mut h = FxHasher::default();
            h.write_u64(w);
            h.finish()
        };
        let bytes = |b: &[u8]| {
            let mut h = FxHasher::default();
            h.write(b);
            h.finish()
        };
        assert_eq!(
            [
                word(0),
                word(1),
                word(7 << 32 | 3),
                bytes(b"request.INVITE")
            ],
            [
                0,
                0xdc9c_882a_5545_f306,
                0xe1d5_987e_fc19_923c,
                0x525e_d2b4_c85d_7e6d
            ]
        );
    }

    /// A state directory deleted while running is created again by the next write, with its
    /// lock held again (not a warning at every snapshot).
    #[test]
    fn checkpoint_state_dir_deleted_while_running_is_recreated() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let st = StateDir::open(&dir).unwrap();
        st.write_atomic("a", b"1").unwrap();
        fs::remove_dir_all(&dir).unwrap();
        st.write_atomic("b", b"2").unwrap();
        assert_eq!(st.read("b").unwrap(), Some(b"2".to_vec()));
        st.write_atomic("b", b"3").unwrap();
        assert_eq!(st.read("b").unwrap(), Some(b"3".to_vec()));
        // The new directory is locked again: a second srewatch cannot take it.
        assert!(matches!(
            StateDir::open(&dir),
            Err(StateError::Locked { .. })
        ));
    }

    #[test]
    fn marks_split_series_fields_and_minute() {
        let s = bucket_seed("counters");
        let a = mark(s, b"request.INVITE,hostname=cp1 value=5i 120").unwrap();
        let b = mark(s, b"request.INVITE,hostname=cp1 value=6i 179").unwrap();
        assert_eq!((a.key, a.minute), (b.key, b.minute));
        assert_ne!(a.value, b.value);
        // An escaped space belongs to the series.
        let c = mark(s, b"calls\\ total,hostname=cp1 value=5i 120").unwrap();
        let d = mark(s, b"calls\\ total,hostname=cp2 value=5i 120").unwrap();
        assert_ne!(c.key, d.key);
        assert_eq!(c.value, a.value);
        // Same line in another bucket: another series.
        let e = mark(
            bucket_seed("rollups"),
            b"request.INVITE,hostname=cp1 value=5i 120",
        )
        .unwrap();
        assert_ne!(e.key, a.key);
        assert_eq!(mark(s, b"no_timestamp"), None);
    }

    #[test]
    fn only_acknowledged_lines_are_skipped_later() {
        let mut ck = Checkpoint::empty("t");
        let lines =
            Bytes::from_static(b"m,h=a value=1i 60\nm,h=a value=2i 120\nm,h=b value=1i 60\n");
        let (out, n) = ck.filter("counters", lines.clone());
        assert_eq!((text(&out), n), (text(&lines), 3));
        // Not acknowledged: sent again.
        ck.forget_pending();
        let (out, n) = ck.filter("counters", lines.clone());
        assert_eq!(n, 3);
        assert_eq!(out.as_ptr(), lines.as_ptr(), "nothing dropped: not copied");
        ck.ack();
        // Acknowledged: the same lines are dropped, a changed value and a new minute are not.
        let next = Bytes::from_static(
            b"m,h=a value=1i 60\nm,h=a value=3i 120\nm,h=b value=1i 60\nm,h=b value=1i 180\n",
        );
        let (out, n) = ck.filter("counters", next);
        assert_eq!(text(&out), "m,h=a value=3i 120\nm,h=b value=1i 180\n");
        assert_eq!(n, 2);
        assert_eq!(ck.stats.skipped, 2);
        // Another bucket does not match.
        let (_, n) = ck.filter("samples", Bytes::from_static(b"m,h=a value=1i 60\n"));
        assert_eq!(n, 1);
    }

    #[test]
    fn save_load_round_trip_and_corrupt_file_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut ck = Checkpoint::empty(FILES_CHECKPOINT);
        let mut body = String::new();
        for m in 0..20 {
            body.push_str(&format!("m,h=a value={m}i {}\n", m * 60));
        }
        body.push_str("old,h=z value=1i 60\n");
        ck.filter("counters", Bytes::from(body.clone()));
        ck.ack();
        ck.save(&state).unwrap();
        let mut back = Checkpoint::load(&state, FILES_CHECKPOINT);
        // Minutes 4..=19 of `m` are in the ring; `old` (minute 1, 18 behind) was pruned.
        assert_eq!(back.series(), 1);
        let (out, n) = back.filter("counters", Bytes::from(body));
        assert_eq!(n, 5, "{}", text(&out));
        assert!(text(&out).starts_with("m,h=a value=0i 0\n"));
        // A flipped byte: CRC mismatch, set aside, empty record.
        let path = dir.path().join(FILES_CHECKPOINT);
        let mut data = fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        fs::write(&path, &data).unwrap();
        let bad = Checkpoint::load(&state, FILES_CHECKPOINT);
        assert_eq!(bad.series(), 0);
        assert!(dir.path().join("ingest.checkpoint.bad").exists());
        assert!(!path.exists());
        // A second process cannot take the same state directory.
        assert!(matches!(
            StateDir::open(dir.path()),
            Err(StateError::Locked { .. })
        ));
    }
}
