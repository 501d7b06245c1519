//! The per-row work: a row's series found (the series after the previous row's first, else
//! one lookup), its values compared with the ring, and its changed points written.

use super::*;

/// All values of `row`, read into `full` (the parse stage left some out).
#[cold]
#[inline(never)]
fn reparse<'r>(
    row: &Row<'_>,
    kind: Kind,
    full: &'r mut Option<([Value; crate::csvrow::MAX_VALUES], usize)>,
) -> Result<&'r [Value], Reason> {
    let (v, n) = full.insert(parse_values(row.values_text, kind)?);
    Ok(&v[..*n])
}

impl Table {
    /// The values of `row` to apply to a series whose last applied row had [`Row::keep`]
    /// `keep` and whose newest minute is `top`: the row's own (all but the two newest left out
    /// when they repeat that row, [`Row::same_tail`]), or, when the parse stage left values out
    /// that this series has not seen, all of them read with [`parse_values`] into `full`.
    /// `seen`: the series' generation ([`Reason::Duplicate`] when it is this snapshot's, `gen`).
    #[inline]
    pub(super) fn row_values<'r>(
        &mut self,
        kind: Kind,
        row: &'r Row<'_>,
        (seen, gen): (u32, u32),
        keep: u64,
        top: i64,
        full: &'r mut Option<([Value; crate::csvrow::MAX_VALUES], usize)>,
    ) -> Result<&'r [Value], Reason> {
        if seen == gen {
            return Err(Reason::Duplicate);
        }
        if row.same_tail == 0 {
            return Ok(row.values());
        }
        // The clock-step reset (a row a whole window back) forgets the ring: never with a
        // repeat, whose minute is one after the last row's.
        let f = k(kind);
        if keep == row.same_tail && row.minute() / 60 + RING > top {
            self.files[f].repeats += 1;
            Ok(row.values())
        } else {
            self.files[f].reparsed += 1;
            reparse(row, kind, full)
        }
    }

    pub(super) fn ensure_stat(&mut self, s: u32) {
        let n = s as usize + 1;
        for f in 0..2 {
            if self.rollups.members[f].len() < n {
                self.rollups.members[f].resize_with(n, Vec::new);
                self.rollups.dirty[f].resize(n, 0);
            }
        }
    }

    pub(super) fn counters_row(
        &mut self,
        row: &Row<'_>,
        gen: u32,
        now: Instant,
    ) -> Result<(), Reason> {
        let h = self.names.host_id(row.host);
        // Rows come in the same order every minute: try the series after the previous row's
        // before hashing the stat name and looking the series up.
        let (id, s) = match predicted(
            &self.series.cs,
            self.files[0].last,
            h,
            row.stat,
            &self.names,
        ) {
            Some(p) => p,
            None => {
                // Hosts list their stats in the same order: try the stat that followed the
                // previous row's last time before hashing the name (a first snapshot of 500
                // hosts x 2,000 stats looks up 2,000 names, not 1,000,000).
                let prev = self
                    .series
                    .cs
                    .get(self.files[0].last as usize)
                    .map_or(NONE, |c| c.stat);
                let s = match self.series.stat_after.get(prev as usize) {
                    Some(&p) if p != NONE && self.names.stat_is(p, row.stat) => p,
                    _ => {
                        let s = self.names.stat_id(row.stat);
                        if prev != NONE {
                            if self.series.stat_after.len() <= prev as usize {
                                self.series.stat_after.resize(prev as usize + 1, NONE);
                            }
                            self.series.stat_after[prev as usize] = s;
                        }
                        s
                    }
                };
                let key = series_key(h, s);
                self.ensure_stat(s);
                let cs = &self.series.cs;
                let ckey = |id: u32| series_key(cs[id as usize].host, cs[id as usize].stat);
                match self.series.cmap.get(key, ckey) {
                    Some(id) => (id, s),
                    None => return self.new_counters_series(row, h, s, gen, now),
                }
            }
        };
        self.files[0].last = id;
        let t = row.minute() / 60;
        let c = &self.series.cs[id as usize];
        let (seen, keep, top) = (c.seen, c.keep(), c.top);
        let mut full = None;
        let values = self.row_values(Kind::Counters, row, (seen, gen), keep, top, &mut full)?;
        self.advance_horizon(Kind::Counters, t);
        let order_n = values.len();
        let order = self.cfg.value_order;
        let ser = &mut self.series.cs[id as usize];
        ser.seen = gen;
        ser.set_keep(row.keep);
        if t + RING <= ser.top {
            // The file went back a whole window (clock step): follow it from this row.
            ser.top = t;
            ser.mask = 0;
        }
        advance(&mut ser.top, &mut ser.mask, t);
        let link = ser.link;
        let floor = ser.top - RING;
        let mut changed = [(0i64, 0u64); crate::csvrow::MAX_VALUES];
        let mut nc = 0;
        for (i, v) in values.iter().enumerate() {
            let m = minute_of(order, t, i, order_n);
            if m <= floor {
                continue;
            }
            let x = match *v {
                Value::Int(x) => x,
                _ => continue,
            };
            let sl = slot(m);
            let b = bit(m);
            if ser.mask & b != 0 {
                let same = match ser.vals[sl] {
                    BIG => self.series.big.get(&big_key(id, sl)) == Some(&x),
                    v => v as u64 == x,
                };
                if same {
                    continue;
                }
            }
            if x >= BIG as u64 {
                ser.vals[sl] = BIG;
                self.series.big.insert(big_key(id, sl), x);
            } else {
                if ser.vals[sl] == BIG {
                    self.series.big.remove(&big_key(id, sl));
                }
                ser.vals[sl] = x as u32;
            }
            ser.mask |= b;
            changed[nc] = (m, x);
            nc += 1;
        }
        if self.rollups.row_sums.mask != 0 {
            self.rollups
                .row_sums
                .add(&self.series.cs[id as usize], id, &self.series.big);
        }
        self.counters_points(h, s, link, &changed[..nc], now);
        Ok(())
    }

    /// A row of a series not seen before: the series is put together here and stored once
    /// (no read of the fresh memory it goes to), and every value is a new point.
    #[cold]
    #[inline(never)]
    pub(super) fn new_counters_series(
        &mut self,
        row: &Row<'_>,
        h: u32,
        s: u32,
        gen: u32,
        now: Instant,
    ) -> Result<(), Reason> {
        // A new series cannot have had a row in this snapshot (`!gen` is never `gen`).
        let mut full = None;
        let values = self.row_values(Kind::Counters, row, (!gen, gen), 0, i64::MIN, &mut full)?;
        let t = row.minute() / 60;
        self.advance_horizon(Kind::Counters, t);
        let id = self.series.cs.len() as u32;
        let key = series_key(h, s);
        let link = if self.series.smap.is_empty() {
            NONE
        } else {
            let ss = &self.series.ss;
            self.series
                .smap
                .get(key, |id| {
                    series_key(ss[id as usize].host, ss[id as usize].stat)
                })
                .unwrap_or(NONE)
        };
        if link != NONE {
            self.series.ss[link as usize].link = id;
        }
        let mut ser = CSeries {
            host: h,
            stat: s,
            link,
            seen: gen,
            top: t,
            mask: 0,
            vals: [0; RING as usize],
            keep_lo: row.keep as u32,
            keep_hi: (row.keep >> 32) as u16,
        };
        let order = self.cfg.value_order;
        let n = values.len();
        let mut changed = [(0i64, 0u64); crate::csvrow::MAX_VALUES];
        let mut nc = 0;
        for (i, v) in values.iter().enumerate() {
            let m = minute_of(order, t, i, n);
            let x = match *v {
                Value::Int(x) if m > t - RING => x,
                _ => continue,
            };
            let sl = slot(m);
            if ser.mask & bit(m) != 0 {
                continue;
            }
            if x >= BIG as u64 {
                ser.vals[sl] = BIG;
                self.series.big.insert(big_key(id, sl), x);
            } else {
                ser.vals[sl] = x as u32;
            }
            ser.mask |= bit(m);
            changed[nc] = (m, x);
            nc += 1;
        }
        self.series.cs.push(ser);
        if self.rollups.row_sums.mask != 0 {
            self.rollups.row_sums.add_new(s, &changed[..nc]);
        }
        let cs = &self.series.cs;
        self.series.cmap.insert(key, id, |id| {
            series_key(cs[id as usize].host, cs[id as usize].stat)
        });
        self.files[0].last = id;
        self.counters_points(h, s, link, &changed[..nc], now);
        Ok(())
    }

    /// Writes the counters points `changed` (minute, count) of host `h` and stat `s`, marks
    /// their rollups and joins the samples series `link`.
    #[inline]
    pub(super) fn counters_points(
        &mut self,
        h: u32,
        s: u32,
        link: u32,
        changed: &[(i64, u64)],
        now: Instant,
    ) {
        if changed.is_empty() {
            return;
        }
        let nc = changed.len();
        let stat = self.names.stat_padded(s);
        let host = self.names.host_padded(h);
        match &mut self.out.defer {
            Some(d) => d.push(stat, host, changed),
            None => {
                self.out
                    .points
                    .counters(&mut self.out.buf[0], stat, host, changed);
                self.out.points_n[0] += nc;
                if let Some(marks) = &mut self.out.marks {
                    self.out
                        .points
                        .marks(stat.1, host.1, changed, &mut marks[0]);
                }
            }
        }
        self.out.written[0] += nc as u64;
        for &(m, _) in changed {
            self.mark_dirty(Kind::Counters, s, m);
            if link != NONE {
                self.try_sample(link, m, now, false);
            }
        }
    }
}

/// A snapshot's rows applied to the table, fed by either driver ([`Apply`]): each row is
/// validated before it changes any state ([`Minutes::check`], then duplicates), then
/// applied; the report counts rows and skips.
pub(super) struct Rows<'t, 'r, 'e> {
    pub(super) t: &'t mut Table,
    pub(super) rep: &'r mut FileReport,
    pub(super) emit: &'r mut EmitMarked<'e>,
    pub(super) kind: Kind,
    pub(super) gen: u32,
    pub(super) now: Instant,
    pub(super) minutes: Minutes,
}

impl Apply for Rows<'_, '_, '_> {
    #[inline]
    fn apply(&mut self, r: Result<&Row<'_>, RowError>) {
        let t = &mut *self.t;
        let row = match r {
            Err(e) => return self.rep.skip(e),
            Ok(row) => row,
        };
        let res = self
            .minutes
            .check(row.minute() / 60)
            .and_then(|()| match self.kind {
                Kind::Counters => t.counters_row(row, self.gen, self.now),
                Kind::Samples => t.samples_row(row, self.gen, self.now),
            });
        match res {
            Ok(()) => self.rep.rows += 1,
            Err(reason) => self.rep.skip(RowError {
                reason,
                line: row.line,
                byte: row.byte,
                field: 4,
            }),
        }
        if t.out.buf[0].len() >= t.cfg.chunk_bytes
            || t.out.buf[1].len() >= t.cfg.chunk_bytes
            || t.out.defer.as_ref().is_some_and(|d| !d.ready.is_empty())
        {
            t.flush_marked(self.emit);
        }
    }

    fn series_len_at(&self) -> (usize, usize) {
        self.t.series_len_at(self.kind)
    }

    fn deferred(&mut self) -> (Option<&mut Deferred>, &mut PointWriter) {
        (self.t.out.defer.as_mut(), &mut self.t.out.points)
    }
}
