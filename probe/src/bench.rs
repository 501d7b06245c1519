//! The load generator: open loop at fixed rates (optionally stepped, a ramp) or closed loop with
//! a fixed number of outstanding transactions, over K sockets each owned by one thread.
//!
//! Stages per worker thread, data flowing one way: **schedule → send → match → classify →
//! report**.
//! - schedule: [`Schedule`] gives the scheduled send time of each request (open loop), so a
//!   stalled server shows as latency, not as a lower rate: latency is measured from the
//!   *scheduled* time (no coordinated omission). Closed loop starts a request when one ends.
//! - send: [`Template`](crate::fast::Template) patched per request into a
//!   [`SendBatch`](crate::mmsg::SendBatch), one `sendmmsg` per batch.
//! - match: `recvmmsg`, [`decode_response`](crate::fast::decode_response) (fast path, rsip for
//!   anything unusual), then the transaction [`Table`]: an index and a comparison, no lock (each
//!   worker owns its table and socket).
//! - classify: the shared client transaction core ([`ClientTx`]) decides retransmissions (Timer
//!   E / A, can be turned off), timeouts and ACKs; each transaction ends exactly once as
//!   answered (by status code), timed out or failed to send, or is abandoned when the run is
//!   stopped ([`BenchConfig::stop_grace`] after `stop`), so
//!   `sent = answered + timed_out + send_errors + abandoned` always holds.
//! - report: latencies in microseconds into HDR histograms (3 significant figures, no
//!   allocation per record), counted locally per step and per second; one message per worker per
//!   second to the reporting thread.
//!
//! INVITE (what the follow-up core [`crate::dialog`] decides, rendered from the templates): a
//! non-2xx final is ACKed in its transaction; a 2xx (in time, or after the timeout) is ACKed (a
//! branch of its own) and hung up at once with a BYE along its route set, the BYE a non-INVITE
//! transaction of its own in the table whose final status is counted (`bye_refused`,
//! `bye_failures`), and counted as `accepted`; an INVITE that only got provisional responses
//! by the timeout is counted as timed out and CANCELled (a [`Cancel`] with its own Timer E and
//! F kept beside the INVITE's entry until the CANCEL is answered and the INVITE's final
//! response, normally a 487, is ACKed); an INVITE that timed out without a provisional stays
//! until 64·T1 after its first send for a late final. Timeouts are recorded in a second
//! histogram (`hist_all`) at the time they happened.
//!
//! Departure from the RFC, for memory bounded by the outstanding transactions: a transaction is
//! removed from the table at its final response (no Timer K / D lingering), so a retransmitted
//! final response is counted as `late` and not ACKed again (nor a retransmitted 2xx).

use crate::dialog::{
    follow_up, record_route_values, ByeResult, Cancel, CancelEvent, FollowConfig, FollowUp,
    RouteSet,
};
use crate::fast::{contact_uri, decode_response, Scratch, Template, ViaTransport};
use crate::mmsg::{wait_readable, RecvBatch, SendBatch, SendResult};
use crate::transaction::client::{Action, ClientTx, Outcome, State, TransportErrorKind, TxConfig};
use crate::transaction::key::Method;
use crate::transaction::table::{Lookup, Slot, Table};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receive batches read per round at most (ACKs are flushed in between).
const RECV_ROUNDS: usize = 16;
/// Open loop over UDP: the socket is read at least this often (answers carry the kernel's
/// arrival time, so reading later costs no accuracy), and also after every [`BATCH`] requests
/// sent, before any timer fires and while the last answers drain.
const READ_EVERY_NS: u64 = 1_000_000;

/// Datagrams per `sendmmsg`/`recvmmsg`.
pub const BATCH: usize = 64;
/// Largest response read (UDP); longer ones are counted as invalid.
const RECV_SLOT: usize = 4096;
/// Highest latency the histograms hold (longer values are clamped): one hour, in µs.
const HIST_MAX_US: u64 = 3_600_000_000;

/// What each transaction sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMethod {
    /// OPTIONS, expecting 200.
    Options,
    /// INVITE expecting 503 (a CP out of service), then the ACK.
    Invite503,
}

impl BenchMethod {
    pub fn method(self) -> Method {
        match self {
            BenchMethod::Options => Method::Options,
            BenchMethod::Invite503 => Method::Invite,
        }
    }

    /// The status that counts as success by default.
    pub fn expected_status(self) -> u16 {
        match self {
            BenchMethod::Options => 200,
            BenchMethod::Invite503 => 503,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchTransport {
    Udp,
    Tcp,
}

/// One step of an open-loop run: `rate` requests per second for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    pub rate: f64,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Open loop (fixed rate, or a ramp of steps) or closed loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    Open(Vec<Step>),
    Closed {
        max_outstanding: usize,
        duration: Duration,
    },
}

/// Parses `FROM:TO:STEP:STEP_DURATION`, e.g. `1000:20000:1000:10s`.
pub fn parse_ramp(s: &str) -> Result<Vec<Step>, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [from, to, step, dur] = parts[..] else {
        return Err(format!("ramp {s:?}: expected FROM:TO:STEP:STEP_DURATION"));
    };
    let num = |v: &str, what: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format!("ramp {s:?}: {what} {v:?} is not a positive number"))
    };
    let (from, to, step) = (num(from, "FROM")?, num(to, "TO")?, num(step, "STEP")?);
    let duration = humantime::parse_duration(dur)
        .map_err(|e| format!("ramp {s:?}: STEP_DURATION {dur:?}: {e}"))?;
    if duration.is_zero() || to < from {
        return Err(format!(
            "ramp {s:?}: needs TO >= FROM and a non-zero step duration"
        ));
    }
    let mut v = Vec::new();
    let mut r = from;
    while r <= to * (1.0 + 1e-9) && v.len() < 10_000 {
        v.push(Step { rate: r, duration });
        r += step;
    }
    Ok(v)
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Request-URI, e.g. `sip:127.0.0.1:5060`.
    pub uri: String,
    pub target: SocketAddr,
    pub transport: BenchTransport,
    pub method: BenchMethod,
    pub load: Load,
    /// Sockets (one worker thread each).
    pub sockets: usize,
    /// Retransmit per Timer E / A over UDP.
    pub retransmit: bool,
    /// A transaction without a final response this long after its first send times out.
    pub timeout: Duration,
    pub t1: Duration,
    pub t2: Duration,
    /// A ramp step holds while failures are at most this fraction of its requests...
    pub max_failure_ratio: f64,
    /// ... and its p99 latency is below this.
    pub p99_bound: Duration,
    /// Status that is not a failure.
    pub expected_status: u16,
    /// Shortest sleep of an idle worker: requests due sooner wait for it and leave together
    /// (the wait shows in their latency, which is measured from the scheduled time). A worker
    /// never spins: on a small machine a spinning load generator steals the CPU of the server
    /// under test, and every wake-up costs CPU too.
    pub send_window: Duration,
    /// Cap on outstanding transactions (all sockets); a request that would exceed it is not sent
    /// and counted as a send error (`outstanding_limit`).
    pub outstanding_limit: usize,
    /// After `stop` is set: how long transactions in flight may still end; those left then
    /// count as abandoned (so that an interrupted run exits at once, not after Timer F).
    pub stop_grace: Duration,
}

impl BenchConfig {
    pub fn new(uri: &str, target: SocketAddr, method: BenchMethod, load: Load) -> Self {
        BenchConfig {
            uri: uri.to_string(),
            target,
            transport: BenchTransport::Udp,
            method,
            load,
            sockets: 1,
            retransmit: true,
            timeout: crate::consts::TIMER_F,
            t1: crate::consts::T1,
            t2: crate::consts::T2,
            max_failure_ratio: 0.001,
            p99_bound: Duration::from_millis(100),
            expected_status: method.expected_status(),
            outstanding_limit: 1_000_000,
            send_window: Duration::from_micros(100),
            stop_grace: Duration::from_millis(250),
        }
    }
}

/// Invalid configuration.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid bench configuration: {0}")]
    Config(String),
    #[error("cannot open a socket to {target}: {source}")]
    Socket {
        target: SocketAddr,
        source: io::Error,
    },
    #[error("bench worker thread failed: {0}")]
    Worker(String),
}

/// Counters of one step, one second or one whole run.
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
    /// Responses that needed the rsip fallback.
    pub fallbacks: u64,
    /// Latency of answered transactions, µs from the scheduled send time.
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
            fallbacks: 0,
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
        self.fallbacks += o.fallbacks;
        let _ = self.hist.add(&o.hist);
        let _ = self.hist_all.add(&o.hist_all);
        if o.first_send_ns > 0 && (self.first_send_ns == 0 || o.first_send_ns < self.first_send_ns)
        {
            self.first_send_ns = o.first_send_ns;
        }
        self.last_send_ns = self.last_send_ns.max(o.last_send_ns);
    }

    #[inline]
    fn mark_send(&mut self, now_ns: u64) {
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
struct Tick {
    second: u64,
    tally: Tally,
    outstanding: u64,
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

/// Timer entries: (due ns, slot index, slot generation). Most arrive in due order (every
/// transaction's first wakeup is its send time plus the same delay) and go to a FIFO; the rest
/// to a heap. Entries of transactions that ended stay until due and are then skipped, so the
/// queue holds at most rate × (first wakeup delay) stale entries of 16 bytes.
#[derive(Default)]
struct Timers {
    fifo: VecDeque<(u64, Slot)>,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

impl Timers {
    #[inline]
    fn arm(&mut self, due: u64, slot: Slot) {
        if self.fifo.back().is_none_or(|b| b.0 <= due) {
            self.fifo.push_back((due, slot));
        } else {
            self.heap.push(Reverse((due, slot.index, slot.gen)));
        }
    }

    fn next_due(&self) -> Option<u64> {
        let a = self.fifo.front().map(|e| e.0);
        let b = self.heap.peek().map(|e| e.0 .0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest entry, without removing it.
    fn peek(&self) -> Option<(u64, Slot)> {
        let a = self.fifo.front().copied();
        let b = self.heap.peek().map(|Reverse((d, index, gen))| {
            (
                *d,
                Slot {
                    index: *index,
                    gen: *gen,
                },
            )
        });
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// When the first entry whose slot is `live` is due; the entries before it are dropped.
    fn next_live(&mut self, live: impl Fn(Slot) -> bool) -> Option<u64> {
        loop {
            let (due, slot) = self.peek()?;
            if live(slot) {
                return Some(due);
            }
            self.pop_due(due);
        }
    }

    #[inline]
    fn pop_due(&mut self, now: u64) -> Option<Slot> {
        let a = self.fifo.front().map(|e| e.0).filter(|&d| d <= now);
        let b = self.heap.peek().map(|e| e.0 .0).filter(|&d| d <= now);
        match (a, b) {
            (Some(a), Some(b)) if b < a => self.pop_heap(),
            (Some(_), _) => self.fifo.pop_front().map(|e| e.1),
            (None, Some(_)) => self.pop_heap(),
            (None, None) => None,
        }
    }

    fn pop_heap(&mut self) -> Option<Slot> {
        self.heap
            .pop()
            .map(|Reverse((_, index, gen))| Slot { index, gen })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }
}

/// A transaction in flight: the shared core's state plus the bench's bookkeeping.
#[derive(Debug)]
pub struct BenchTx {
    pub tx: ClientTx,
    /// Scheduled send time, ns since the start: latency is measured from here.
    pub sched_ns: u64,
    /// Goes into Call-ID, From tag and CSeq (and the same again on retransmission).
    pub seq: u64,
    pub step: u32,
    /// Index in the worker's [`Aux`] slab ([`NO_AUX`] for none): a BYE's message, or the
    /// CANCEL of an INVITE. Fits in what would be padding.
    pub aux: u32,
}

/// No [`Aux`] entry.
pub const NO_AUX: u32 = u32::MAX;

/// What the rare transactions need beside their table entry, in a slab whose entries (and
/// buffers) are reused: a BYE's message (for its retransmissions), or the CANCEL transaction of
/// an INVITE (`None` once it ended).
#[derive(Default)]
struct Aux {
    cancel: Option<Cancel>,
    msg: Vec<u8>,
}

/// Bytes per outstanding transaction in the table (entry, value and free-list slot), plus one
/// timer entry.
pub const fn bytes_per_outstanding() -> usize {
    crate::transaction::table::entry_size::<BenchTx>()
        + std::mem::size_of::<u32>()
        + std::mem::size_of::<(u64, Slot)>()
}

/// What a pending datagram in the send batch is for.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Request(Slot),
    Ack,
    Bye(Slot),
    /// The CANCEL of the INVITE at this slot.
    Cancel(Slot),
}

/// The socket of one worker.
enum Io {
    Udp {
        sock: UdpSocket,
        rx: RecvBatch,
    },
    Tcp {
        stream: Option<TcpStream>,
        inbuf: Vec<u8>,
        outbuf: Vec<u8>,
    },
}

/// Everything of a worker but its socket: the transactions and the counts.
struct Engine {
    cfg: Arc<BenchConfig>,
    epoch: Instant,
    /// CLOCK_REALTIME at `epoch`, ns since the Unix epoch: converts kernel receive timestamps.
    epoch_real_ns: u64,
    /// The step being sent: what belongs to no transaction (late, stray, invalid) counts there.
    cur_step: usize,
    table: Table<BenchTx>,
    timers: Timers,
    tmpl: Template,
    txcfg: TxConfig,
    /// Timers of the CANCEL and BYE transactions (the follow-up core's).
    follow: FollowConfig,
    /// The Route line of the ACK and BYE of a 2xx, reused.
    route_buf: Vec<u8>,
    txb: SendBatch,
    pending: Vec<Pending>,
    res: SendResult,
    scratch: Scratch,
    aux: Vec<Aux>,
    aux_free: Vec<u32>,
    steps: Vec<Tally>,
    second: Tally,
    seq: u64,
    peak: u64,
    max_lag_ns: u64,
    logged_invalid: bool,
    logged_send: bool,
    logged_limit: bool,
    logged_accepted: bool,
    logged_route: bool,
    logged_bye: bool,
}

struct Worker {
    io: Io,
    eng: Engine,
    schedule: Option<Schedule>,
    /// Closed loop: this worker's share of max_outstanding, and when to stop starting.
    quota: usize,
    end_ns: u64,
    next_tick_ns: u64,
    tick_no: u64,
    ticks: mpsc::Sender<(usize, Tick)>,
    id: usize,
    stop: Arc<AtomicBool>,
    logged_socket: bool,
    wakeups: u64,
    reads: u64,
    /// Open loop over UDP with kernel receive timestamps: the socket is read only when answers
    /// can be waiting ([`READ_EVERY_NS`]); otherwise at every round.
    lazy_reads: bool,
    next_read_ns: u64,
    /// Requests sent since the last read.
    sent_since_read: u64,
    /// The last read stopped at its round limit: more may be waiting.
    read_more: bool,
    /// When `stop` was seen (ns since the start): what is in flight a grace later is abandoned.
    stop_ns: Option<u64>,
}

/// CLOCK_REALTIME (ns since the Unix epoch) at the monotonic instant `epoch`.
fn realtime_at(epoch: Instant) -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (real.saturating_sub(epoch.elapsed())).as_nanos() as u64
}

/// When an idle open-loop worker wakes (ns since the start), given when the next thing is due:
/// the send window after it, less a quarter for the kernel's wake-up latency, so that what is
/// due within the window leaves in the same batch and a send lags its schedule by at most the
/// window; never sooner than a quarter window from now (no spinning), never later than 50 ms.
fn wake_at(now_ns: u64, due_ns: u64, window: Duration) -> u64 {
    let w = window.as_nanos() as u64;
    due_ns
        .saturating_add(w - w / 4)
        .min(now_ns + 50_000_000)
        .max(now_ns + (w / 4).max(1_000))
}

fn ns_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_nanos() as u64
}

impl Worker {
    fn new(
        cfg: Arc<BenchConfig>,
        id: usize,
        epoch: Instant,
        ticks: mpsc::Sender<(usize, Tick)>,
        stop: Arc<AtomicBool>,
    ) -> Result<Worker, BenchError> {
        let sock_err = |source| BenchError::Socket {
            target: cfg.target,
            source,
        };
        let mut stamped = true;
        let (io, local, via) = match cfg.transport {
            BenchTransport::Udp => {
                let s = udp_socket(cfg.target).map_err(sock_err)?;
                let local = s.local_addr().map_err(sock_err)?;
                let rx = RecvBatch::new(BATCH, RECV_SLOT);
                // Latency ends when the kernel got the answer, not when this thread read it.
                if let Err(e) = crate::mmsg::enable_rx_timestamps(s.as_raw_fd()) {
                    tracing::warn!(error = %e, "Bench cannot get receive timestamps; using read times");
                    stamped = false;
                }
                (Io::Udp { sock: s, rx }, local, ViaTransport::Udp)
            }
            BenchTransport::Tcp => {
                let s = TcpStream::connect_timeout(&cfg.target, Duration::from_secs(3))
                    .map_err(sock_err)?;
                s.set_nodelay(true).map_err(sock_err)?;
                s.set_nonblocking(true).map_err(sock_err)?;
                let local = s.local_addr().map_err(sock_err)?;
                let io = Io::Tcp {
                    stream: Some(s),
                    inbuf: Vec::with_capacity(1 << 16),
                    outbuf: Vec::with_capacity(1 << 16),
                };
                (io, local, ViaTransport::Tcp)
            }
        };
        let k = cfg.sockets;
        let (schedule, quota, end_ns, nsteps) = match &cfg.load {
            Load::Open(steps) => (Some(Schedule::new(steps, k, id)), 0, 0, steps.len()),
            Load::Closed {
                max_outstanding,
                duration,
            } => {
                let q = max_outstanding / k + usize::from(id < max_outstanding % k);
                (None, q, duration.as_nanos() as u64, 1)
            }
        };
        let reliable = cfg.transport == BenchTransport::Tcp;
        // Without retransmissions T1 still times how long an INVITE waits for late answers
        // and for the 487 after its CANCEL.
        let txcfg = TxConfig {
            t1: cfg.t1,
            t2: cfg.t2,
            timeout: cfg.timeout,
            reliable,
            retransmit: cfg.retransmit,
        };
        // CANCEL and BYE keep their own Timer E / F whatever `retransmit` says.
        let follow = FollowConfig::new(cfg.t1, cfg.timeout, reliable);
        let nonce: u32 = rand::random();
        let tmpl = Template::new(cfg.method.method(), &cfg.uri, local, via, nonce);
        let lazy_reads = stamped && !reliable && schedule.is_some();
        Ok(Worker {
            io,
            eng: Engine {
                epoch,
                epoch_real_ns: realtime_at(epoch),
                cur_step: 0,
                // Closed loop knows its most outstanding: no growth (and no copy) later.
                table: Table::with_random_prefix().with_capacity(quota),
                timers: Timers {
                    fifo: VecDeque::with_capacity(quota),
                    heap: BinaryHeap::new(),
                },
                tmpl,
                txcfg,
                follow,
                route_buf: Vec::with_capacity(256),
                // Room for a round's ACKs (4 receive batches) on top of a batch of requests.
                txb: SendBatch::new(5 * BATCH),
                pending: Vec::with_capacity(BATCH),
                res: SendResult::default(),
                scratch: Scratch::default(),
                aux: Vec::new(),
                aux_free: Vec::new(),
                steps: (0..nsteps).map(|_| Tally::default()).collect(),
                second: Tally::default(),
                seq: 0,
                peak: 0,
                max_lag_ns: 0,
                logged_invalid: false,
                logged_send: false,
                logged_limit: false,
                logged_accepted: false,
                logged_route: false,
                logged_bye: false,
                cfg,
            },
            schedule,
            quota,
            end_ns,
            next_tick_ns: 1_000_000_000,
            tick_no: 0,
            ticks,
            id,
            stop,
            logged_socket: false,
            wakeups: 0,
            reads: 0,
            lazy_reads,
            next_read_ns: 0,
            sent_since_read: 0,
            read_more: false,
            stop_ns: None,
        })
    }

    /// Runs the schedule, then waits for every transaction's outcome.
    fn run(mut self) -> WorkerResult {
        // Sleeps of tens of microseconds must not be stretched by the default 50 µs slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
        loop {
            let now = Instant::now();
            let now_ns = ns_since(self.eng.epoch, now);
            let mut work = false;
            if self.read_due(now_ns) {
                work = self.receive(now, now_ns);
                self.next_read_ns = now_ns + READ_EVERY_NS;
                self.sent_since_read = 0;
            }
            work |= self.eng.fire_timers(now, now_ns);
            work |= self.start_requests(now, now_ns);
            self.flush(now);
            if now_ns >= self.next_tick_ns {
                self.tick();
            }
            if self.stop_ns.is_none() && self.stop.load(Ordering::Relaxed) {
                self.schedule = None;
                self.quota = 0;
                self.stop_ns = Some(now_ns);
            }
            if self
                .stop_ns
                .is_some_and(|t| now_ns >= t + self.eng.cfg.stop_grace.as_nanos() as u64)
            {
                self.eng.abandon_all();
            }
            let more = match &mut self.schedule {
                Some(s) => s.peek().is_some(),
                None => self.quota > 0 && now_ns < self.end_ns,
            };
            if !more && self.eng.table.is_empty() && self.eng.txb.is_empty() {
                if let Io::Tcp { outbuf, stream, .. } = &self.io {
                    if !outbuf.is_empty() && stream.is_some() {
                        continue;
                    }
                }
                break;
            }
            if let (Io::Udp { .. }, Some(s)) = (&self.io, &mut self.schedule) {
                // Open loop: go round again only for what is due now (a full batch or the read
                // limit stopped it), not because something was done: a wake-up is one send and
                // one sleep. (Closed loop reads again at once after work: at saturation the
                // next answers are usually there, cheaper than a `ppoll` first.)
                let due = self.sent_since_read >= BATCH as u64
                    || s.peek().is_some_and(|(t, _)| t <= now_ns);
                work = due
                    || self.read_more
                    || self.eng.next_live_timer().is_some_and(|t| t <= now_ns);
            }
            if !work {
                self.idle(now_ns, more);
            }
        }
        self.tick();
        WorkerResult {
            steps: self.eng.steps,
            peak: self.eng.peak,
            max_lag_ns: self.eng.max_lag_ns,
            wakeups: self.wakeups,
            reads: self.reads,
        }
    }

    /// Whether this round reads the socket: always, unless reads are lazy (open loop over UDP);
    /// then when answers can be waiting: every [`READ_EVERY_NS`], after a batch of sends, when
    /// a live timer is due (an answer must not time out unread), when the last read was cut
    /// short, and while the last answers drain.
    fn read_due(&mut self, now_ns: u64) -> bool {
        if !self.lazy_reads || self.read_more || now_ns >= self.next_read_ns {
            return true;
        }
        if self.sent_since_read >= BATCH as u64 {
            return true;
        }
        if self.eng.next_live_timer().is_some_and(|t| t <= now_ns) {
            return true;
        }
        self.schedule.as_mut().and_then(|s| s.peek()).is_none()
    }

    /// Waits for a response, the next send, the next timer or the next tick.
    fn idle(&mut self, now_ns: u64, more: bool) {
        if self.lazy_reads {
            self.wakeups += 1;
            let next_send = match &mut self.schedule {
                Some(s) if more => s.peek().map(|(t, _)| t),
                _ => None,
            };
            let mut other = self.next_tick_ns.min(self.next_read_ns);
            if let Some(t) = self.eng.next_live_timer() {
                other = other.min(t);
            }
            let at = wake_at(
                now_ns,
                next_send.unwrap_or(u64::MAX).min(other),
                self.eng.cfg.send_window,
            );
            std::thread::sleep(Duration::from_nanos(at - now_ns));
            return;
        }
        let mut until = self.next_tick_ns;
        if let Some(t) = self.eng.timers.next_due() {
            until = until.min(t);
        }
        if more {
            match &mut self.schedule {
                Some(s) => {
                    if let Some((t, _)) = s.peek() {
                        until = until.min(t);
                    }
                }
                // Closed loop: a slot frees only when a response or timer comes.
                None => until = until.min(self.end_ns),
            }
        }
        self.wakeups += 1;
        let wait = Duration::from_nanos(
            until
                .saturating_sub(now_ns)
                .clamp(self.eng.cfg.send_window.as_nanos() as u64, 50_000_000),
        );
        match &self.io {
            // Open loop over UDP: answers need not wake the worker (their arrival time comes from
            // the kernel), so it sleeps until the next send or timer, reading at least every
            // millisecond. Fewer wake-ups leave the CPU to the server under test.
            Io::Udp { .. } if self.schedule.is_some() => {
                std::thread::sleep(wait.min(Duration::from_millis(1)));
            }
            Io::Udp { sock, .. } => {
                wait_readable(sock.as_raw_fd(), wait);
            }
            Io::Tcp {
                stream: Some(s), ..
            } => {
                wait_readable(s.as_raw_fd(), wait);
            }
            Io::Tcp { stream: None, .. } => std::thread::sleep(wait),
        }
    }

    fn tick(&mut self) {
        let mut t = Tally::default();
        std::mem::swap(&mut t, &mut self.eng.second);
        let _ = self.ticks.send((
            self.id,
            Tick {
                second: self.tick_no,
                tally: t,
                outstanding: self.eng.table.len() as u64,
            },
        ));
        self.tick_no += 1;
        self.next_tick_ns += 1_000_000_000;
    }

    /// Starts the requests that are due (open loop) or allowed (closed loop).
    fn start_requests(&mut self, now: Instant, now_ns: u64) -> bool {
        let mut any = false;
        let tcp_down = matches!(self.io, Io::Tcp { stream: None, .. });
        // At most a batch of new requests per round, so that receiving keeps up.
        let mut room = BATCH;
        while !self.eng.txb.is_full() && room > 0 {
            room -= 1;
            let (sched_ns, step) = match &mut self.schedule {
                Some(s) => match s.peek() {
                    Some((t, step)) if t <= now_ns => {
                        s.advance();
                        (t, step)
                    }
                    _ => break,
                },
                None => {
                    if self.eng.table.len() >= self.quota || now_ns >= self.end_ns {
                        break;
                    }
                    (now_ns, 0)
                }
            };
            any = true;
            self.sent_since_read += 1;
            self.eng.start(now, now_ns, sched_ns, step, tcp_down);
        }
        any
    }

    /// Reads responses (a few batches at most, so sending keeps its schedule).
    fn receive(&mut self, now: Instant, now_ns: u64) -> bool {
        let mut any = false;
        match &mut self.io {
            Io::Udp { sock, rx } => {
                // Drain what has arrived first (bounded): answers left in the socket buffer
                // would age there and, past its size, be lost.
                self.read_more = false;
                for round in 0..RECV_ROUNDS {
                    self.reads += 1;
                    let n = match rx.recv(sock.as_raw_fd(), libc::MSG_DONTWAIT) {
                        Ok(n) => n,
                        Err(e) => {
                            // ICMP errors of a connected socket surface here; the transaction
                            // they belong to times out (or fails on its next send).
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
                            ) {
                                self.eng.steps[self.eng.cur_step].unreachable += 1;
                                self.eng.second.unreachable += 1;
                            }
                            if !self.logged_socket {
                                self.logged_socket = true;
                                tracing::warn!(target = %self.eng.cfg.target, error = %e,
                                    "Bench socket error");
                            }
                            0
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    any = true;
                    // The receive time of this batch, read after the call returned: the loop's
                    // own `now` is older than a datagram that arrived since, and a kernel time
                    // after it would be refused below as out of range (a loaded machine showed
                    // 50 ms answers as 49.5 ms that way).
                    let (now, now_ns) = {
                        let t = Instant::now();
                        (t, ns_since(self.eng.epoch, t))
                    };
                    for i in 0..n {
                        if rx.truncated(i) {
                            self.eng.invalid("truncated");
                            continue;
                        }
                        // The kernel's arrival time, unless it is out of range (a clock step).
                        let rx_ns = rx
                            .timestamp_ns(i)
                            .and_then(|t| t.checked_sub(self.eng.epoch_real_ns))
                            .filter(|&t| t <= now_ns)
                            .unwrap_or(now_ns);
                        self.eng.on_response(rx.get(i), now, rx_ns);
                    }
                    // Keep room for the next batch's ACKs (and BYEs: two per accepted call).
                    if self.eng.txb.len() + 2 * BATCH > self.eng.txb.capacity() {
                        self.eng.flush_udp(sock.as_raw_fd(), now);
                    }
                    // A short batch emptied the socket: spare the system call that would say so.
                    if n < BATCH {
                        break;
                    }
                    self.read_more = round + 1 == RECV_ROUNDS;
                }
            }
            Io::Tcp {
                stream,
                inbuf,
                outbuf,
            } => {
                let Some(s) = stream else { return false };
                let mut closed = None;
                loop {
                    let len = inbuf.len();
                    inbuf.resize(len + 65536, 0);
                    self.reads += 1;
                    match s.read(&mut inbuf[len..]) {
                        Ok(0) => {
                            inbuf.truncate(len);
                            closed = Some(io::Error::from(io::ErrorKind::UnexpectedEof));
                            break;
                        }
                        Ok(n) => {
                            inbuf.truncate(len + n);
                            any = true;
                            if n < 65536 {
                                break;
                            }
                        }
                        Err(e) => {
                            inbuf.truncate(len);
                            if e.kind() != io::ErrorKind::WouldBlock
                                && e.kind() != io::ErrorKind::Interrupted
                            {
                                closed = Some(e);
                            }
                            break;
                        }
                    }
                }
                // Read after the loop's `now`: what arrived is timed from now on, never before.
                let (now, now_ns) = if any {
                    let t = Instant::now();
                    (t, ns_since(self.eng.epoch, t))
                } else {
                    (now, now_ns)
                };
                let mut at = 0;
                loop {
                    match frame(&inbuf[at..]) {
                        Frame::Complete(n) => {
                            self.eng.on_response(&inbuf[at..at + n], now, now_ns);
                            at += n;
                        }
                        Frame::Incomplete => break,
                        Frame::Invalid => {
                            self.eng.invalid("bad TCP framing");
                            at = inbuf.len();
                            closed = Some(io::Error::other("bad framing"));
                            break;
                        }
                    }
                }
                inbuf.drain(..at);
                if let Some(e) = closed {
                    *stream = None;
                    inbuf.clear();
                    outbuf.clear();
                    self.eng
                        .connection_lost(&e, now, TransportErrorKind::ConnectionClosed);
                }
            }
        }
        any
    }

    /// Sends the batch: one `sendmmsg` (UDP) or a write of the stream buffer (TCP).
    fn flush(&mut self, now: Instant) {
        match &mut self.io {
            Io::Udp { sock, .. } => self.eng.flush_udp(sock.as_raw_fd(), now),
            Io::Tcp { stream, outbuf, .. } => {
                for i in 0..self.eng.txb.len() {
                    outbuf.extend_from_slice(self.eng.txb.get(i));
                }
                self.eng.txb.clear();
                self.eng.pending.clear();
                let Some(s) = stream else {
                    outbuf.clear();
                    return;
                };
                let mut failed = None;
                while !outbuf.is_empty() {
                    match s.write(outbuf) {
                        Ok(0) => {
                            failed = Some(io::Error::from(io::ErrorKind::WriteZero));
                            break;
                        }
                        Ok(n) => {
                            outbuf.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    *stream = None;
                    outbuf.clear();
                    let kind = TransportErrorKind::from_io(&e);
                    self.eng.connection_lost(&e, now, kind);
                }
            }
        }
    }
}

impl Engine {
    /// Starts one transaction scheduled at `sched_ns` (or counts it as a send error).
    #[inline]
    fn start(&mut self, now: Instant, now_ns: u64, sched_ns: u64, step: usize, down: bool) {
        self.max_lag_ns = self.max_lag_ns.max(now_ns.saturating_sub(sched_ns));
        self.cur_step = step;
        let st = &mut self.steps[step];
        st.sent += 1;
        st.mark_send(now_ns);
        self.second.sent += 1;
        if down || self.table.len() * self.cfg.sockets >= self.cfg.outstanding_limit {
            st.send_errors += 1;
            self.second.send_errors += 1;
            if !down {
                st.limited += 1;
                self.second.limited += 1;
                if !self.logged_limit {
                    self.logged_limit = true;
                    tracing::warn!(
                        limit = self.cfg.outstanding_limit,
                        "Bench outstanding limit reached: further requests count as send errors"
                    );
                }
            }
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let tx = ClientTx::new(self.tmpl.method(), &self.txcfg, now);
        let wake = tx.next_wakeup();
        let (slot, branch) = self.table.insert(
            self.tmpl.method(),
            BenchTx {
                tx,
                sched_ns,
                seq,
                step: step as u32,
                aux: NO_AUX,
            },
        );
        if let Some(w) = wake {
            self.timers.arm(ns_since(self.epoch, w), slot);
        }
        self.peak = self.peak.max(self.table.len() as u64);
        self.tmpl
            .write(self.txb.next_slot(), branch.as_bytes(), seq);
        self.txb.commit(None);
        self.pending.push(Pending::Request(slot));
    }

    /// When the next timer of a live transaction is due; the entries of ended transactions
    /// before it are dropped, so they wake nobody.
    fn next_live_timer(&mut self) -> Option<u64> {
        let table = &self.table;
        self.timers.next_live(|s| table.method(s).is_some())
    }

    /// Timer E / A, timeouts, and the timers of BYE and CANCEL transactions.
    fn fire_timers(&mut self, now: Instant, now_ns: u64) -> bool {
        let mut any = false;
        while !self.txb.is_full() {
            let Some(slot) = self.timers.pop_due(now_ns) else {
                break;
            };
            let Some(method) = self.table.method(slot) else {
                continue; // ended already
            };
            let Some(bt) = self.table.get_mut(slot) else {
                continue;
            };
            any = true;
            let step = bt.step as usize;
            if bt.aux != NO_AUX && method == Method::Invite {
                self.cancelled_timer(slot, now);
                continue;
            }
            match bt.tx.on_timer(now) {
                Action::Retransmit => {
                    let seq = bt.seq;
                    let aux = bt.aux;
                    if let Some(w) = bt.tx.next_wakeup() {
                        self.timers.arm(ns_since(self.epoch, w), slot);
                    }
                    self.steps[step].retransmits += 1;
                    self.second.retransmits += 1;
                    if method == Method::Bye {
                        let out = self.txb.next_slot();
                        out.clear();
                        out.extend_from_slice(&self.aux[aux as usize].msg);
                        self.txb.commit(None);
                        self.pending.push(Pending::Bye(slot));
                    } else {
                        let branch = self.table.branch(slot);
                        self.tmpl
                            .write(self.txb.next_slot(), branch.as_bytes(), seq);
                        self.txb.commit(None);
                        self.pending.push(Pending::Request(slot));
                    }
                }
                Action::Done {
                    outcome: Outcome::Timeout { .. },
                    send,
                } => {
                    if method == Method::Bye {
                        self.bye_ended(step, ByeResult::NoAnswer);
                        self.remove(slot);
                        continue;
                    }
                    // A timeout counts in `hist_all` at the time it happened.
                    let us = (now_ns.saturating_sub(bt.sched_ns) / 1000).max(1);
                    let wake = bt.tx.next_wakeup();
                    let st = &mut self.steps[step];
                    st.timed_out += 1;
                    st.hist_all.saturating_record(us);
                    self.second.timed_out += 1;
                    self.second.hist_all.saturating_record(us);
                    match follow_up(send, None) {
                        FollowUp::Cancel => self.start_cancel(slot, step, now),
                        // An INVITE stays until 64·T1 after its first send (Timer B) so that a
                        // late final is still ACKed, and a late 2xx ACKed, hung up and counted
                        // `accepted`.
                        _ if method == Method::Invite && wake.is_some() => {
                            if let Some(w) = wake {
                                self.timers.arm(ns_since(self.epoch, w), slot);
                            }
                        }
                        _ => self.remove(slot),
                    }
                }
                Action::Wait => {
                    if let Some(w) = bt.tx.next_wakeup() {
                        self.timers.arm(ns_since(self.epoch, w), slot);
                    }
                }
                // Final and transport outcomes are handled (and the transaction removed) where
                // they happen, so nothing else is live here.
                _ => self.remove(slot),
            }
        }
        any
    }

    /// Removes a transaction and frees its [`Aux`] entry.
    fn remove(&mut self, slot: Slot) {
        if let Some(bt) = self.table.remove(slot) {
            if bt.aux != NO_AUX {
                let a = &mut self.aux[bt.aux as usize];
                a.cancel = None;
                a.msg.clear();
                self.aux_free.push(bt.aux);
            }
        }
    }

    fn alloc_aux(&mut self) -> u32 {
        match self.aux_free.pop() {
            Some(i) => i,
            None => {
                self.aux.push(Aux::default());
                (self.aux.len() - 1) as u32
            }
        }
    }

    /// The INVITE at `slot` timed out with only provisional responses: CANCEL it (its own
    /// non-INVITE transaction, same branch) and keep the entry for the CANCEL's answer and the
    /// INVITE's final response (a 487) to ACK.
    fn start_cancel(&mut self, slot: Slot, step: usize, now: Instant) {
        let i = self.alloc_aux();
        let cancel = Cancel::start(&self.follow, now);
        let Some(bt) = self.table.get_mut(slot) else {
            self.aux_free.push(i);
            return;
        };
        bt.aux = i;
        let seq = bt.seq;
        let mut wake = bt.tx.next_wakeup();
        if let Some(w) = cancel.next_wakeup() {
            wake = Some(wake.map_or(w, |v| v.min(w)));
        }
        self.aux[i as usize].cancel = Some(cancel);
        if let Some(w) = wake {
            self.timers.arm(ns_since(self.epoch, w), slot);
        }
        self.steps[step].cancels += 1;
        self.second.cancels += 1;
        self.send_cancel(slot, seq);
    }

    fn send_cancel(&mut self, slot: Slot, seq: u64) {
        // Called with room in the batch (timers stop when it is full, responses leave room).
        if self.txb.is_full() {
            return; // the CANCEL's Timer E sends it (UDP)
        }
        let branch = self.table.branch(slot);
        self.tmpl
            .write_cancel(self.txb.next_slot(), branch.as_bytes(), seq);
        self.txb.commit(None);
        self.pending.push(Pending::Cancel(slot));
    }

    /// A timer of a cancelled INVITE: the INVITE's end (64·T1 after the CANCEL) or the
    /// CANCEL's Timer E / Timer F. One timer entry per transaction: the earlier of the two.
    fn cancelled_timer(&mut self, slot: Slot, now: Instant) {
        let Some(bt) = self.table.get_mut(slot) else {
            return;
        };
        let step = bt.step as usize;
        let seq = bt.seq;
        let Some(c) = self.aux[bt.aux as usize].cancel.as_mut() else {
            self.remove(slot);
            return;
        };
        if bt.tx.next_wakeup().is_some_and(|w| w <= now)
            && bt.tx.on_timer(now) == Action::Terminated
        {
            // No final response to the INVITE within 64·T1 of the CANCEL: give up on it.
            if c.pending() {
                self.steps[step].cancel_failures += 1;
                self.second.cancel_failures += 1;
            }
            self.remove(slot);
            return;
        }
        let mut resend = false;
        match c.on_timer(now) {
            CancelEvent::Retransmit => resend = true,
            CancelEvent::Failed => {
                self.steps[step].cancel_failures += 1;
                self.second.cancel_failures += 1;
            }
            _ => {}
        }
        if c.done() {
            self.remove(slot);
            return;
        }
        let mut wake = bt.tx.next_wakeup();
        if let Some(w) = c.next_wakeup() {
            wake = Some(wake.map_or(w, |v| v.min(w)));
        }
        if let Some(w) = wake {
            self.timers.arm(ns_since(self.epoch, w), slot);
        }
        if resend {
            self.steps[step].retransmits += 1;
            self.second.retransmits += 1;
            self.send_cancel(slot, seq);
        }
    }

    fn invalid(&mut self, why: &'static str) {
        self.second.invalid += 1;
        self.steps[self.cur_step].invalid += 1;
        if !self.logged_invalid {
            self.logged_invalid = true;
            tracing::warn!(target = %self.cfg.target, reason = why,
                "Bench ignores a message that is not a usable SIP response");
        }
    }

    /// One response datagram or TCP message: match, classify, record, ACK.
    #[inline]
    fn on_response(&mut self, msg: &[u8], now: Instant, now_ns: u64) {
        // Moved out for the call (no allocation) so that the response can borrow it.
        let mut scratch = std::mem::take(&mut self.scratch);
        self.on_response_in(msg, &mut scratch, now, now_ns);
        self.scratch = scratch;
    }

    #[inline]
    fn on_response_in(&mut self, msg: &[u8], scratch: &mut Scratch, now: Instant, now_ns: u64) {
        let mut fallbacks = 0;
        let r = match decode_response(msg, scratch, &mut fallbacks) {
            Ok(r) => r,
            Err(e) => {
                self.second.fallbacks += fallbacks;
                self.steps[self.cur_step].fallbacks += fallbacks;
                self.invalid(e.as_str());
                return;
            }
        };
        let slot = match self.table.lookup(r.branch, r.method) {
            Lookup::Found(slot) => slot,
            Lookup::Late => {
                self.second.late += 1;
                self.steps[self.cur_step].late += 1;
                return;
            }
            Lookup::Stray => {
                self.second.stray += 1;
                self.steps[self.cur_step].stray += 1;
                return;
            }
        };
        let tx_method = self.table.method(slot);
        let Some(bt) = self.table.get_mut(slot) else {
            return;
        };
        let step = bt.step as usize;
        let seq = bt.seq;
        let st = &mut self.steps[step];
        st.fallbacks += fallbacks;
        self.second.fallbacks += fallbacks;
        if r.method == Method::Cancel {
            // The answer to our CANCEL (same branch as the INVITE).
            let c = (bt.aux != NO_AUX)
                .then(|| self.aux[bt.aux as usize].cancel.as_mut())
                .flatten()
                .filter(|c| c.pending());
            match c.map(|c| (c.on_response(r.status, now), c.done())) {
                Some((_, true)) => self.remove(slot),
                Some(_) => {}
                None => {
                    st.late += 1;
                    self.second.late += 1;
                }
            }
            return;
        }
        if tx_method == Some(Method::Bye) {
            if let Some(res) = ByeResult::of(&bt.tx.on_response(r.status, now)) {
                self.remove(slot);
                self.bye_ended(step, res);
            }
            return;
        }
        match bt.tx.on_response(r.status, now) {
            Action::Wait => {
                st.provisional += 1;
                self.second.provisional += 1;
            }
            Action::Done { outcome, send } => {
                let status = outcome.status().unwrap_or(r.status);
                let us = (now_ns.saturating_sub(bt.sched_ns) / 1000).max(1);
                let i = (status as usize).saturating_sub(100).min(599);
                st.status[i] += 1;
                st.hist.saturating_record(us);
                st.hist_all.saturating_record(us);
                self.second.status[i] += 1;
                self.second.hist.saturating_record(us);
                self.second.hist_all.saturating_record(us);
                self.remove(slot);
                match follow_up(send, Some(r.status)) {
                    FollowUp::AckInTx => self.ack(r.branch, seq, r.to, step),
                    FollowUp::Accept => self.hang_up(msg, slot, &r, seq, step, now, now_ns),
                    _ => {}
                }
            }
            // Only an INVITE that timed out (cancelled or not) is still in the table after its
            // outcome: its final response is late.
            Action::Late { send, .. } => {
                st.late += 1;
                self.second.late += 1;
                match follow_up(send, Some(r.status)) {
                    FollowUp::AckInTx => {
                        let aux = bt.aux;
                        self.ack(r.branch, seq, r.to, step);
                        let done = match self
                            .aux
                            .get_mut(aux as usize)
                            .and_then(|a| a.cancel.as_mut())
                        {
                            Some(c) => {
                                c.on_invite_final();
                                c.done()
                            }
                            None => true,
                        };
                        if done {
                            self.remove(slot);
                        }
                    }
                    FollowUp::Accept => {
                        // The call was accepted after all (after the timeout, or a 2xx that
                        // crossed the CANCEL).
                        self.remove(slot);
                        self.hang_up(msg, slot, &r, seq, step, now, now_ns);
                    }
                    _ => {}
                }
            }
            Action::Duplicate { send } => {
                st.late += 1;
                self.second.late += 1;
                if follow_up(send, Some(r.status)) == FollowUp::AckInTx {
                    self.ack(r.branch, seq, r.to, step);
                }
            }
            _ => {}
        }
    }

    /// The ACK of a non-2xx final response, in its transaction.
    fn ack(&mut self, branch: &[u8], seq: u64, to: &[u8], step: usize) {
        self.steps[step].acks += 1;
        self.second.acks += 1;
        // The batch has room for a round's ACKs; should it not, the ACK is counted as not sent
        // (the transaction is answered either way).
        if self.txb.is_full() {
            self.steps[step].ack_send_errors += 1;
            self.second.ack_send_errors += 1;
        } else {
            self.tmpl.write_ack(self.txb.next_slot(), branch, seq, to);
            self.txb.commit(None);
            self.pending.push(Pending::Ack);
        }
    }

    /// A 2xx to the INVITE of `inv` (already removed): ACK it with a branch of its own and hang
    /// up at once with a BYE, a transaction of its own. Counted as `accepted`.
    #[allow(clippy::too_many_arguments)]
    fn hang_up(
        &mut self,
        msg: &[u8],
        inv: Slot,
        r: &crate::fast::Response<'_>,
        seq: u64,
        step: usize,
        now: Instant,
        now_ns: u64,
    ) {
        // The route set of the 2xx: Record-Route reversed into Route, the Contact as
        // Request-URI (loose routing) or the first route (strict).
        let contact = contact_uri(msg);
        let rr = record_route_values(msg);
        let rs = match RouteSet::of_2xx(rr.as_slice().iter().copied(), contact) {
            Ok(rs) => rs,
            Err(e) => {
                if !self.logged_route {
                    self.logged_route = true;
                    tracing::warn!(target = %self.cfg.target, error = %e,
                        "Bench cannot follow the route set of a 2xx: ACK and BYE go to its Contact without Route");
                }
                RouteSet::direct(contact)
            }
        };
        let ruri = rs.request_uri();
        let mut route = std::mem::take(&mut self.route_buf);
        route.clear();
        rs.write_route_header(&mut route);
        self.steps[step].accepted += 1;
        self.second.accepted += 1;
        if !self.logged_accepted {
            self.logged_accepted = true;
            tracing::error!(target = %self.cfg.target, status = r.status,
                "Bench INVITE accepted: ACK and BYE sent at once; further ones are only counted");
        }
        // The ACK of a 2xx is a transaction of its own: the INVITE's branch plus a suffix.
        let ib = self.table.branch(inv);
        let mut ack_branch = [0u8; crate::transaction::table::MAX_BRANCH + 2];
        let n = ib.as_bytes().len();
        ack_branch[..n].copy_from_slice(ib.as_bytes());
        ack_branch[n..n + 2].copy_from_slice(b"-a");
        self.steps[step].acks += 1;
        self.second.acks += 1;
        if self.txb.is_full() {
            self.steps[step].ack_send_errors += 1;
            self.second.ack_send_errors += 1;
        } else {
            self.tmpl.write_ack_2xx(
                self.txb.next_slot(),
                ruri,
                &ack_branch[..n + 2],
                &route,
                seq,
                r.to,
            );
            self.txb.commit(None);
            self.pending.push(Pending::Ack);
        }
        let i = self.alloc_aux();
        let tx = self.follow.bye_tx(now);
        let wake = tx.next_wakeup();
        let (slot, branch) = self.table.insert(
            Method::Bye,
            BenchTx {
                tx,
                sched_ns: now_ns,
                seq,
                step: step as u32,
                aux: i,
            },
        );
        let m = &mut self.aux[i as usize].msg;
        self.tmpl
            .write_bye(m, ruri, branch.as_bytes(), &route, seq, r.to);
        self.route_buf = route;
        if let Some(w) = wake {
            self.timers.arm(ns_since(self.epoch, w), slot);
        }
        self.peak = self.peak.max(self.table.len() as u64);
        self.steps[step].byes += 1;
        self.second.byes += 1;
        // Without room now, its Timer E sends it (UDP).
        if !self.txb.is_full() {
            let out = self.txb.next_slot();
            out.clear();
            out.extend_from_slice(&self.aux[i as usize].msg);
            self.txb.commit(None);
            self.pending.push(Pending::Bye(slot));
        }
    }

    fn flush_udp(&mut self, fd: i32, now: Instant) {
        if self.txb.is_empty() {
            return;
        }
        self.txb.send(fd, &mut self.res);
        if self.res.unreachable > 0 {
            let u = self.res.unreachable as u64;
            self.steps[self.cur_step].unreachable += u;
            self.second.unreachable += u;
        }
        for k in 0..self.res.failed.len() {
            let (i, ref e) = self.res.failed[k];
            let kind = TransportErrorKind::from_io(e);
            if !self.logged_send {
                self.logged_send = true;
                tracing::warn!(target = %self.cfg.target, error = %e, "Bench send failed");
            }
            match self.pending[i] {
                Pending::Request(slot) | Pending::Bye(slot) => self.fail(slot, kind, now),
                Pending::Cancel(slot) => self.cancel_failed(slot),
                Pending::Ack => {
                    self.steps[self.cur_step].ack_send_errors += 1;
                    self.second.ack_send_errors += 1;
                }
            }
        }
        self.pending.clear();
    }

    fn cancel_failed(&mut self, slot: Slot) {
        let Some(bt) = self.table.get_mut(slot) else {
            return;
        };
        let step = bt.step as usize;
        let Some(c) = (bt.aux != NO_AUX)
            .then(|| self.aux[bt.aux as usize].cancel.as_mut())
            .flatten()
        else {
            return;
        };
        if c.on_send_error() == CancelEvent::Failed {
            self.steps[step].cancel_failures += 1;
            self.second.cancel_failures += 1;
        }
        if c.done() {
            self.remove(slot);
        }
    }

    /// A BYE ended: only a 2xx hung the call up; a refused or unanswered BYE is counted (and
    /// logged once): the call may still be up.
    fn bye_ended(&mut self, step: usize, res: ByeResult) {
        let (st, sec) = (&mut self.steps[step], &mut self.second);
        match res {
            ByeResult::HungUp { .. } => return,
            ByeResult::Refused { .. } => {
                st.bye_refused += 1;
                sec.bye_refused += 1;
            }
            ByeResult::NoAnswer | ByeResult::NotSent(_) => {
                st.bye_failures += 1;
                sec.bye_failures += 1;
            }
        }
        if !self.logged_bye {
            self.logged_bye = true;
            tracing::error!(target = %self.cfg.target, result = res.as_str(),
                status = res.status().unwrap_or(0),
                "Bench BYE of an accepted call failed: the call may still be up; further ones are only counted");
        }
    }

    /// A request (or a BYE) could not be sent: its transaction ends as a send error (a BYE's as
    /// a BYE failure); a cancelled INVITE's CANCEL fails with it.
    fn fail(&mut self, slot: Slot, kind: TransportErrorKind, now: Instant) {
        let method = self.table.method(slot);
        let Some(bt) = self.table.get_mut(slot) else {
            return;
        };
        let step = bt.step as usize;
        if bt.aux != NO_AUX && method == Some(Method::Invite) {
            // Outcome reported already (timed out): only its CANCEL is left.
            self.cancel_failed(slot);
            self.remove(slot);
            return;
        }
        if let Action::Done { .. } = bt.tx.on_transport_error(kind, now) {
            self.remove(slot);
            if method == Some(Method::Bye) {
                self.bye_ended(step, ByeResult::NotSent(kind));
            } else {
                self.steps[step].send_errors += 1;
                self.second.send_errors += 1;
            }
        }
    }

    /// The run was stopped and its grace ran out: every transaction still in flight is dropped.
    /// A request without its outcome counts as abandoned; a BYE as a BYE failure (the call may
    /// still be up); an INVITE that already timed out (waiting for a late final or its CANCEL)
    /// has its outcome and is only dropped.
    fn abandon_all(&mut self) {
        let slots: Vec<Slot> = self.table.slots().collect();
        for slot in slots {
            let method = self.table.method(slot);
            let Some(bt) = self.table.get_mut(slot) else {
                continue;
            };
            let step = bt.step as usize;
            let in_flight = matches!(bt.tx.state(), State::Calling | State::Proceeding);
            self.remove(slot);
            if method == Some(Method::Bye) {
                self.bye_ended(step, ByeResult::NoAnswer);
            } else if in_flight {
                self.steps[step].abandoned += 1;
                self.second.abandoned += 1;
            }
        }
    }

    /// The TCP connection is gone: every outstanding transaction failed.
    fn connection_lost(&mut self, e: &io::Error, now: Instant, kind: TransportErrorKind) {
        tracing::warn!(target = %self.cfg.target, error = %e, outstanding = self.table.len(),
            "Bench TCP connection lost: outstanding transactions count as send errors");
        let slots: Vec<Slot> = self.table.slots().collect();
        for s in slots {
            self.fail(s, kind, now);
        }
    }
}

/// Framing of SIP over a stream: the head ends at CRLFCRLF, the body is Content-Length long.
enum Frame {
    Complete(usize),
    Incomplete,
    Invalid,
}

fn frame(buf: &[u8]) -> Frame {
    // Keep-alive CRLFs between messages (RFC 5626) are skipped as a message of their own.
    if buf.starts_with(b"\r\n") {
        return Frame::Complete(2);
    }
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > 65536 {
            Frame::Invalid
        } else {
            Frame::Incomplete
        };
    };
    let head = &buf[..end + 2];
    let mut len = 0usize;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = line[colon + 1..].trim_ascii();
            match std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) {
                Some(n) => len = n,
                None => return Frame::Invalid,
            }
        }
    }
    let total = end + 4 + len;
    if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Incomplete
    }
}

struct WorkerResult {
    steps: Vec<Tally>,
    peak: u64,
    max_lag_ns: u64,
    wakeups: u64,
    reads: u64,
}

fn udp_socket(target: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    crate::mmsg::deep_buffers(&s);
    let any: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    s.bind(&any.into())?;
    s.connect(&target.into())?;
    Ok(s.into())
}

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

fn validate(cfg: &BenchConfig) -> Result<(), BenchError> {
    let bad = |m: String| Err(BenchError::Config(m));
    if cfg.sockets == 0 || cfg.sockets > 256 {
        return bad(format!("sockets must be 1..=256, got {}", cfg.sockets));
    }
    if cfg.send_window > Duration::from_millis(10) {
        return bad(format!("send window {:?} is over 10ms", cfg.send_window));
    }
    if cfg.method == BenchMethod::Invite503 && (200..300).contains(&cfg.expected_status) {
        return bad(format!(
            "expected status {} for INVITE: an accepted call is always a failure (ACKed, hung up \
             and counted as accepted)",
            cfg.expected_status
        ));
    }
    if cfg.timeout.is_zero() {
        return bad("timeout must be above zero".into());
    }
    match &cfg.load {
        Load::Open(steps) => {
            if steps.is_empty() {
                return bad("no rate given".into());
            }
            for s in steps {
                if !(s.rate > 0.0 && s.rate.is_finite()) || s.duration.is_zero() {
                    return bad(format!(
                        "rate {} for {:?}: needs a positive rate and duration",
                        s.rate, s.duration
                    ));
                }
            }
        }
        Load::Closed {
            max_outstanding,
            duration,
        } => {
            if *max_outstanding == 0 || duration.is_zero() {
                return bad("max-outstanding and duration must be above zero".into());
            }
        }
    }
    Ok(())
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
    fn ramp_parses() {
        let v = parse_ramp("1000:3000:1000:2s").unwrap();
        assert_eq!(
            v.iter().map(|s| s.rate).collect::<Vec<_>>(),
            [1000.0, 2000.0, 3000.0]
        );
        assert!(v.iter().all(|s| s.duration == Duration::from_secs(2)));
        assert!(parse_ramp("1000:3000:1000").is_err());
        assert!(parse_ramp("3000:1000:1000:1s").is_err());
        assert!(parse_ramp("1000:3000:0:1s").is_err());
        assert!(parse_ramp("1000:3000:x:1s").is_err());
        assert!(parse_ramp("1000:3000:100:0s").is_err());
    }

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

    #[test]
    fn timers_of_ended_transactions_wake_nobody() {
        let mut t = Timers::default();
        let mut table: Table<u32> = Table::with_random_prefix();
        let (a, _) = table.insert(Method::Options, 1);
        let (b, _) = table.insert(Method::Options, 2);
        t.arm(10, a);
        t.arm(20, b);
        t.arm(5, b); // out of order: to the heap
        assert_eq!(t.peek(), Some((5, b)));
        table.remove(b);
        // b's entries are skipped (and dropped) as they reach the front, a's is kept.
        let live = |s| table.method(s).is_some();
        assert_eq!(t.next_live(live), Some(10));
        assert_eq!(t.len(), 2);
        assert_eq!(t.pop_due(10), Some(a));
        assert_eq!(t.next_live(live), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn timers_pop_in_due_order() {
        let mut t = Timers::default();
        let s = |i| Slot { index: i, gen: 0 };
        t.arm(10, s(1));
        t.arm(20, s(2));
        t.arm(15, s(3)); // out of order: heap
        t.arm(30, s(4));
        assert_eq!(t.len(), 4);
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.pop_due(9), None);
        let mut got = Vec::new();
        while let Some(x) = t.pop_due(100) {
            got.push(x.index);
        }
        assert_eq!(got, [1, 3, 2, 4]);
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn framing_by_content_length() {
        let m = b"SIP/2.0 200 OK\r\nContent-Length: 4\r\n\r\nabcdSIP/2.0";
        assert!(matches!(frame(m), Frame::Complete(41)));
        assert!(matches!(frame(&m[..40]), Frame::Incomplete));
        assert!(matches!(frame(b"\r\nSIP"), Frame::Complete(2)));
        assert!(matches!(
            frame(b"SIP/2.0 200 OK\r\nl: x\r\n\r\n"),
            Frame::Invalid
        ));
    }

    #[test]
    fn memory_per_outstanding_transaction_fits() {
        eprintln!(
            "table entry {} + free list 4 + timer 16 = {} bytes per outstanding transaction",
            crate::transaction::table::entry_size::<BenchTx>(),
            bytes_per_outstanding()
        );
        assert!(
            bytes_per_outstanding() <= 256,
            "{}",
            bytes_per_outstanding()
        );
    }

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
