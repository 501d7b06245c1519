//! `srewatch kamailio poll TARGET...`: Kamailio statistics as line protocol, for a quick look.

use anyhow::Context;
use ingest::kamailio::{self, TargetConfig};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Poll Kamailio statistics and write per-minute line protocol (with `# bucket:` lines).
    Poll(PollArgs),
}

#[derive(clap::Args)]
pub struct PollArgs {
    /// `http://HOST:PORT/RPC` (JSON-RPC), `unix:/run/kamailio/kamailio_ctl`, `tcp:HOST:PORT`,
    /// `udp:HOST:PORT` (BINRPC), or a saved `kamctl stats` file. `NAME=TARGET` sets the
    /// hostname tag.
    #[arg(required = true)]
    targets: Vec<String>,
    /// Poll once, print counter totals, gauges and `up`, and exit.
    #[arg(long)]
    once: bool,
    /// Where line protocol goes: `-` for stdout, or a file (appended).
    #[arg(long, default_value = "-")]
    out: String,
    /// Poll period (aligned to the wall clock).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Longest wait for one reply.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Stop after this long (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Bucket named in the `# bucket:` lines.
    #[arg(long, default_value = kamailio::DEFAULT_BUCKET)]
    bucket: String,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Poll(a) => poll(a),
    }
}

fn poll(a: PollArgs) -> anyhow::Result<ExitCode> {
    let mut targets = Vec::new();
    let split: Vec<(Option<&str>, &str)> = a
        .targets
        .iter()
        .map(|t| match t.split_once('=') {
            Some((name, addr)) if !name.contains(':') && !name.contains('/') => (Some(name), addr),
            _ => (None, t.as_str()),
        })
        .collect();
    // Default hostname tags distinct across the targets (HOST, else HOST:PORT).
    let addrs: Vec<&str> = split.iter().map(|(_, a)| *a).collect();
    let defaults = kamailio::default_hostnames(&addrs);
    for (n, (t, (name, addr))) in a.targets.iter().zip(split).enumerate() {
        let mut cfg = TargetConfig::for_address(addr);
        cfg.hostname = name.map_or_else(|| defaults[n].clone(), str::to_string);
        cfg.interval = a.interval;
        cfg.timeout = a.timeout.min(a.interval);
        cfg.max_backoff = cfg.max_backoff.max(a.interval);
        cfg.bucket = a.bucket.clone();
        let bad = cfg.validate();
        if !bad.is_empty() {
            let why: Vec<String> = bad.iter().map(|(k, r)| format!("{k}: {r}")).collect();
            anyhow::bail!("target {} (`{t}`): {}", n + 1, why.join("; "));
        }
        targets.push(cfg);
    }
    let rt = super::runtime()?;
    rt.block_on(async move {
        let out = super::line_output(Some(std::path::Path::new(&a.out)))?;
        let (sink, writer) = ingest::sink::spawn_writer(out);
        let stats = if a.once {
            let s = kamailio::poll::poll_once(targets, sink.clone()).await;
            s.snapshot()
        } else {
            let stop = tokio_util::sync::CancellationToken::new();
            let pollers = kamailio::spawn_pollers(targets, sink.clone(), stop.clone());
            wait_for_stop(a.duration).await;
            stop.cancel();
            pollers.task.await.context("pollers")?;
            pollers.stats.snapshot()
        };
        sink.flush().await.ok();
        drop(sink);
        writer.await.context("writer")??;
        tracing::info!(
            polls_ok = stats.polls_ok,
            polls_failed = stats.polls_failed,
            restarts = stats.restarts,
            bad_lines = stats.bad_lines + stats.non_numeric,
            bad_replies = stats.rpc_errors + stats.malformed_replies + stats.truncated_replies,
            points = stats.points,
            "Kamailio polling done"
        );
        Ok(if stats.polls_ok == 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}

async fn wait_for_stop(limit: Option<Duration>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    let limit = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = limit => {}
    }
}
