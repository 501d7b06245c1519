//! The counters/samples join: a samples value waits for the counters value of its host, stat
//! and minute (at most [`TableConfig::join_wait`]) and is written as `elapsed_time` and
//! `occurrences`, or as `value` for a stat counters.csv does not have.

use super::*;

pub(super) struct Pending {
    pub(super) sid: u32,
    pub(super) minute: i64,
    pub(super) deadline: Instant,
}

/// The join queue: samples values waiting for their counters value, in the order they began
/// to wait (so deadlines ascend: every wait is [`TableConfig::join_wait`] or, restored from a
/// saved state, what was left of it).
#[derive(Default)]
pub(super) struct Join {
    queue: VecDeque<Pending>,
}

impl Join {
    /// `sid`'s value of `minute` waits until `deadline`.
    pub(super) fn push_back(&mut self, p: Pending) {
        self.queue.push_back(p);
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the first wait is over.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.queue.front().map(|p| p.deadline)
    }

    /// The first value whose wait is over at `now`.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<Pending> {
        if self.next_deadline()? > now {
            return None;
        }
        self.queue.pop_front()
    }

    /// The first value still waiting (to stop waiting for all of them).
    pub(super) fn pop_front(&mut self) -> Option<Pending> {
        self.queue.pop_front()
    }

    /// Takes out the values for which `past` holds (their counters value cannot come any more),
    /// as (series, minute), keeping the others in order.
    pub(super) fn take_past(&mut self, mut past: impl FnMut(&Pending) -> bool) -> Vec<(u32, i64)> {
        let mut due = Vec::new();
        self.queue.retain(|p| {
            let is_past = past(p);
            if is_past {
                due.push((p.sid, p.minute));
            }
            !is_past
        });
        due
    }
}

impl<'a> IntoIterator for &'a Join {
    type Item = &'a Pending;
    type IntoIter = std::collections::vec_deque::Iter<'a, Pending>;

    fn into_iter(self) -> Self::IntoIter {
        self.queue.iter()
    }
}

impl Table {
    pub(super) fn samples_row(
        &mut self,
        row: &Row<'_>,
        gen: u32,
        now: Instant,
    ) -> Result<(), Reason> {
        let h = self.names.host_id(row.host);
        let id = match predicted(
            &self.series.ss,
            self.files[1].last,
            h,
            row.stat,
            &self.names,
        ) {
            Some((id, _)) => id,
            None => {
                let s = self.names.stat_id(row.stat);
                let key = series_key(h, s);
                let (cs, ss) = (&self.series.cs, &self.series.ss);
                let skey = |id: u32| series_key(ss[id as usize].host, ss[id as usize].stat);
                match self.series.smap.get(key, skey) {
                    Some(id) => id,
                    None => {
                        let id = self.series.ss.len() as u32;
                        let link = self
                            .series
                            .cmap
                            .get(key, |id| {
                                series_key(cs[id as usize].host, cs[id as usize].stat)
                            })
                            .unwrap_or(NONE);
                        if link != NONE {
                            self.series.cs[link as usize].link = id;
                        }
                        self.series.ss.push(SSeries {
                            host: h,
                            stat: s,
                            link,
                            seen: 0,
                            top: i64::MIN,
                            mask: 0,
                            emitted: 0,
                            avg: [0.0; RING as usize],
                            occ: [NO_OCC; RING as usize],
                            keep: 0,
                        });
                        let ss = &self.series.ss;
                        self.series.smap.insert(key, id, |id| {
                            series_key(ss[id as usize].host, ss[id as usize].stat)
                        });
                        self.ensure_stat(s);
                        id
                    }
                }
            }
        };
        self.files[1].last = id;
        let t = row.minute() / 60;
        let c = &self.series.ss[id as usize];
        let (seen, keep, top) = (c.seen, c.keep, c.top);
        let mut full = None;
        let values = self.row_values(Kind::Samples, row, (seen, gen), keep, top, &mut full)?;
        self.advance_horizon(Kind::Samples, t);
        let n = values.len();
        let mut changed = [0i64; crate::csvrow::MAX_VALUES];
        let mut nc = 0;
        {
            let order = self.cfg.value_order;
            let ser = &mut self.series.ss[id as usize];
            ser.seen = gen;
            ser.keep = row.keep;
            if t + RING <= ser.top {
                // The file went back a whole window (clock step): follow it from this row.
                ser.top = t;
                ser.mask = 0;
                ser.emitted = 0;
            }
            advance(&mut ser.top, &mut ser.mask, t);
            let floor = ser.top - RING;
            for (i, v) in values.iter().enumerate() {
                let m = minute_of(order, t, i, n);
                let a = match *v {
                    Value::Float(a) if m > floor => a,
                    _ => continue,
                };
                let sl = slot(m);
                let b = bit(m);
                if ser.mask & b != 0 && ser.avg[sl].to_bits() == a.to_bits() {
                    continue;
                }
                if ser.mask & b == 0 {
                    // A new minute in this slot: nothing written for it yet.
                    ser.occ[sl] = NO_OCC;
                    ser.emitted &= !b;
                }
                ser.avg[sl] = a;
                ser.mask |= b;
                ser.emitted &= !b;
                changed[nc] = m;
                nc += 1;
            }
        }
        for &m in &changed[..nc] {
            self.try_sample(id, m, now, false);
        }
        Ok(())
    }

    /// Writes the samples point of (series, minute) if it is due, or queues it to wait for the
    /// counters value.
    pub(super) fn try_sample(&mut self, sid: u32, m: i64, now: Instant, expired: bool) {
        let ser = &self.series.ss[sid as usize];
        if !has(ser.top, ser.mask, m) {
            return;
        }
        let sl = slot(m);
        let b = bit(m);
        let a = ser.avg[sl];
        let joined = if ser.link != NONE {
            let c = &self.series.cs[ser.link as usize];
            has(c.top, c.mask, m).then(|| count(&self.series.big, ser.link, c, sl))
        } else {
            None
        };
        let occ = match joined {
            Some(o) => o,
            // Written joined before: every later write keeps the joined fields (InfluxDB
            // keeps a field a later write leaves out), with the last occurrences known.
            None if ser.occ[sl] != NO_OCC => ser.occ[sl],
            None => {
                let counters_past = if ser.link != NONE {
                    self.series.cs[ser.link as usize].top >= m
                } else {
                    self.files[0].top >= m
                };
                if !(counters_past || expired || self.cfg.join_wait.is_zero()) {
                    if ser.emitted & b == 0 {
                        self.pending.push_back(Pending {
                            sid,
                            minute: m,
                            deadline: now + self.cfg.join_wait,
                        });
                    }
                    return;
                }
                NO_OCC
            }
        };
        if ser.emitted & b != 0 && ser.occ[sl] == occ {
            return;
        }
        let e = if occ == NO_OCC { a } else { a * occ as f64 };
        if !e.is_finite() {
            return; // not representable in line protocol; the row's values were finite
        }
        // Schema: `value` (the average) always; `elapsed_time` and `occurrences` once joined.
        let out = &mut self.out.buf[1];
        let start = out.len();
        out.extend_from_slice(self.names.stat_esc(ser.stat));
        out.extend_from_slice(b",hostname=");
        out.extend_from_slice(self.names.host_esc(ser.host));
        let series = out.len() - start;
        out.extend_from_slice(b" value=");
        write_float(out, a);
        if occ != NO_OCC {
            out.extend_from_slice(b",elapsed_time=");
            write_float(out, e);
            out.extend_from_slice(b",occurrences=");
            out.extend_from_slice(itoa::Buffer::new().format(occ).as_bytes());
            out.extend_from_slice(b"i");
        }
        let fields = out.len() - start - series - 1;
        out.extend_from_slice(b" ");
        out.extend_from_slice(itoa::Buffer::new().format(m * 60).as_bytes());
        out.extend_from_slice(b"\n");
        if let Some(marks) = &mut self.out.marks {
            marks[1].push(LineMark {
                len: (out.len() - start) as u32,
                series: series as u32,
                fields: fields as u32,
                minute: m as i32,
            });
        }
        self.out.points_n[1] += 1;
        self.out.written[1] += 1;
        let stat = ser.stat;
        let ser = &mut self.series.ss[sid as usize];
        ser.emitted |= b;
        ser.occ[sl] = occ;
        self.mark_dirty(Kind::Samples, stat, m);
    }

    /// Writes the samples values waiting for a minute that counters.csv has now reached without
    /// their counters value (stats with no counters row: `system.*`, `accounting.openCalls`),
    /// instead of leaving them to wait for `join_wait`. Joined values are written by
    /// [`Table::counters_row`] as their counters value arrives.
    pub(super) fn release_pending(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let (ss, cs, top) = (&self.series.ss, &self.series.cs, self.files[0].top);
        let due = self.pending.take_past(|p| {
            let ser = &ss[p.sid as usize];
            if ser.link != NONE {
                cs[ser.link as usize].top >= p.minute
            } else {
                top >= p.minute
            }
        });
        for (sid, m) in due {
            self.try_sample(sid, m, now, false);
        }
    }
}
