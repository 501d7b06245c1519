//! Rollups: per stat and minute across all hosts, written once the minute has settled (or, in
//! [`RollupMode::Live`], as soon as it has data) and rewritten when a value of it changes (see
//! the module documentation of [`super`]).

use super::*;

/// Adds the counts of series `cs` (ids from `first`) in the minutes of `mask` (as [`bit`]s of
/// the window ending at `top`) to `csum` (sum, hosts) by `stat * RING + slot`.
pub(super) fn sum_series(
    cs: &[CSeries],
    first: usize,
    big: &HashMap<u64, u64, Fx>,
    top: i64,
    mask: u16,
    csum: &mut [(u64, i64)],
) {
    for (i, c) in cs.iter().enumerate() {
        add_series(c, (first + i) as u32, big, top, mask, csum);
    }
}

/// Adds the counts of series `c` (id `id`) in the minutes of `mask` (as [`bit`]s of the window
/// ending at `top`) to `csum` (sum, hosts) by `stat * RING + slot`.
#[inline]
pub(super) fn add_series(
    c: &CSeries,
    id: u32,
    big: &HashMap<u64, u64, Fx>,
    top: i64,
    mask: u16,
    csum: &mut [(u64, i64)],
) {
    let mut live = c.mask & mask;
    if c.top != top {
        // A series behind or ahead of the file's minute: its mask bits are not the
        // window's minutes.
        live = 0;
        for m in top - RING + 1..=top {
            if mask & bit(m) != 0 && has(c.top, c.mask, m) {
                live |= bit(m);
            }
        }
    }
    let row = &mut csum[c.stat as usize * RING as usize..][..RING as usize];
    while live != 0 {
        let sl = live.trailing_zeros() as usize;
        live &= live - 1;
        add_count(&mut row[sl], count(big, id, c, sl));
    }
}

/// Counters rollups summed while a snapshot's rows are applied (see [`Table::sum_counters`]):
/// each series is added once its row has changed it, so the pass over every series after the
/// rows is not needed when every series had a row.
#[derive(Default)]
pub(super) struct RowSums {
    /// (sum, hosts) by `stat * RING + slot`.
    pub(super) sums: Vec<(u64, i64)>,
    /// The minutes summed (as [`bit`]s of the window ending at `top`); 0: not summing.
    pub(super) mask: u16,
    pub(super) top: i64,
    /// Series added.
    pub(super) added: usize,
    /// The sums hold every series (the last counters snapshot had a row for each, and no
    /// series changed since).
    pub(super) whole: bool,
}

impl RowSums {
    /// Adds series `c` (id `id`), just changed by its row.
    #[inline]
    pub(super) fn add(&mut self, c: &CSeries, id: u32, big: &HashMap<u64, u64, Fx>) {
        self.fit(c.stat);
        add_series(c, id, big, self.top, self.mask, &mut self.sums);
        self.added += 1;
    }

    /// Adds a new series of stat `stat` whose points are `changed` (minute, count): the same
    /// as [`RowSums::add`] of it, from the values at hand.
    #[inline]
    pub(super) fn add_new(&mut self, stat: u32, changed: &[(i64, u64)]) {
        self.fit(stat);
        let row = &mut self.sums[stat as usize * RING as usize..][..RING as usize];
        for &(m, x) in changed {
            if m > self.top - RING && m <= self.top && self.mask & bit(m) != 0 {
                add_count(&mut row[slot(m)], x);
            }
        }
        self.added += 1;
    }

    /// Room for the sums of stat `stat` (a stat first seen in this snapshot).
    #[inline]
    pub(super) fn fit(&mut self, stat: u32) {
        let need = (stat as usize + 1) * RING as usize;
        if self.sums.len() < need {
            self.sums.resize(need, (0, 0));
        }
    }
}

/// Adds a host's count to a rollup's (sum, hosts).
#[inline]
pub(super) fn add_count((sum, hosts): &mut (u64, i64), x: u64) {
    *sum = sum.saturating_add(x);
    *hosts += 1;
}

#[derive(Clone, Copy)]
pub(super) struct RollSlot {
    pub(super) minute: i64,
    pub(super) written: bool,
    /// Written as settled (always, in [`RollupMode::Settled`]); a live write of a minute not
    /// settled yet leaves it false, and the minute is written whole again once it settles.
    pub(super) settled: bool,
}

/// The same float form as [`LineEncoder`]: whole numbers without exponent or `.0`, otherwise
/// the shortest representation that reads back as the same `f64`.
pub(super) fn write_float(buf: &mut BytesMut, f: f64) {
    if f == f.trunc() && f.abs() < 1e15 {
        buf.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
    } else {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    }
}

impl Table {
    pub(super) fn mark_dirty(&mut self, kind: Kind, stat: u32, m: i64) {
        let f = k(kind);
        let r = self.rollups.roll[f][slot(m)];
        if r.written && r.minute == m {
            self.rollups.dirty[f][stat as usize] |= bit(m);
        }
    }

    /// Writes the rollups of settled minutes (all minutes in the window with `all`), and
    /// rewrites those of written minutes that changed. A samples minute with a value still
    /// waiting for its counters value waits too (it would be contradicted by the join), except
    /// the oldest minute of the window, which is about to be forgotten.
    pub(super) fn settle(&mut self, kind: Kind, all: bool) {
        let f = k(kind);
        let top = self.files[f].top;
        if top == i64::MIN {
            return;
        }
        let waiting = if kind == Kind::Samples && !all {
            self.waiting_minutes()
        } else {
            0
        };
        if kind == Kind::Counters {
            let first = self.whole_writes(f, top, all);
            self.sum_counters(top, first);
        }
        let live = self.cfg.rollups == RollupMode::Live;
        for m in top - RING + 1..=top {
            let settled = all || top - m >= self.cfg.settle_minutes;
            if settled && waiting & bit(m) != 0 && m > top - RING + 1 {
                // Not settled while a value waits; a live minute is still kept up to date.
                if live {
                    self.roll_minute(kind, m, false);
                }
                continue;
            }
            if settled || live {
                self.roll_minute(kind, m, settled);
            }
        }
        self.rollups.csum_minute = [i64::MIN; RING as usize];
    }

    /// The minutes (as [`bit`]s) of file `f`'s window ending at `top` whose rollups the settle
    /// (of all minutes with `all`) writes for every stat: minutes written for the first time,
    /// and, live, minutes written before they settled that settle now.
    pub(super) fn whole_writes(&self, f: usize, top: i64, all: bool) -> u16 {
        let live = self.cfg.rollups == RollupMode::Live;
        let mut mask = 0u16;
        for m in top - RING + 1..=top {
            let r = self.rollups.roll[f][slot(m)];
            let settled = all || top - m >= self.cfg.settle_minutes;
            let fresh = !(r.written && r.minute == m);
            if (settled || live) && (fresh || (settled && !r.settled)) {
                mask |= bit(m);
            }
        }
        mask
    }

    /// Computes the counters rollups of the minutes in `mask` (as [`bit`]s of the window
    /// ending at `top`) for every stat in one sequential pass over the series, for
    /// [`Table::roll_counters`]: a first write rolls up every stat, and the series of one stat
    /// are spread over the whole table (one cache miss per series and minute otherwise).
    pub(super) fn sum_counters(&mut self, top: i64, mask: u16) {
        let stats = self.rollups.dirty[0].len();
        // Per-stat scratch of 16 x 16 bytes: beyond 64k stats, roll up stat by stat.
        if mask == 0 || stats > 1 << 16 {
            return;
        }
        let n = stats * RING as usize;
        self.rollups.csum.clear();
        let rs = &self.rollups.row_sums;
        if rs.whole && rs.top == top && mask & !rs.mask == 0 {
            // Summed while the rows were applied: every series had a row.
            self.rollups.csum.extend_from_slice(&rs.sums);
            self.rollups.csum.resize(n, (0, 0));
        } else if self.series.cs.len() >= self.cfg.parallel_series.max(2) {
            // Two threads, one half of the series each (the pass reads every series: memory
            // bound, about 10 ms at 1,000,000 series on one core); sums saturate, so adding
            // the halves' sums gives the same.
            self.rollups.csum.resize(n, (0, 0));
            let other = &mut self.rollups.csum_other;
            other.clear();
            other.resize(n, (0, 0));
            let mid = self.series.cs.len() / 2;
            let (a, b) = self.series.cs.split_at(mid);
            let (big, csum) = (&self.series.big, &mut self.rollups.csum);
            std::thread::scope(|sc| {
                sc.spawn(|| sum_series(b, mid, big, top, mask, other));
                sum_series(a, 0, big, top, mask, csum);
            });
            for (x, y) in self.rollups.csum.iter_mut().zip(&self.rollups.csum_other) {
                x.0 = x.0.saturating_add(y.0);
                x.1 += y.1;
            }
        } else {
            self.rollups.csum.resize(n, (0, 0));
            sum_series(
                &self.series.cs,
                0,
                &self.series.big,
                top,
                mask,
                &mut self.rollups.csum,
            );
        }
        for m in top - RING + 1..=top {
            if mask & bit(m) != 0 {
                self.rollups.csum_minute[slot(m)] = m;
            }
        }
    }

    /// Starts summing the counters rollups while a snapshot's rows are applied
    /// ([`RowSums`]): the minutes the settle after the rows rolls up for the first time (every
    /// minute of the window in a first snapshot, for the settle of all minutes that ends a
    /// `--once` run). Sums saturate, so the order series are added in does not matter.
    pub(super) fn start_row_sums(&mut self, first: bool) {
        let top = self.files[0].top;
        let stats = self.rollups.dirty[0].len();
        if top == i64::MIN || stats > 1 << 16 {
            return;
        }
        let mask = self.whole_writes(0, top, first);
        let rs = &mut self.rollups.row_sums;
        rs.sums.clear();
        rs.sums.resize(stats * RING as usize, (0, 0));
        rs.mask = mask;
        rs.top = top;
        rs.added = 0;
    }

    /// Minutes (as [`bit`]s) with a samples value not written yet because it waits for its
    /// counters value.
    pub(super) fn waiting_minutes(&self) -> u16 {
        let mut mask = 0;
        // Only minutes of the file's window: a value of a host gone for 16 minutes or more,
        // still waiting (a long `join_wait`), must not hold up the minute of the same ring slot.
        let floor = self.files[1].top.saturating_sub(RING);
        for p in &self.pending {
            let s = &self.series.ss[p.sid as usize];
            if p.minute > floor && has(s.top, s.mask, p.minute) && s.emitted & bit(p.minute) == 0 {
                mask |= bit(p.minute);
            }
        }
        mask
    }

    /// Adds the series created since the last call to `members`, in id order.
    pub(super) fn sync_members(&mut self, f: usize) {
        let n = [self.series.cs.len(), self.series.ss.len()][f];
        for id in self.rollups.members_upto[f]..n {
            let stat = match f {
                0 => self.series.cs[id].stat,
                _ => self.series.ss[id].stat,
            };
            self.rollups.members[f][stat as usize].push(id as u32);
        }
        self.rollups.members_upto[f] = n;
    }

    /// Writes minute `m`'s rollups for every stat the first time (and, live, once more when
    /// it settles), otherwise only for changed stats. `settled`: the minute has settled (a
    /// minute written as settled stays so).
    pub(super) fn roll_minute(&mut self, kind: Kind, m: i64, settled: bool) {
        let f = k(kind);
        if kind == Kind::Samples {
            self.sync_members(f);
        }
        let sl = slot(m);
        let b = bit(m);
        let r = self.rollups.roll[f][sl];
        let fresh = !(r.written && r.minute == m);
        let settled = settled || (!fresh && r.settled);
        let first = fresh || (settled && !r.settled);
        if first {
            self.rollups.roll[f][sl] = RollSlot {
                minute: m,
                written: true,
                settled,
            };
        }
        // The `settled` field: on every write in live (and final) mode, on none in settled mode.
        let flag = (self.cfg.rollups != RollupMode::Settled).then_some(settled);
        for stat in 0..self.rollups.dirty[f].len() {
            if first || self.rollups.dirty[f][stat] & b != 0 {
                self.rollups.dirty[f][stat] &= !b;
                match kind {
                    Kind::Counters => self.roll_counters(stat, m, flag),
                    Kind::Samples => self.roll_samples(stat, m, flag),
                }
            }
        }
    }

    /// Counters rollup of one stat and minute: `sum` and `hosts`, and `settled` when `flag`
    /// is some.
    pub(super) fn roll_counters(&mut self, stat: usize, m: i64, flag: Option<bool>) {
        let (mut sum, mut hosts) = (0u64, 0i64);
        if self.rollups.csum_minute[slot(m)] == m {
            (sum, hosts) = self.rollups.csum[stat * RING as usize + slot(m)];
        } else {
            // The members are brought up to date only here: with the sums there is no need
            // (filing 1,000,000 new series by stat took about 20 ms).
            self.sync_members(0);
            for &id in &self.rollups.members[0][stat] {
                let c = &self.series.cs[id as usize];
                if has(c.top, c.mask, m) {
                    sum = sum.saturating_add(count(&self.series.big, id, c, slot(m)));
                    hosts += 1;
                }
            }
        }
        if hosts == 0 {
            return;
        }
        let fields = [
            ("sum", Field::Int(sum.min(i64::MAX as u64) as i64)),
            ("hosts", Field::Int(hosts)),
            ("settled", Field::Bool(flag.unwrap_or(false))),
        ];
        let n = if flag.is_some() { 3 } else { 2 };
        if self.rollups.enc.push(
            self.names.stat(stat as u32),
            &[("file", "counters")],
            &fields[..n],
            m * 60,
        ) {
            self.out.written[2] += 1;
        }
    }

    /// Samples rollup of one stat and minute. Its field set is always the same seven fields
    /// (eight with `settled` when `flag` is some: on every write of a live table), so no
    /// rewrite can leave a stale field in InfluxDB: `hosts`, `occurrences` (of the
    /// joined hosts, 0 when none), and `mean`, `p50`, `p90`, `p99`, `max` of the per-host
    /// averages weighted by occurrences (1 for a host written as `value`; a host with 0
    /// occurrences carries no weight; when no host has any weight, each host counts once).
    pub(super) fn roll_samples(&mut self, stat: usize, m: i64, flag: Option<bool>) {
        let sl = slot(m);
        let ss = &self.series.ss;
        if !self.rollups.members[1][stat].iter().any(|&id| {
            let s = &ss[id as usize];
            has(s.top, s.mask, m)
        }) {
            return;
        }
        let (mut hosts, mut occ_total) = (0i64, 0u64);
        let (mut wsum, mut wtotal, mut max, mut min) = (0f64, 0u64, f64::NAN, f64::NAN);
        for unweighted in [false, true] {
            if !self.rollups.hist.is_empty() {
                self.rollups.hist.reset();
            }
            (hosts, occ_total, wsum, wtotal, max, min) = (0, 0, 0.0, 0, f64::NAN, f64::NAN);
            for &id in &self.rollups.members[1][stat] {
                let s = &self.series.ss[id as usize];
                if !has(s.top, s.mask, m) {
                    continue;
                }
                hosts += 1;
                let a = s.avg[sl];
                // Weight: the occurrences the point was written with; 1 for a stat with none.
                let w = if s.emitted & bit(m) != 0 && s.occ[sl] != NO_OCC {
                    occ_total = occ_total.saturating_add(s.occ[sl]);
                    s.occ[sl]
                } else {
                    1
                };
                let w = if unweighted { 1 } else { w };
                if w == 0 {
                    continue;
                }
                wsum += a * w as f64;
                wtotal = wtotal.saturating_add(w);
                max = if max.is_nan() { a } else { max.max(a) };
                min = if min.is_nan() { a } else { min.min(a) };
                let v = ((a * HDR_SCALE).round() as u64).min(HDR_HIGH);
                let _ = self.rollups.hist.record_n(v, w);
            }
            if wtotal > 0 || hosts == 0 {
                break;
            }
        }
        if hosts == 0 {
            return;
        }
        // HDR quantiles are exact to HDR_SIGFIG digits; clamped to the exact extremes so that a
        // single host reads back its own average.
        let q = |h: &Histogram<u64>, p: f64| {
            (h.value_at_quantile(p) as f64 / HDR_SCALE).clamp(min, max)
        };
        let fields = [
            ("hosts", Field::Int(hosts)),
            (
                "occurrences",
                Field::Int(occ_total.min(i64::MAX as u64) as i64),
            ),
            ("mean", Field::Float(wsum / wtotal as f64)),
            ("p50", Field::Float(q(&self.rollups.hist, 0.50))),
            ("p90", Field::Float(q(&self.rollups.hist, 0.90))),
            ("p99", Field::Float(q(&self.rollups.hist, 0.99))),
            ("max", Field::Float(max)),
            ("settled", Field::Bool(flag.unwrap_or(false))),
        ];
        let n = if flag.is_some() { 8 } else { 7 };
        if self.rollups.enc.push(
            self.names.stat(stat as u32),
            &[("file", "samples")],
            &fields[..n],
            m * 60,
        ) {
            self.out.written[2] += 1;
        }
    }
}

/// The rollups' state: which series belong to each stat, which written minutes are out of
/// date, the minute slots, the sums of counters and the histogram of samples, and the rollups'
/// line protocol.
pub(super) struct Rollups {
    /// Series of each stat id, per file: ids below `members_upto` (a new series is added in
    /// one pass when the members are next needed, [`Table::sync_members`], not by a random
    /// write per new row).
    pub(super) members: [Vec<Vec<u32>>; 2],
    pub(super) members_upto: [usize; 2],
    /// Per stat id: ring slots whose written rollup is out of date, per file.
    pub(super) dirty: [Vec<u16>; 2],
    pub(super) roll: [[RollSlot; RING as usize]; 2],
    pub(super) hist: Histogram<u64>,
    /// Counters rollups (sum, hosts) computed in one pass over all series for the minutes
    /// being settled for the first time, by `stat * RING + slot`; valid for the slots whose
    /// minute is in `csum_minute` (see [`Table::sum_counters`]).
    pub(super) csum: Vec<(u64, i64)>,
    /// The second thread's sums ([`TableConfig::parallel_series`]).
    pub(super) csum_other: Vec<(u64, i64)>,
    pub(super) csum_minute: [i64; RING as usize],
    /// Counters rollups summed while the rows are applied.
    pub(super) row_sums: RowSums,
    /// The rollups' line protocol.
    pub(super) enc: LineEncoder,
}

impl Rollups {
    pub(super) fn new() -> Self {
        let empty = [RollSlot {
            minute: i64::MIN,
            written: false,
            settled: false,
        }; RING as usize];
        Rollups {
            members: [Vec::new(), Vec::new()],
            members_upto: [0; 2],
            dirty: [Vec::new(), Vec::new()],
            roll: [empty, empty],
            hist: {
                // Grows to the largest average recorded (at most HDR_HIGH, values are clamped
                // to it), so clearing it per stat and minute costs no more than that needs;
                // the buckets, hence the quantiles, are those of the 1..HDR_HIGH histogram.
                let mut h =
                    Histogram::new_with_bounds(1, 2048, HDR_SIGFIG).expect("valid HDR bounds");
                h.auto(true);
                h
            },
            csum: Vec::new(),
            csum_other: Vec::new(),
            csum_minute: [i64::MIN; RING as usize],
            row_sums: RowSums::default(),
            enc: LineEncoder::with_capacity(64 * 1024),
        }
    }
}
