//! `srewatch ingest [--config FILE] [--dir DIR] [--once] [--out -|FILE]`
//!
//! Turns counters.csv and samples.csv into points. With `[influxdb]` in the configuration the
//! points go to InfluxDB; otherwise they are printed as line protocol (stdout, or `--out FILE`)
//! under `# bucket: NAME` lines. `--once` reads the files once and exits; without it the files
//! are followed until SIGTERM or SIGINT, then everything is flushed and the exit code is 0.

use anyhow::Context;
use ingest::sink::{SinkHandle, SinkStats};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (default /etc/srewatch/srewatch.toml when it exists).
    #[arg(long, env = "SREWATCH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of counters.csv and samples.csv (overrides `ingest.dir`).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Read the files once, write the points, exit.
    #[arg(long)]
    once: bool,
    /// Where line protocol goes when no InfluxDB is configured: `-` (stdout) or a file.
    #[arg(long, value_name = "-|FILE")]
    out: Option<PathBuf>,
}

type SinkTask = Pin<Box<dyn Future<Output = anyhow::Result<SinkStats>> + Send>>;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (mut cfg, path) = crate::config::load(args.config.as_deref())?;
    if let Some(dir) = args.dir {
        cfg.ingest.dir = dir;
    }
    if let Some(p) = &path {
        tracing::info!(config = %p.display(), "Loaded configuration");
    }
    let rt = super::runtime()?;
    rt.block_on(async move {
        let mut state = None;
        let (sink, task): (SinkHandle, SinkTask) = match cfg.influxdb {
            Some(influx) => {
                if args.out.is_some() {
                    anyhow::bail!("--out cannot be used when [influxdb] is configured");
                }
                if !args.once {
                    let dir = influx.state_dir();
                    let st =
                        ingest::checkpoint::StateDir::open_or_warn(&dir).with_context(|| {
                            format!("cannot use the state directory {}", dir.display())
                        })?;
                    state = st.map(std::sync::Arc::new);
                }
                let (h, t) = ingest::sink::influx::spawn(influx)
                    .context("cannot start the InfluxDB sink")?;
                (h, Box::pin(async move { Ok(t.await?) }))
            }
            None => {
                let out = super::line_output(args.out.as_deref())?;
                let (h, t) = ingest::sink::spawn_writer(out);
                (h, Box::pin(async move { Ok(t.await??) }))
            }
        };
        let sink = sink.with_tags(&cfg.global_tags);
        let stats = if args.once {
            ingest::files::once(&cfg.ingest, sink.clone()).await?
        } else {
            ingest::files::run_with_state(
                cfg.ingest,
                sink.clone(),
                shutdown(),
                Default::default(),
                state,
            )
            .await?
        };
        drop(sink);
        let written = task.await?;
        tracing::info!(
            counters_rows = stats.rows[0],
            samples_rows = stats.rows[1],
            bad_rows = stats.bad.iter().flatten().sum::<u64>(),
            counters_points = stats.points[0],
            samples_points = stats.points[1],
            rollups_points = stats.points[2],
            points_written = written.points_written,
            points_dropped = written.points_dropped,
            "Ingest finished"
        );
        // A file that exists but could not be read (logged with its cause) fails the run.
        if stats.problems.iter().sum::<u64>() > 0 {
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "Shutting down"),
    }
}
