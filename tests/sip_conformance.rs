//! RFC 4475 torture messages through the responder and through the
//! prober's reader. The messages are not part of this repository (they are other people's
//! material): the tests read them, byte-exact, from `probe::sip::rfc4475_dir()`
//! (`SREWATCH_RFC4475_DIR`, else `shared/reference/rfc4475` beside the checkout); see
//! `fixtures/sip/rfc4475.md`. Without them each test says so on stderr and checks nothing.

use probe::responder::{Responder, ResponderConfig};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture(dir: &Path, name: &str) -> Vec<u8> {
    let p = dir.join(format!("{name}.dat"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The directory of the RFC 4475 messages, or `None` (said on stderr) when they are absent.
fn messages() -> Option<PathBuf> {
    let d = probe::sip::rfc4475_dir();
    if d.is_none() {
        eprintln!(
            "RFC 4475 messages not present: {}",
            probe::sip::RFC4475_HINT
        );
    }
    d
}

/// §3.1.1: the valid requests, with the status the responder answers (OPTIONS and INVITE
/// its configured 200, methods it does not implement 501).
const VALID_REQUESTS: &[(&str, u16)] = &[
    ("wsinv", 200),
    ("intmeth", 501),
    ("esc01", 200),
    ("escnull", 501),
    ("esc02", 501),
    ("lwsdisp", 200),
    ("longreq", 200),
    ("dblreq", 501),
    ("semiuri", 200),
    ("transports", 200),
    ("mpart01", 501),
];

/// §3.1.2: the invalid requests a stateless UAS can tell from their framing, start line or
/// transaction headers: it must not answer them.
const REFUSED_REQUESTS: &[&str] = &[
    "clerr",      // Content-Length larger than the body (§18.3)
    "ncl",        // negative Content-Length
    "scalar02",   // Content-Length and Max-Forwards out of range
    "ltgtruri",   // Request-URI in angle brackets
    "lwsruri",    // LWS inside the Request-URI
    "lwsstart",   // more than one SP in the request line
    "trws",       // trailing SP after the version
    "badvers",    // SIP/7.0
    "mismatch01", // CSeq method is not the request's
    "mismatch02", // CSeq method is not the request's
];

/// §3.1.2: invalid in parts a stateless UAS does not read (URI escapes, dates, display names,
/// Contact values...): answering them is no crash, the point is that it keeps answering.
const OTHER_INVALID: &[&str] = &[
    "badinv01", "quotbal", "escruri", "baddate", "regbadct", "badaspec", "baddn",
];

fn client(r: &Responder) -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(r.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c
}

fn ask(c: &UdpSocket, msg: &[u8]) -> Option<Vec<u8>> {
    c.send(msg).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = c.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn responder() -> Responder {
    let mut cfg = ResponderConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.threads = 1;
    Responder::start(cfg).unwrap()
}

/// The status line of an answer and whether the prober's reader reads it.
fn status(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text[8..11].parse().unwrap_or_else(|_| panic!("{text}"))
}

/// Every valid request of RFC 4475 §3.1.1 gets an answer.
#[test]
fn responder_answers_every_rfc4475_valid_request() {
    let Some(dir) = messages() else { return };
    let r = responder();
    let c = client(&r);
    let mut got = Vec::new();
    for (name, _) in VALID_REQUESTS {
        got.push((*name, ask(&c, &fixture(&dir, name)).map(|a| status(&a))));
    }
    let want: Vec<(&str, Option<u16>)> =
        VALID_REQUESTS.iter().map(|(n, s)| (*n, Some(*s))).collect();
    assert_eq!(got, want);
    let s = r.stop();
    assert_eq!((s.received, s.answered, s.invalid), (11, 11, 0));
}

/// §3.1.2: invalid requests are refused (not answered) or, where a stateless UAS cannot tell,
/// answered; nothing crashes and the responder answers a valid request afterwards.
#[test]
fn responder_refuses_rfc4475_invalid_requests() {
    let Some(dir) = messages() else { return };
    let r = responder();
    let c = client(&r);
    let mut answered = Vec::new();
    for name in REFUSED_REQUESTS.iter().chain(OTHER_INVALID) {
        if ask(&c, &fixture(&dir, name)).is_some() {
            answered.push(*name);
        }
    }
    assert_eq!(answered, OTHER_INVALID);
    assert_eq!(
        ask(&c, &fixture(&dir, "lwsdisp")).map(|a| status(&a)),
        Some(200)
    );
    let s = r.stop();
    assert_eq!(s.invalid, REFUSED_REQUESTS.len() as u64);
}

/// The 200 to an INVITE carries a Contact (RFC 3261 §13.3.1.4) and each call
/// its own To tag; a retransmission gets the same one.
#[test]
fn responder_invite_200_has_contact_and_a_to_tag_per_call() {
    let r = responder();
    let c = client(&r);
    let invite = |call: &str| {
        format!(
            "INVITE sip:uas@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {};branch=z9hG4bK{call}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:uac@127.0.0.1>;tag=f{call}\r\n\
             To: <sip:uas@127.0.0.1>\r\n\
             Call-ID: {call}@test\r\n\
             CSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n",
            c.local_addr().unwrap()
        )
        .into_bytes()
    };
    let read = |m: &[u8]| probe::message::parse_response(m).unwrap();
    let a = read(&ask(&c, &invite("call1")).unwrap());
    let again = read(&ask(&c, &invite("call1")).unwrap());
    let b = read(&ask(&c, &invite("call2")).unwrap());
    assert_eq!((a.status, b.status), (200, 200));
    let contact = format!("sip:srewatch-responder@{}", r.local_addr());
    assert_eq!(a.contact.as_deref(), Some(contact.as_str()));
    assert_eq!(b.contact.as_deref(), Some(contact.as_str()));
    let (ta, tb) = (a.to_tag.unwrap(), b.to_tag.unwrap());
    assert_eq!(ta.len(), 16);
    assert_ne!(ta, tb);
    assert_eq!(again.to_tag.as_deref(), Some(ta.as_str()));
}

/// The response-type torture messages through the prober's reader: §3.1.1.12-13 (unusual and
/// empty reason phrases), §3.3.10 (a 200 with a broadcast Via received) are read; §3.1.2
/// overlarge scalars and a status code out of range are refused.
#[test]
fn rfc4475_responses_through_the_prober_reader() {
    let Some(dir) = messages() else { return };
    let mut got = Vec::new();
    for name in ["unreason", "noreason", "bcast", "scalarlg", "bigcode"] {
        let r = probe::message::parse_response(&fixture(&dir, name));
        got.push((name, r.map(|r| (r.status, r.cseq)).map_err(|e| e.as_str())));
    }
    assert_eq!(
        got,
        vec![
            ("unreason", Ok((200, 35))),
            ("noreason", Ok((100, 35))),
            ("bcast", Ok((200, 35))),
            ("scalarlg", Err("bad_header")),
            ("bigcode", Err("not_sip")),
        ]
    );
}
