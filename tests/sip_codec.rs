//! A table of responses built from RFC 3261's grammar, read
//! by the prober (in process and end to end through `srewatch probe check`) and by the bench's
//! reader; both give the same verdict on every variant.

use crate::util;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

/// What a variant answers: the request's fields it echoes.
pub struct Req {
    pub sent_by: String,
    pub branch: String,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: String,
}

impl Req {
    fn fixed() -> Req {
        Req {
            sent_by: "127.0.0.1:40000".into(),
            branch: "z9hG4bKv-1-0".into(),
            from: "<sip:srewatch@127.0.0.1>;tag=ftag".into(),
            to: "<sip:127.0.0.1:5070>".into(),
            call_id: "cid1@srewatch".into(),
            cseq: "1".into(),
        }
    }

    /// The fields of a request as srewatch writes it (one header per line, long names).
    fn of(text: &str) -> Req {
        let field = |name: &str| {
            text.split("\r\n")
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
                .unwrap_or_else(|| panic!("{name} in {text}"))
                .to_string()
        };
        let via = field("Via");
        let sent_by = via.split(' ').nth(1).unwrap().split(';').next().unwrap();
        let branch = via
            .split(';')
            .find_map(|p| p.strip_prefix("branch="))
            .unwrap();
        Req {
            sent_by: sent_by.into(),
            branch: branch.into(),
            from: field("From"),
            to: field("To"),
            call_id: field("Call-ID"),
            cseq: field("CSeq").split(' ').next().unwrap().into(),
        }
    }
}

/// The names of the variants, with the To tag and status the prober must read from the valid
/// ones (`None`: the response must not be taken as the answer).
pub const VARIANTS: &[(&str, Option<(u16, &str)>)] = &[
    ("plain", Some((200, "uas1"))),
    // Folding, whitespace and case that RFC 3261 allows.
    ("folded_via_cseq_to", Some((200, "uas1"))),
    ("folded_to_only", Some((200, "uas1"))),
    ("folded_unread_header", Some((200, "uas1"))),
    ("space_before_colon", Some((200, "uas1"))),
    ("tab_before_colon", Some((200, "uas1"))),
    ("via_protocol_lws", Some((200, "uas1"))),
    ("lower_case_version", Some((200, "uas1"))),
    // The rest of RFC 3261's grammar.
    ("compact_forms", Some((200, "uas1"))),
    ("lf_line_ends", Some((200, "uas1"))),
    ("empty_reason", Some((200, "uas1"))),
    ("reason_with_utf8", Some((200, "uas1"))),
    ("oversized_body", Some((200, "uas1"))),
    ("body_exact", Some((200, "uas1"))),
    ("several_via_values", None),
    ("multi_line_reason", None),
    // Framing and matching errors: never the answer.
    ("truncated_body", None),
    ("duplicate_content_length", None),
    ("wrong_branch", None),
    ("wrong_call_id", None),
    ("wrong_cseq_method", None),
];

/// The bytes of variant `name` answering `r`.
pub fn variant(name: &str, r: &Req) -> Vec<u8> {
    let Req {
        sent_by,
        branch,
        from,
        to,
        call_id,
        cseq,
    } = r;
    let via = format!("Via: SIP/2.0/UDP {sent_by};branch={branch};received=127.0.0.1");
    let mut status = "SIP/2.0 200 OK".to_string();
    let mut h = vec![
        via.clone(),
        format!("From: {from}"),
        format!("To: {to};tag=uas1"),
        format!("Call-ID: {call_id}"),
        format!("CSeq: {cseq} OPTIONS"),
        "Server: variant-uas".to_string(),
        "Content-Length: 0".to_string(),
    ];
    let mut body = String::new();
    match name {
        "plain" => {}
        "folded_via_cseq_to" => {
            h[0] = format!("Via: SIP/2.0/UDP {sent_by}\r\n ;branch={branch}");
            h[2] = format!("To: {to}\r\n\t;tag=uas1");
            h[4] = format!("CSeq: {cseq}\r\n OPTIONS");
        }
        "folded_to_only" => h[2] = format!("To:\r\n {to};tag=uas1"),
        "folded_unread_header" => h.insert(5, "Subject: a subject\r\n  on two lines".into()),
        "space_before_colon" => {
            h[0] = via.replacen("Via:", "Via :", 1);
            h[4] = format!("CSeq  : {cseq} OPTIONS");
            h[3] = format!("Call-ID : {call_id}");
        }
        "tab_before_colon" => {
            h[2] = format!("To\t: {to};tag=uas1");
            h[4] = format!("CSeq\t:\t{cseq} OPTIONS");
        }
        "via_protocol_lws" => {
            h[0] = format!("Via: SIP / 2.0 / UDP {sent_by};branch={branch}");
        }
        "lower_case_version" => status = "sip/2.0 200 OK".into(),
        "compact_forms" => {
            h[0] = via.replacen("Via:", "v:", 1);
            h[1] = format!("f: {from}");
            h[2] = format!("t:{to};tag=uas1");
            h[3] = format!("i: {call_id}");
            h[6] = "l: 0".into();
        }
        "lf_line_ends" => {}
        "empty_reason" => status = "SIP/2.0 200 ".into(),
        "reason_with_utf8" => status = "SIP/2.0 200 = 2**3 * 5**2 сто".into(),
        "oversized_body" => {
            h[6] = "Content-Length: 4".into();
            body = "abcdefghij".into();
        }
        "body_exact" => {
            h[6] = "Content-Length: 10".into();
            body = "abcdefghij".into();
        }
        "several_via_values" => {
            h[0] = format!("{via}, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKother");
        }
        "multi_line_reason" => status = "SIP/2.0 200 OK\r\n and more".into(),
        "truncated_body" => {
            h[6] = "Content-Length: 200".into();
            body = "abcdefghij".into();
        }
        "duplicate_content_length" => h.push("Content-Length: 0".into()),
        "wrong_branch" => h[0] = format!("Via: SIP/2.0/UDP {sent_by};branch=z9hG4bKnotours"),
        "wrong_call_id" => h[3] = "Call-ID: another@elsewhere".into(),
        "wrong_cseq_method" => h[4] = format!("CSeq: {cseq} INVITE"),
        other => panic!("no variant {other}"),
    }
    let text = format!("{status}\r\n{}\r\n\r\n{body}", h.join("\r\n"));
    if name == "lf_line_ends" {
        text.replace("\r\n", "\n").into_bytes()
    } else {
        text.into_bytes()
    }
}

/// The prober's verdict: what `transport::accept` keeps, after the Call-ID check the prober
/// makes once a branch matched.
fn prober(buf: &[u8], r: &Req) -> Option<(u16, String)> {
    let local: SocketAddr = r.sent_by.parse().unwrap();
    let m = probe::transport::accept(buf, local).ok()?;
    (m.branch == r.branch
        && m.call_id == r.call_id
        && m.method == Some(probe::transaction::Method::Options))
    .then(|| (m.status, m.to_tag.unwrap_or_default()))
}

/// The bench's verdict: what its reader keeps, with the branch and method lookup it makes.
fn bench(buf: &[u8], r: &Req) -> Option<(u16, String)> {
    let (m, method) = probe::bench::read_answer(buf).ok()?;
    (m.via.branch == r.branch.as_bytes() && method == probe::transaction::Method::Options).then(
        || {
            let to = String::from_utf8_lossy(m.to).into_owned();
            let tag = to.split(";tag=").nth(1).unwrap_or("").to_string();
            (m.status, tag)
        },
    )
}

/// In process: every variant read as RFC 3261 says, by the prober and
/// the bench alike.
#[test]
fn response_variants_prober_and_bench() {
    let r = Req::fixed();
    let mut wrong = Vec::new();
    for (name, want) in VARIANTS {
        let bytes = variant(name, &r);
        let want = want.map(|(s, t)| (s, t.to_string()));
        let p = prober(&bytes, &r);
        if p != want {
            wrong.push(format!("prober {name}: {p:?}, want {want:?}"));
        }
        // The bench never checks the Call-ID (its Call-IDs are the branch's).
        let want_bench = if *name == "wrong_call_id" {
            Some((200, "uas1".to_string()))
        } else {
            want
        };
        let b = bench(&bytes, &r);
        if b != want_bench {
            wrong.push(format!("bench {name}: {b:?}, want {want_bench:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A UAS that answers every request with variant `name` (a fault server: the bytes are the
/// point of the test).
fn variant_uas(name: &'static str) -> (SocketAddr, thread::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = sock.local_addr().unwrap();
    let h = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("OPTIONS ") {
                let _ = sock.send_to(&variant(name, &Req::of(&text)), from);
            }
            if text.starts_with("STOP") {
                return;
            }
        }
    });
    (addr, h)
}

/// End to end: `srewatch probe check` says OK for every valid variant and
/// CRITICAL (no answer) for the others, the truncated one included.
#[test]
fn probe_check_against_variant_uas() {
    let mut wrong = Vec::new();
    for (name, want) in VARIANTS {
        let (addr, h) = variant_uas(name);
        let uri = format!("sip:{addr}");
        let out = util::srewatch()
            .args(["probe", "check", &uri, "--timeout", "1s"])
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"STOP", addr)
            .unwrap();
        h.join().unwrap();
        let ok = match want {
            Some((status, _)) => {
                code == 0 && line.starts_with(&format!("SIP OK: {uri} answered {status} in "))
            }
            None => code == 2 && line.contains(&format!("no answer from {uri} within 1s")),
        };
        if !ok {
            wrong.push(format!("{name}: exit {code}: {line}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The variants answering [`Req::fixed`] are kept as files in `fixtures/sip/variants/` for the
/// codec's differential test against rsip in `probe` (which cannot see this table); they must
/// be what the table builds. `SREWATCH_WRITE_FIXTURES=1` rewrites them.
#[test]
fn variant_fixtures_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sip/variants");
    let write = std::env::var_os("SREWATCH_WRITE_FIXTURES").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, _) in VARIANTS {
        let p = dir.join(format!("{name}.sip"));
        let bytes = variant(name, &Req::fixed());
        if write {
            std::fs::write(&p, &bytes).unwrap();
        }
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "{}", p.display());
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), VARIANTS.len());
}

/// The same variants end to end through `srewatch bench`: it counts as answered exactly the
/// variants `probe check` accepts (the wrong Call-ID aside: the bench matches by branch only).
#[test]
fn bench_against_variant_uas_agrees_with_probe_check() {
    let dir = util::tempdir();
    let mut wrong = Vec::new();
    for (name, want) in VARIANTS {
        let (addr, h) = variant_uas(name);
        let json = dir.path().join(format!("{name}.json"));
        let out = util::srewatch()
            .arg("bench")
            .arg(format!("sip:{addr}"))
            .args(["--rate", "20", "--duration", "1s", "--timeout", "300ms"])
            .args(["--no-retransmit", "--json"])
            .arg(&json)
            .output()
            .unwrap();
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"STOP", addr)
            .unwrap();
        h.join().unwrap();
        let Ok(text) = std::fs::read(&json) else {
            wrong.push(format!(
                "{name}: no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let acc = &v["accounting"];
        let (sent, answered) = (
            acc["sent"].as_u64().unwrap(),
            acc["answered"].as_u64().unwrap(),
        );
        let answers = want.is_some() || *name == "wrong_call_id";
        let expect = if answers { sent } else { 0 };
        if sent != 20 || answered != expect {
            wrong.push(format!(
                "{name}: sent {sent} answered {answered}, want {expect}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Byte streams for the one framer: each answers a request over TCP, written in pieces (the
/// framer sees it split across reads), with the verdict both readers must give.
const STREAMS: &[(&str, bool)] = &[
    ("plain", true),
    ("keepalive_first", true),
    ("body_split", true),
    ("missing_content_length", true),
    ("folded_content_length", true),
    ("lf_line_ends", true),
    ("bad_content_length", false),
    ("signed_content_length", false),
    ("duplicate_content_length", false),
];

/// The bytes of stream case `name` answering `r`, and where they are cut into writes.
fn stream_case(name: &str, r: &Req) -> (Vec<u8>, Vec<usize>) {
    let variant_name = match name {
        "lf_line_ends" | "duplicate_content_length" => name,
        _ => "plain",
    };
    let text = String::from_utf8(variant(variant_name, r)).unwrap();
    let text = text.replacen("SIP/2.0/UDP", "SIP/2.0/TCP", 1);
    let cl = "Content-Length: 0\r\n";
    let text = match name {
        "keepalive_first" => format!("\r\n\r\n{text}"),
        "body_split" => text.replacen(cl, "Content-Length: 10\r\n", 1) + "abcdefghij",
        "missing_content_length" => text.replacen(cl, "", 1),
        "folded_content_length" => text.replacen(cl, "Content-Length:\r\n 0\r\n", 1),
        "bad_content_length" => text.replacen(cl, "Content-Length: x\r\n", 1),
        "signed_content_length" => text.replacen(cl, "Content-Length: +0\r\n", 1),
        _ => text,
    };
    let n = text.len();
    (text.into_bytes(), vec![1, n / 3, n / 2, n - 3])
}

/// A UAS over TCP that answers every OPTIONS with stream case `name`, each answer written in
/// pieces with pauses between them (a fault server: the bytes and their cuts are the point).
fn stream_uas(name: &'static str) -> (SocketAddr, thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let req: Vec<u8> = buf.drain(..end + 4).collect();
                let text = String::from_utf8_lossy(&req).into_owned();
                if text.starts_with("STOP") {
                    return;
                }
                if !text.starts_with("OPTIONS ") {
                    continue;
                }
                let (bytes, cuts) = stream_case(name, &Req::of(&text));
                let mut at = 0;
                for cut in cuts.into_iter().chain([bytes.len()]) {
                    if s.write_all(&bytes[at..cut]).is_err() {
                        return;
                    }
                    at = cut;
                    thread::sleep(Duration::from_millis(15));
                }
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    (addr, h)
}

/// One framer: `probe check` and `bench` over TCP frame the same
/// byte streams alike (bad, signed, duplicate, folded and missing Content-Length; LF line
/// ends; a keep-alive first; every answer split across reads): both take the answer, or
/// neither does.
#[test]
fn tcp_streams_framed_alike_by_probe_check_and_bench() {
    let dir = util::tempdir();
    let mut wrong = Vec::new();
    for &(name, answered) in STREAMS {
        let (addr, h) = stream_uas(name);
        let uri = format!("sip:{addr};transport=tcp");
        let out = util::srewatch()
            .args(["probe", "check", &uri, "--timeout", "1s"])
            .output()
            .unwrap();
        h.join().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let prober = code == 0 && line.starts_with(&format!("SIP OK: {uri} answered 200 in "));
        if prober != answered || (!answered && code != 2) {
            wrong.push(format!("probe check {name}: exit {code}: {line}"));
        }

        let (addr, h) = stream_uas(name);
        let json = dir.path().join(format!("{name}.json"));
        let out = util::srewatch()
            .arg("bench")
            .arg(format!("sip:{addr}"))
            .args(["--transport", "tcp", "--rate", "5", "--duration", "1s"])
            .args(["--timeout", "500ms", "--json"])
            .arg(&json)
            .output()
            .unwrap();
        h.join().unwrap();
        let Ok(text) = std::fs::read(&json) else {
            wrong.push(format!(
                "bench {name}: no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let acc = &v["accounting"];
        let got = (
            acc["sent"].as_u64(),
            acc["answered"].as_u64(),
            v["total"]["invalid"].as_u64(),
        );
        // A stream that cannot be framed is closed at the first answer, as the prober closes
        // it: nothing is answered and one message is counted invalid.
        let want = if answered { (5, 5, 0) } else { (5, 0, 1) };
        let want = (Some(want.0), Some(want.1), Some(want.2));
        if got != want {
            wrong.push(format!(
                "bench {name}: sent/answered/invalid {got:?}, want {want:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
