//! Sinks: where encoded points go.
//!
//! Every producer (CSV files, Kamailio polls, probe results) encodes line protocol with
//! [`crate::lineproto::LineEncoder`] and hands whole lines to a [`SinkHandle`] together with the
//! bucket they belong to. Behind the handle one task owns the output:
//!
//! - [`spawn_writer`]: line protocol to stdout or a file, grouped under `# bucket: NAME` lines
//!   (the embedded default when no InfluxDB is configured);
//! - [`influx::spawn`]: the InfluxDB 2 write API with batching, gzip, retries and the on-disk
//!   [`spool`].
//!
//! Dropping every handle closes the sink: the task writes out what it holds and returns its
//! [`SinkStats`].
//!
//! ## Layout
//! - this file: the handle, [`Batch`], [`Flushed`] and the stdout/file writer;
//! - [`influx`]: the InfluxDB sink, one module per concern: `config` (the `[influxdb]`
//!   section), `stats` (live counters), `http` (one request and its answer), `batch`
//!   (bisection, cutting lines to fit), `spool_slot` (the spool or why it is unusable),
//!   `writer` (the task; `writer/hold.rs` its memory buffer);
//! - [`lanes`]: per-bucket state, so a refused bucket is held back alone;
//! - `backoff`: the exponential backoff with jitter that the writer and each lane use;
//! - [`http_body`]: bounded error bodies and the same-host redirect policy;
//! - [`spool`]: the on-disk spool.

mod backoff;
pub mod http_body;
pub mod influx;
pub mod lanes;
pub mod spool;
pub mod tags;

use bytes::Bytes;
use std::io::Write;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Whole lines of line protocol for one bucket, timestamps in seconds.
#[derive(Debug, Clone)]
pub struct Batch {
    pub bucket: String,
    pub lines: Bytes,
    pub points: usize,
}

pub(crate) enum Command {
    Write(Batch),
    /// Answered with [`Flushed`] once everything queued before has been written out.
    Flush(oneshot::Sender<Flushed>),
}

/// The sink's task has ended (it failed or was shut down).
#[derive(Debug, thiserror::Error)]
#[error("sink closed")]
pub struct SinkClosed;

/// Cheap to clone; one per producer.
#[derive(Clone)]
pub struct SinkHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    /// The escaped `,k=v` suffix of the global tags, added to every line ([`tags`]).
    tags: Option<Bytes>,
}

impl SinkHandle {
    /// A handle and the receiving end, for sinks implemented in this crate.
    pub(crate) fn channel(depth: usize) -> (SinkHandle, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(depth);
        (SinkHandle { tx, tags: None }, rx)
    }

    /// This handle (and its clones) adding `tags` to every line; with no tags, lines pass
    /// through unchanged.
    pub fn with_tags(mut self, tags: &tags::GlobalTags) -> SinkHandle {
        self.tags = tags.suffix();
        self
    }

    /// Queues whole lines for `bucket`. Waits while the sink is busy (back-pressure).
    pub async fn write(&self, bucket: &str, lines: Bytes, points: usize) -> Result<(), SinkClosed> {
        if points == 0 {
            return Ok(());
        }
        let lines = match &self.tags {
            Some(suffix) => tags::tag_lines(&lines, suffix),
            None => lines,
        };
        let batch = Batch {
            bucket: bucket.to_owned(),
            lines,
            points,
        };
        self.tx
            .send(Command::Write(batch))
            .await
            .map_err(|_| SinkClosed)
    }

    /// Returns once everything queued before the call has been written out (to the server, the
    /// spool, or the file).
    pub async fn flush(&self) -> Result<(), SinkClosed> {
        self.flush_acked().await.map(|_| ())
    }

    /// [`SinkHandle::flush`], also telling how many points so far were not stored by the server
    /// or the spool when their flush was answered ([`Flushed::unstored`]). A producer
    /// that records what was acknowledged compares it with the previous answer: if it grew,
    /// the lines since then are not all stored (see [`crate::checkpoint`]).
    pub async fn flush_acked(&self) -> Result<Flushed, SinkClosed> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .await
            .map_err(|_| SinkClosed)?;
        rx.await.map_err(|_| SinkClosed)
    }
}

/// The answer to a flush.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Points since the sink started that neither the server nor the spool had when a flush was
    /// answered: lost, or held in memory only because the server (or their bucket) was failing
    /// and the spool could not take them (they may still be delivered later). Not counting
    /// lines the server rejected on their own, nor old batches evicted from a full spool,
    /// which had been stored.
    pub unstored: u64,
}

/// Batches queued for [`spawn_writer`]'s thread (about 2 MiB of 256 KiB chunks). A local
/// writer gains nothing from a longer queue; with 64, `ingest --once --out /dev/null` of a
/// 1,000,000-row first snapshot, whose two threads keep both cores busy, held up to 16 MiB
/// of line protocol queued while the writer thread waited for a core.
pub const WRITER_QUEUE: usize = 8;

/// What a sink did over its life.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SinkStats {
    pub points_written: u64,
    pub bytes_written: u64,
    pub points_dropped: u64,
}

/// Line protocol to a writer (stdout or a file), each run of batches for one bucket under a
/// `# bucket: NAME` comment line.
///
/// At most [`WRITER_QUEUE`] batches wait for the writer; a producer waits for room.
pub fn spawn_writer<W: Write + Send + 'static>(
    out: W,
) -> (SinkHandle, JoinHandle<std::io::Result<SinkStats>>) {
    let (handle, mut rx) = SinkHandle::channel(WRITER_QUEUE);
    let task = tokio::task::spawn_blocking(move || {
        // Small batches are gathered; one of 64 KiB or more is written from where it is
        // (`BufWriter` copies a batch shorter than its capacity: with 256 KiB, the chunks of
        // a first snapshot written on two threads, a little under 256 KiB, were all copied).
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
        let mut stats = SinkStats::default();
        let mut current: Option<String> = None;
        while let Some(cmd) = rx.blocking_recv() {
            match cmd {
                Command::Write(b) => {
                    if current.as_deref() != Some(b.bucket.as_str()) {
                        writeln!(out, "# bucket: {}", b.bucket)?;
                        current = Some(b.bucket);
                    }
                    out.write_all(&b.lines)?;
                    stats.points_written += b.points as u64;
                    stats.bytes_written += b.lines.len() as u64;
                }
                Command::Flush(done) => {
                    out.flush()?;
                    let _ = done.send(Flushed::default());
                }
            }
        }
        out.flush()?;
        Ok(stats)
    });
    (handle, task)
}

/// An in-memory writer for [`spawn_writer`]: clones share one buffer, so a test (or a
/// diagnostic command) can read what the sink wrote.
#[derive(Clone, Default)]
pub struct MemoryWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl MemoryWriter {
    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for MemoryWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writer_groups_by_bucket() {
        let buf = MemoryWriter::default();
        let (h, task) = spawn_writer(buf.clone());
        h.write("counters", Bytes::from_static(b"a v=1i 60\n"), 1)
            .await
            .unwrap();
        h.write("counters", Bytes::from_static(b"b v=2i 60\n"), 1)
            .await
            .unwrap();
        h.write("samples", Bytes::from_static(b"c value=0.5 60\n"), 1)
            .await
            .unwrap();
        h.write("samples", Bytes::new(), 0).await.unwrap();
        h.flush().await.unwrap();
        drop(h);
        let stats = task.await.unwrap().unwrap();
        assert_eq!(stats.points_written, 3);
        assert_eq!(
            buf.text(),
            "# bucket: counters\na v=1i 60\nb v=2i 60\n# bucket: samples\nc value=0.5 60\n"
        );
    }
}
