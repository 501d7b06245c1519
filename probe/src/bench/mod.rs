//! The load generator: open loop at fixed rates (optionally stepped, a ramp) or closed loop with
//! a fixed number of outstanding transactions, over K sockets each owned by one thread.
//!
//! Stages per worker thread, data flowing one way: **schedule → send → match → classify →
//! report**.
//! - schedule: [`Schedule`] gives the scheduled send time of each request (open loop), so a
//!   stalled server shows as latency, not as a lower rate: latency is measured from the send,
//!   but from no later than one send window after the *scheduled* time (no coordinated
//!   omission). Closed loop starts a request when one ends.
//! - send: [`Template`](crate::fast::Template) patched per request into a
//!   [`SendBatch`](crate::mmsg::SendBatch), one `sendmmsg` per batch.
//! - match: `recvmmsg`, [`read_answer`] (the codec's one reader,
//!   [`read_response`](crate::sip::read_response), with the prober's one-Via rule), then the transaction [`Table`](crate::transaction::table::Table): an index and a comparison, no lock (each
//!   worker owns its table and socket).
//! - classify: the shared client transaction core ([`ClientTx`](crate::transaction::client::ClientTx)) decides retransmissions (Timer
//!   E / A, can be turned off), timeouts and ACKs; each transaction ends exactly once as
//!   answered (by status code), timed out or failed to send, or is abandoned when the run is
//!   stopped ([`BenchConfig::stop_grace`] after `stop`), so
//!   `sent = answered + timed_out + send_errors + abandoned` always holds.
//! - report: latencies in microseconds into HDR histograms (3 significant figures, no
//!   allocation per record), counted locally per step and per second; one message per worker per
//!   second to the reporting thread.
//!
//! INVITE: a [`Call`](crate::call::Call) of the call core (settings
//! [`CallSettings::BENCH`](crate::call::CallSettings::BENCH)) decides, the engine renders from
//! the templates and counts: a non-2xx final is ACKed in its transaction; a 2xx (in time, or
//! after the timeout) is ACKed (a branch of its own) and hung up at once with a BYE along its
//! route set, the BYE a non-INVITE transaction of the call (its branch a table entry of its
//! own) whose final status is counted (`bye_refused`, `bye_failures`), and counted as
//! `accepted`; an INVITE that only got provisional responses by the timeout is counted as
//! timed out and CANCELled (the call's [`Cancel`](crate::dialog::Cancel), its own Timer E and
//! F, until the CANCEL has ended and the INVITE's final response, normally a 487, is ACKed);
//! an INVITE that timed out without a provisional stays until 64·T1 after its first send for a
//! late final. Timeouts are recorded in a second histogram (`hist_all`) at the time they
//! happened.
//!
//! Departure from the RFC, for memory bounded by the outstanding transactions: a transaction is
//! removed from the table at its final response (no Timer K / D lingering), so a retransmitted
//! final response is counted as `late` and not ACKed again (nor a retransmitted 2xx).
//!
//! Files, by stage:
//! - `config`: the settings ([`BenchConfig`], [`Load`], [`parse_ramp`]) and their validation;
//! - `schedule`: open-loop send times ([`Schedule`]) and when an idle worker wakes;
//! - `worker`: one thread's socket (UDP or TCP, framed by [`crate::sip::frame()`]) and its
//!   loop: read, fire timers, send, sleep;
//! - `engine`: that worker's transactions (start, timers, responses) and calls (rendering and
//!   counting what [`crate::call`] decides);
//! - `timers`: their timer queue;
//! - `tally`: the counts ([`Tally`]), the result ([`BenchResult`]) and the percentile output;
//! - this file: [`run`], which starts the workers and merges their seconds.

mod config;
mod counts;
mod engine;
mod logs;
mod schedule;
mod tally;
mod timers;
mod worker;

pub use config::{parse_ramp, BenchConfig, BenchError, BenchMethod, BenchTransport, Load, Step};
pub use engine::{bytes_per_outstanding, read_answer, BenchTx, Core, NO_AUX};
pub use schedule::Schedule;
pub use tally::{write_percentile_distribution, BenchResult, Second, StepResult, Tally};

use config::validate;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::Worker;

/// Datagrams per `sendmmsg`/`recvmmsg`.
pub const BATCH: usize = 64;

/// Called once per second with the second that ended (all workers merged).
pub type OnSecond<'a> = dyn FnMut(&Second) + 'a;

/// Runs a benchmark to the end: the schedule, then every outcome. `stop` ends the schedule
/// early (outstanding transactions still finish). `on_second` sees each completed second.
pub fn run(
    cfg: BenchConfig,
    stop: Arc<AtomicBool>,
    on_second: &mut OnSecond<'_>,
) -> Result<BenchResult, BenchError> {
    validate(&cfg)?;
    let cfg = Arc::new(cfg);
    let epoch = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut workers = Vec::new();
    for id in 0..cfg.sockets {
        workers.push(Worker::new(
            cfg.clone(),
            id,
            epoch,
            tx.clone(),
            stop.clone(),
        )?);
    }
    drop(tx);
    let mut handles = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-{i}"))
                .spawn(move || w.run())
                .map_err(|e| BenchError::Worker(e.to_string()))?,
        );
    }
    // Merge the workers' seconds; a second is complete when every worker reported it.
    let k = cfg.sockets;
    let mut pending: BTreeMap<u64, (usize, Second)> = BTreeMap::new();
    let mut seconds = Vec::new();
    for (_, t) in rx.iter() {
        let e = pending.entry(t.second).or_insert_with(|| {
            (
                0,
                Second {
                    second: t.second + 1,
                    tally: Tally::default(),
                    outstanding: 0,
                },
            )
        });
        e.0 += 1;
        e.1.tally.add(&t.tally);
        e.1.outstanding += t.outstanding;
        while let Some(entry) = pending.first_entry() {
            if entry.get().0 < k {
                break;
            }
            let (_, s) = entry.remove();
            on_second(&s);
            seconds.push(s);
        }
    }
    // Workers end at different seconds: the last partial seconds.
    for (_, (_, s)) in pending {
        on_second(&s);
        seconds.push(s);
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(
            h.join()
                .map_err(|_| BenchError::Worker("a bench worker panicked".into()))?,
        );
    }
    let elapsed = epoch.elapsed();
    let (rates, durations): (Vec<Option<f64>>, Vec<Duration>) = match &cfg.load {
        Load::Open(steps) => steps.iter().map(|s| (Some(s.rate), s.duration)).unzip(),
        Load::Closed { duration, .. } => (vec![None], vec![*duration]),
    };
    let mut steps: Vec<StepResult> = rates
        .into_iter()
        .zip(durations)
        .map(|(rate, duration)| StepResult {
            rate,
            duration,
            tally: Tally::default(),
        })
        .collect();
    let mut total = Tally::default();
    let mut peak = 0;
    let mut lag = 0;
    let (mut wakeups, mut reads) = (0, 0);
    for r in &results {
        wakeups += r.wakeups;
        reads += r.reads;
        for (s, t) in steps.iter_mut().zip(&r.steps) {
            s.tally.add(t);
            total.add(t);
        }
        peak += r.peak;
        lag = lag.max(r.max_lag_ns);
    }
    Ok(BenchResult {
        steps,
        total,
        seconds,
        elapsed,
        peak_outstanding: peak,
        max_send_lag_us: lag / 1000,
        wakeups,
        reads,
    })
}
