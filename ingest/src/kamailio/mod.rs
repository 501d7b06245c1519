//! Kamailio statistics (to be built)

use serde::Deserialize;

/// One `[[kamailio]]` target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {}

impl TargetConfig {
    /// Bad values as (key relative to this table, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
