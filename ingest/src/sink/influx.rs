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
