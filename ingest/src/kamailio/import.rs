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

/// Reads `path` into `out` and says which format it holds.
pub async fn fetch(path: &Path, out: &mut Vec<u8>) -> Result<Format, FetchError> {
    let data = tokio::fs::read(path)
        .await
        .map_err(|e| FetchError::Io(format!("read {}: {e}", path.display())))?;
    out.clear();
    out.extend_from_slice(&data);
    Ok(detect(out))
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

    #[test]
    fn text_lines_and_bad_ones() {
        let (good, bad, r) = read_all(b"core:a = 1\r\n\nsl:b = x\nnonsense\ntmx:c = 3\n");
        r.unwrap();
        assert_eq!(good, [("core:a".to_string(), 1), ("tmx:c".to_string(), 3)]);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].0, "sl:b = x");
    }
}
