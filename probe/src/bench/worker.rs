//! One worker thread: its socket (UDP or TCP), its [`Engine`], its share of the schedule; the
//! loop that reads, fires timers, sends and sleeps.

use super::counts::Counts;
use super::engine::{Clock, Engine, Outbox, Txs};
use super::logs::{Logged, Once};
use super::schedule::wake_at;
use super::tally::Tick;
use super::{BenchConfig, BenchError, BenchTransport, Load, Schedule, Tally, BATCH};
use crate::dialog::FollowConfig;
use crate::fast::Template;
use crate::mmsg::{wait_readable, RecvBatch};
use crate::sip::Transport;
use crate::sip::{frame, Frame};
use crate::transaction::client::{TransportErrorKind, TxConfig};
use crate::transport::Source;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receive batches read per round at most (ACKs are flushed in between).
pub(super) const RECV_ROUNDS: usize = 16;
/// Open loop over UDP: the socket is read at least this often (answers carry the kernel's
/// arrival time, so reading later costs no accuracy), and also after every [`BATCH`] requests
/// sent, before any timer fires and while the last answers drain.
pub(super) const READ_EVERY_NS: u64 = 1_000_000;
/// Largest response read (UDP); longer ones are counted as invalid.
pub(super) const RECV_SLOT: usize = 4096;

/// The socket of one worker.
pub(super) enum Io {
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

pub(super) struct Worker {
    pub(super) io: Io,
    pub(super) eng: Engine,
    pub(super) schedule: Option<Schedule>,
    /// Closed loop: this worker's share of max_outstanding, and when to stop starting.
    pub(super) quota: usize,
    pub(super) end_ns: u64,
    pub(super) ticker: Ticker,
    pub(super) read: ReadPolicy,
    pub(super) stop: Arc<AtomicBool>,
    /// When `stop` was seen (ns since the start): what is in flight a grace later is abandoned.
    pub(super) stop_ns: Option<u64>,
    /// Times the worker slept.
    pub(super) wakeups: u64,
}

/// The once-a-second report of a worker to the reporting thread.
pub(super) struct Ticker {
    pub(super) id: usize,
    pub(super) tx: mpsc::Sender<(usize, Tick)>,
    /// The second being counted, and when it ends (ns since the start).
    pub(super) no: u64,
    pub(super) next_ns: u64,
}

/// When the socket is read.
pub(super) struct ReadPolicy {
    /// Open loop over UDP with kernel receive timestamps: the socket is read only when answers
    /// can be waiting ([`READ_EVERY_NS`]); otherwise at every round.
    pub(super) lazy: bool,
    pub(super) next_ns: u64,
    /// Requests sent since the last read.
    pub(super) sent_since: u64,
    /// The last read stopped at its round limit: more may be waiting.
    pub(super) more: bool,
    /// Read system calls, those that found nothing included.
    pub(super) calls: u64,
}

impl Worker {
    pub(super) fn new(
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
                let s = udp_socket(cfg.target, cfg.source).map_err(sock_err)?;
                let local = s.local_addr().map_err(sock_err)?;
                let rx = RecvBatch::new(BATCH, RECV_SLOT);
                // Latency ends when the kernel got the answer, not when this thread read it.
                if let Err(e) = crate::mmsg::enable_rx_timestamps(s.as_raw_fd()) {
                    tracing::warn!(error = %e, "Bench cannot get receive timestamps; using read times");
                    stamped = false;
                }
                (Io::Udp { sock: s, rx }, local, Transport::Udp)
            }
            BenchTransport::Tcp => {
                let s = tcp_connect(cfg.target, cfg.source).map_err(sock_err)?;
                s.set_nodelay(true).map_err(sock_err)?;
                s.set_nonblocking(true).map_err(sock_err)?;
                let local = s.local_addr().map_err(sock_err)?;
                let io = Io::Tcp {
                    stream: Some(s),
                    inbuf: Vec::with_capacity(1 << 16),
                    outbuf: Vec::with_capacity(1 << 16),
                };
                (io, local, Transport::Tcp)
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
                clock: Clock::new(epoch),
                txs: Txs::with_capacity(quota),
                out: Outbox::new(tmpl),
                txcfg,
                follow,
                counts: Counts::new(nsteps),
                logged: Logged::default(),
                cfg,
            },
            schedule,
            quota,
            end_ns,
            ticker: Ticker {
                id,
                tx: ticks,
                no: 0,
                next_ns: 1_000_000_000,
            },
            read: ReadPolicy {
                lazy: lazy_reads,
                next_ns: 0,
                sent_since: 0,
                more: false,
                calls: 0,
            },
            stop,
            stop_ns: None,
            wakeups: 0,
        })
    }

    /// Runs the schedule, then waits for every transaction's outcome.
    pub(super) fn run(mut self) -> WorkerResult {
        // Sleeps of tens of microseconds must not be stretched by the default 50 µs slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
        loop {
            let now = Instant::now();
            let now_ns = self.eng.clock.ns(now);
            let mut work = false;
            if self.read_due(now_ns) {
                work = self.receive(now, now_ns);
                self.read.next_ns = now_ns + READ_EVERY_NS;
                self.read.sent_since = 0;
            }
            work |= self.eng.fire_timers(now, now_ns);
            work |= self.start_requests(now, now_ns);
            self.flush(now);
            if now_ns >= self.ticker.next_ns {
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
            if !more && self.eng.txs.table.is_empty() && self.eng.out.txb.is_empty() {
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
                let due = self.read.sent_since >= BATCH as u64
                    || s.peek().is_some_and(|(t, _)| t <= now_ns);
                work = due
                    || self.read.more
                    || self.eng.next_live_timer().is_some_and(|t| t <= now_ns);
            }
            if !work {
                self.idle(now_ns, more);
            }
        }
        self.tick();
        let (peak, max_lag_ns) = (self.eng.counts.peak, self.eng.counts.max_lag_ns);
        WorkerResult {
            steps: self.eng.counts.into_steps(),
            peak,
            max_lag_ns,
            wakeups: self.wakeups,
            reads: self.read.calls,
        }
    }

    /// Whether this round reads the socket: always, unless reads are lazy (open loop over UDP);
    /// then when answers can be waiting: every [`READ_EVERY_NS`], after a batch of sends, when
    /// a live timer is due (an answer must not time out unread), when the last read was cut
    /// short, and while the last answers drain.
    pub(super) fn read_due(&mut self, now_ns: u64) -> bool {
        if !self.read.lazy || self.read.more || now_ns >= self.read.next_ns {
            return true;
        }
        if self.read.sent_since >= BATCH as u64 {
            return true;
        }
        if self.eng.next_live_timer().is_some_and(|t| t <= now_ns) {
            return true;
        }
        self.schedule.as_mut().and_then(|s| s.peek()).is_none()
    }

    /// Waits for a response, the next send, the next timer or the next tick.
    pub(super) fn idle(&mut self, now_ns: u64, more: bool) {
        if self.read.lazy {
            self.wakeups += 1;
            let next_send = match &mut self.schedule {
                Some(s) if more => s.peek().map(|(t, _)| t),
                _ => None,
            };
            let mut other = self.ticker.next_ns.min(self.read.next_ns);
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
        let mut until = self.ticker.next_ns;
        if let Some(t) = self.eng.txs.timers.next_due() {
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

    pub(super) fn tick(&mut self) {
        let t = self.eng.counts.tick();
        let _ = self.ticker.tx.send((
            self.ticker.id,
            Tick {
                second: self.ticker.no,
                tally: t,
                outstanding: self.eng.txs.table.len() as u64,
            },
        ));
        self.ticker.no += 1;
        self.ticker.next_ns += 1_000_000_000;
    }

    /// Starts the requests that are due (open loop) or allowed (closed loop).
    pub(super) fn start_requests(&mut self, now: Instant, now_ns: u64) -> bool {
        let mut any = false;
        let tcp_down = matches!(self.io, Io::Tcp { stream: None, .. });
        // At most a batch of new requests per round, so that receiving keeps up.
        let mut room = BATCH;
        while !self.eng.out.txb.is_full() && room > 0 {
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
                    if self.eng.txs.table.len() >= self.quota || now_ns >= self.end_ns {
                        break;
                    }
                    (now_ns, 0)
                }
            };
            any = true;
            self.read.sent_since += 1;
            self.eng.start(now, now_ns, sched_ns, step, tcp_down);
        }
        any
    }

    /// Reads responses (a few batches at most, so sending keeps its schedule).
    pub(super) fn receive(&mut self, now: Instant, now_ns: u64) -> bool {
        let mut any = false;
        match &mut self.io {
            Io::Udp { sock, rx } => {
                // Drain what has arrived first (bounded): answers left in the socket buffer
                // would age there and, past its size, be lost.
                self.read.more = false;
                for round in 0..RECV_ROUNDS {
                    self.read.calls += 1;
                    let n = match rx.recv(sock.as_raw_fd(), libc::MSG_DONTWAIT) {
                        Ok(n) => n,
                        Err(e) => {
                            // ICMP errors of a connected socket surface here; the transaction
                            // they belong to times out (or fails on its next send).
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
                            ) {
                                self.eng.counts.current().unreachable += 1;
                            }
                            if self.eng.logged.first(Once::Socket) {
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
                        (t, self.eng.clock.ns(t))
                    };
                    for i in 0..n {
                        if rx.truncated(i) {
                            self.eng.invalid("truncated");
                            continue;
                        }
                        // The kernel's arrival time, unless it is out of range (a clock step).
                        let rx_ns = rx
                            .timestamp_ns(i)
                            .and_then(|t| t.checked_sub(self.eng.clock.real_ns))
                            .filter(|&t| t <= now_ns)
                            .unwrap_or(now_ns);
                        self.eng.on_response(rx.get(i), now, rx_ns);
                    }
                    // Keep room for the next batch's ACKs (and BYEs: two per accepted call).
                    if self.eng.out.txb.len() + 2 * BATCH > self.eng.out.txb.capacity() {
                        self.eng.flush_udp(sock.as_raw_fd(), now);
                    }
                    // A short batch emptied the socket: spare the system call that would say so.
                    if n < BATCH {
                        break;
                    }
                    self.read.more = round + 1 == RECV_ROUNDS;
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
                    self.read.calls += 1;
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
                    (t, self.eng.clock.ns(t))
                } else {
                    (now, now_ns)
                };
                let mut at = 0;
                loop {
                    // The codec's framer, with the prober's limit: both frame a stream alike.
                    match frame(&inbuf[at..], crate::consts::MAX_RESPONSE) {
                        Frame::Complete(n) => {
                            self.eng.on_response(&inbuf[at..at + n], now, now_ns);
                            at += n;
                        }
                        Frame::KeepAlive(n) => at += n,
                        Frame::Incomplete => break,
                        Frame::Invalid(_) => {
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
    pub(super) fn flush(&mut self, now: Instant) {
        match &mut self.io {
            Io::Udp { sock, .. } => self.eng.flush_udp(sock.as_raw_fd(), now),
            Io::Tcp { stream, outbuf, .. } => {
                for i in 0..self.eng.out.txb.len() {
                    outbuf.extend_from_slice(self.eng.out.txb.get(i));
                }
                self.eng.out.txb.clear();
                self.eng.out.pending.clear();
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

pub(super) struct WorkerResult {
    pub(super) steps: Vec<Tally>,
    pub(super) peak: u64,
    pub(super) max_lag_ns: u64,
    pub(super) wakeups: u64,
    pub(super) reads: u64,
}

/// A UDP socket connected to `target`, bound to `source` if given.
pub(super) fn udp_socket(target: SocketAddr, source: Option<Source>) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    crate::mmsg::deep_buffers(&s);
    bind(&s, target, source)?;
    s.connect(&target.into())?;
    Ok(s.into())
}

/// A TCP connection to `target` (within 3 s), from `source` if given.
fn tcp_connect(target: SocketAddr, source: Option<Source>) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let timeout = Duration::from_secs(3);
    let Some(src) = source else {
        return TcpStream::connect_timeout(&target, timeout);
    };
    let s = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // A fixed source port can be bound again while its last connection is in TIME_WAIT.
    s.set_reuse_address(true)?;
    bind(&s, target, Some(src))?;
    s.connect_timeout(&target.into(), timeout)?;
    Ok(s.into())
}

/// Binds `s` to `source` (the error names it), else to any address of the target's family.
fn bind(s: &socket2::Socket, target: SocketAddr, source: Option<Source>) -> io::Result<()> {
    match source {
        Some(src) => {
            let addr = src.towards(target)?;
            s.bind(&addr.into()).map_err(|e| src.bind_error(e))
        }
        None => {
            let any: SocketAddr = if target.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            s.bind(&any.into())
        }
    }
}
