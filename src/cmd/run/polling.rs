//! The Kamailio polling part: one poller per `[[kamailio]]` target, reconciled on SIGHUP.

use crate::config::Config;
use ingest::checkpoint::StateDir;
use ingest::kamailio::poll::{Clock, PollStats, PollerSet};
use ingest::SinkHandle;
use std::sync::Arc;

/// The running pollers (none when `service.kamailio = false`) and their counters.
pub(super) async fn start(
    cfg: &Config,
    sink: &SinkHandle,
    state: &Option<Arc<StateDir>>,
) -> (Option<PollerSet>, Arc<PollStats>) {
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
    (pollers, poll_stats)
}
