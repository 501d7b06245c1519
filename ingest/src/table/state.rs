//! The table's state, saved and restored across a restart.
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
    big_key, series_key, CSeries, Pending, RollSlot, SSeries, Table, TableConfig, BIG, NONE,
    NO_OCC, RING,
};
use crate::checkpoint::StateDir;
use std::io::{self, Seek, SeekFrom, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"SRWTAB01";
/// [`Table::restore`]: the state was saved for another directory or other file names.
const OTHER_SOURCE: &str = "saved for another directory or other file names";

/// Writes the state in chunks of [`CHUNK`] bytes (the file is not built in memory first),
/// with the CRC-32 of everything after the header.
struct W<'o, O: Write> {
    buf: Vec<u8>,
    out: &'o mut O,
    crc: flate2::Crc,
    /// Bytes at the start of `buf` not covered by the CRC (the header).
    skip: usize,
    written: u64,
    err: Option<io::Error>,
}

const CHUNK: usize = 1 << 20;

impl<O: Write> W<'_, O> {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn names(&mut self, n: &[Box<str>]) {
        self.u32(n.len() as u32);
        for s in n {
            self.u32(s.len() as u32);
            self.buf.extend_from_slice(s.as_bytes());
            self.spill(false);
        }
    }
    /// Hands the buffer to the writer once it holds a chunk (or always, with `all`).
    fn spill(&mut self, all: bool) {
        if self.buf.len() < CHUNK && !all {
            return;
        }
        self.crc.update(&self.buf[self.skip..]);
        self.skip = 0;
        if self.err.is_none() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.err = Some(e);
            }
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
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
    /// The table's state as bytes (see the module documentation; [`Table::write_state`]).
    pub fn save_state(&self, now: Instant, wall: SystemTime) -> Vec<u8> {
        let mut out = io::Cursor::new(Vec::new());
        self.write_state(&mut out, now, wall)
            .expect("writing to memory cannot fail");
        out.into_inner()
    }

    /// Writes the table's state to `out` (from its start), a chunk at a time; returns the
    /// bytes written. About 82 bytes per counters series with a full window, 270 per samples
    /// series. `now` and `wall` are the same instant on the monotonic and the wall clock: the
    /// join wait's deadlines are saved as wall-clock times.
    pub fn write_state<O: Write + Seek>(
        &self,
        out: &mut O,
        now: Instant,
        wall: SystemTime,
    ) -> io::Result<u64> {
        let mut w = W {
            buf: Vec::with_capacity(CHUNK + 4096),
            out,
            crc: flate2::Crc::new(),
            skip: 12,
            written: 0,
            err: None,
        };
        w.buf.extend_from_slice(MAGIC);
        w.u32(0);
        w.u32(self.cfg.source.len() as u32);
        w.buf.extend_from_slice(self.cfg.source.as_bytes());
        for f in 0..2 {
            w.i64(self.files[f].top);
            w.i64(self.files[f].horizon);
            w.u8(self.files[f].ends_nl as u8);
            w.u64(self.files[f].last_records);
            for r in &self.rollups.roll[f] {
                w.i64(r.minute);
                // 0: not written, 1: written as settled, 2: written live, not settled yet.
                w.u8(match (r.written, r.settled) {
                    (false, _) => 0,
                    (true, true) => 1,
                    (true, false) => 2,
                });
            }
        }
        w.names(self.names.hosts());
        w.names(self.names.stats());
        for f in 0..2 {
            w.u32(self.rollups.dirty[f].len() as u32);
            for &d in &self.rollups.dirty[f] {
                w.u16(d);
                w.spill(false);
            }
        }
        w.u32(self.series.cs.len() as u32);
        for (id, c) in self.series.cs.iter().enumerate() {
            w.u32(c.host);
            w.u32(c.stat);
            w.i64(c.top);
            w.u16(c.mask);
            for sl in slots(c.mask) {
                w.u32(c.vals[sl]);
                if c.vals[sl] == BIG {
                    w.u64(
                        self.series
                            .big
                            .get(&big_key(id as u32, sl))
                            .copied()
                            .unwrap_or(0),
                    );
                }
            }
            w.spill(false);
        }
        w.u32(self.series.ss.len() as u32);
        for s in &self.series.ss {
            w.u32(s.host);
            w.u32(s.stat);
            w.i64(s.top);
            w.u16(s.mask);
            w.u16(s.emitted);
            for sl in slots(s.mask) {
                w.u64(s.avg[sl].to_bits());
                w.u64(s.occ[sl]);
            }
            w.spill(false);
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
            w.spill(false);
        }
        w.spill(true);
        if let Some(e) = w.err {
            return Err(e);
        }
        let (crc, written) = (w.crc.sum(), w.written);
        out.seek(SeekFrom::Start(8))?;
        out.write_all(&crc.to_le_bytes())?;
        out.seek(SeekFrom::End(0))?;
        Ok(written)
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
        let n = r.count(1)?;
        if r.take(n)? != cfg.source.as_bytes() {
            return Err(OTHER_SOURCE);
        }
        let mut t = Table::new(cfg);
        for f in 0..2 {
            t.files[f].top = r.i64()?;
            t.files[f].horizon = r.i64()?;
            t.files[f].ends_nl = r.u8()? != 0;
            t.files[f].last_records = r.u64()?;
            for sl in 0..RING as usize {
                let minute = r.i64()?;
                let w = r.u8()?;
                t.rollups.roll[f][sl] = RollSlot {
                    minute,
                    written: w != 0,
                    settled: w == 1,
                };
            }
        }
        for (host, names) in [(true, r.names()?), (false, r.names()?)] {
            for (i, s) in names.iter().enumerate() {
                if t.names.restore(host, s) as usize != i {
                    return Err("duplicate name");
                }
            }
        }
        let (nh, ns) = (t.names.hosts().len() as u32, t.names.stats().len() as u32);
        if ns > 0 {
            t.ensure_stat(ns - 1);
        }
        for f in 0..2 {
            let n = r.count(2)?;
            if n > ns as usize {
                return Err("more rollup entries than stats");
            }
            for stat in 0..n {
                t.rollups.dirty[f][stat] = r.u16()?;
            }
        }
        let ckey = |cs: &[CSeries], id: u32| series_key(cs[id as usize].host, cs[id as usize].stat);
        let skey = |ss: &[SSeries], id: u32| series_key(ss[id as usize].host, ss[id as usize].stat);
        let n = r.count(18)?;
        t.series.cs.reserve_exact(n);
        // A series whose newest minute has left the window (a host gone for good) is not
        // restored: it holds nothing the window needs, and a restart keeps forgetting such
        // series, as it did before the table state was saved.
        let horizon = [t.files[0].horizon, t.files[1].horizon];
        let gone =
            |f: usize, top: i64| horizon[f] != i64::MIN && top <= horizon[f].saturating_sub(RING);
        for _ in 0..n {
            let id = t.series.cs.len() as u32;
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
                keep_lo: 0,
                keep_hi: 0,
            };
            let mut big = [0u64; RING as usize];
            for sl in slots(mask) {
                c.vals[sl] = r.u32()?;
                if c.vals[sl] == BIG {
                    big[sl] = r.u64()?;
                }
            }
            if gone(0, top) {
                continue;
            }
            for sl in slots(mask) {
                if c.vals[sl] == BIG {
                    t.series.big.insert(big_key(id, sl), big[sl]);
                }
            }
            let key = series_key(host, stat);
            if t.series.cmap.get(key, |i| ckey(&t.series.cs, i)).is_some() {
                return Err("duplicate counters series");
            }
            t.series.cs.push(c);
            t.series.cmap.insert(key, id, |i| ckey(&t.series.cs, i));
        }
        let n = r.count(20)?;
        t.series.ss.reserve_exact(n);
        // Saved samples series id -> restored id (NONE: not restored).
        let mut sids = Vec::with_capacity(n);
        for _ in 0..n {
            let id = t.series.ss.len() as u32;
            let (host, stat, top, mask, emitted) =
                (r.u32()?, r.u32()?, r.i64()?, r.u16()?, r.u16()?);
            if host >= nh || stat >= ns {
                return Err("series name out of range");
            }
            let mut vals = [(0u64, 0u64); RING as usize];
            for sl in slots(mask) {
                vals[sl] = (r.u64()?, r.u64()?);
            }
            if gone(1, top) {
                sids.push(NONE);
                continue;
            }
            sids.push(id);
            let key = series_key(host, stat);
            let link = t
                .series
                .cmap
                .get(key, |i| ckey(&t.series.cs, i))
                .unwrap_or(NONE);
            if link != NONE {
                t.series.cs[link as usize].link = id;
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
                keep: 0,
            };
            for sl in slots(mask) {
                s.avg[sl] = f64::from_bits(vals[sl].0);
                s.occ[sl] = vals[sl].1;
            }
            if t.series.smap.get(key, |i| skey(&t.series.ss, i)).is_some() {
                return Err("duplicate samples series");
            }
            t.series.ss.push(s);
            t.series.smap.insert(key, id, |i| skey(&t.series.ss, i));
        }
        let n = r.count(20)?;
        let wall_ms = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for _ in 0..n {
            let (sid, minute, at) = (r.u32()?, r.i64()?, r.i64()?);
            let Some(&sid) = sids.get(sid as usize) else {
                return Err("waiting value of no series");
            };
            if sid == NONE {
                continue;
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
                    tracing::info!(file = %path.display(), counters_series = t.series.cs.len(), samples_series = t.series.ss.len(), "Table state restored");
                    return t;
                }
                Err(OTHER_SOURCE) => {
                    tracing::warn!(file = %path.display(), source = %cfg.source.replace('\n', " "), "Table state saved for another directory or other file names, not used; rollups are rebuilt from the current files")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csvrow::Kind;
    use crate::table::Tail;

    const T: i64 = 1652193060;

    fn row(host: &str, stat: &str, t: i64, vals: &[&str]) -> String {
        format!("{host},{stat},2022-05-10T16:31:00,{t},{}\n", vals.join(","))
    }

    /// Feeds one snapshot (the wall clock one minute after its minute); the lines emitted.
    fn feed(t: &mut Table, kind: Kind, data: &str, now: Instant) -> Vec<String> {
        let mut got = Vec::new();
        let wall = T + 3600;
        t.ingest_at(
            kind,
            data.as_bytes(),
            Tail::Quiet,
            now,
            wall,
            &mut |_, b, _| got.extend(std::str::from_utf8(&b).unwrap().lines().map(String::from)),
        );
        got
    }

    fn tick(t: &mut Table, now: Instant) -> Vec<String> {
        let mut got = Vec::new();
        t.tick(now, &mut |_, b, _| {
            got.extend(std::str::from_utf8(&b).unwrap().lines().map(String::from))
        });
        got
    }

    /// One instant on the monotonic and the wall clock.
    fn clock() -> (Instant, SystemTime) {
        (
            Instant::now(),
            UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
    }

    fn cfg() -> TableConfig {
        TableConfig {
            settle_minutes: 1,
            ..TableConfig::default()
        }
    }

    /// A table with three hosts, a count above `u32::MAX`, a host gone from the last rewrite,
    /// samples joined and two samples values waiting for their counters value.
    fn busy(now: Instant) -> Table {
        let mut t = Table::new(cfg());
        let big = "5000000000";
        feed(
            &mut t,
            Kind::Counters,
            &[
                row("cp1", "inv", T, &["4", "10"]),
                row("cp2", "inv", T, &[big, "3"]),
                row("cp3", "inv", T, &["5", "7"]),
            ]
            .concat(),
            now,
        );
        feed(
            &mut t,
            Kind::Counters,
            &[
                row("cp1", "inv", T + 60, &["6", "4", "10"]),
                row("cp2", "inv", T + 60, &["1", big, "3"]),
            ]
            .concat(),
            now,
        );
        // cp1's T+120 waits for counters.csv to reach T+120.
        feed(
            &mut t,
            Kind::Samples,
            &[
                row("cp1", "inv", T + 121, &["0.5", "0.125", "0.5", "0.25"]),
                row("cp3", "inv", T + 61, &["1.5", "0.75", "1.5"]),
            ]
            .concat(),
            now,
        );
        // cp1's T+120 and cp3's T+60 (cp3 left counters.csv before T+60) wait.
        assert_eq!(t.pending.len(), 2);
        t
    }

    #[test]
    fn a_restored_table_goes_on_exactly_as_the_saved_one() {
        let (now, wall) = clock();
        let mut a = busy(now);
        let saved = a.save_state(now, wall);
        let mut b = Table::restore(cfg(), &saved, now, wall).unwrap();
        assert_eq!(
            b.save_state(now, wall),
            saved,
            "restore then save is the identity"
        );
        assert_eq!(
            (b.series.cs.len(), b.series.ss.len(), b.pending.len()),
            (3, 2, 2)
        );
        // The same next snapshots and ticks emit the same lines: nothing again, cp3 kept.
        let next = [
            row("cp1", "inv", T + 120, &["2", "6", "9", "10"]),
            row("cp2", "inv", T + 120, &["1", "1", "5000000000", "3"]),
        ]
        .concat();
        let mut outs = Vec::new();
        for t in [&mut a, &mut b] {
            let mut out = feed(t, Kind::Counters, &next, now);
            out.extend(tick(t, now + Duration::from_secs(31)));
            outs.push(out);
        }
        assert_eq!(outs[0], outs[1]);
        // cp1's T revised: T's rollups again, with cp3's values (gone from the files since).
        assert_eq!(
            outs[0],
            [
                "inv,hostname=cp1 value=2i 1652193180",
                "inv,hostname=cp1 value=9i 1652193060",
                "inv,hostname=cp2 value=1i 1652193180",
                "inv,hostname=cp1 value=0.5,elapsed_time=1,occurrences=2i 1652193180",
                "inv,hostname=cp1 value=0.5,elapsed_time=4.5,occurrences=9i 1652193060",
                // (0.5 x 9 + 0.75 x 5) / 14: cp3's joined T from before the restore.
                "inv,file=samples hosts=2i,occurrences=14i,mean=0.5892857142857143,p50=0.5,p90=0.75,p99=0.75,max=0.75 1652193060",
                "inv,file=counters sum=5000000014i,hosts=3i 1652193060",
                "inv,file=counters sum=7i,hosts=2i 1652193120",
                "inv,hostname=cp3 value=1.5 1652193120",
                "inv,file=samples hosts=2i,occurrences=6i,mean=0.32142857142857145,p50=0.125,p90=1.5,p99=1.5,max=1.5 1652193120",
            ]
        );
    }

    #[test]
    fn written_in_chunks_to_the_state_directory_and_loaded_back() {
        let (now, wall) = clock();
        // Enough series for several chunks.
        let mut t = busy(now);
        let rows: String = (0..60_000)
            .map(|i| row(&format!("h{i}"), "s", T + 60, &["1", "2", "3"]))
            .collect();
        feed(&mut t, Kind::Counters, &rows, now);
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let bytes = state
            .write_atomic_with(TABLE_STATE, |f| t.write_state(f, now, wall))
            .unwrap();
        let saved = t.save_state(now, wall);
        assert!(saved.len() > 2 * CHUNK, "{}", saved.len());
        assert_eq!(bytes, saved.len() as u64);
        assert_eq!(std::fs::read(dir.path().join(TABLE_STATE)).unwrap(), saved);
        let back = Table::load(&state, TABLE_STATE, cfg(), now, wall);
        assert_eq!(back.save_state(now, wall), saved);
    }

    #[test]
    fn a_host_gone_for_good_is_not_restored() {
        let (now, wall) = clock();
        let mut t = Table::new(TableConfig {
            join_wait: Duration::from_secs(3600),
            ..cfg()
        });
        // cp9 once, its samples value of T+60 waiting for a counters value that never comes.
        feed(&mut t, Kind::Counters, &row("cp9", "inv", T, &["1"]), now);
        feed(
            &mut t,
            Kind::Samples,
            &row("cp9", "inv", T + 61, &["0.5"]),
            now,
        );
        let mut outs = [Vec::new(), Vec::new()];
        let rewrite = |t: &mut Table, k: i64| {
            let mut out = feed(
                t,
                Kind::Counters,
                &row("cp1", "inv", T + 60 * k, &["2"]),
                now,
            );
            out.extend(feed(
                t,
                Kind::Samples,
                &row("cp1", "inv", T + 60 * k + 1, &["0.25"]),
                now,
            ));
            out
        };
        for k in 1..=17 {
            outs[0].extend(rewrite(&mut t, k));
        }
        assert_eq!(
            (t.series.cs.len(), t.series.ss.len(), t.pending.len()),
            (2, 2, 1)
        );
        let saved = t.save_state(now, wall);
        // cp9's newest minutes (T, T+60) are 16 or more minutes behind each file's: it has left
        // the window.
        let mut b = Table::restore(cfg(), &saved, now, wall).unwrap();
        assert_eq!(
            (b.series.cs.len(), b.series.ss.len(), b.pending.len()),
            (1, 1, 0)
        );
        for (i, x) in [&mut t, &mut b].into_iter().enumerate() {
            outs[i] = rewrite(x, 18);
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(
            outs[0],
            [
                "inv,hostname=cp1 value=2i 1652194140",
                "inv,file=counters sum=2i,hosts=1i 1652194080",
                "inv,hostname=cp1 value=0.25,elapsed_time=0.5,occurrences=2i 1652194140",
                "inv,file=samples hosts=1i,occurrences=2i,mean=0.25,p50=0.25,p90=0.25,p99=0.25,max=0.25 1652194080",
            ]
        );
    }

    #[test]
    fn a_state_of_other_files_is_not_restored() {
        let (now, wall) = clock();
        let with = |source: &str| TableConfig {
            source: source.into(),
            ..cfg()
        };
        let mut t = Table::new(with("/srv/sre\ncounters.csv\nsamples.csv"));
        feed(&mut t, Kind::Counters, &row("cp1", "inv", T, &["1"]), now);
        let saved = t.save_state(now, wall);
        let b = Table::restore(
            with("/srv/sre\ncounters.csv\nsamples.csv"),
            &saved,
            now,
            wall,
        );
        assert_eq!(b.map(|b| b.series.cs.len()).ok(), Some(1));
        for other in ["/srv/other\ncounters.csv\nsamples.csv", ""] {
            let b = Table::restore(with(other), &saved, now, wall);
            assert_eq!(b.err(), Some(OTHER_SOURCE), "{other:?}");
        }
    }

    #[test]
    fn a_join_wait_keeps_its_wall_clock_deadline() {
        let (now, wall) = clock();
        let a = busy(now);
        let saved = a.save_state(now, wall);
        // Restored 20 s later: 10 s of the 30 s wait are left.
        let later = now + Duration::from_secs(20);
        let mut b = Table::restore(cfg(), &saved, later, wall + Duration::from_secs(20)).unwrap();
        assert!(tick(&mut b, later + Duration::from_secs(9)).is_empty());
        assert_eq!(
            tick(&mut b, later + Duration::from_secs(10))
                .iter()
                .filter(|l| l.starts_with("inv,hostname=cp1 value=0.5 "))
                .count(),
            1
        );
    }

    #[test]
    fn any_corruption_is_refused() {
        let (now, wall) = clock();
        let saved = busy(now).save_state(now, wall);
        for i in 0..saved.len() {
            let mut d = saved.clone();
            d[i] ^= 0x01;
            assert!(Table::restore(cfg(), &d, now, wall).is_err(), "byte {i}");
        }
        for n in 0..saved.len() {
            assert!(
                Table::restore(cfg(), &saved[..n], now, wall).is_err(),
                "{n} bytes"
            );
        }
        // A consistent file (CRC right) whose series names a host that does not exist.
        let mut d = saved.clone();
        let at = d.len() - 4;
        d.truncate(at);
        d.extend_from_slice(&7u32.to_le_bytes());
        assert!(Table::restore(cfg(), &d, now, wall).is_err());
    }
}
