//! A worker's counts, each event counted once: into this second's tally of the step it belongs
//! to. At each tick the second's tallies are added to their steps' totals and summed into the
//! second's report, so per-step and per-second figures come from the same single count.

use super::Tally;

pub(super) struct Counts {
    /// Totals per step, up to the last tick.
    steps: Vec<Tally>,
    /// This second's tallies by step: few (the step being sent, and those whose transactions
    /// end now), the latest last.
    open: Vec<(usize, Tally)>,
    /// Tallies emptied at a tick, reused (a tally holds two histograms).
    spare: Vec<Tally>,
    /// The step being sent: what belongs to no transaction (late, stray, invalid, unreachable)
    /// counts there.
    pub(super) cur_step: usize,
    /// Most transactions outstanding at once.
    pub(super) peak: u64,
    /// Largest lag of an actual send behind its schedule.
    pub(super) max_lag_ns: u64,
}

impl Counts {
    pub(super) fn new(nsteps: usize) -> Self {
        Counts {
            steps: (0..nsteps).map(|_| Tally::default()).collect(),
            open: Vec::with_capacity(4),
            spare: Vec::new(),
            cur_step: 0,
            peak: 0,
            max_lag_ns: 0,
        }
    }

    /// This second's tally of `step`.
    #[inline]
    pub(super) fn at(&mut self, step: usize) -> &mut Tally {
        let i = match self.open.iter().rposition(|e| e.0 == step) {
            Some(i) => i,
            None => {
                let t = self.spare.pop().unwrap_or_default();
                self.open.push((step, t));
                self.open.len() - 1
            }
        };
        &mut self.open[i].1
    }

    /// This second's tally of the step being sent.
    #[inline]
    pub(super) fn current(&mut self) -> &mut Tally {
        self.at(self.cur_step)
    }

    /// Ends the second: its tallies go to their steps; their sum is the second's report.
    pub(super) fn tick(&mut self) -> Tally {
        let mut sum = Tally::default();
        for (step, mut t) in self.open.drain(..) {
            self.steps[step].add(&t);
            sum.add(&t);
            t.reset();
            self.spare.push(t);
        }
        sum
    }

    /// The totals per step (after the last [`Counts::tick`]).
    pub(super) fn into_steps(self) -> Vec<Tally> {
        debug_assert!(self.open.is_empty(), "counts left after the last tick");
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_counts_once_in_its_step_and_its_second() {
        let mut c = Counts::new(3);
        c.at(0).sent += 2;
        c.cur_step = 1;
        c.current().late += 1;
        c.at(0).timed_out += 1;
        c.at(0).hist.record(10).unwrap();
        let s1 = c.tick();
        assert_eq!(
            (s1.sent, s1.late, s1.timed_out, s1.hist.len()),
            (2, 1, 1, 1)
        );
        c.at(2).sent += 5;
        let s2 = c.tick();
        assert_eq!(
            (s2.sent, s2.late, s2.timed_out, s2.hist.len()),
            (5, 0, 0, 0)
        );
        let _ = c.tick();
        let steps = c.into_steps();
        let sent: Vec<u64> = steps.iter().map(|t| t.sent).collect();
        assert_eq!(sent, [2, 0, 5]);
        assert_eq!(
            (steps[0].timed_out, steps[0].hist.len(), steps[1].late),
            (1, 1, 1)
        );
    }
}
