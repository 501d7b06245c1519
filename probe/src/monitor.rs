//! (to be built)

use serde::Deserialize;

/// `[probe]` section with its `[[probe.target]]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {}

impl ProbeConfig {
    /// Bad values as (key path under `probe.`, e.g. `target[1].uri`, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
