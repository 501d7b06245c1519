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

mod files;
mod health;
mod metrics;
mod polling;
mod probing;
mod reload;
mod setup;
mod shutdown;
mod sink;

use crate::config::{self, Config};
use crate::notify::Notifier;
use anyhow::Context;
use ingest::files::FilesStats;
use ingest::kamailio::poll::{PollStats, PollerSet};
use ingest::sink::influx::InfluxStats;
use ingest::{LineEncoder, SinkHandle};
use probing::Probing;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

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

/// The running service: the configuration, the sink, the parts and the health counters.
/// (Beyond a dozen fields: each part's handle and counters are what health and reload read.)
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

async fn service(
    mut cfg: Config,
    path: Option<PathBuf>,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    setup::apply_credentials(&mut cfg);
    if let Some(p) = &path {
        tracing::info!(config = %p.display(), "Loaded configuration");
    }
    setup::raise_nofile();
    setup::warn_loose_token_file(&cfg);
    let notifier = Notifier::from_env();
    // Signals first, so a SIGTERM during start-up is not lost.
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;

    let (sink, sink_task, influx) = sink::start(&cfg, path.as_ref(), out)?;
    let sink = sink.with_tags(&cfg.global_tags);
    let state = sink::state_dir(&cfg)?;
    let stop = CancellationToken::new();
    let files_live = Arc::new(Mutex::new(FilesStats::default()));
    let mut files_task = files::start(&cfg, &sink, &stop, &files_live, &state);
    let (pollers, poll_stats) = polling::start(&cfg, &sink, &state).await;
    let probe_metrics = Arc::new(crate::metrics::Probes::default());
    let probing = probing::start(&cfg, &sink, &probe_metrics).await?;
    let parts = metrics::Parts {
        files: &files_live,
        influx: &influx,
        pollers: &pollers,
        probing: &probing,
        probes: &probe_metrics,
    };
    let metrics_task = metrics::start(&cfg, parts, &stop)?;
    let host = setup::hostname();
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

    let tasks = shutdown::Tasks {
        stop,
        files: files_task,
        metrics: metrics_task,
        sink: sink_task,
    };
    let stopped = shutdown::stop(svc, tasks).await;
    Ok(if failed { ExitCode::from(1) } else { stopped })
}
