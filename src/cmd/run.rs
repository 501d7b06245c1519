//! `srewatch run [--config FILE] [--out -|FILE]`: the systemd service.
//!
//! File ingest, Kamailio polling and SIP probing from one configuration, all writing to one sink
//! (InfluxDB when `[influxdb]` is configured, else line protocol to stdout or `--out FILE`).
//!
//! - Start: the configuration is checked exactly as `srewatch config check` does (refused with
//!   file:line); the sink, the spool, the probe targets and the pollers are started (a probe
//!   target that does not resolve is that target's alarm, retried: never a reason to exit);
//!   then `READY=1` goes to systemd. A group- or world-readable token file is warned about.
//! - Every `service.health_interval`: srewatch's own health points to `service.health_bucket`
//!   and a one-line `STATUS=`. `WATCHDOG=1` every half `WatchdogSec=`.
//! - SIGHUP: the file is read again. A bad file is refused (each problem logged with file:line)
//!   and the running configuration kept. Probe and Kamailio targets are added and removed; the
//!   unchanged ones keep their state and windows. Changes elsewhere are logged as needing a
//!   restart and not applied.
//! - SIGTERM/SIGINT: `STOPPING=1`, no new work, the parts write their partial windows, the sink
//!   sends or spools what it holds within `service.shutdown_deadline`; exit 0.

use crate::config::{self, Config};
use crate::notify::Notifier;
use crate::report;
use anyhow::Context;
use ingest::files::FilesStats;
use ingest::kamailio::poll::{Clock, PollStats, PollerSet};
use ingest::sink::influx::InfluxStats;
use ingest::{Field, LineEncoder, SinkHandle, SinkStats};
use probe::monitor::{self, MonitorHandle, Output, ProbeConfig};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (default /etc/srewatch/srewatch.toml when it exists).
    #[arg(long, env = "SREWATCH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where line protocol goes when no `[influxdb]` is configured: `-` (stdout) or a file.
    #[arg(long, value_name = "-|FILE")]
    out: Option<PathBuf>,
}

/// The credential `LoadCredential=influx-token:...` makes available.
pub const TOKEN_CREDENTIAL: &str = "influx-token";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (cfg, path) = match config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(invalid) => {
            for p in &invalid.0 {
                eprintln!("{}{p}", crate::journal_prefix(tracing::Level::ERROR));
            }
            tracing::error!(
                problems = invalid.0.len(),
                "Configuration refused; not starting"
            );
            return Ok(ExitCode::from(1));
        }
    };
    let rt = super::runtime()?;
    rt.block_on(service(cfg, path, args.out))
}

/// Uses `$CREDENTIALS_DIRECTORY/influx-token` when it holds a token and no `token_file` is
/// configured (an empty credential means none: the environment variable, or no token).
fn apply_credentials(cfg: &mut Config) {
    credentials_from(cfg, std::env::var_os("CREDENTIALS_DIRECTORY").as_deref());
}

fn credentials_from(cfg: &mut Config, dir: Option<&std::ffi::OsStr>) {
    let (Some(influx), Some(dir)) = (cfg.influxdb.as_mut(), dir) else {
        return;
    };
    if influx.token_file.is_some() {
        return;
    }
    let p = Path::new(dir).join(TOKEN_CREDENTIAL);
    if std::fs::read_to_string(&p).is_ok_and(|t| !t.trim().is_empty()) {
        influx.token_file = Some(p);
    }
}

/// The permission bits of a token file that its group or others may read (as ssh refuses a
/// private key they can read); none when only its owner can, or it cannot be read at all.
fn loose_token_file(p: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// Raises the soft limit of open descriptors to the hard one (systemd's default is 1024 soft,
/// 524288 hard; nothing here uses `select()`), so files, sockets and `/metrics` clients have
/// room. Logged when it changes.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let from = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            tracing::info!(from, to = lim.rlim_max, "Raised the open-file limit");
        }
    }
}

type SinkTask = Pin<Box<dyn Future<Output = anyhow::Result<SinkStats>> + Send>>;

/// Probe results counted by the reporter task.
#[derive(Default)]
struct ProbeCounts {
    sent: AtomicU64,
    answered: AtomicU64,
}

/// The running probe part.
struct Probing {
    handle: MonitorHandle,
    reporter: JoinHandle<()>,
    counts: Arc<ProbeCounts>,
}

struct Service {
    cfg: Config,
    path: Option<PathBuf>,
    notifier: Notifier,
    host: String,
    sink: SinkHandle,
    influx: Option<Arc<InfluxStats>>,
    files_live: Arc<Mutex<FilesStats>>,
    pollers: Option<PollerSet>,
    poll_stats: Arc<PollStats>,
    probing: Option<Probing>,
    probe_metrics: Arc<crate::metrics::Probes>,
    started: Instant,
    reloads: u64,
    reloads_refused: u64,
    health_skipped: u64,
    health_skipping: bool,
    enc: LineEncoder,
}

/// How long a health report may wait for room in the sink.
const HEALTH_WRITE_WAIT: Duration = Duration::from_millis(500);

async fn service(
    mut cfg: Config,
    path: Option<PathBuf>,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    apply_credentials(&mut cfg);
    if let Some(p) = &path {
        tracing::info!(config = %p.display(), "Loaded configuration");
    }
    raise_nofile();
    if let Some(t) = cfg.influxdb.as_ref().and_then(|i| i.token_file.as_deref()) {
        if let Some(mode) = loose_token_file(t) {
            tracing::warn!(
                file = %t.display(),
                mode = %format!("{mode:04o}"),
                "InfluxDB token file is readable by group or others; chmod 600 it, or give it with LoadCredential=influx-token:FILE"
            );
        }
    }
    let notifier = Notifier::from_env();
    // Signals first, so a SIGTERM during start-up is not lost.
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;

    let (sink, sink_task, influx): (SinkHandle, SinkTask, _) = match cfg.influxdb.clone() {
        Some(i) => {
            if out.is_some() {
                anyhow::bail!("--out cannot be used when [influxdb] is configured");
            }
            let (h, t, stats) = ingest::sink::influx::spawn_with_stats(i)
                .context("cannot start the InfluxDB sink")?;
            (h, Box::pin(async move { Ok(t.await?) }), Some(stats))
        }
        None => {
            let to = match out.as_deref() {
                Some(p) if p.as_os_str() != "-" => p.display().to_string(),
                _ => "stdout (under systemd: the journal)".to_string(),
            };
            let config = path.as_ref().map_or_else(
                || format!("none ({} not found)", config::DEFAULT_PATH),
                |p| p.display().to_string(),
            );
            tracing::warn!(
                %config,
                "No [influxdb] configured: points are written as line protocol to {to}, not stored"
            );
            let w: Box<dyn Write + Send> = match out.as_deref() {
                None => Box::new(std::io::stdout()),
                Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout()),
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                ),
            };
            let (h, t) = ingest::sink::spawn_writer(w);
            (h, Box::pin(async move { Ok(t.await??) }), None)
        }
    };
    let sink = sink.with_tags(&cfg.global_tags);

    // With InfluxDB: the state directory (checkpoint of acknowledged points, Kamailio windows).
    let state = match &cfg.influxdb {
        Some(i) => {
            let dir = i.state_dir();
            let st = ingest::checkpoint::StateDir::open_or_warn(&dir)
                .with_context(|| format!("cannot use the state directory {}", dir.display()))?;
            st.map(Arc::new)
        }
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let files_live = Arc::new(Mutex::new(FilesStats::default()));
    let mut files_task = if cfg.service.ingest {
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        Some(tokio::spawn(ingest::files::run_with_state(
            cfg.ingest.clone(),
            sink.clone(),
            shutdown,
            files_live.clone(),
            state.clone(),
        )))
    } else {
        tracing::info!("File ingest turned off (service.ingest = false)");
        None
    };

    let pollers = if cfg.service.kamailio {
        let mut set = PollerSet::new(sink.clone(), Clock::System).with_state(state.clone());
        set.reconcile(&cfg.kamailio).await;
        tracing::info!(targets = cfg.kamailio.len(), "Kamailio polling started");
        Some(set)
    } else {
        tracing::info!("Kamailio polling turned off (service.kamailio = false)");
        None
    };
    let poll_stats = pollers
        .as_ref()
        .map(|p| p.stats())
        .unwrap_or_else(|| Arc::new(PollStats::default()));

    let probe_metrics = Arc::new(crate::metrics::Probes::default());
    let probing = if cfg.service.probe {
        let own = cfg.own_probe_targets();
        let pcfg = ProbeConfig {
            fingerprint: cfg.probe.fingerprint.clone(),
            shard: cfg.probe.shard.clone(),
            source: cfg.probe.source.clone(),
            target: own,
        };
        // Only a bad URI or a duplicate name (refused by the check already) can fail here; a
        // target that does not resolve is that target's alarm, retried by the monitor.
        let (rx, handle) = monitor::spawn(&pcfg)
            .await
            .context("cannot start probing")?;
        let counts = Arc::new(ProbeCounts::default());
        let reporter = tokio::spawn(report_probes(
            rx,
            sink.clone(),
            counts.clone(),
            probe_metrics.clone(),
        ));
        tracing::info!(
            targets = pcfg.target.len(),
            configured = cfg.probe.target.len(),
            shard = %cfg.shard(),
            "Probing started"
        );
        Some(Probing {
            handle,
            reporter,
            counts,
        })
    } else {
        tracing::info!("Probing turned off (service.probe = false)");
        None
    };

    let metrics_task = match svc_metrics(&cfg, &files_live, &influx, &pollers, &probe_metrics) {
        Some((addr, m)) => {
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(m));
            if let Some(p) = &probing {
                registry.register_collector(Box::new(crate::metrics_server::ProbeSetups(
                    p.handle.setups(),
                )));
            }
            Some(crate::metrics_server::serve(addr, registry, shutdown)?)
        }
        None => None,
    };
    let host = hostname();
    let mut svc = Service {
        cfg,
        path,
        notifier,
        host,
        sink,
        influx,
        files_live,
        pollers,
        poll_stats,
        probing,
        probe_metrics,
        started: Instant::now(),
        reloads: 0,
        reloads_refused: 0,
        health_skipped: 0,
        health_skipping: false,
        enc: LineEncoder::with_capacity(4096),
    };
    let _ = svc.notifier.ready(&svc.status_line());
    tracing::info!(systemd = svc.notifier.enabled(), "Service ready");

    let mut health = tokio::time::interval(svc.cfg.service.health_interval);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    health.tick().await;
    let wd_every = svc.notifier.watchdog_interval();
    let mut watchdog = tokio::time::interval(wd_every.unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed = false;
    loop {
        tokio::select! {
            _ = health.tick() => {
                svc.write_health().await;
                let _ = svc.notifier.status(&svc.status_line());
            }
            _ = watchdog.tick(), if wd_every.is_some() => {
                let _ = svc.notifier.watchdog();
            }
            _ = hup.recv() => svc.reload().await,
            _ = term.recv() => {
                tracing::info!(signal = "SIGTERM", "Shutting down");
                break;
            }
            _ = int.recv() => {
                tracing::info!(signal = "SIGINT", "Shutting down");
                break;
            }
            r = async { files_task.as_mut().expect("guarded").await }, if files_task.is_some() => {
                files_task = None;
                match r {
                    Ok(Ok(_)) => tracing::warn!("File ingest ended"),
                    Ok(Err(e)) => tracing::error!(error = %e, "File ingest failed; shutting down"),
                    Err(e) => tracing::error!(error = %e, "File ingest task failed; shutting down"),
                }
                failed = true;
                break;
            }
        }
    }

    let _ = svc.notifier.stopping();
    let deadline = svc.cfg.service.shutdown_deadline;
    let done = tokio::time::timeout(deadline, async {
        let _ = stop_tx.send(true);
        if let Some(t) = files_task.take() {
            match t.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "File ingest failed while stopping"),
                Err(e) => tracing::error!(error = %e, "File ingest task failed"),
            }
        }
        if let Some(p) = svc.pollers.take() {
            p.shutdown().await;
        }
        if let Some(p) = svc.probing.take() {
            p.handle.stop().await;
            let _ = p.reporter.await;
        }
        svc.write_health().await;
        if let Some(t) = metrics_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        let Service { sink, .. } = svc;
        drop(sink);
        sink_task.await
    })
    .await;
    match done {
        Ok(Ok(stats)) => {
            tracing::info!(
                points_written = stats.points_written,
                points_dropped = stats.points_dropped,
                "Stopped"
            );
        }
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "Sink failed while stopping");
            return Ok(ExitCode::from(1));
        }
        Err(_) => {
            tracing::error!(
                deadline = ?deadline,
                "Shutdown deadline passed; batches not yet sent or spooled are lost"
            );
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Turns probe outputs into points (bucket `probe`), once a second, and counts probes.
async fn report_probes(
    mut rx: mpsc::Receiver<Output>,
    sink: SinkHandle,
    counts: Arc<ProbeCounts>,
    metrics: Arc<crate::metrics::Probes>,
) {
    let mut enc = LineEncoder::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            o = rx.recv() => match o {
                Some(o) => {
                    if let Output::Result(r) = &o {
                        // A BYE is the hang-up of an INVITE check, not a probe of its own.
                        if !r.late && r.method != probe::transaction::Method::Bye {
                            counts.sent.fetch_add(1, Relaxed);
                            if r.status.is_some() {
                                counts.answered.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    metrics.observe(&o);
                    report::encode(&o, &mut enc);
                }
                None => break,
            },
            _ = tick.tick() => {
                let n = enc.lines();
                if sink.write(report::BUCKET, enc.take(), n).await.is_err() {
                    return;
                }
            }
        }
    }
    let n = enc.lines();
    let _ = sink.write(report::BUCKET, enc.take(), n).await;
}

/// What `/metrics` shows, when `[service] metrics_listen` is set.
fn svc_metrics(
    cfg: &Config,
    files: &Arc<Mutex<FilesStats>>,
    influx: &Option<Arc<InfluxStats>>,
    pollers: &Option<PollerSet>,
    probes: &Arc<crate::metrics::Probes>,
) -> Option<(std::net::SocketAddr, crate::metrics::Metrics)> {
    let addr = cfg.service.metrics_listen?;
    Some((
        addr,
        crate::metrics::Metrics {
            started: Instant::now(),
            files: cfg.service.ingest.then(|| {
                (
                    files.clone(),
                    [
                        cfg.ingest.counters_file.clone(),
                        cfg.ingest.samples_file.clone(),
                    ],
                )
            }),
            influx: influx.clone(),
            spool_max_bytes: cfg.influxdb.as_ref().map(|i| i.spool_max_bytes),
            polls: pollers.as_ref().map(|p| p.stats()),
            probes: cfg.service.probe.then(|| probes.clone()),
        },
    ))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Service {
    /// One line for `STATUS=` (and `systemctl status`).
    fn status_line(&self) -> String {
        let mut parts = Vec::new();
        if self.cfg.service.ingest {
            let f = self.files_stats();
            let bad: u64 = f.bad.iter().flatten().sum();
            parts.push(format!(
                "files: {} rows, {bad} rejected",
                f.rows[0] + f.rows[1]
            ));
            let names = [
                &self.cfg.ingest.counters_file,
                &self.cfg.ingest.samples_file,
            ];
            for (name, p) in names.iter().zip(f.problem) {
                if let Some(p) = p {
                    parts.push(format!("{name} unreadable: {p}"));
                }
            }
        }
        if let Some(p) = &self.probing {
            let mut line = format!(
                "probes: {}/{} answered, {} targets",
                p.counts.answered.load(Relaxed),
                p.counts.sent.load(Relaxed),
                p.handle.targets().count()
            );
            let failing = p.handle.setups().failing();
            if failing > 0 {
                line.push_str(&format!(
                    " ({failing} not started: unresolved or no socket)"
                ));
            }
            parts.push(line);
        }
        if let Some(k) = &self.pollers {
            let s = self.poll_stats.snapshot();
            parts.push(format!(
                "kamailio: {} targets, {} polls failed",
                k.targets().count(),
                s.polls_failed
            ));
        }
        if let Some(i) = &self.influx {
            let s = i.snapshot();
            parts.push(format!(
                "influxdb: {} points written, spool {} points, {} dropped",
                s.points_written,
                s.spool_points,
                s.points_spool_dropped + s.points_rejected
            ));
            let refused: Vec<String> = s
                .buckets
                .iter()
                .filter_map(|(b, v)| Some(format!("{b} ({})", v.refused?)))
                .collect();
            if !refused.is_empty() {
                parts.push(format!("influxdb refuses buckets: {}", refused.join(", ")));
            }
        }
        parts.join("; ")
    }

    fn files_stats(&self) -> FilesStats {
        self.files_live
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// srewatch's own health points (see docs/service.md for the schema).
    async fn write_health(&mut self) {
        let ts = unix_secs();
        let host = self.host.as_str();
        let enc = &mut self.enc;
        enc.push(
            "srewatch_service",
            &[("host", host)],
            &[
                (
                    "uptime_s",
                    Field::Int(self.started.elapsed().as_secs() as i64),
                ),
                ("reloads", Field::Int(self.reloads as i64)),
                ("reloads_refused", Field::Int(self.reloads_refused as i64)),
                ("health_skipped", Field::Int(self.health_skipped as i64)),
            ],
            ts,
        );
        if self.cfg.service.ingest {
            let f = self
                .files_live
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            let names = [
                &self.cfg.ingest.counters_file,
                &self.cfg.ingest.samples_file,
            ];
            for (i, name) in names.iter().enumerate() {
                enc.push(
                    "srewatch_file",
                    &[("host", host), ("file", name.as_str())],
                    &[
                        ("snapshots", Field::Int(f.snapshots[i] as i64)),
                        ("rows", Field::Int(f.rows[i] as i64)),
                        ("rejected", Field::Int(f.bad[i].iter().sum::<u64>() as i64)),
                        ("points", Field::Int(f.points[i] as i64)),
                        ("problems", Field::Int(f.problems[i] as i64)),
                        (
                            "problem",
                            Field::Str(f.problem[i].map_or("", |p| p.cause())),
                        ),
                    ],
                    ts,
                );
            }
        }
        if let Some(p) = &self.probing {
            enc.push(
                "srewatch_probe",
                &[("host", host)],
                &[
                    ("targets", Field::Int(p.handle.targets().count() as i64)),
                    (
                        "targets_not_started",
                        Field::Int(p.handle.setups().failing() as i64),
                    ),
                    ("sent", Field::Int(p.counts.sent.load(Relaxed) as i64)),
                    (
                        "answered",
                        Field::Int(p.counts.answered.load(Relaxed) as i64),
                    ),
                ],
                ts,
            );
        }
        if let Some(k) = &self.pollers {
            let s = self.poll_stats.snapshot();
            enc.push(
                "srewatch_kamailio",
                &[("host", host)],
                &[
                    ("targets", Field::Int(k.targets().count() as i64)),
                    ("polls_ok", Field::Int(s.polls_ok as i64)),
                    ("polls_failed", Field::Int(s.polls_failed as i64)),
                    ("polls_skipped", Field::Int(s.polls_skipped as i64)),
                ],
                ts,
            );
        }
        if let Some(i) = &self.influx {
            let s = i.snapshot();
            enc.push(
                "srewatch_sink",
                &[("host", host)],
                &[
                    ("points_written", Field::Int(s.points_written as i64)),
                    ("points_rejected", Field::Int(s.points_rejected as i64)),
                    ("points_dropped", Field::Int(s.points_spool_dropped as i64)),
                    ("requests", Field::Int(s.requests as i64)),
                    ("request_failures", Field::Int(s.request_failures as i64)),
                    ("refused", Field::Int(s.refused as i64)),
                    ("spool_batches", Field::Int(s.spool_batches as i64)),
                    ("spool_points", Field::Int(s.spool_points as i64)),
                    ("spool_bytes", Field::Int(s.spool_bytes as i64)),
                    ("memory_points", Field::Int(s.memory_points as i64)),
                    (
                        "buckets_refused",
                        Field::Int(
                            s.buckets.values().filter(|v| v.refused.is_some()).count() as i64
                        ),
                    ),
                    (
                        "write_latency_p50_ms",
                        Field::Float(ms(s.write_latency.p50_us)),
                    ),
                    (
                        "write_latency_p99_ms",
                        Field::Float(ms(s.write_latency.p99_us)),
                    ),
                    (
                        "write_latency_max_ms",
                        Field::Float(ms(s.write_latency.max_us)),
                    ),
                ],
                ts,
            );
        }
        let n = enc.lines();
        let lines = enc.take();
        // The main loop also sends the watchdog pings: never wait long on a sink that is
        // pushing back (server down and spool unusable).
        let write = self.sink.write(&self.cfg.service.health_bucket, lines, n);
        match tokio::time::timeout(HEALTH_WRITE_WAIT, write).await {
            Err(_) => {
                self.health_skipped += 1;
                if !self.health_skipping {
                    tracing::warn!("Sink busy; health report skipped (until it catches up, skips are counted, not logged)");
                    self.health_skipping = true;
                }
            }
            Ok(_) => {
                if self.health_skipping {
                    tracing::info!(skipped = self.health_skipped, "Health reports resumed");
                    self.health_skipping = false;
                }
            }
        }
    }

    /// SIGHUP: read the file again; apply target changes, refuse a bad file.
    async fn reload(&mut self) {
        let _ = self.notifier.reloading();
        let shown = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| config::DEFAULT_PATH.into());
        tracing::info!(config = %shown, "Reloading configuration");
        let path = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
        match config::load(Some(&path)) {
            Err(invalid) => {
                self.reloads_refused += 1;
                for p in &invalid.0 {
                    tracing::error!(problem = %p, "Configuration refused; keeping the running one");
                }
            }
            Ok((mut new, _)) => {
                apply_credentials(&mut new);
                self.reloads += 1;
                self.apply(new).await;
            }
        }
        let _ = self.notifier.ready(&self.status_line());
    }

    async fn apply(&mut self, new: Config) {
        let old = &self.cfg;
        let mut restart = Vec::new();
        if format!("{:?}", old.ingest) != format!("{:?}", new.ingest) {
            restart.push("ingest");
        }
        if old.influxdb != new.influxdb {
            restart.push("influxdb");
        }
        if old.service != new.service {
            restart.push("service");
        }
        if old.global_tags != new.global_tags {
            restart.push("global_tags");
        }
        if old.probe.fingerprint != new.probe.fingerprint {
            restart.push("probe.fingerprint");
        }
        for section in &restart {
            tracing::warn!(
                section,
                "Configuration change needs a restart; the running value is kept"
            );
        }
        if let Some(k) = self.pollers.as_mut() {
            let (removed, added) = k.reconcile(&new.kamailio).await;
            for h in removed {
                tracing::info!(hostname = %h, "Kamailio target removed");
            }
            for h in added {
                tracing::info!(hostname = %h, "Kamailio target added");
            }
        }
        if let Some(p) = self.probing.as_mut() {
            let own = new.own_probe_targets();
            let r = p.handle.reconcile(&own).await;
            for n in r.removed {
                tracing::info!(target_name = %n, "Probe target removed");
            }
            for n in r.added {
                tracing::info!(target_name = %n, "Probe target added");
            }
            for e in r.failed {
                tracing::error!(error = %e, kind = e.as_str(), "Cannot start probe target");
            }
            let names: Vec<String> = p.handle.targets().map(|t| t.name.to_string()).collect();
            self.probe_metrics
                .retain(&names.iter().map(String::as_str).collect::<Vec<_>>());
        }
        // Keep the running values of the sections that need a restart.
        let mut merged = self.cfg.clone();
        merged.kamailio = new.kamailio;
        merged.probe.target = new.probe.target;
        merged.probe.shard = new.probe.shard;
        self.cfg = merged;
        tracing::info!(
            kamailio_targets = self.cfg.kamailio.len(),
            probe_targets = self
                .probing
                .as_ref()
                .map(|p| p.handle.targets().count())
                .unwrap_or(0),
            "Configuration reloaded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_readable_by_others_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "secret\n").unwrap();
        let mode = |m: u32| {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
            loose_token_file(&p)
        };
        assert_eq!(mode(0o600), None);
        assert_eq!(mode(0o400), None);
        assert_eq!(mode(0o640), Some(0o640));
        assert_eq!(mode(0o604), Some(0o604));
        assert_eq!(mode(0o644), Some(0o644));
        assert_eq!(loose_token_file(&dir.path().join("none")), None);
    }

    #[test]
    fn token_from_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let with_influx = || crate::config::parse("[influxdb]\n", Path::new("x")).unwrap();
        // No credential file: the environment variable (token_file stays unset).
        let mut cfg = with_influx();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert_eq!(cfg.influxdb.unwrap().token_file, None);
        // An empty credential: none.
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), " \n").unwrap();
        let mut cfg = with_influx();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert_eq!(cfg.influxdb.unwrap().token_file, None);
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "secret\n").unwrap();
        let mut cfg = with_influx();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert_eq!(
            cfg.influxdb.unwrap().token_file,
            Some(dir.path().join(TOKEN_CREDENTIAL))
        );
        // A configured token_file wins.
        let mut cfg =
            crate::config::parse("[influxdb]\ntoken_file = \"/etc/t\"\n", Path::new("x")).unwrap();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert_eq!(
            cfg.influxdb.unwrap().token_file,
            Some(PathBuf::from("/etc/t"))
        );
        // No [influxdb]: nothing to do.
        let mut cfg = crate::config::parse("", Path::new("x")).unwrap();
        credentials_from(&mut cfg, Some(dir.path().as_os_str()));
        assert!(cfg.influxdb.is_none());
    }
}
