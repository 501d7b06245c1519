//! The file ingest part: counters.csv and samples.csv followed until the stop.

use crate::config::Config;
use ingest::checkpoint::StateDir;
use ingest::files::{FilesError, FilesStats};
use ingest::SinkHandle;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The running file ingest (none when `service.ingest = false`); `live` is updated as it reads.
pub(super) fn start(
    cfg: &Config,
    sink: &SinkHandle,
    stop: &CancellationToken,
    live: &Arc<Mutex<FilesStats>>,
    state: &Option<Arc<StateDir>>,
) -> Option<JoinHandle<Result<FilesStats, FilesError>>> {
    if cfg.service.ingest {
        Some(tokio::spawn(ingest::files::run_with_state(
            cfg.ingest.clone(),
            sink.clone(),
            stop.clone().cancelled_owned(),
            live.clone(),
            state.clone(),
        )))
    } else {
        tracing::info!("File ingest turned off (service.ingest = false)");
        None
    }
}
