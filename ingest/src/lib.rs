//! # ingest: everything that turns data into stored points
//!
//! Data flows one way: **source → parse → window → encode → sink**.
//!
//! ## Layout
//! - [`follow`]: source. Watches the directory of `counters.csv` / `samples.csv` (notify, plus a
//!   periodic rescan and debounce) and yields each refresh as a whole-file snapshot. One file
//!   per concern: `watcher` (the `Follower`), `scan` (the `Scanner`: is this content new?),
//!   `read` (bounded, non-blocking whole-file reads), `fingerprint` (the content hash).
//! - [`csvrow`]: parse. The pure CSV kernel: `&[u8]` in, borrowed rows out, no I/O, no
//!   allocation per row; bad rows are typed errors with line and byte. One file per path:
//!   `split` (commas 16 bytes at a time), `numbers` (counts converted together), `memo` (rows
//!   a rewrite repeats), `quoted` (the slow path).
//! - [`table`]: window. Row validation before any state changes (future, too old, duplicate;
//!   the file's minute from the majority of valid rows), the completeness rule for a last line
//!   without newline, change detection across snapshots (a point is emitted only when it is new
//!   or changed), the counters/samples join, and the per-minute HDR rollups, with a schema in
//!   which no write leaves a stale field in InfluxDB. A façade over one type per concern:
//!   `window` (`FileWindow`: a file's minute, horizon, memo and the row checks), `names`
//!   (`Names`: interned host and stat names), `series` (`Series`: index and rings), `rows`
//!   and `join` (the per-row work), `rollups`, `points` (the
//!   output), `pipeline` (the sequential and the two-thread driver of a snapshot's rows, with
//!   the parse-ahead API in `ahead`); `table::state` saves and restores the table across a
//!   restart.
//! - [`files`]: the file pipeline that drives the three stages above.
//! - [`checkpoint`]: between window and sink: what the server has acknowledged, per series and
//!   minute, saved in the state directory, so a restart sends only what is new or unacknowledged.
//!   Fed by the table: each line comes with its series and minute (`table::LineMark`).
//! - [`state_dir`]: a directory of state files owned by one process (`flock`ed, atomic
//!   replaces), used by the checkpoint and the InfluxDB spool.
//! - [`gen`]: deterministic counters.csv / samples.csv generator for benches and tests.
//! - [`kamailio`]: source + parse + window for Kamailio statistics (JSON-RPC over HTTP, BINRPC
//!   over the `ctl` socket, saved `kamctl stats` output) with counter/gauge semantics.
//! - [`lineproto`]: encode. Line protocol written into a reused buffer with exact escaping.
//! - [`sink`]: sink. stdout/file writer, and the InfluxDB 2 writer with its on-disk spool
//!   (`sink::influx`: config, stats, http, batch, spool slot, writer).

pub mod checkpoint;
pub mod csvrow;
pub mod files;
pub mod follow;
pub mod gen;
pub mod kamailio;
pub mod lineproto;
pub mod sink;
pub mod state_dir;
pub mod table;

pub use lineproto::{Field, LineEncoder};
pub use sink::{Flushed, SinkHandle, SinkStats};
