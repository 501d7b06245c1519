//! When requests leave: the open-loop [`Schedule`] and when an idle worker wakes.

use super::Step;
use std::time::Duration;

/// Scheduled send times for one worker of `k` (open loop): the j-th request of a step at rate r
/// is due at `step_start + j / r`, worker `w` taking every j with `j % k == w`.
#[derive(Debug, Clone)]
pub struct Schedule {
    steps: Vec<(f64, u64)>,
    k: u64,
    w: u64,
    step: usize,
    n: u64,
    step_start: u64,
}

impl Schedule {
    pub fn new(steps: &[Step], k: usize, w: usize) -> Self {
        Schedule {
            steps: steps
                .iter()
                .map(|s| (s.rate, s.duration.as_nanos() as u64))
                .collect(),
            k: k as u64,
            w: w as u64,
            step: 0,
            n: 0,
            step_start: 0,
        }
    }

    /// The next (scheduled ns since start, step index), without consuming it.
    pub fn peek(&mut self) -> Option<(u64, usize)> {
        loop {
            let &(rate, dur) = self.steps.get(self.step)?;
            let j = self.n * self.k + self.w;
            let off = (j as f64 * 1e9 / rate) as u64;
            if off < dur {
                return Some((self.step_start + off, self.step));
            }
            self.step_start += dur;
            self.step += 1;
            self.n = 0;
        }
    }

    pub fn advance(&mut self) {
        self.n += 1;
    }
}

/// When an idle open-loop worker wakes (ns since the start), given when the next thing is due:
/// the send window after it, less a quarter for the kernel's wake-up latency, so that what is
/// due within the window leaves in the same batch and a send lags its schedule by at most the
/// window; never sooner than a quarter window from now (no spinning), never later than 50 ms.
pub(super) fn wake_at(now_ns: u64, due_ns: u64, window: Duration) -> u64 {
    let w = window.as_nanos() as u64;
    due_ns
        .saturating_add(w - w / 4)
        .min(now_ns + 50_000_000)
        .max(now_ns + (w / 4).max(1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spreads_requests_over_workers_exactly() {
        let steps = [
            Step {
                rate: 1000.0,
                duration: Duration::from_secs(1),
            },
            Step {
                rate: 3000.0,
                duration: Duration::from_secs(2),
            },
        ];
        let mut all = Vec::new();
        for w in 0..3 {
            let mut s = Schedule::new(&steps, 3, w);
            while let Some(x) = s.peek() {
                all.push(x);
                s.advance();
            }
        }
        all.sort();
        assert_eq!(all.len(), 1000 + 6000);
        assert_eq!(all.iter().filter(|x| x.1 == 0).count(), 1000);
        // Evenly spaced within each step, no duplicates.
        assert_eq!(all[0], (0, 0));
        assert_eq!(all[1], (1_000_000, 0));
        assert_eq!(all[999], (999_000_000, 0));
        assert_eq!(all[1000], (1_000_000_000, 1));
        assert_eq!(all[1001], (1_000_333_333, 1));
        assert!(all.last().unwrap().0 < 3_000_000_000);
        all.dedup();
        assert_eq!(all.len(), 7000);
    }

    #[test]
    fn an_idle_worker_wakes_within_the_send_window() {
        let w = Duration::from_micros(100);
        // Due in 10 µs: wakes 75 µs after that, so what falls due meanwhile goes along and the
        // first waits at most three quarters of the window plus the kernel's wake-up latency.
        assert_eq!(wake_at(1_000_000, 1_010_000, w), 1_085_000);
        // Due already (a full batch stopped the round): a quarter window, never a spin.
        assert_eq!(wake_at(1_000_000, 900_000, w), 1_025_000);
        assert_eq!(wake_at(1_000_000, 0, Duration::ZERO), 1_001_000);
        // Nothing due for long: 50 ms at most.
        assert_eq!(wake_at(1_000_000, u64::MAX, w), 51_000_000);
        assert_eq!(wake_at(0, 3_000_000, Duration::from_millis(2)), 4_500_000);
    }
}
