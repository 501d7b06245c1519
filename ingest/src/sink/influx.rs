//! InfluxDB 2 write API sink (to be built: batching, gzip, retries, spool).

use serde::Deserialize;

/// `[influxdb]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {}

impl InfluxConfig {
    /// Bad values as (key path under `influxdb.`, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// Why the InfluxDB sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("InfluxDB sink not built yet")]
    NotBuilt,
}

/// Starts the InfluxDB writer task. The task ends when every handle is dropped, after writing
/// out (to the server or the spool) what it holds.
pub fn spawn(
    _cfg: InfluxConfig,
) -> Result<(super::SinkHandle, tokio::task::JoinHandle<super::SinkStats>), StartError> {
    Err(StartError::NotBuilt)
}
