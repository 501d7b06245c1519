//! Differential tests: the codec against rsip (the reference oracle, a dependency of the tests
//! only), and the prober's verdict against the bench's, over the response variants of
//! `fixtures/sip/variants`, the RFC 4475 messages and the fuzz corpus.

use super::read_response;
use std::path::{Path, PathBuf};

fn rfc4475_present() -> bool {
    super::rfc4475_dir().is_some()
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = vec![
        root.join("../fixtures/sip/variants"),
        root.join("fuzz/corpus/parse_response"),
    ];
    match super::rfc4475_dir() {
        Some(d) => dirs.push(d),
        None => eprintln!("RFC 4475 messages not present: {}", super::RFC4475_HINT),
    }
    let mut out = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                continue;
            }
            let name = format!(
                "{}/{}",
                if d.join("wsinv.dat").is_file() {
                    "rfc4475".into()
                } else {
                    d.file_name().unwrap().to_string_lossy()
                },
                p.file_name().unwrap().to_string_lossy()
            );
            out.push((name, std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// What both readers are compared on.
type Fields = (u16, String, u32, String, String);

fn codec(buf: &[u8]) -> Result<Fields, &'static str> {
    let r = read_response(buf).map_err(|e| e.as_str())?;
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((
        r.status,
        s(r.via.branch),
        r.cseq,
        s(r.cseq_method),
        s(r.call_id),
    ))
}

fn oracle(buf: &[u8]) -> Option<Fields> {
    use rsip::headers::{ToTypedHeader, UntypedHeader};
    use rsip::message::HeadersExt;
    let r = rsip::Response::try_from(buf).ok()?;
    let via = r.via_header().ok()?.typed().ok()?;
    let cs = r.cseq_header().ok()?.typed().ok()?;
    Some((
        r.status_code().code(),
        via.branch()?.to_string(),
        cs.seq,
        cs.method.to_string(),
        r.call_id_header().ok()?.value().trim().to_string(),
    ))
}

/// Wherever rsip reads a response, the codec reads the same fields from it, or refuses it for
/// a reason rsip does not check; the codec reads what rsip refuses only in forms RFC 3261
/// allows (the variants' folds, LWS and compact names, and the like).
#[test]
fn codec_agrees_with_rsip() {
    let (mut both, mut only_codec, mut only_rsip) = (0, Vec::new(), Vec::new());
    let mut both_rfc = 0;
    let mut differ = Vec::new();
    for (name, buf) in inputs() {
        match (codec(&buf), oracle(&buf)) {
            (Ok(c), Some(o)) => {
                both += 1;
                both_rfc += usize::from(name.starts_with("rfc4475/"));
                if c != o {
                    differ.push(format!("{name}: codec {c:?} rsip {o:?}"));
                }
            }
            (Ok(_), None) => only_codec.push(name),
            (Err(e), Some(_)) => only_rsip.push(format!("{name}: {e}")),
            (Err(_), None) => {}
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // The RFC 4475 responses both read (unreason, noreason, bcast) are counted apart, so the
    // other counts hold whether or not those messages are present.
    assert_eq!(both - both_rfc, 17);
    assert_eq!(both_rfc, if rfc4475_present() { 3 } else { 0 });
    // Forms RFC 3261 allows and rsip refuses: compact names, folds, LWS before the colon and
    // inside the sent-protocol, a lower-case version, bare LF; and fuzz inputs with an unknown
    // Via transport token (`UIP`) or unreadable headers the prober never reads.
    assert_eq!(
        only_codec,
        [
            "parse_response/2199760e966d5729c7e07db314b3f15915de5224",
            "parse_response/7d736d992a89280941bca1146b9ca4c7245faefc",
            "parse_response/compact-headers.sip",
            "parse_response/e72845f3f916fbaecbaa756b91afa1654d1a7818",
            "variants/compact_forms.sip",
            "variants/folded_to_only.sip",
            "variants/folded_unread_header.sip",
            "variants/folded_via_cseq_to.sip",
            "variants/lf_line_ends.sip",
            "variants/lower_case_version.sip",
            "variants/space_before_colon.sip",
            "variants/tab_before_colon.sip",
            "variants/via_protocol_lws.sip",
        ]
    );
    // What rsip does not check: the Content-Length rule and §18.3.
    assert_eq!(
        only_rsip,
        [
            "variants/duplicate_content_length.sip: bad_header",
            "variants/truncated_body.sip: truncated",
        ]
    );
}

/// The prober and the bench give the same verdict on every byte string: the prober's
/// reader with its rules that do not depend on the socket (one Via, a method we send) against
/// the bench's reader.
#[test]
fn prober_and_bench_agree() {
    let mut differ = Vec::new();
    let (mut answers, mut answers_rfc) = (0, 0);
    for (name, buf) in inputs() {
        let p = crate::message::parse_response(&buf)
            .ok()
            .filter(|r| r.vias == 1)
            .and_then(|r| Some((r.status, r.branch.clone(), r.cseq, r.method?)));
        let b = crate::bench::read_answer(&buf).ok().map(|(r, method)| {
            let branch = String::from_utf8_lossy(r.via.branch).into_owned();
            (r.status, branch, r.cseq, method)
        });
        answers += usize::from(p.is_some());
        answers_rfc += usize::from(p.is_some() && name.starts_with("rfc4475/"));
        if p != b {
            differ.push(format!("{name}: prober {p:?} bench {b:?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert_eq!(answers - answers_rfc, 27);
    assert_eq!(answers_rfc, if rfc4475_present() { 2 } else { 0 });
}

/// Where rsip reads a parameter value with LWS after its `=` (allowed: `EQUAL = SWS "=" SWS`,
/// RFC 3261 §25.1) as empty.
fn rsip_misreads_branch(buf: &[u8], rsip: &Fields) -> bool {
    rsip.1.is_empty()
        && buf
            .windows(8)
            .any(|w| w.eq_ignore_ascii_case(b"branch= ") || w.eq_ignore_ascii_case(b"branch=\t"))
}

/// Mutations of the variants (byte flips, deletions, insertions of SIP punctuation, cuts; a
/// fixed pseudo-random sequence): wherever rsip and the codec both read one, they read the
/// same fields — the fuzz target's oracle, run in the normal suite.
#[test]
fn mutations_agree_with_rsip() {
    let seeds: Vec<Vec<u8>> = inputs()
        .into_iter()
        .filter(|(n, _)| n.starts_with("variants/"))
        .map(|(_, b)| b)
        .collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let (mut both, mut misread, mut differ) = (0, 0, Vec::new());
    for i in 0..50_000 {
        let mut buf = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rnd(3) {
            if buf.is_empty() {
                break;
            }
            let at = rnd(buf.len());
            match rnd(4) {
                0 => buf[at] = rnd(256) as u8,
                1 => {
                    buf.remove(at);
                }
                2 => buf.insert(at, b"\r\n:;,<>\"@ =/\t"[rnd(13)]),
                _ => buf.truncate(at),
            }
        }
        if let (Ok(c), Some(o)) = (codec(&buf), oracle(&buf)) {
            both += 1;
            if rsip_misreads_branch(&buf, &o) {
                misread += 1;
            } else if c != o && differ.len() < 20 {
                differ.push(format!(
                    "{:?}\n  codec {c:?}\n  rsip  {o:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert_eq!((both, misread), (3719, 1));
}
