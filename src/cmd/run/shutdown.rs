//! SIGTERM/SIGINT (or the file ingest ending): `STOPPING=1`, the parts stopped in order (each
//! writes its partial window), a last health report, the sink drained within
//! `service.shutdown_deadline`.

use super::sink::SinkTask;
use super::Service;
use ingest::files::{FilesError, FilesStats};
use std::process::ExitCode;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the service waits for when it stops.
pub(super) struct Tasks {
    pub stop: CancellationToken,
    pub files: Option<JoinHandle<Result<FilesStats, FilesError>>>,
    pub metrics: Option<JoinHandle<()>>,
    pub sink: SinkTask,
}

/// Stops the parts and drains the sink; exit code 1 when the sink failed.
pub(super) async fn stop(mut svc: Service, tasks: Tasks) -> ExitCode {
    let _ = svc.notifier.stopping();
    let deadline = svc.cfg.service.shutdown_deadline;
    let done = tokio::time::timeout(deadline, async {
        tasks.stop.cancel();
        if let Some(t) = tasks.files {
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
        if let Some(t) = tasks.metrics {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        let Service { sink, .. } = svc;
        drop(sink);
        tasks.sink.await
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
            return ExitCode::from(1);
        }
        Err(_) => {
            tracing::error!(
                deadline = ?deadline,
                "Shutdown deadline passed; batches not yet sent or spooled are lost"
            );
        }
    }
    ExitCode::SUCCESS
}
