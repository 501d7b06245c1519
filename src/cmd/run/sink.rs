//! The service's one sink: InfluxDB when `[influxdb]` is configured (with its state
//! directory), else line protocol to stdout or appended to `--out FILE`.

use crate::config::{self, Config};
use anyhow::Context;
use ingest::checkpoint::StateDir;
use ingest::sink::influx::InfluxStats;
use ingest::{SinkHandle, SinkStats};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

pub(super) type SinkTask = Pin<Box<dyn Future<Output = anyhow::Result<SinkStats>> + Send>>;

/// Starts the sink; with InfluxDB its statistics come back too.
pub(super) fn start(
    cfg: &Config,
    path: Option<&PathBuf>,
    out: Option<PathBuf>,
) -> anyhow::Result<(SinkHandle, SinkTask, Option<Arc<InfluxStats>>)> {
    Ok(match cfg.influxdb.clone() {
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
            let (h, t) = ingest::sink::spawn_writer(crate::cmd::line_output(out.as_deref())?);
            (h, Box::pin(async move { Ok(t.await??) }), None)
        }
    })
}

/// With InfluxDB: the state directory (checkpoint of acknowledged points, Kamailio windows).
pub(super) fn state_dir(cfg: &Config) -> anyhow::Result<Option<Arc<StateDir>>> {
    Ok(match &cfg.influxdb {
        Some(i) => {
            let dir = i.state_dir();
            let st = ingest::checkpoint::StateDir::open_or_warn(&dir)
                .with_context(|| format!("cannot use the state directory {}", dir.display()))?;
            st.map(Arc::new)
        }
        None => None,
    })
}
