//! Global tags: `[global_tags]` (Telegraf's `global_tags`), the same tags on every point of
//! every bucket, added where lines enter the sink ([`super::SinkHandle::with_tags`]).
//!
//! The escaped `,k=v,k=v` suffix (keys sorted) is put together once; each line gets it right
//! after its own tags (the first unescaped space). With no global tags the handle carries no
//! suffix and lines pass through untouched, byte for byte.

use crate::lineproto::escape_tag_into;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Tags that srewatch's own points carry (in one bucket or another): a global tag of the same
/// name would make a point's series ambiguous, so it is refused.
pub const POINT_TAGS: &[&str] = &[
    "hostname", "host", "target", "role", "file", "group", "stat", "method", "kind", "alarm",
];

/// `[global_tags]`: tag key to value. Empty by default (points already carry the CP's
/// `hostname`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct GlobalTags(pub BTreeMap<String, String>);

impl GlobalTags {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bad keys or values as (key path `global_tags.KEY`, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        for (k, v) in &self.0 {
            let path = format!("global_tags.{k}");
            if k.is_empty() {
                bad.push(("global_tags".into(), "a tag key cannot be empty".into()));
            } else if POINT_TAGS.contains(&k.as_str()) {
                bad.push((
                    path,
                    format!(
                        "{k:?} is a tag of srewatch's own points ({}): choose another name",
                        POINT_TAGS.join(", ")
                    ),
                ));
            } else if k == "time" || k.starts_with('_') {
                bad.push((
                    path,
                    format!("{k:?} is reserved by InfluxDB (`time` and keys starting with `_`)"),
                ));
            } else if v.is_empty() {
                bad.push((
                    path,
                    "a tag value cannot be empty (line protocol has no empty tag values)".into(),
                ));
            }
        }
        bad
    }

    /// The escaped `,k=v,k=v` suffix, keys sorted; `None` when there are no tags.
    pub fn suffix(&self) -> Option<Bytes> {
        if self.0.is_empty() {
            return None;
        }
        let mut b = BytesMut::new();
        for (k, v) in &self.0 {
            b.extend_from_slice(b",");
            escape_tag_into(&mut b, k);
            b.extend_from_slice(b"=");
            escape_tag_into(&mut b, v);
        }
        Some(b.freeze())
    }
}

/// `lines` (whole lines of line protocol) with `suffix` inserted after each line's own tags.
pub fn tag_lines(lines: &[u8], suffix: &[u8]) -> Bytes {
    let n = memchr::memchr_iter(b'\n', lines).count() + 1;
    let mut out = BytesMut::with_capacity(lines.len() + n * suffix.len());
    let mut rest = lines;
    while !rest.is_empty() {
        let key_end = series_key_end(rest);
        let line_end = line_end(rest, key_end);
        if key_end < line_end {
            out.extend_from_slice(&rest[..key_end]);
            out.extend_from_slice(suffix);
            out.extend_from_slice(&rest[key_end..line_end]);
        } else {
            // No field set (not a point): left as it is.
            out.extend_from_slice(&rest[..line_end]);
        }
        rest = &rest[line_end..];
    }
    out.freeze()
}

/// The first unescaped space (the end of measurement and tags), or the line's end.
fn series_key_end(s: &[u8]) -> usize {
    let nl = memchr::memchr(b'\n', s).unwrap_or(s.len());
    let mut from = 0;
    while let Some(i) = memchr::memchr(b' ', &s[from..nl]) {
        let at = from + i;
        let backslashes = s[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return at;
        }
        from = at + 1;
    }
    nl
}

/// The end of the line starting at `s` (after its `\n`), its series key ending at `key_end`.
/// A string field value may hold a raw newline: it is skipped inside quotes.
fn line_end(s: &[u8], key_end: usize) -> usize {
    let nl = memchr::memchr(b'\n', &s[key_end..]).map(|i| key_end + i);
    let quote = memchr::memchr(b'"', &s[key_end..nl.unwrap_or(s.len())]);
    if quote.is_none() {
        return nl.map_or(s.len(), |i| i + 1);
    }
    let mut in_str = false;
    let mut i = key_end;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'"' => in_str = !in_str,
            b'\n' if !in_str => return i + 1,
            _ => {}
        }
        i += 1;
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(kv: &[(&str, &str)]) -> GlobalTags {
        GlobalTags(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn suffix_is_escaped_and_sorted() {
        let t = tags(&[("site", "paris 1"), ("node", "em,a=b\\")]);
        assert_eq!(
            &t.suffix().unwrap()[..],
            b",node=em\\,a\\=b\\\\,site=paris\\ 1"
        );
        assert_eq!(GlobalTags::default().suffix(), None);
    }

    #[test]
    fn inserted_after_own_tags_of_every_line() {
        let lines = concat!(
            "cpu,hostname=cp1 value=1i 60\n",
            "my\\ m,hostname=a\\ b value=2i 120\n",
            "probe,target=t1 error=\"a \\\"q\\\"\nnext\",ok=false 180\n",
            "bare value=3 240\n",
        );
        let out = tag_lines(lines.as_bytes(), b",site=p");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            concat!(
                "cpu,hostname=cp1,site=p value=1i 60\n",
                "my\\ m,hostname=a\\ b,site=p value=2i 120\n",
                "probe,target=t1,site=p error=\"a \\\"q\\\"\nnext\",ok=false 180\n",
                "bare,site=p value=3 240\n",
            )
        );
    }

    #[test]
    fn measurement_ending_in_escaped_backslash() {
        let out = tag_lines(b"a\\\\ v=1 1\n", b",s=x");
        assert_eq!(&out[..], b"a\\\\,s=x v=1 1\n");
    }

    #[test]
    fn collisions_and_empty_values_are_refused() {
        let t = tags(&[("host", "em1"), ("site", ""), ("_x", "1"), ("node", "em1")]);
        let bad = t.validate();
        let keys: Vec<&str> = bad.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["global_tags._x", "global_tags.host", "global_tags.site"]
        );
        for k in POINT_TAGS {
            assert_eq!(tags(&[(k, "v")]).validate().len(), 1, "{k}");
        }
    }
}
