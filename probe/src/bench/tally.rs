//! Counting: [`Tally`] (one step, one second or a run), what a worker reports each second,
//! the run's result, and the HdrHistogram percentile-distribution output.

use super::BenchConfig;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

/// Highest latency the histograms hold (longer values are clamped): one hour, in µs.
pub(super) const HIST_MAX_US: u64 = 3_600_000_000;

/// Counters of one step, one second or one whole run. One field per counter (over a dozen):
/// the summary, the JSON and the merge name each.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Transactions started (each ends exactly once in one of the three below).
    pub sent: u64,
    /// Final responses by status code (index: status - 100).
    pub status: Box<[u64; 600]>,
    pub timed_out: u64,
    pub send_errors: u64,
    /// Transactions still in flight when the run was stopped (SIGINT/SIGTERM) and its grace
    /// ran out: neither answered nor failed.
    pub abandoned: u64,
    /// Requests not sent because `outstanding_limit` was reached (included in `send_errors`).
    pub limited: u64,
    /// INVITEs answered 2xx (a call accepted, alarm-worthy when the CP should be out of service),
    /// in time (also counted in `status`) or after their timeout (also in `timed_out`); each
    /// was ACKed and hung up with a BYE.
    pub accepted: u64,
    /// BYE transactions started (one per accepted call) and those that got no final response
    /// (timed out or failed to send).
    pub byes: u64,
    pub bye_failures: u64,
    /// BYEs answered with a non-2xx final (e.g. `404 Not here`): the call may still be up.
    pub bye_refused: u64,
    /// CANCELs sent for INVITEs that only got provisional responses by their timeout, and those
    /// that got no final response (timed out or failed to send).
    pub cancels: u64,
    pub cancel_failures: u64,
    /// Retransmitted requests (not transactions), BYE and CANCEL included.
    pub retransmits: u64,
    pub acks: u64,
    /// ACKs that could not be sent (the transaction had already ended as answered).
    pub ack_send_errors: u64,
    pub provisional: u64,
    /// Responses for a transaction already ended (retransmitted finals, answers after timeout).
    pub late: u64,
    /// Responses with a branch or method that is not ours.
    pub stray: u64,
    /// ICMP errors (port/host unreachable) reported on the socket; they cannot be tied to one
    /// transaction over UDP, so the transactions time out and these are counted beside them.
    pub unreachable: u64,
    /// Datagrams that are not a usable SIP response (counted, dropped).
    pub invalid: u64,
    /// Latency of answered transactions, µs from the send (at the latest one send window
    /// after the scheduled time).
    pub hist: Histogram<u64>,
    /// The same plus every timed-out transaction at the time it timed out (its timeout plus
    /// any send lag): percentiles that overload cannot hide. Holds `answered + timed_out`.
    pub hist_all: Histogram<u64>,
    /// First and last actual send, ns since the run's start (0 when nothing was sent).
    pub first_send_ns: u64,
    pub last_send_ns: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            sent: 0,
            status: Box::new([0; 600]),
            timed_out: 0,
            send_errors: 0,
            abandoned: 0,
            limited: 0,
            accepted: 0,
            byes: 0,
            bye_failures: 0,
            bye_refused: 0,
            cancels: 0,
            cancel_failures: 0,
            retransmits: 0,
            acks: 0,
            ack_send_errors: 0,
            provisional: 0,
            late: 0,
            stray: 0,
            unreachable: 0,
            invalid: 0,
            hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("histogram bounds"),
            hist_all: Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("histogram bounds"),
            first_send_ns: 0,
            last_send_ns: 0,
        }
    }
}

impl Tally {
    pub fn answered(&self) -> u64 {
        self.status.iter().sum()
    }

    pub fn answered_with(&self, status: u16) -> u64 {
        self.status
            .get((status as usize).wrapping_sub(100))
            .copied()
            .unwrap_or(0)
    }

    /// (status, count) for every status seen.
    pub fn by_status(&self) -> BTreeMap<u16, u64> {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i as u16 + 100, n))
            .collect()
    }

    /// Timeouts, send errors and answers other than `expected`.
    pub fn failures(&self, expected: u16) -> u64 {
        self.timed_out + self.send_errors + self.answered() - self.answered_with(expected)
    }

    pub fn add(&mut self, o: &Tally) {
        self.sent += o.sent;
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        self.timed_out += o.timed_out;
        self.send_errors += o.send_errors;
        self.abandoned += o.abandoned;
        self.limited += o.limited;
        self.accepted += o.accepted;
        self.byes += o.byes;
        self.bye_failures += o.bye_failures;
        self.bye_refused += o.bye_refused;
        self.cancels += o.cancels;
        self.cancel_failures += o.cancel_failures;
        self.retransmits += o.retransmits;
        self.acks += o.acks;
        self.ack_send_errors += o.ack_send_errors;
        self.provisional += o.provisional;
        self.late += o.late;
        self.stray += o.stray;
        self.unreachable += o.unreachable;
        self.invalid += o.invalid;
        let _ = self.hist.add(&o.hist);
        let _ = self.hist_all.add(&o.hist_all);
        if o.first_send_ns > 0 && (self.first_send_ns == 0 || o.first_send_ns < self.first_send_ns)
        {
            self.first_send_ns = o.first_send_ns;
        }
        self.last_send_ns = self.last_send_ns.max(o.last_send_ns);
    }

    /// Back to zero, keeping the allocations (the status array and the histograms).
    pub(super) fn reset(&mut self) {
        // Every field by name: a counter added later must be added here too.
        let Tally {
            sent,
            status,
            timed_out,
            send_errors,
            abandoned,
            limited,
            accepted,
            byes,
            bye_failures,
            bye_refused,
            cancels,
            cancel_failures,
            retransmits,
            acks,
            ack_send_errors,
            provisional,
            late,
            stray,
            unreachable,
            invalid,
            hist,
            hist_all,
            first_send_ns,
            last_send_ns,
        } = self;
        for c in [
            sent,
            timed_out,
            send_errors,
            abandoned,
            limited,
            accepted,
            byes,
            bye_failures,
            bye_refused,
            cancels,
            cancel_failures,
            retransmits,
            acks,
            ack_send_errors,
            provisional,
            late,
            stray,
            unreachable,
            invalid,
            first_send_ns,
            last_send_ns,
        ] {
            *c = 0;
        }
        status.fill(0);
        hist.reset();
        hist_all.reset();
    }

    #[inline]
    pub(super) fn mark_send(&mut self, now_ns: u64) {
        let t = now_ns.max(1);
        if self.first_send_ns == 0 {
            self.first_send_ns = t;
        }
        self.last_send_ns = t;
    }
}

/// One second of the run, from every worker.
#[derive(Debug, Clone)]
pub struct Second {
    /// Seconds since the start (the second that ended).
    pub second: u64,
    pub tally: Tally,
    pub outstanding: u64,
}

/// What a worker reports once per second.
pub(super) struct Tick {
    pub(super) second: u64,
    pub(super) tally: Tally,
    pub(super) outstanding: u64,
}

/// The result of a run.
#[derive(Debug)]
pub struct BenchResult {
    pub steps: Vec<StepResult>,
    pub total: Tally,
    pub seconds: Vec<Second>,
    pub elapsed: Duration,
    pub peak_outstanding: u64,
    /// Largest lag of an actual send behind its scheduled time (open loop), µs.
    pub max_send_lag_us: u64,
    /// Times the workers slept and woke up (all sockets): what a moderate rate costs.
    pub wakeups: u64,
    /// Read system calls on the sockets (`recvmmsg` over UDP, `read` over TCP), those that
    /// found nothing included.
    pub reads: u64,
}

#[derive(Debug)]
pub struct StepResult {
    /// Target rate (open loop), or None (closed loop).
    pub rate: Option<f64>,
    pub duration: Duration,
    pub tally: Tally,
}

impl BenchResult {
    /// The accounting invariant: every request ended exactly once (or was abandoned).
    pub fn balanced(&self) -> bool {
        let t = &self.total;
        t.sent == t.answered() + t.timed_out + t.send_errors + t.abandoned
    }
}

impl StepResult {
    /// Requests sent per second over the step (actual send span, at least the step duration).
    pub fn achieved_rate(&self) -> f64 {
        let span_ns = self
            .tally
            .last_send_ns
            .saturating_sub(self.tally.first_send_ns);
        let secs = self.duration.as_secs_f64().max(span_ns as f64 / 1e9);
        if secs > 0.0 {
            self.tally.sent as f64 / secs
        } else {
            0.0
        }
    }

    /// Whether the step held: failures within the ratio and p99 within the bound.
    pub fn held(&self, cfg: &BenchConfig) -> bool {
        let t = &self.tally;
        if t.sent == 0 {
            return false;
        }
        let fail = t.failures(cfg.expected_status) as f64 / t.sent as f64;
        // Timeouts count at their timeout: an overloaded step cannot look fast.
        let p99 = t.hist_all.value_at_quantile(0.99);
        fail <= cfg.max_failure_ratio && (p99 as u128) < cfg.p99_bound.as_micros()
    }
}

/// Writes `h` (µs) in HdrHistogram's percentile-distribution text format, values in
/// milliseconds, as `HistogramLogProcessor`/the online plotter read it.
pub fn write_percentile_distribution(h: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    let scale = 1000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / scale;
        if q < 1.0 {
            writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / scale,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_distribution_format() {
        let mut h = Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3).unwrap();
        for v in [1000u64, 2000, 3000, 4000] {
            h.record(v).unwrap();
        }
        let mut out = Vec::new();
        write_percentile_distribution(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        assert_eq!(
            lines.next().unwrap(),
            "       1.000 0.000000000000          1           1.00"
        );
        let last_value = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert_eq!(last_value, "       4.001 1.000000000000          4");
        assert!(text.contains("#[Max     =        4.001, Total count    =            4]"));
    }
}
