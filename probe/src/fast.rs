//! The bench's request templates.
//!
//! - [`Template`]: a request rendered once per socket by the codec's request writer
//!   ([`crate::sip::build::write_request`]). Per request it is copied into the send buffer with
//!   the branch (from the transaction [`Table`](crate::transaction::Table)) spliced in, and the
//!   Call-ID, From tag and CSeq number patched in place (fixed-width fields).
//!   [`Template::write_ack`] does the same for the ACK of a non-2xx final response.
//!
//! The bench reads responses with the codec's one reader ([`crate::sip::read_response`]).
//! - [`reason`]: the reason phrases of the responder.
//!
//! Figures: `cargo bench --bench sip` (see docs/bench.md).

use crate::sip::Transport;
use crate::transaction::key::Method;
use std::net::SocketAddr;

/// CSeq numbers are written as `CSEQ_BASE + (n % CSEQ_BASE)`: always ten digits, no leading
/// zero, below 2^31 as RFC 3261 section 8.1.1.5 asks.
pub const CSEQ_BASE: u32 = 1_000_000_000;
const CSEQ_DIGITS: usize = 10;

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
fn put_hex_u64(out: &mut [u8], v: u64) {
    for (i, b) in out[..16].iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[inline]
fn put_hex_u32(out: &mut [u8], v: u32) {
    for (i, b) in out[..8].iter_mut().enumerate() {
        *b = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
    }
}

#[inline]
fn put_cseq(out: &mut [u8], n: u32, add: u32) {
    // At most 1_999_999_999 + add: still ten digits and below 2^31.
    let mut v = CSEQ_BASE + n % CSEQ_BASE + add;
    for b in out[..CSEQ_DIGITS].iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// A fixed-width field patched per request.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// 16 hex digits of the sequence number (the Call-ID's first part).
    CallId,
    /// 8 hex digits: the low 32 bits of the sequence number.
    Tag,
    /// 10 decimal digits.
    CSeq,
}

/// A message split around its variable parts (the branch, and for an ACK the To value):
/// `segs[0] hole[0] segs[1] hole[1] ... segs[n]`, with fixed-width fields at known offsets.
#[derive(Debug, Clone)]
struct Parts {
    segs: Vec<Vec<u8>>,
    /// (field, segment, offset in segment).
    fields: Vec<(Field, usize, usize)>,
    /// Added to the CSeq number (1 for the BYE of a dialog, section 12.2.1.1).
    cseq_add: u32,
}

const BRANCH_HOLE: &str = "\u{1}BRANCH\u{1}";
const TO_HOLE: &str = "\u{1}TO\u{1}";
const RURI_HOLE: &str = "\u{1}RURI\u{1}";
/// The Route header line of an ACK or BYE of a 2xx (empty without a route set).
const ROUTE_HOLE: &str = "\u{1}ROUTE\u{1}";

impl Parts {
    fn split(text: &[u8], holes: &[&str]) -> Parts {
        let mut segs = Vec::new();
        let mut rest = text;
        for h in holes {
            let at = find(rest, h.as_bytes()).expect("hole in template");
            segs.push(rest[..at].to_vec());
            rest = &rest[at + h.len()..];
        }
        segs.push(rest.to_vec());
        let mut fields = Vec::new();
        for (f, ph) in [
            (Field::CallId, &b"\x02CALLIDCALLIDCA\x02"[..]),
            (Field::Tag, b"\x02TAGTAG\x02"),
            (Field::CSeq, b"\x02CSEQCSEQ\x02"),
        ] {
            let (i, off) = segs
                .iter()
                .enumerate()
                .find_map(|(i, s)| find(s, ph).map(|o| (i, o)))
                .expect("field in template");
            fields.push((f, i, off));
        }
        Parts {
            segs,
            fields,
            cseq_add: 0,
        }
    }

    #[inline]
    fn write(&self, out: &mut Vec<u8>, holes: &[&[u8]], seq: u64) {
        out.clear();
        let mut starts = [0usize; 5];
        for (i, s) in self.segs.iter().enumerate() {
            starts[i] = out.len();
            out.extend_from_slice(s);
            if let Some(h) = holes.get(i) {
                out.extend_from_slice(h);
            }
        }
        for &(f, seg, off) in &self.fields {
            let at = starts[seg] + off;
            match f {
                Field::CallId => put_hex_u64(&mut out[at..], seq),
                Field::Tag => put_hex_u32(&mut out[at..], seq as u32),
                Field::CSeq => put_cseq(&mut out[at..], seq as u32, self.cseq_add),
            }
        }
    }
}

/// A request rendered once; [`Template::write`] produces a transaction's request.
///
/// Per request, `seq` (unique per run and socket) gives the Call-ID
/// (`<16 hex of seq>-<8 hex nonce>@host`), the From tag (8 hex, low 32 bits of seq) and the
/// CSeq number (`1000000000 + seq % 1000000000`); the branch comes from the transaction table.
#[derive(Debug, Clone)]
pub struct Template {
    req: Parts,
    /// INVITE only: ACK, BYE (holes: Request-URI, branch, To) and CANCEL (hole: branch).
    ack: Option<Parts>,
    bye: Option<Parts>,
    cancel: Option<Parts>,
    /// The Request-URI of the request (and of an ACK to a non-2xx).
    uri: Vec<u8>,
    method: Method,
    /// Bytes of a request without its branch.
    fixed_len: usize,
}

impl Template {
    /// A request of `method` (OPTIONS or INVITE) to `uri`, sent from `local` over `transport`.
    /// `nonce` goes into every Call-ID so that two runs never produce the same ids.
    pub fn new(
        method: Method,
        uri: &str,
        local: SocketAddr,
        transport: Transport,
        nonce: u32,
    ) -> Template {
        let req = Parts::split(
            Self::render(method, uri, local, transport, nonce, None).as_bytes(),
            &[BRANCH_HOLE],
        );
        let invite = method == Method::Invite;
        let dialog = |m: Method| {
            invite.then(|| {
                Parts::split(
                    Self::render(m, RURI_HOLE, local, transport, nonce, Some(TO_HOLE)).as_bytes(),
                    &[RURI_HOLE, BRANCH_HOLE, ROUTE_HOLE, TO_HOLE],
                )
            })
        };
        let ack = dialog(Method::Ack);
        let bye = dialog(Method::Bye).map(|mut p| {
            p.cseq_add = crate::dialog::BYE_CSEQ_ADD;
            p
        });
        // Same Request-URI, Call-ID, From, To (no tag) and CSeq number as the INVITE (9.1).
        let cancel = invite.then(|| {
            Parts::split(
                Self::render(Method::Cancel, uri, local, transport, nonce, None).as_bytes(),
                &[BRANCH_HOLE],
            )
        });
        let fixed_len = req.segs.iter().map(Vec::len).sum();
        Template {
            req,
            ack,
            bye,
            cancel,
            uri: uri.as_bytes().to_vec(),
            method,
            fixed_len,
        }
    }

    fn render(
        method: Method,
        uri: &str,
        local: SocketAddr,
        transport: Transport,
        nonce: u32,
        to: Option<&str>,
    ) -> String {
        use crate::sip::build::{write_request, RequestHead, RouteLine};
        let host = match local {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let port = local.port();
        let to_value = to.map(str::to_string).unwrap_or_else(|| format!("<{uri}>"));
        let contact = format!(
            "<sip:srewatch-bench@{host}:{port};transport={}>",
            transport.as_str()
        );
        let mut out = Vec::with_capacity(512);
        write_request(
            &mut out,
            &RequestHead {
                method: method.as_str(),
                uri,
                transport,
                sent_by: &format!("{host}:{port}"),
                branch: BRANCH_HOLE,
                route: if to.is_some() {
                    RouteLine::Raw(ROUTE_HOLE)
                } else {
                    RouteLine::None
                },
                from: &format!("<sip:srewatch-bench@{host}>;tag=\u{2}TAGTAG\u{2}"),
                to: &to_value,
                call_id: &format!("\u{2}CALLIDCALLIDCA\u{2}-{nonce:08x}@{host}"),
                cseq: "\u{2}CSEQCSEQ\u{2}",
                contact: (method == Method::Invite).then_some(contact.as_str()),
                accept_sdp: method == Method::Options,
                user_agent: "srewatch-bench",
            },
        );
        String::from_utf8(out).expect("a template is text")
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// Length of a request with a branch of `branch_len` bytes.
    pub fn len(&self, branch_len: usize) -> usize {
        self.fixed_len + branch_len
    }

    /// Writes the request of transaction `seq` with top Via `branch` into `out` (cleared first).
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>, branch: &[u8], seq: u64) {
        self.req.write(out, &[branch], seq);
    }

    /// The ACK for a non-2xx final response to an INVITE built from this template (RFC 3261
    /// section 17.1.1.3): same branch, Call-ID, From tag and CSeq number, the To header value of
    /// the response (`to`, with its tag). Returns false for a non-INVITE template.
    #[inline]
    pub fn write_ack(&self, out: &mut Vec<u8>, branch: &[u8], seq: u64, to: &[u8]) -> bool {
        write_part(&self.ack, out, &[&self.uri, branch, b"", to], seq)
    }

    /// The ACK of a 2xx to the INVITE (section 13.2.2.4): a `branch` of its own, Request-URI
    /// `ruri` (from the 2xx's [`RouteSet`](crate::dialog::RouteSet); the INVITE's
    /// Request-URI when `None`), `route` (the whole `Route: ...\r\n` line of the route set,
    /// or empty), the 2xx's To, CSeq number of the INVITE. False for a non-INVITE template.
    #[inline]
    pub fn write_ack_2xx(
        &self,
        out: &mut Vec<u8>,
        ruri: Option<&[u8]>,
        branch: &[u8],
        route: &[u8],
        seq: u64,
        to: &[u8],
    ) -> bool {
        write_part(
            &self.ack,
            out,
            &[ruri.unwrap_or(&self.uri), branch, route, to],
            seq,
        )
    }

    /// The BYE that hangs up the call a 2xx established (section 15.1.1): a transaction of its
    /// own (`branch`), Request-URI and Route as for [`Template::write_ack_2xx`], the 2xx's To, the
    /// INVITE's Call-ID and From tag, CSeq number of the INVITE + 1. False for a non-INVITE.
    #[inline]
    pub fn write_bye(
        &self,
        out: &mut Vec<u8>,
        ruri: Option<&[u8]>,
        branch: &[u8],
        route: &[u8],
        seq: u64,
        to: &[u8],
    ) -> bool {
        write_part(
            &self.bye,
            out,
            &[ruri.unwrap_or(&self.uri), branch, route, to],
            seq,
        )
    }

    /// The CANCEL of the INVITE of transaction `seq` (section 9.1): the INVITE's `branch`,
    /// Request-URI, Call-ID, From, To and CSeq number, method CANCEL. False for a non-INVITE.
    #[inline]
    pub fn write_cancel(&self, out: &mut Vec<u8>, branch: &[u8], seq: u64) -> bool {
        write_part(&self.cancel, out, &[branch], seq)
    }
}

/// Writes an in-dialog request from its template, if the template has one (INVITE templates
/// do; OPTIONS templates have no ACK, BYE or CANCEL).
#[inline]
fn write_part(part: &Option<Parts>, out: &mut Vec<u8>, fields: &[&[u8]], seq: u64) -> bool {
    match part {
        Some(p) => {
            p.write(out, fields, seq);
            true
        }
        None => false,
    }
}

#[inline]
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The reason phrase for the status codes the responder sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    fn template(m: Method) -> Template {
        Template::new(m, "sip:127.0.0.1:5060", local(), Transport::Udp, 0xdeadbeef)
    }

    #[test]
    fn patched_request_is_what_rsip_reads() {
        use rsip::headers::{ToTypedHeader, UntypedHeader};
        use rsip::message::HeadersExt;
        let t = template(Method::Options);
        let mut out = Vec::new();
        let branch = b"z9hG4bKab12-2a-1";
        t.write(&mut out, branch, 7);
        assert_eq!(out.len(), t.len(branch.len()));
        let r = rsip::Request::try_from(out.as_slice()).unwrap();
        assert_eq!(r.method, rsip::Method::Options);
        let via = r.via_header().unwrap().typed().unwrap();
        assert_eq!(via.branch().unwrap().to_string(), "z9hG4bKab12-2a-1");
        assert_eq!(
            r.call_id_header().unwrap().value(),
            "0000000000000007-deadbeef@127.0.0.1"
        );
        let cs = r.cseq_header().unwrap().typed().unwrap();
        assert_eq!(cs.seq, 1_000_000_007);
        assert!(r.from_header().unwrap().value().ends_with(";tag=00000007"));
        // Writing again overwrites every field, whatever the branch length.
        t.write(&mut out, b"z9hG4bKx-0-0", u64::MAX);
        let r = rsip::Request::try_from(out.as_slice()).unwrap();
        let cs = r.cseq_header().unwrap().typed().unwrap();
        assert_eq!(cs.seq, CSEQ_BASE + (u32::MAX % CSEQ_BASE));
        assert!(cs.seq < 1 << 31);
        assert_eq!(
            r.call_id_header().unwrap().value(),
            "ffffffffffffffff-deadbeef@127.0.0.1"
        );
        let via = r.via_header().unwrap().typed().unwrap();
        assert_eq!(via.branch().unwrap().to_string(), "z9hG4bKx-0-0");
    }

    /// CANCEL, ACK of a 2xx and BYE are what rsip reads and what RFC 3261 asks (9.1, 13.2.2.4,
    /// 15.1.1): the INVITE's Call-ID, From tag and CSeq number (BYE: + 1).
    #[test]
    fn dialog_requests_are_what_rsip_reads() {
        use rsip::headers::{ToTypedHeader, UntypedHeader};
        use rsip::message::HeadersExt;
        let t = template(Method::Invite);
        let to = b"<sip:127.0.0.1:5060>;tag=abc";
        let contact = b"sip:uas@10.0.0.1:5070;transport=udp";
        let mut inv = Vec::new();
        t.write(&mut inv, b"z9hG4bKab12-2a-1", 7);
        let inv = rsip::Request::try_from(inv.as_slice()).unwrap();
        let mut out = Vec::new();
        assert!(t.write_cancel(&mut out, b"z9hG4bKab12-2a-1", 7));
        let c = rsip::Request::try_from(out.as_slice()).unwrap();
        assert_eq!(c.method, rsip::Method::Cancel);
        assert_eq!(c.uri, inv.uri);
        let via = c.via_header().unwrap().typed().unwrap();
        assert_eq!(via.branch().unwrap().to_string(), "z9hG4bKab12-2a-1");
        assert_eq!(
            c.to_header().unwrap().value(),
            inv.to_header().unwrap().value()
        );
        assert_eq!(
            c.from_header().unwrap().value(),
            inv.from_header().unwrap().value()
        );
        assert_eq!(
            c.call_id_header().unwrap().value(),
            inv.call_id_header().unwrap().value()
        );
        let cs = c.cseq_header().unwrap().typed().unwrap();
        assert_eq!((cs.seq, cs.method), (1_000_000_007, rsip::Method::Cancel));

        let route = b"Route: <sip:10.0.0.5;lr>,<sip:10.0.0.6;lr>\r\n";
        assert!(t.write_ack_2xx(&mut out, Some(contact), b"z9hG4bKab12-2a-1-a", route, 7, to));
        let a = rsip::Request::try_from(out.as_slice()).unwrap();
        assert_eq!(a.method, rsip::Method::Ack);
        assert!(out.starts_with(b"ACK sip:uas@10.0.0.1:5070;transport=udp SIP/2.0\r\n"));
        assert_eq!(
            a.to_header().unwrap().value(),
            "<sip:127.0.0.1:5060>;tag=abc"
        );
        let cs = a.cseq_header().unwrap().typed().unwrap();
        assert_eq!((cs.seq, cs.method), (1_000_000_007, rsip::Method::Ack));
        let routes: Vec<String> = a
            .headers
            .iter()
            .filter_map(|h| match h {
                rsip::Header::Route(r) => Some(r.value().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(routes, vec!["<sip:10.0.0.5;lr>,<sip:10.0.0.6;lr>"]);

        let mut bye = Vec::new();
        assert!(t.write_bye(&mut bye, None, b"z9hG4bKab12-2b-0", b"", 7, to));
        assert!(!String::from_utf8_lossy(&bye).contains("Route:"));
        let b = rsip::Request::try_from(bye.as_slice()).unwrap();
        assert_eq!(b.method, rsip::Method::Bye);
        assert_eq!(b.uri, inv.uri, "no Contact: the INVITE's Request-URI");
        assert_eq!(
            b.call_id_header().unwrap().value(),
            inv.call_id_header().unwrap().value()
        );
        assert_eq!(
            b.from_header().unwrap().value(),
            inv.from_header().unwrap().value()
        );
        assert_eq!(
            b.to_header().unwrap().value(),
            "<sip:127.0.0.1:5060>;tag=abc"
        );
        let cs = b.cseq_header().unwrap().typed().unwrap();
        assert_eq!((cs.seq, cs.method), (1_000_000_008, rsip::Method::Bye));
        // The highest CSeq number still fits in ten digits below 2^31.
        t.write_bye(&mut bye, None, b"z9hG4bKab12-2b-0", b"", 999_999_999, to);
        let b = rsip::Request::try_from(bye.as_slice()).unwrap();
        assert_eq!(b.cseq_header().unwrap().typed().unwrap().seq, 2_000_000_000);
        // An OPTIONS template has none of these.
        assert!(!template(Method::Options).write_bye(&mut bye, None, b"x", b"", 1, to));
        assert!(!template(Method::Options).write_cancel(&mut bye, b"x", 1));
    }

    /// The bench's request carries what the table hands out, and the answer finds it again.
    #[test]
    fn table_branch_round_trip() {
        use crate::sip::{build, read_request};
        use crate::transaction::{Lookup, Table};
        let t = template(Method::Options);
        let mut table: Table<u64> = Table::new("ab12").unwrap();
        let (slot, branch) = table.insert(Method::Options, 5);
        let mut out = Vec::new();
        t.write(&mut out, branch.as_bytes(), 5);
        let req = read_request(&out).unwrap();
        let mut resp = Vec::new();
        build::write_response(&mut resp, &req, 200, "OK", b"t1", None);
        let r = crate::sip::read_response(&resp).unwrap();
        assert_eq!(
            table.lookup(r.via.branch, r.method.unwrap()),
            Lookup::Found(slot)
        );
    }

    use crate::sip::KAMAILIO_200;

    #[test]
    fn reads_a_kamailio_answer() {
        let r = crate::sip::read_response(KAMAILIO_200).unwrap();
        assert_eq!(
            (r.status, r.vias, r.via.branch, r.cseq, r.method),
            (
                200,
                1,
                &b"z9hG4bKdeadbeef000000010000002a"[..],
                1_000_000_007,
                Some(Method::Options)
            )
        );
        assert_eq!(
            r.to,
            b"<sip:127.0.0.1:5060>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-1fa2"
        );
    }

    #[test]
    fn ack_of_a_responder_answer() {
        use crate::sip::{build, read_request};
        let t = template(Method::Invite);
        let mut req = Vec::new();
        let branch = b"z9hG4bKab12-2a-0";
        t.write(&mut req, branch, 9);
        let r = read_request(&req).unwrap();
        assert_eq!(r.method(), Some(Method::Invite));
        let mut out = Vec::new();
        build::write_response(&mut out, &r, 503, reason(503), b"t9", None);
        let resp = crate::sip::read_response(&out).unwrap();
        assert_eq!(resp.status, 503);
        assert_eq!(resp.via.branch, branch);
        assert_eq!(resp.cseq, 1_000_000_009);
        assert_eq!(resp.method, Some(Method::Invite));
        assert_eq!(resp.to, b"<sip:127.0.0.1:5060>;tag=t9");

        // The ACK: same branch, Call-ID, tag, CSeq number; To from the response.
        let mut ack = Vec::new();
        assert!(t.write_ack(&mut ack, resp.via.branch, 9, resp.to));
        let a = rsip::Request::try_from(ack.as_slice()).unwrap();
        let text = String::from_utf8(ack.clone()).unwrap();
        assert_eq!(a.method, rsip::Method::Ack);
        assert!(
            text.starts_with("ACK sip:127.0.0.1:5060 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(
            text.contains(";branch=z9hG4bKab12-2a-0;rport\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nTo: <sip:127.0.0.1:5060>;tag=t9\r\n"));
        assert!(text.contains("\r\nCall-ID: 0000000000000009-deadbeef@127.0.0.1\r\n"));
        assert!(text.contains("\r\nCSeq: 1000000009 ACK\r\n"));
        assert!(text.contains(";tag=00000009\r\n"));
        assert_eq!(read_request(&ack).unwrap().method(), Some(Method::Ack));
        // OPTIONS templates have no ACK.
        assert!(!template(Method::Options).write_ack(&mut ack, branch, 9, b"x"));
    }
}
