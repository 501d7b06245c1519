//! Import: a saved `kamctl stats` output (the JSON-RPC reply of guide section 4.7.2, e.g.
//! `fixtures/kamailio/kamctl-stats.json`) or the text of `kamcmd stats.get_statistics all`
//! (`group:name = value` lines), for offline use and fixtures. The file is read again at every
//! poll, so a file refreshed by cron behaves like a live node.

use super::{FetchError, Format};
use std::path::Path;

/// JSON when the first non-blank byte is `{`, else text lines.
pub fn detect(buf: &[u8]) -> Format {
    match buf.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Format::Json,
        _ => Format::Text,
    }
}

/// Largest file read (as a BINRPC reply: [`super::binrpc::MAX_BODY`]).
pub const MAX_FILE: usize = super::binrpc::MAX_BODY;

/// Reads `path` into `out` and says which format it holds. Only a regular file of at most
/// [`MAX_FILE`] bytes is read: it is opened with `O_NONBLOCK` and checked with `fstat` first
/// ([`crate::follow::open_regular`]), so a FIFO, a device or a directory fails the poll at once
/// instead of leaving a blocked thread behind at every poll (and a runtime that cannot stop).
pub async fn fetch(path: &Path, out: &mut Vec<u8>) -> Result<Format, FetchError> {
    let p = path.to_path_buf();
    let mut buf = std::mem::take(out);
    let (buf, r) = tokio::task::spawn_blocking(move || {
        let r = read_capped(&p, &mut buf);
        (buf, r)
    })
    .await
    .map_err(|e| FetchError::Io(format!("read {}: {e}", path.display())))?;
    *out = buf;
    r.map_err(|e| FetchError::Io(format!("read {}: {e}", path.display())))?;
    Ok(detect(out))
}

/// Reads the whole regular file `path` (at most [`MAX_FILE`] bytes) into `out`.
fn read_capped(path: &Path, out: &mut Vec<u8>) -> Result<(), crate::follow::ReadError> {
    use crate::follow::{FileProblem, ReadError};
    use std::io::Read;
    let (f, _) = crate::follow::open_regular(path, MAX_FILE as u64)?;
    out.clear();
    f.take(MAX_FILE as u64 + 1).read_to_end(out)?;
    if out.len() > MAX_FILE {
        out.clear();
        return Err(ReadError::Problem(FileProblem::TooLarge {
            max: MAX_FILE as u64,
        }));
    }
    Ok(())
}

/// What [`read_all`] found: statistics, lines that are not, and the reply's own error.
pub type ReadAll = (
    Vec<(String, i64)>,
    Vec<(String, super::parse::LineError)>,
    Result<(), FetchError>,
);

/// Every statistic of a saved output, in file order, as (`group:name`, value); lines that are
/// not statistics are returned separately with their reason. For tools and tests.
pub fn read_all(buf: &[u8]) -> ReadAll {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut scratch = Vec::new();
    let r = super::scan(
        detect(buf),
        buf,
        &mut scratch,
        &mut |l| match super::parse::parse_line(l) {
            Ok(s) => good.push((s.full.to_string(), s.value)),
            Err(e) => bad.push((String::from_utf8_lossy(l).into_owned(), e)),
        },
        &mut || {},
    );
    (good, bad, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/kamailio/kamctl-stats.json"
        ))
        .unwrap()
    }

    /// The guide's `kamctl stats` listing (section 4.7.2), as saved in the fixture.
    #[test]
    fn guide_sample() {
        let buf = fixture();
        assert_eq!(detect(&buf), Format::Json);
        let (good, bad, r) = read_all(&buf);
        r.unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good.len(), 158);
        assert_eq!(good[0], ("app_python3:active_dialogs".into(), 0));
        let get = |k: &str| good.iter().find(|(n, _)| n == k).unwrap().1;
        assert_eq!(get("core:rcv_requests_options"), 1767298);
        assert_eq!(get("core:rcv_requests"), 2039960);
        assert_eq!(get("sl:5xx_replies"), 4);
        assert_eq!(get("shmem:used_size"), 2718232);
        assert_eq!(get("shmem:total_size"), 67108864);
        assert_eq!(get("tmx:rpl_sent"), 385676);
        assert_eq!(good[157], ("usrloc:registered_users".into(), 0));
        let groups: std::collections::BTreeSet<&str> = good
            .iter()
            .map(|(n, _)| n.split(':').next().unwrap())
            .collect();
        assert_eq!(
            groups.into_iter().collect::<Vec<_>>(),
            [
                "app_python3",
                "core",
                "dns",
                "registrar",
                "shmem",
                "sl",
                "tcp",
                "tmx",
                "usrloc"
            ]
        );
    }

    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }

    /// A `file` target that is a FIFO: every poll fails at once with the cause, no blocked
    /// thread is left behind, and the runtime shuts down (SIGTERM finishes).
    #[test]
    fn kamailio_file_target_fifo_leaves_no_thread_and_shuts_down() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stats.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let before = threads();
        let fifo2 = fifo.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let mut errs = Vec::new();
            let mut peak = 0;
            rt.block_on(async {
                let mut buf = Vec::new();
                for _ in 0..20 {
                    let r = tokio::time::timeout(
                        std::time::Duration::from_millis(50),
                        fetch(&fifo2, &mut buf),
                    )
                    .await;
                    errs.push(match r {
                        Ok(Err(e)) => e.to_string(),
                        Ok(Ok(_)) => "read".into(),
                        Err(_) => "timeout".into(),
                    });
                    peak = peak.max(threads());
                }
            });
            drop(rt);
            done_tx.send((errs, peak)).unwrap();
        });
        let (errs, peak) = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the runtime did not shut down (a blocked read thread)");
        assert_eq!(
            errs[0],
            format!("read {}: not a regular file (fifo)", fifo.display())
        );
        assert!(errs.iter().all(|e| e == &errs[0]), "{errs:?}");
        // This test's thread, the runtime's worker and a few blocking threads (a read's thread
        // may not be idle yet when the next read starts); a blocked read per poll would be 20.
        assert!(peak <= before + 8, "threads {before} -> {peak}");
    }

    #[test]
    fn text_lines_and_bad_ones() {
        let (good, bad, r) = read_all(b"core:a = 1\r\n\nsl:b = x\nnonsense\ntmx:c = 3\n");
        r.unwrap();
        assert_eq!(good, [("core:a".to_string(), 1), ("tmx:c".to_string(), 3)]);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].0, "sl:b = x");
    }
}
