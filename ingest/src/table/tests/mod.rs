//! The table's tests: the window on hand-written snapshots (`basics`), validation before any
//! state changes (`validation`), the memo of rewrites against a table that parses every value
//! (`repeats`), live rollups (`live`), the model-based test (`model`) and the fuzz corpus replayed (`fuzz_corpus`).

use super::*;

mod basics;
mod fuzz_corpus;
mod layout;
mod live;
mod marks;
mod model;
mod repeats;
mod validation;
