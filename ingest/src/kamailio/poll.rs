//! Poll: one task per target.
//!
//! - Polls are aligned to the wall clock: with `interval = "10s"` they happen at :00, :10, :20,
//!   ... of every minute, on every target, so minutes line up across CPs.
//! - Each target has its own task and its own timeout (default 2 s): a slow or dead node never
//!   delays the others.
//! - While a target is down, attempts back off (1, 2, 4, ... intervals apart, at most
//!   `max_backoff`), but a `kamailio_up` point with `up=0` is still written every interval.
//! - `up=1` means the poll returned at least one statistic. The state is logged only when it
//!   changes (`Kamailio target up` / `Kamailio target down`).
//! - Bad input (an RPC error, a malformed or truncated reply, a line that is not a statistic, a
//!   value that is not a number) is counted in [`PollStats`] and in the target's minute line, and
//!   logged once per target and kind with its context; the rest of the reply is still used.

use super::classify::Classifier;
use super::window::{Window, WindowState, M_UP};
use super::{binrpc, import, jsonrpc, FetchError, Format, TargetConfig, Transport};
use crate::checkpoint::StateDir;
use crate::lineproto::{Field, LineEncoder};
use crate::sink::SinkHandle;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Counters over the pollers' life (all targets), for the service's own metrics.
///
/// One atomic counter per field, each a metric of its own: a flat struct is the metric list.
#[derive(Debug, Default)]
pub struct PollStats {
    pub polls_ok: AtomicU64,
    pub polls_failed: AtomicU64,
    pub polls_skipped: AtomicU64,
    pub rpc_errors: AtomicU64,
    pub malformed_replies: AtomicU64,
    pub truncated_replies: AtomicU64,
    pub bad_lines: AtomicU64,
    pub non_numeric: AtomicU64,
    pub other_values: AtomicU64,
    pub restarts: AtomicU64,
    pub points: AtomicU64,
    pub sink_closed: AtomicU64,
    /// Each target's last `up` (by hostname), for the service's `/metrics`.
    pub up: std::sync::Mutex<std::collections::BTreeMap<String, bool>>,
}

/// A plain copy of [`PollStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollCounts {
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub polls_skipped: u64,
    pub rpc_errors: u64,
    pub malformed_replies: u64,
    pub truncated_replies: u64,
    pub bad_lines: u64,
    pub non_numeric: u64,
    pub other_values: u64,
    pub restarts: u64,
    pub points: u64,
    pub sink_closed: u64,
}

impl PollStats {
    pub fn snapshot(&self) -> PollCounts {
        PollCounts {
            polls_ok: self.polls_ok.load(Relaxed),
            polls_failed: self.polls_failed.load(Relaxed),
            polls_skipped: self.polls_skipped.load(Relaxed),
            rpc_errors: self.rpc_errors.load(Relaxed),
            malformed_replies: self.malformed_replies.load(Relaxed),
            truncated_replies: self.truncated_replies.load(Relaxed),
            bad_lines: self.bad_lines.load(Relaxed),
            non_numeric: self.non_numeric.load(Relaxed),
            other_values: self.other_values.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
            points: self.points.load(Relaxed),
            sink_closed: self.sink_closed.load(Relaxed),
        }
    }
}

/// The running pollers: `task` ends after `shutdown` is set (each target writes its partial
/// minute first) or when every target ended.
pub struct Pollers {
    pub task: JoinHandle<()>,
    pub stats: Arc<PollStats>,
}

/// Starts one polling task per target. Cancelling `shutdown` stops them.
pub fn spawn_pollers(
    targets: Vec<TargetConfig>,
    sink: SinkHandle,
    shutdown: CancellationToken,
) -> Pollers {
    spawn_pollers_with_clock(targets, sink, shutdown, Clock::System)
}

/// Where the pollers read the time of day.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's wall clock (the service).
    System,
    /// `base_ms` plus the tokio time elapsed since `base`: with tokio's paused time, tests run
    /// hours of polling in milliseconds.
    Tokio {
        base_ms: i64,
        base: tokio::time::Instant,
    },
}

impl Clock {
    /// A [`Clock::Tokio`] starting at `base_ms` now.
    pub fn tokio_at(base_ms: i64) -> Clock {
        Clock::Tokio {
            base_ms,
            base: tokio::time::Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Tokio { base_ms, base } => base_ms + base.elapsed().as_millis() as i64,
        }
    }
}

/// [`spawn_pollers`] with a chosen clock.
pub fn spawn_pollers_with_clock(
    targets: Vec<TargetConfig>,
    sink: SinkHandle,
    shutdown: CancellationToken,
    clock: Clock,
) -> Pollers {
    let stats = Arc::new(PollStats::default());
    let http = http_client();
    let st = stats.clone();
    let task = tokio::spawn(async move {
        let mut set = tokio::task::JoinSet::new();
        for cfg in targets {
            let t = TargetPoller::new(cfg, http.clone(), sink.clone(), st.clone());
            set.spawn(t.run(shutdown.clone(), clock));
        }
        drop(sink);
        while set.join_next().await.is_some() {}
    });
    Pollers { task, stats }
}

/// Pollers that can be added and removed while running (the service's SIGHUP reload): each
/// target has its own task and stop switch, so removing one never touches the windows of the
/// others.
pub struct PollerSet {
    http: reqwest::Client,
    sink: SinkHandle,
    stats: Arc<PollStats>,
    clock: Clock,
    /// Per target: its configuration, its stop switch (dropping it stops the target too) and
    /// its task.
    running: Vec<(TargetConfig, DropGuard, JoinHandle<()>)>,
    state: Option<Arc<StateDir>>,
}

impl PollerSet {
    /// An empty set writing to `sink`.
    pub fn new(sink: SinkHandle, clock: Clock) -> PollerSet {
        PollerSet {
            http: http_client(),
            sink,
            stats: Arc::new(PollStats::default()),
            clock,
            running: Vec::new(),
            state: None,
        }
    }

    /// Keeps each target's window in `state` (saved after every poll, taken over at start), so
    /// that a restart of srewatch does not lower the increase of the minute under way.
    pub fn with_state(mut self, state: Option<Arc<StateDir>>) -> PollerSet {
        self.state = state;
        self
    }

    /// Counters over all targets, past and present.
    pub fn stats(&self) -> Arc<PollStats> {
        self.stats.clone()
    }

    /// The targets being polled.
    pub fn targets(&self) -> impl Iterator<Item = &TargetConfig> {
        self.running.iter().map(|(c, _, _)| c)
    }

    /// Starts polling one more target.
    pub fn add(&mut self, cfg: TargetConfig) {
        let stop = CancellationToken::new();
        let mut t = TargetPoller::new(
            cfg.clone(),
            self.http.clone(),
            self.sink.clone(),
            self.stats.clone(),
        );
        t.state = self.state.clone();
        let task = tokio::spawn(t.run(stop.clone(), self.clock));
        self.running.push((cfg, stop.drop_guard(), task));
    }

    /// Stops the first target equal to `cfg` (it writes its partial minute first).
    pub async fn remove(&mut self, cfg: &TargetConfig) -> bool {
        let Some(i) = self.running.iter().position(|(c, _, _)| c == cfg) else {
            return false;
        };
        let (c, stop, task) = self.running.remove(i);
        stop.token().cancel();
        let _ = task.await;
        if let Ok(mut m) = self.stats.up.lock() {
            m.remove(&c.hostname);
        }
        true
    }

    /// Makes the polled targets those of `targets`: targets whose configuration is unchanged
    /// keep running (and keep their windows), the others are stopped or started. Returns the
    /// hostnames (removed, added).
    pub async fn reconcile(&mut self, targets: &[TargetConfig]) -> (Vec<String>, Vec<String>) {
        let mut keep: Vec<bool> = vec![false; targets.len()];
        let mut stale = Vec::new();
        for (c, _, _) in &self.running {
            match (0..targets.len()).find(|&i| !keep[i] && targets[i] == *c) {
                Some(i) => keep[i] = true,
                None => stale.push(c.clone()),
            }
        }
        let mut removed = Vec::new();
        for c in stale {
            self.remove(&c).await;
            removed.push(c.hostname);
        }
        let mut added = Vec::new();
        for (i, c) in targets.iter().enumerate() {
            if !keep[i] {
                self.add(c.clone());
                added.push(c.hostname.clone());
            }
        }
        (removed, added)
    }

    /// Stops every target (each writes its partial minute) and waits for them.
    pub async fn shutdown(mut self) {
        for (_, stop, _) in &self.running {
            stop.token().cancel();
        }
        for (_, _, task) in self.running.drain(..) {
            let _ = task.await;
        }
    }
}

/// Polls every target once, concurrently, and writes what came back (counter totals, gauges,
/// `up`) at once: `srewatch kamailio poll --once`.
pub async fn poll_once(targets: Vec<TargetConfig>, sink: SinkHandle) -> Arc<PollStats> {
    let stats = Arc::new(PollStats::default());
    let http = http_client();
    let mut set = tokio::task::JoinSet::new();
    for cfg in targets {
        let mut t = TargetPoller::new(cfg, http.clone(), sink.clone(), stats.clone());
        set.spawn(async move {
            t.poll(now_ms()).await;
            t.window.flush(&t.cfg.hostname, &mut t.enc);
            t.send().await;
        });
    }
    while set.join_next().await.is_some() {}
    stats
}

/// The HTTP client the pollers share (keep-alive, one idle connection per target).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .user_agent(concat!("srewatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

enum Source {
    Json(jsonrpc::Client),
    Bin(binrpc::Client),
    File(PathBuf),
}

impl Source {
    fn new(cfg: &TargetConfig, http: reqwest::Client) -> Source {
        match cfg.transport() {
            Transport::Jsonrpc => Source::Json(jsonrpc::Client::new(http, &cfg.address)),
            Transport::Binrpc => match binrpc::Endpoint::parse(&cfg.address) {
                Some(ep) => Source::Bin(binrpc::Client::new(ep)),
                // validate() refuses this; a file of that name is the harmless reading.
                None => Source::File(cfg.address.clone().into()),
            },
            Transport::File => Source::File(cfg.address.clone().into()),
        }
    }

    /// One reply into `buf`. `Err((e, Some(format)))` when `buf` still holds part of a reply.
    async fn fetch(&mut self, buf: &mut Vec<u8>) -> Result<Format, (FetchError, Option<Format>)> {
        match self {
            Source::Json(c) => match c.fetch(buf).await {
                Ok(()) => Ok(Format::Json),
                Err(e @ (FetchError::ShortRead | FetchError::TooLarge(_))) => {
                    Err((e, Some(Format::Json)))
                }
                Err(e) => Err((e, None)),
            },
            Source::Bin(c) => match c.fetch(buf).await {
                Ok(_) => Ok(Format::Binrpc),
                Err(FetchError::ShortRead) if !buf.is_empty() => {
                    Err((FetchError::ShortRead, Some(Format::Binrpc)))
                }
                Err(e) => Err((e, None)),
            },
            Source::File(p) => import::fetch(p, buf).await.map_err(|e| (e, None)),
        }
    }
}

/// Reply buffer kept between polls (a Kamailio's whole statistics are 10-50 KiB); a buffer
/// that grew past 4x this (and 4x its reply) is given back after the poll.
const KEEP_BUF: usize = 256 << 10;

/// Kinds of bad input, each logged once per target.
#[derive(Clone, Copy)]
enum Bad {
    Rpc = 0,
    Malformed = 1,
    Truncated = 2,
    Line = 3,
    NonNumeric = 4,
    Other = 5,
    Dropped = 6,
}

/// One target's poller: its source, window, buffers and state. [`spawn_pollers`] runs one per
/// target on its own schedule; tools and benchmarks can drive rounds by hand with
/// [`TargetPoller::poll_round`].
///
/// 13 fields: its configuration, source, window, reused buffers and back-off state are
/// all owned by this one task and touched on every poll.
pub struct TargetPoller {
    cfg: TargetConfig,
    source: Source,
    window: Window,
    enc: LineEncoder,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    sink: SinkHandle,
    stats: Arc<PollStats>,
    up: Option<bool>,
    failures: u32,
    skip: u32,
    logged: std::cell::Cell<u32>,
    /// Where the window is saved after every poll (the service with a state directory).
    state: Option<Arc<StateDir>>,
}

impl TargetPoller {
    /// One attempt stamped `ts_ms`, then the points go to the sink. Returns whether the target
    /// was up.
    pub async fn poll_round(&mut self, ts_ms: i64) -> bool {
        self.poll(ts_ms).await;
        self.send().await;
        self.up == Some(true)
    }

    /// Writes the minute under way (shutdown).
    pub async fn finish(&mut self) {
        self.window.flush(&self.cfg.hostname, &mut self.enc);
        self.send().await;
    }

    pub fn new(
        cfg: TargetConfig,
        http: reqwest::Client,
        sink: SinkHandle,
        stats: Arc<PollStats>,
    ) -> TargetPoller {
        let classifier = Classifier::new(&cfg.gauges, &cfg.counters);
        TargetPoller {
            source: Source::new(&cfg, http),
            window: Window::new(classifier, &cfg.histograms, cfg.max_stats),
            enc: LineEncoder::with_capacity(16 * 1024),
            buf: Vec::with_capacity(32 * 1024),
            scratch: Vec::new(),
            sink,
            stats,
            up: None,
            failures: 0,
            skip: 0,
            logged: Default::default(),
            state: None,
            cfg,
        }
    }

    /// The file of this target's window in the state directory.
    fn state_file(&self) -> String {
        let name: String = self
            .cfg
            .hostname
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("kamailio-{name}.window")
    }

    /// Takes over the window saved by the previous run, if any (see [`Window::restore`]).
    fn restore(&mut self, now_ms: i64) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let file = self.state_file();
        let saved = match state.read(&file) {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(target = %self.cfg.hostname, error = %e, "Cannot read the saved Kamailio window; starting from a new baseline");
                return;
            }
        };
        let st: WindowState = match serde_json::from_slice(&saved) {
            Ok(st) => st,
            Err(e) => {
                state.set_aside(&file);
                tracing::warn!(target = %self.cfg.hostname, error = %e, "Corrupt saved Kamailio window set aside (.bad); starting from a new baseline");
                return;
            }
        };
        let max_gap = (3 * self.cfg.interval.as_millis() as i64).max(60_000);
        let how = self.window.restore(st, now_ms, max_gap);
        tracing::info!(target = %self.cfg.hostname, restored = ?how, "Kamailio window taken over from the previous run");
    }

    /// Saves a state of the window (on a blocking thread: the write is `fsync`ed).
    async fn save(&mut self, st: WindowState) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let file = self.state_file();
        let host = self.cfg.hostname.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let data = serde_json::to_vec(&st).expect("a window state serialises");
            if let Err(e) = state.write_atomic(&file, &data) {
                tracing::warn!(target = %host, error = %e, "Cannot save the Kamailio window");
            }
        })
        .await;
    }

    async fn run(mut self, shutdown: CancellationToken, clock: Clock) {
        let every = self.cfg.interval.as_millis().max(1) as i64;
        self.restore(clock.now_ms());
        loop {
            let now = clock.now_ms();
            let next = (now.div_euclid(every) + 1) * every;
            let wait = Duration::from_millis((next - now) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
            if shutdown.is_cancelled() {
                break;
            }
            if self.skip > 0 {
                self.skip -= 1;
                self.stats.polls_skipped.fetch_add(1, Relaxed);
                self.window
                    .poll_failed(next, &self.cfg.hostname, &mut self.enc);
                self.push_up(next, false, None, 0);
            } else {
                self.poll(next).await;
            }
            if !self.send().await {
                break;
            }
            if self.state.is_some() {
                self.save(self.window.export(false)).await;
            }
        }
        // The minute under way is written now; saved as written, with its accumulators, so
        // that a restart within the same minute adds to them.
        let written = self.window.export(true);
        self.window.flush(&self.cfg.hostname, &mut self.enc);
        self.send().await;
        self.save(written).await;
    }

    /// One attempt, stamped `ts_ms` (the tick it belongs to).
    async fn poll(&mut self, ts_ms: i64) {
        let started = Instant::now();
        let timeout = self.cfg.timeout;
        let fetched = match tokio::time::timeout(timeout, self.source.fetch(&mut self.buf)).await {
            Ok(r) => r,
            Err(_) => Err((FetchError::Timeout(timeout), None)),
        };
        let rtt = started.elapsed();
        let (format, fetch_err) = match fetched {
            Ok(f) => (Some(f), None),
            Err((e, f)) => (f, Some(e)),
        };
        let mut n_stats = 0usize;
        let mut scan_err = None;
        if let Some(format) = format {
            self.window
                .begin_poll(ts_ms, &self.cfg.hostname, &mut self.enc);
            let (window, stats, cfg, logged) =
                (&mut self.window, &self.stats, &self.cfg, &self.logged);
            let r = super::scan(
                format,
                &self.buf,
                &mut self.scratch,
                &mut |line| match super::parse::parse_line(line) {
                    Ok(s) => {
                        if window.observe(&s) {
                            n_stats += 1;
                        } else {
                            log_once(logged, Bad::Dropped, cfg, || {
                                format!(
                                    "more than max_stats={} statistics; dropped `{}`",
                                    cfg.max_stats, s.full
                                )
                            });
                        }
                    }
                    Err(e) => {
                        window.bad_line();
                        let kind = if e == super::parse::LineError::NotNumeric {
                            stats.non_numeric.fetch_add(1, Relaxed);
                            Bad::NonNumeric
                        } else {
                            stats.bad_lines.fetch_add(1, Relaxed);
                            Bad::Line
                        };
                        log_once(logged, kind, cfg, || {
                            format!(
                                "statistic line not understood ({}): {:?}",
                                e,
                                String::from_utf8_lossy(&line[..line.len().min(200)])
                            )
                        });
                    }
                },
                &mut || {
                    stats.other_values.fetch_add(1, Relaxed);
                    log_once(logged, Bad::Other, cfg, || {
                        "reply holds a value that is not a statistic line".to_string()
                    });
                },
            );
            if let Err(e) = r {
                scan_err = Some(e);
            }
        }
        // A large reply (or a cut one) does not keep its memory: the next poll's buffer is
        // sized for what replies usually are.
        if self.buf.capacity() > 4 * self.buf.len().max(KEEP_BUF) {
            self.buf = Vec::with_capacity(KEEP_BUF);
        }
        let err = fetch_err.or(scan_err);
        if let Some(e) = &err {
            let kind = match e.as_str() {
                "rpc_error" => Some((Bad::Rpc, &self.stats.rpc_errors)),
                "malformed" => Some((Bad::Malformed, &self.stats.malformed_replies)),
                "truncated" | "too_large" => Some((Bad::Truncated, &self.stats.truncated_replies)),
                _ => None,
            };
            if let Some((k, counter)) = kind {
                counter.fetch_add(1, Relaxed);
                log_once(&self.logged, k, &self.cfg, || {
                    format!("bad reply ({}): {e}; {n_stats} statistics used", e.as_str())
                });
            }
        }
        let up = n_stats > 0;
        if format.is_some() {
            let out = self.window.end_poll();
            if out.restarted {
                self.stats.restarts.fetch_add(1, Relaxed);
                tracing::warn!(
                    target = %self.cfg.hostname,
                    address = %self.cfg.address,
                    "Kamailio restarted: counters went down"
                );
            }
            if !up {
                // A reply with nothing usable counts as a failed poll too.
                self.window
                    .poll_failed(ts_ms, &self.cfg.hostname, &mut self.enc);
            }
        } else {
            self.window
                .poll_failed(ts_ms, &self.cfg.hostname, &mut self.enc);
        }
        if up {
            self.stats.polls_ok.fetch_add(1, Relaxed);
            self.failures = 0;
            self.skip = 0;
        } else {
            self.stats.polls_failed.fetch_add(1, Relaxed);
            self.failures = self.failures.saturating_add(1);
            let cap = (self.cfg.max_backoff.as_millis() / self.cfg.interval.as_millis().max(1))
                .max(1) as u32;
            self.skip = (1u32 << (self.failures - 1).min(16)).min(cap) - 1;
        }
        if self.up != Some(up) {
            if up {
                tracing::info!(
                    target = %self.cfg.hostname,
                    address = %self.cfg.address,
                    stats = n_stats,
                    "Kamailio target up"
                );
            } else {
                let why = err
                    .as_ref()
                    .map_or_else(|| "no statistics in reply".to_string(), |e| e.to_string());
                tracing::warn!(
                    target = %self.cfg.hostname,
                    address = %self.cfg.address,
                    error = %why,
                    "Kamailio target down"
                );
            }
            self.up = Some(up);
        }
        self.push_up(ts_ms, up, Some(rtt), n_stats);
    }

    fn push_up(&mut self, ts_ms: i64, up: bool, rtt: Option<Duration>, n_stats: usize) {
        if let Ok(mut m) = self.stats.up.lock() {
            m.insert(self.cfg.hostname.clone(), up);
        }
        let rtt_field = rtt.filter(|_| up).map_or(("", Field::Int(0)), |r| {
            ("rtt_ms", Field::Float(crate::lineproto::millis(r)))
        });
        self.enc.push(
            M_UP,
            &[("hostname", &self.cfg.hostname)],
            &[
                ("up", Field::Int(up as i64)),
                rtt_field,
                ("stats", Field::Int(n_stats as i64)),
            ],
            ts_ms.div_euclid(1000),
        );
    }

    /// Hands the encoded points to the sink. `false` once the sink is gone.
    async fn send(&mut self) -> bool {
        let n = self.enc.lines();
        if n == 0 {
            return true;
        }
        self.stats.points.fetch_add(n as u64, Relaxed);
        let lines = self.enc.take();
        if self.sink.write(&self.cfg.bucket, lines, n).await.is_err() {
            self.stats.sink_closed.fetch_add(1, Relaxed);
            return false;
        }
        true
    }
}

fn log_once(
    logged: &std::cell::Cell<u32>,
    kind: Bad,
    cfg: &TargetConfig,
    msg: impl FnOnce() -> String,
) {
    let bit = 1u32 << kind as u32;
    if logged.get() & bit == 0 {
        logged.set(logged.get() | bit);
        tracing::warn!(
            target = %cfg.hostname,
            address = %cfg.address,
            detail = %msg(),
            "Bad Kamailio statistics input (logged once per target and kind, counted always)"
        );
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Command;

    /// Reconcile keeps unchanged targets running (their windows intact), stops removed and
    /// changed ones, starts new ones.
    #[tokio::test(start_paused = true)]
    async fn poller_set_reconcile() {
        let (sink, mut rx) = SinkHandle::channel(4096);
        let target = |host: &str| {
            let mut c = TargetConfig::for_address(&format!("unix:/nonexistent/{host}.sock"));
            c.hostname = host.into();
            c
        };
        let mut set = PollerSet::new(sink, Clock::tokio_at(1_652_193_060_000));
        let (removed, added) = set.reconcile(&[target("a"), target("b")]).await;
        assert!(removed.is_empty());
        assert_eq!(added, ["a", "b"]);
        tokio::time::sleep(Duration::from_millis(20_001)).await;
        let mut c = target("c");
        c.interval = Duration::from_secs(5);
        let mut b2 = target("b");
        b2.timeout = Duration::from_secs(1);
        let (removed, added) = set.reconcile(&[target("a"), b2, c]).await;
        assert_eq!(removed, ["b"]);
        assert_eq!(added, ["b", "c"]);
        let hosts: Vec<&str> = set.targets().map(|t| t.hostname.as_str()).collect();
        assert_eq!(hosts, ["a", "b", "c"]);
        tokio::time::sleep(Duration::from_millis(10_000)).await;
        let stats = set.stats();
        set.shutdown().await;
        // a: ticks at 10, 20, 30 s (the first attempt fails, then backs off: skipped); b: 10, 20
        // in its first life, 30 in its second; c: 25, 30.
        let c = stats.snapshot();
        assert_eq!(c.polls_failed + c.polls_skipped, 3 + 2 + 1 + 2, "{c:?}");
        let mut text = String::new();
        while let Ok(cmd) = rx.try_recv() {
            if let Command::Write(b) = cmd {
                text.push_str(std::str::from_utf8(&b.lines).unwrap());
            }
        }
        let ups = |h: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("kamailio_up,hostname={h} ")))
                .count()
        };
        assert_eq!((ups("a"), ups("b"), ups("c")), (3, 3, 2), "{text}");
    }

    /// Dropping a `PollerSet` without `shutdown` stops its targets too (their stop switches
    /// are drop guards): the last sink sender goes, so the channel closes.
    #[tokio::test(start_paused = true)]
    async fn dropping_a_poller_set_stops_its_targets() {
        let (sink, mut rx) = SinkHandle::channel(4096);
        let mut cfg = TargetConfig::for_address("unix:/nonexistent/srewatch/ctl.sock");
        cfg.hostname = "cp9".into();
        // 5 s before a minute boundary: ticks at +5 s, +15 s, +25 s.
        let mut set = PollerSet::new(sink, Clock::tokio_at(1_652_193_055_000));
        set.add(cfg);
        tokio::time::sleep(Duration::from_millis(30_001)).await;
        drop(set);
        let mut text = String::new();
        let drained = tokio::time::timeout(Duration::from_secs(3600), async {
            while let Some(cmd) = rx.recv().await {
                if let Command::Write(b) = cmd {
                    text.push_str(std::str::from_utf8(&b.lines).unwrap());
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "the target kept running: {text}");
        let ups = text
            .lines()
            .filter(|l| l.starts_with("kamailio_up"))
            .count();
        assert_eq!(ups, 3, "{text}");
    }

    /// A dead node under paused time: `up=0` on every aligned tick, attempts backing off
    /// 1, 2, 4, then every 6 intervals (the 60 s cap), and a target line per minute.
    #[tokio::test(start_paused = true)]
    async fn dead_target_backs_off_and_reports_every_interval() {
        let (sink, mut rx) = SinkHandle::channel(4096);
        let mut cfg = TargetConfig::for_address("unix:/nonexistent/srewatch/ctl.sock");
        cfg.hostname = "cp9".into();
        let stop = CancellationToken::new();
        // 5 s before a minute boundary: the first tick is at 14:31:00.
        let base = 1_652_193_055_000;
        let p = spawn_pollers_with_clock(vec![cfg], sink, stop.clone(), Clock::tokio_at(base));
        tokio::time::sleep(Duration::from_millis(300_001)).await;
        stop.cancel();
        p.task.await.unwrap();
        let c = p.stats.snapshot();
        assert_eq!(
            (c.polls_failed, c.polls_skipped, c.polls_ok),
            (7, 23, 0),
            "{c:?}"
        );
        let mut text = String::new();
        while let Ok(cmd) = rx.try_recv() {
            if let Command::Write(b) = cmd {
                assert_eq!(b.bucket, "kamailio");
                text.push_str(std::str::from_utf8(&b.lines).unwrap());
            }
        }
        let ups: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kamailio_up"))
            .collect();
        assert_eq!(ups.len(), 30);
        for (k, l) in ups.iter().enumerate() {
            assert_eq!(
                *l,
                format!(
                    "kamailio_up,hostname=cp9 up=0i,stats=0i {}",
                    1_652_193_060 + 10 * k
                )
            );
        }
        let minutes: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kamailio_target"))
            .collect();
        let want: Vec<String> = (0..5)
            .map(|m| {
                format!(
                    "kamailio_target,hostname=cp9 polls=0i,failed=6i,restarts=0i,bad_lines=0i,dropped_stats=0i {}",
                    1_652_193_060 + 60 * m
                )
            })
            .collect();
        assert_eq!(minutes, want);
        assert_eq!(text.lines().count(), 35, "{text}");
    }
}
