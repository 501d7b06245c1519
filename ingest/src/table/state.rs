//! The table's state, saved and restored across a restart (issue 9).
//!
//! A restarted srewatch must behave as if it had never stopped: a host missing from the current
//! files (vanished, or its row spoiled by a stray quote), or samples.csv a rewrite behind
//! counters.csv, must not change a rollup the old process computed with that host's values. So
//! the pipeline saves what the table knows, and a new process starts from it instead of from
//! nothing.
//!
//! What is saved: interned host and stat names; per series its ring (newest minute, presence
//! mask, values; for samples also the written mask and the occurrences written); per file the
//! newest minute, horizon, rollup slots written and per stat the rollups still to rewrite; the
//! completeness rule's memory (ended in a newline once, records of the last snapshot); the
//! samples values waiting for their counters value. Not saved: duplicate-detection generations (a new snapshot is a new generation anyway), the
//! join-wait queue (rebuilt: every samples minute not yet written waits a fresh
//! [`TableConfig::join_wait`](super::TableConfig::join_wait) from the restore), buffers.
//!
//! The state is only as good as the moment it is saved: `files::Pipeline` saves it when the
//! sink has acknowledged every line the table emitted, so "emitted" in the saved state means
//! "the server has it" (see `docs/sink.md`).
//!
//! Format (little endian): `MAGIC`, CRC-32 of the rest, then the header, the names, the
//! series. Counts are `u32` except where noted; a counters value is a `u32`, [`BIG`] followed
//! by the `u64` when it does not fit. Any inconsistency (bad magic, CRC, truncation, an id out
//! of range) rejects the whole file: the caller falls back to a new table.

use super::{
    big_key, CSeries, Names, Pending, RollSlot, SSeries, Table, TableConfig, BIG, NONE, NO_OCC,
    RING,
};
use crate::checkpoint::StateDir;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"SRWTAB01";

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn names(&mut self, n: &Names) {
        self.u32(n.raw.len() as u32);
        for s in &n.raw {
            self.u32(s.len() as u32);
            self.0.extend_from_slice(s.as_bytes());
        }
    }
}

struct R<'a>(&'a [u8]);

type Res<T> = Result<T, &'static str>;

impl<'a> R<'a> {
    fn take(&mut self, k: usize) -> Res<&'a [u8]> {
        if self.0.len() < k {
            return Err("truncated");
        }
        let (a, b) = self.0.split_at(k);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> Res<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    /// A count of items of at least `min` bytes each (a corrupt count cannot allocate more
    /// than the file could hold).
    fn count(&mut self, min: usize) -> Res<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err("count larger than the file");
        }
        Ok(n)
    }
    fn names(&mut self) -> Res<Vec<String>> {
        let n = self.count(4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.count(1)?;
            let s = std::str::from_utf8(self.take(len)?).map_err(|_| "name not UTF-8")?;
            v.push(s.to_owned());
        }
        Ok(v)
    }
}

fn slots(mask: u16) -> impl Iterator<Item = usize> {
    (0..RING as usize).filter(move |sl| mask & (1 << sl) != 0)
}

impl Table {
    /// The table's state as bytes (see the module documentation). About 80 bytes per
    /// counters series with 15 minutes, 270 per samples series.
    /// `now` and `wall` are the same instant on the monotonic and the wall clock: the join
    /// wait's deadlines are saved as wall-clock times.
    pub fn save_state(&self, now: Instant, wall: SystemTime) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(
            64 + self.cs.len() * 80 + self.ss.len() * 270,
        ));
        w.0.extend_from_slice(MAGIC);
        w.u32(0);
        for f in 0..2 {
            w.i64(self.top[f]);
            w.i64(self.horizon[f]);
            w.u8(self.ends_nl[f] as u8);
            w.u64(self.last_records[f]);
            for r in &self.roll[f] {
                w.i64(r.minute);
                w.u8(r.written as u8);
            }
        }
        w.names(&self.hosts);
        w.names(&self.stats);
        for f in 0..2 {
            w.u32(self.dirty[f].len() as u32);
            for &d in &self.dirty[f] {
                w.u16(d);
            }
        }
        w.u32(self.cs.len() as u32);
        for (id, c) in self.cs.iter().enumerate() {
            w.u32(c.host);
            w.u32(c.stat);
            w.i64(c.top);
            w.u16(c.mask);
            for sl in slots(c.mask) {
                w.u32(c.vals[sl]);
                if c.vals[sl] == BIG {
                    w.u64(self.big.get(&big_key(id as u32, sl)).copied().unwrap_or(0));
                }
            }
        }
        w.u32(self.ss.len() as u32);
        for s in &self.ss {
            w.u32(s.host);
            w.u32(s.stat);
            w.i64(s.top);
            w.u16(s.mask);
            w.u16(s.emitted);
            for sl in slots(s.mask) {
                w.u64(s.avg[sl].to_bits());
                w.u64(s.occ[sl]);
            }
        }
        w.u32(self.pending.len() as u32);
        for p in &self.pending {
            w.u32(p.sid);
            w.i64(p.minute);
            let at = wall + p.deadline.saturating_duration_since(now);
            w.i64(
                at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            );
        }
        let mut crc = flate2::Crc::new();
        crc.update(&w.0[12..]);
        w.0[8..12].copy_from_slice(&crc.sum().to_le_bytes());
        w.0
    }

    /// A table in the state [`Table::save_state`] wrote, with `cfg` (which may differ from the
    /// saved run's: nothing saved depends on it). Samples values waiting for their counters
    /// value keep their deadline on the wall clock (`wall` is `now` on the wall clock): a wait
    /// that ran out while srewatch was down is over at the first tick.
    pub fn restore(
        cfg: TableConfig,
        data: &[u8],
        now: Instant,
        wall: SystemTime,
    ) -> Result<Table, &'static str> {
        if data.len() < 12 || &data[..8] != MAGIC {
            return Err("bad magic or short file");
        }
        let mut crc = flate2::Crc::new();
        crc.update(&data[12..]);
        if crc.sum().to_le_bytes() != data[8..12] {
            return Err("CRC mismatch");
        }
        let mut r = R(&data[12..]);
        let mut t = Table::new(cfg);
        for f in 0..2 {
            t.top[f] = r.i64()?;
            t.horizon[f] = r.i64()?;
            t.ends_nl[f] = r.u8()? != 0;
            t.last_records[f] = r.u64()?;
            for sl in 0..RING as usize {
                let minute = r.i64()?;
                let written = r.u8()? != 0;
                t.roll[f][sl] = RollSlot { minute, written };
            }
        }
        for (host, names) in [(true, r.names()?), (false, r.names()?)] {
            for (i, s) in names.iter().enumerate() {
                let n = if host { &mut t.hosts } else { &mut t.stats };
                if n.id(s, &mut t.name_enc, host) as usize != i {
                    return Err("duplicate name");
                }
            }
        }
        let (nh, ns) = (t.hosts.raw.len() as u32, t.stats.raw.len() as u32);
        if ns > 0 {
            t.ensure_stat(ns - 1);
        }
        for f in 0..2 {
            let n = r.count(2)?;
            if n > ns as usize {
                return Err("more rollup entries than stats");
            }
            for stat in 0..n {
                t.dirty[f][stat] = r.u16()?;
            }
        }
        let key = |h: u32, s: u32| (h as u64) << 32 | s as u64;
        let n = r.count(18)?;
        t.cs.reserve_exact(n);
        t.cmap.reserve(n);
        for id in 0..n as u32 {
            let (host, stat, top, mask) = (r.u32()?, r.u32()?, r.i64()?, r.u16()?);
            if host >= nh || stat >= ns {
                return Err("series name out of range");
            }
            let mut c = CSeries {
                host,
                stat,
                link: NONE,
                seen: 0,
                top,
                mask,
                vals: [0; RING as usize],
            };
            for sl in slots(mask) {
                c.vals[sl] = r.u32()?;
                if c.vals[sl] == BIG {
                    t.big.insert(big_key(id, sl), r.u64()?);
                }
            }
            if t.cmap.insert(key(host, stat), id).is_some() {
                return Err("duplicate counters series");
            }
            t.members[0][stat as usize].push(id);
            t.cs.push(c);
        }
        let n = r.count(20)?;
        t.ss.reserve_exact(n);
        t.smap.reserve(n);
        for id in 0..n as u32 {
            let (host, stat, top, mask, emitted) =
                (r.u32()?, r.u32()?, r.i64()?, r.u16()?, r.u16()?);
            if host >= nh || stat >= ns {
                return Err("series name out of range");
            }
            let link = t.cmap.get(&key(host, stat)).copied().unwrap_or(NONE);
            if link != NONE {
                t.cs[link as usize].link = id;
            }
            let mut s = SSeries {
                host,
                stat,
                link,
                seen: 0,
                top,
                mask,
                emitted,
                avg: [0.0; RING as usize],
                occ: [NO_OCC; RING as usize],
            };
            for sl in slots(mask) {
                s.avg[sl] = f64::from_bits(r.u64()?);
                s.occ[sl] = r.u64()?;
            }
            if t.smap.insert(key(host, stat), id).is_some() {
                return Err("duplicate samples series");
            }
            t.members[1][stat as usize].push(id);
            t.ss.push(s);
        }
        let n = r.count(20)?;
        let wall_ms = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for _ in 0..n {
            let (sid, minute, at) = (r.u32()?, r.i64()?, r.i64()?);
            if sid as usize >= t.ss.len() {
                return Err("waiting value of no series");
            }
            let wait = Duration::from_millis(at.saturating_sub(wall_ms).max(0) as u64);
            t.pending.push_back(Pending {
                sid,
                minute,
                deadline: now + wait.min(t.cfg.join_wait),
            });
        }
        if !r.0.is_empty() {
            return Err("trailing bytes");
        }
        Ok(t)
    }
}

/// File name of the file pipeline's table state in the state directory.
pub const TABLE_STATE: &str = "ingest.table";

impl Table {
    /// The table saved in `state` as `file`, or a new table: a missing, unreadable or corrupt
    /// file gives a new table and a warning (a corrupt one is kept as `file.bad`); the
    /// checkpoint then keeps a restart from sending what the server has, but rollups are
    /// rebuilt from the current files only.
    pub fn load(
        state: &StateDir,
        file: &str,
        cfg: TableConfig,
        now: Instant,
        wall: SystemTime,
    ) -> Table {
        let path = state.path().join(file);
        match state.read(file) {
            Ok(None) => {
                tracing::warn!(file = %path.display(), "No saved table state; rollups are rebuilt from the current files")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "Cannot read the saved table state; rollups are rebuilt from the current files")
            }
            Ok(Some(data)) => match Table::restore(cfg.clone(), &data, now, wall) {
                Ok(t) => {
                    tracing::info!(file = %path.display(), counters_series = t.cs.len(), samples_series = t.ss.len(), "Table state restored");
                    return t;
                }
                Err(why) => {
                    state.set_aside(file);
                    tracing::warn!(file = %path.display(), reason = why, "Corrupt table state set aside (.bad); rollups are rebuilt from the current files");
                }
            },
        }
        Table::new(cfg)
    }
}
