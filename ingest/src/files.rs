//! The CSV file pipeline (to be built).

use serde::Deserialize;

/// `[ingest]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {}

impl FilesConfig {
    /// Bad values as (key path, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
