//! The hot-path codec of the bench and the responder.
//!
//! - [`Template`]: a request rendered once per socket. Per request it is copied into the send
//!   buffer with the branch (from the transaction [`Table`](crate::transaction::Table)) spliced
//!   in, and the Call-ID, From tag and CSeq number patched in place (fixed-width fields).
//!   [`Template::write_ack`] does the same for the ACK of a non-2xx final response.
//! - [`scan_response`]: reads the status code, the top Via branch, the CSeq number and method
//!   and the To header of a response without a full parse. Anything unusual (folded lines,
//!   upper-case parameters, missing headers) is left to [`parse_response`], which uses rsip;
//!   [`decode_response`] tries the first and falls back to the second.
//! - [`scan_request`] and [`write_response`]: the responder's side, a stateless answer that
//!   copies Via, From, To, Call-ID and CSeq from the request.
//!
//! Nothing here allocates per message on the fast paths; the rsip fallback does.
//! Figures: `cargo bench --bench sip` (see docs/bench.md).

use crate::transaction::key::Method;
use std::fmt::Write as _;
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

/// Transport named in the Via header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaTransport {
    Udp,
    Tcp,
}

impl ViaTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ViaTransport::Udp => "UDP",
            ViaTransport::Tcp => "TCP",
        }
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
        transport: ViaTransport,
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
        transport: ViaTransport,
        nonce: u32,
        to: Option<&str>,
    ) -> String {
        let host = match local {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let to_value = to.map(str::to_string).unwrap_or_else(|| format!("<{uri}>"));
        let mut s = String::with_capacity(512);
        let _ = write!(
            s,
            "{m} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{tr} {host}:{port};branch={BRANCH_HOLE};rport\r\n\
             Max-Forwards: {mf}\r\n\
             {route}From: <sip:srewatch-bench@{host}>;tag=\u{2}TAGTAG\u{2}\r\n\
             To: {to_value}\r\n\
             Call-ID: \u{2}CALLIDCALLIDCA\u{2}-{nonce:08x}@{host}\r\n\
             CSeq: \u{2}CSEQCSEQ\u{2} {m}\r\n",
            m = method.as_str(),
            tr = transport.as_str(),
            port = local.port(),
            mf = crate::consts::MAX_FORWARDS,
            route = if to.is_some() { ROUTE_HOLE } else { "" },
        );
        if method == Method::Invite {
            let _ = write!(
                s,
                "Contact: <sip:srewatch-bench@{host}:{port};transport={tr}>\r\n",
                port = local.port(),
                tr = transport.as_str().to_ascii_lowercase()
            );
        }
        if method == Method::Options {
            s.push_str("Accept: application/sdp\r\n");
        }
        s.push_str("User-Agent: srewatch-bench\r\nContent-Length: 0\r\n\r\n");
        s
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

/// What follows `;name` (name given with its `=`, lower case) in a header value: the first
/// `;` whose next bytes are `name`. Cheaper than a substring search for these short values.
#[inline]
fn param<'a>(v: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b';', &v[i..]) {
        let at = i + p + 1;
        if v[at..].starts_with(name) {
            return Some(&v[at + name.len()..]);
        }
        i = at;
    }
    None
}

/// The fields of a response the bench needs, borrowed from the datagram (fast path) or from a
/// [`Scratch`] (rsip fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    /// The branch parameter of the top Via.
    pub branch: &'a [u8],
    pub cseq: u32,
    pub method: Method,
    /// The To header value (with its tag), needed to build the ACK of a non-2xx.
    pub to: &'a [u8],
}

/// Why a datagram was not read as a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The fast scanner declined; [`parse_response`] should look (not an error by itself).
    #[error("unusual message for the fast path")]
    Unusual,
    /// Not a SIP response, or one without the headers a transaction needs.
    #[error("not a usable SIP response: {0}")]
    Invalid(&'static str),
}

impl DecodeError {
    pub fn as_str(&self) -> &'static str {
        match self {
            DecodeError::Unusual => "unusual",
            DecodeError::Invalid(_) => "invalid",
        }
    }
}

#[inline]
fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// Header lines of a message head: (name, value) pairs, stopping at the blank line.
/// Returns Err(Unusual) on a folded line, a bare LF or a line without a colon.
struct Lines<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<(&'a [u8], &'a [u8], &'a [u8]), DecodeError>;
    /// Yields (name, value, whole line without CRLF).
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let Some(nl) = memchr::memchr(b'\n', self.rest) else {
            self.done = true;
            return Some(Err(DecodeError::Unusual));
        };
        if nl == 0 || self.rest[nl - 1] != b'\r' {
            self.done = true;
            return Some(Err(DecodeError::Unusual));
        }
        let line = &self.rest[..nl - 1];
        self.rest = &self.rest[nl + 1..];
        if line.is_empty() {
            self.done = true;
            return None;
        }
        if matches!(line[0], b' ' | b'\t') || matches!(self.rest.first(), Some(b' ' | b'\t')) {
            self.done = true;
            return Some(Err(DecodeError::Unusual));
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            self.done = true;
            return Some(Err(DecodeError::Unusual));
        };
        Some(Ok((trim(&line[..colon]), trim(&line[colon + 1..]), line)))
    }
}

fn lines(head: &[u8]) -> Lines<'_> {
    Lines {
        rest: head,
        done: false,
    }
}

#[inline]
fn is_name(name: &[u8], long: &[u8], compact: u8) -> bool {
    name.eq_ignore_ascii_case(long) || (name.len() == 1 && name[0].eq_ignore_ascii_case(&compact))
}

/// The branch parameter of the first Via value in `v`.
fn via_branch(v: &[u8]) -> Option<&[u8]> {
    let first = match memchr::memchr(b',', v) {
        Some(c) => &v[..c],
        None => v,
    };
    let b = param(first, b"branch=")?;
    // A branch is an RFC 3261 token; it ends at `;`, whitespace or the end of the value.
    // Anything else (a stray CR, quotes, ...) is for rsip to judge.
    let end = b.iter().position(|&c| !is_token(c)).unwrap_or(b.len());
    if end < b.len() && !matches!(b[end], b';' | b' ' | b'\t') {
        return None;
    }
    (end > 0).then(|| &b[..end])
}

#[inline]
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// CSeq value: number, whitespace, method.
fn cseq(v: &[u8]) -> Option<(u32, Method)> {
    let sp = v.iter().position(|&c| c == b' ' || c == b'\t')?;
    let num = &v[..sp];
    if num.is_empty() || num.len() > 10 || !num.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = num.iter().fold(0u64, |a, &c| a * 10 + (c - b'0') as u64);
    let n = u32::try_from(n).ok()?;
    let m = Method::from_bytes(trim(&v[sp..]))?;
    Some((n, m))
}

/// The fast path: reads status, top Via branch, CSeq and To of a response. Returns
/// `Err(Unusual)` for anything it does not handle (try [`parse_response`]).
#[inline]
pub fn scan_response(buf: &[u8]) -> Result<Response<'_>, DecodeError> {
    if buf.len() < 14 || &buf[..8] != b"SIP/2.0 " || buf[11] != b' ' {
        return Err(DecodeError::Unusual);
    }
    let d = &buf[8..11];
    if !d.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::Unusual);
    }
    let status = (d[0] - b'0') as u16 * 100 + (d[1] - b'0') as u16 * 10 + (d[2] - b'0') as u16;
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return Err(DecodeError::Unusual);
    };
    let mut branch = None;
    let mut cs = None;
    let mut to = None;
    for l in lines(&buf[nl + 1..]) {
        let (name, value, _) = l?;
        match name.len() {
            1 | 3 if branch.is_none() && is_name(name, b"via", b'v') => {
                branch = Some(via_branch(value).ok_or(DecodeError::Unusual)?);
            }
            4 if cs.is_none() && name.eq_ignore_ascii_case(b"cseq") => {
                cs = Some(cseq(value).ok_or(DecodeError::Unusual)?);
            }
            1 | 2 if to.is_none() && is_name(name, b"to", b't') => to = Some(value),
            _ => {}
        }
        if branch.is_some() && cs.is_some() && to.is_some() {
            break;
        }
    }
    match (branch, cs, to) {
        (Some(branch), Some((cseq, method)), Some(to)) => Ok(Response {
            status,
            branch,
            cseq,
            method,
            to,
        }),
        _ => Err(DecodeError::Unusual),
    }
}

/// Owned storage for what the rsip fallback found, reused between calls.
#[derive(Debug, Default)]
pub struct Scratch {
    buf: Vec<u8>,
}

/// The slow path: a full rsip parse, then the same fields as [`scan_response`].
pub fn parse_response<'s>(
    buf: &[u8],
    scratch: &'s mut Scratch,
) -> Result<Response<'s>, DecodeError> {
    use rsip::headers::{ToTypedHeader, UntypedHeader};
    use rsip::message::HeadersExt;
    let r = rsip::Response::try_from(buf).map_err(|_| DecodeError::Invalid("unparsable"))?;
    let status = r.status_code().code();
    let via = r
        .via_header()
        .map_err(|_| DecodeError::Invalid("no Via"))?
        .typed()
        .map_err(|_| DecodeError::Invalid("bad Via"))?;
    let branch = via.branch().ok_or(DecodeError::Invalid("no branch"))?;
    let cs = r
        .cseq_header()
        .map_err(|_| DecodeError::Invalid("no CSeq"))?
        .typed()
        .map_err(|_| DecodeError::Invalid("bad CSeq"))?;
    let method = Method::from_bytes(cs.method.to_string().as_bytes())
        .ok_or(DecodeError::Invalid("unknown CSeq method"))?;
    let to = r.to_header().map_err(|_| DecodeError::Invalid("no To"))?;
    scratch.buf.clear();
    let _ = write!(Bytes(&mut scratch.buf), "{branch}");
    let blen = scratch.buf.len();
    scratch.buf.extend_from_slice(to.value().as_bytes());
    let (b, t) = scratch.buf.split_at(blen);
    Ok(Response {
        status,
        branch: b,
        cseq: cs.seq,
        method,
        to: t,
    })
}

struct Bytes<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The fast path, then rsip for anything unusual. `fallbacks` counts the datagrams that
/// needed rsip.
#[inline]
pub fn decode_response<'a>(
    buf: &'a [u8],
    scratch: &'a mut Scratch,
    fallbacks: &mut u64,
) -> Result<Response<'a>, DecodeError> {
    match scan_response(buf) {
        Ok(r) => Ok(r),
        Err(_) => {
            *fallbacks += 1;
            parse_response(buf, scratch)
        }
    }
}

/// The URI of the first Contact of a response (inside `<>`, or up to `;`/`,`), for the
/// Request-URI of the ACK and BYE of a 2xx. Read only on that rare path, so the fast path of
/// [`scan_response`] does not pay for it. Lenient: header lines may end in CRLF or LF, and a
/// line it cannot read is skipped (a folded Contact value is not followed). `None` when there
/// is no usable Contact (the caller then uses the INVITE's Request-URI).
pub fn contact_uri(buf: &[u8]) -> Option<&[u8]> {
    fn uri(v: &[u8]) -> Option<&[u8]> {
        let u = match memchr::memchr(b'<', v) {
            Some(lt) => {
                let rest = &v[lt + 1..];
                &rest[..memchr::memchr(b'>', rest)?]
            }
            None => {
                let end = v
                    .iter()
                    .position(|&c| matches!(c, b';' | b',' | b' ' | b'\t'))
                    .unwrap_or(v.len());
                &v[..end]
            }
        };
        let u = trim(u);
        // A URI to put on a request line: no whitespace or control characters, not `*`.
        (!u.is_empty() && u != b"*" && u.iter().all(|&c| c > b' ' && c < 0x7f)).then_some(u)
    }
    let head_end = memchr::memmem::find(buf, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(buf, b"\n\n"))
        .unwrap_or(buf.len());
    for line in buf[..head_end].split(|&c| c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if is_name(trim(&line[..colon]), b"contact", b'm') {
            return uri(trim(&line[colon + 1..]));
        }
    }
    None
}

/// What the responder needs of a request: its method and the lines to copy into a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method token (any, not only the ones in [`Method`]).
    pub method: &'a [u8],
    /// Via lines in order, then From, To, Call-ID and CSeq (whole lines without CRLF); at most
    /// [`MAX_COPIED`] lines.
    copied: [&'a [u8]; MAX_COPIED],
    n: usize,
    /// Index in `copied` of the To line, and whether it already has a tag.
    to: usize,
    to_has_tag: bool,
}

/// Most header lines a stateless answer copies (Via lines plus four).
pub const MAX_COPIED: usize = 16;

impl<'a> Request<'a> {
    pub fn method(&self) -> Option<Method> {
        Method::from_bytes(self.method)
    }
}

/// Scans a request head for the responder. Errors are requests it will not answer.
pub fn scan_request(buf: &[u8]) -> Result<Request<'_>, DecodeError> {
    let nl = memchr::memchr(b'\n', buf).ok_or(DecodeError::Invalid("no line end"))?;
    let first = &buf[..nl];
    let sp = memchr::memchr(b' ', first).ok_or(DecodeError::Invalid("no request line"))?;
    if !first.ends_with(b" SIP/2.0\r") {
        return Err(DecodeError::Invalid("not a SIP/2.0 request"));
    }
    let mut r = Request {
        method: &buf[..sp],
        copied: [&[]; MAX_COPIED],
        n: 0,
        to: usize::MAX,
        to_has_tag: false,
    };
    let (mut from, mut call_id, mut cs) = (false, false, false);
    for l in lines(&buf[nl + 1..]) {
        let (name, value, line) = l.map_err(|_| DecodeError::Invalid("malformed header"))?;
        let keep = if is_name(name, b"via", b'v') {
            true
        } else if is_name(name, b"from", b'f') {
            from = true;
            true
        } else if is_name(name, b"to", b't') {
            r.to = r.n;
            r.to_has_tag = param(value, b"tag=").is_some();
            true
        } else if is_name(name, b"call-id", b'i') {
            call_id = true;
            true
        } else if name.eq_ignore_ascii_case(b"cseq") {
            cs = true;
            true
        } else {
            false
        };
        if keep {
            if r.n == MAX_COPIED {
                return Err(DecodeError::Invalid("too many Via headers"));
            }
            r.copied[r.n] = line;
            r.n += 1;
        }
    }
    if r.to == usize::MAX || !from || !call_id || !cs || r.n < 5 {
        return Err(DecodeError::Invalid(
            "missing Via, From, To, Call-ID or CSeq",
        ));
    }
    Ok(r)
}

/// Writes a stateless response to `req` into `out` (cleared first): status line, the copied
/// headers (a To tag added when the request had none), a Server header and no body.
pub fn write_response(out: &mut Vec<u8>, req: &Request<'_>, status: u16, reason: &str) {
    out.clear();
    out.extend_from_slice(b"SIP/2.0 ");
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (i, line) in req.copied[..req.n].iter().enumerate() {
        out.extend_from_slice(line);
        if i == req.to && !req.to_has_tag {
            out.extend_from_slice(b";tag=srewatch-responder");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Server: srewatch-responder\r\nContent-Length: 0\r\n\r\n");
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
        Template::new(
            m,
            "sip:127.0.0.1:5060",
            local(),
            ViaTransport::Udp,
            0xdeadbeef,
        )
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

    #[test]
    fn contact_uri_of_a_2xx() {
        let head = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n";
        let with = |c: &str| format!("{head}{c}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
        let m = with("Contact: \"CP\" <sip:cp@10.0.0.1:5060;transport=udp>;expires=60\r\n");
        assert_eq!(
            contact_uri(m.as_bytes()),
            Some(&b"sip:cp@10.0.0.1:5060;transport=udp"[..])
        );
        let m = with("m: sip:cp@10.0.0.1;expires=60\r\n");
        assert_eq!(contact_uri(m.as_bytes()), Some(&b"sip:cp@10.0.0.1"[..]));
        let m = with("");
        assert_eq!(contact_uri(m.as_bytes()), None);
        let m = with("Contact: *\r\n");
        assert_eq!(contact_uri(m.as_bytes()), None);
        // Bare LF line ends, a folded line before it.
        let m = "SIP/2.0 200 OK\nSubject: a\n b\nm:<sip:cp@10.0.0.2>\n\n";
        assert_eq!(contact_uri(m.as_bytes()), Some(&b"sip:cp@10.0.0.2"[..]));
        // Not in the body.
        let m = "SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\nContact: <sip:x@y>\r\n";
        assert_eq!(contact_uri(m.as_bytes()), None);
        assert_eq!(contact_uri(b"garbage"), None);
    }

    /// The bench's request carries what the table hands out, and the answer finds it again.
    #[test]
    fn table_branch_round_trip() {
        use crate::transaction::{Lookup, Table};
        let t = template(Method::Options);
        let mut table: Table<u64> = Table::new("ab12").unwrap();
        let (slot, branch) = table.insert(Method::Options, 5);
        let mut out = Vec::new();
        t.write(&mut out, branch.as_bytes(), 5);
        let req = scan_request(&out).unwrap();
        let mut resp = Vec::new();
        write_response(&mut resp, &req, 200, "OK");
        let r = scan_response(&resp).unwrap();
        assert_eq!(table.lookup(r.branch, r.method), Lookup::Found(slot));
    }

    const KAMAILIO_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKdeadbeef000000010000002a;rport=40000;received=127.0.0.1\r\n\
From: <sip:srewatch-bench@127.0.0.1>;tag=00000007\r\n\
To: <sip:127.0.0.1:5060>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-1fa2\r\n\
Call-ID: 0000000000000007-deadbeef@127.0.0.1\r\n\
CSeq: 1000000007 OPTIONS\r\n\
Server: srewatch-test-cp cp1\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn fast_path_reads_a_kamailio_answer() {
        let r = scan_response(KAMAILIO_200).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.branch, b"z9hG4bKdeadbeef000000010000002a");
        assert_eq!(r.cseq, 1_000_000_007);
        assert_eq!(r.method, Method::Options);
        assert_eq!(
            r.to,
            b"<sip:127.0.0.1:5060>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-1fa2"
        );
        // Differential: rsip reads the same.
        let mut s = Scratch::default();
        assert_eq!(parse_response(KAMAILIO_200, &mut s).unwrap(), r);
    }

    #[test]
    fn unusual_messages_fall_back_to_rsip() {
        let compact = String::from_utf8(KAMAILIO_200.to_vec()).unwrap().replace(
            "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=",
            "Via: SIP/2.0/UDP 127.0.0.1:40000;BRANCH=",
        );
        assert_eq!(scan_response(compact.as_bytes()), Err(DecodeError::Unusual));
        let mut s = Scratch::default();
        let mut n = 0;
        let r = decode_response(compact.as_bytes(), &mut s, &mut n).unwrap();
        assert_eq!(n, 1);
        assert_eq!(r.status, 200);
        assert_eq!(r.branch, b"z9hG4bKdeadbeef000000010000002a");
        assert_eq!(r.cseq, 1_000_000_007);

        let folded = String::from_utf8(KAMAILIO_200.to_vec())
            .unwrap()
            .replace("CSeq: 1000000007 OPTIONS", "CSeq:\r\n 1000000007 OPTIONS");
        assert_eq!(scan_response(folded.as_bytes()), Err(DecodeError::Unusual));
    }

    /// Differential: over many variants of a response (header order and case, compact names,
    /// spaces, several Via values, byte flips), whenever the fast path accepts a message rsip
    /// reads the same fields from it.
    #[test]
    fn fast_path_agrees_with_rsip() {
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut rnd = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut scratch = Scratch::default();
        let (mut fast, mut agreed) = (0, 0);
        for _ in 0..3000 {
            let mut headers = [
                ["Via", "v"][rnd(2)].to_string()
                    + ": SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKab-1-0;rport=40000"
                    + [",SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKother", ""][rnd(2)],
                "From: <sip:a@b>;tag=1".to_string(),
                ["To", "t", "TO"][rnd(3)].to_string() + ": <sip:c@d>;tag=xyz",
                "Call-ID: 1@x".to_string(),
                ["CSeq", "cseq", "CSEQ"][rnd(3)].to_string()
                    + [": ", ":", " : "][rnd(3)]
                    + ["7 OPTIONS", "4294967295 INVITE", "12 BYE"][rnd(3)],
                "Content-Length: 0".to_string(),
            ];
            for _ in 0..rnd(4) {
                let (i, j) = (rnd(headers.len()), rnd(headers.len()));
                headers.swap(i, j);
            }
            let status = ["200 OK", "503 Service Unavailable", "100 Trying"][rnd(3)];
            let mut msg =
                format!("SIP/2.0 {status}\r\n{}\r\n\r\n", headers.join("\r\n")).into_bytes();
            if rnd(4) == 0 {
                let i = rnd(msg.len());
                msg[i] = b" ;:,\r\nX0"[rnd(8)];
            }
            if let Ok(f) = scan_response(&msg) {
                fast += 1;
                if let Ok(r) = parse_response(&msg, &mut scratch) {
                    agreed += 1;
                    assert_eq!(f, r, "{}", String::from_utf8_lossy(&msg));
                }
            }
        }
        assert!(fast > 2000, "{fast}");
        // rsip refuses some forms the fast path reads (compact names, several Via values in
        // one header); enough are left to compare.
        assert!(agreed > 400, "{agreed}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut s = Scratch::default();
        let mut n = 0;
        for g in [
            &b""[..],
            b"SIP/2.0 ",
            b"SIP/2.0 2x0 OK\r\n\r\n",
            b"\xff\xfe\x00garbage",
            b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\n\r\n",
        ] {
            assert!(matches!(
                decode_response(g, &mut s, &mut n),
                Err(DecodeError::Invalid(_))
            ));
        }
        // Every prefix of a good message is handled without panicking.
        for i in 0..KAMAILIO_200.len() {
            let _ = decode_response(&KAMAILIO_200[..i], &mut s, &mut n);
        }
    }

    #[test]
    fn responder_answer_matches_the_request() {
        let t = template(Method::Invite);
        let mut req = Vec::new();
        let branch = b"z9hG4bKab12-2a-0";
        t.write(&mut req, branch, 9);
        let r = scan_request(&req).unwrap();
        assert_eq!(r.method(), Some(Method::Invite));
        let mut out = Vec::new();
        write_response(&mut out, &r, 503, reason(503));
        let resp = scan_response(&out).unwrap();
        assert_eq!(resp.status, 503);
        assert_eq!(resp.branch, branch);
        assert_eq!(resp.cseq, 1_000_000_009);
        assert_eq!(resp.method, Method::Invite);
        assert_eq!(resp.to, b"<sip:127.0.0.1:5060>;tag=srewatch-responder");
        // rsip agrees the answer is a well-formed response.
        let mut s = Scratch::default();
        assert_eq!(parse_response(&out, &mut s).unwrap(), resp);

        // The ACK: same branch, Call-ID, tag, CSeq number; To from the response.
        let mut ack = Vec::new();
        assert!(t.write_ack(&mut ack, resp.branch, 9, resp.to));
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
        assert!(text.contains("\r\nTo: <sip:127.0.0.1:5060>;tag=srewatch-responder\r\n"));
        assert!(text.contains("\r\nCall-ID: 0000000000000009-deadbeef@127.0.0.1\r\n"));
        assert!(text.contains("\r\nCSeq: 1000000009 ACK\r\n"));
        assert!(text.contains(";tag=00000009\r\n"));
        let ar = scan_request(&ack).unwrap();
        assert_eq!(ar.method(), Some(Method::Ack));
        // OPTIONS templates have no ACK.
        assert!(!template(Method::Options).write_ack(&mut ack, branch, 9, b"x"));
    }

    #[test]
    fn requests_missing_headers_are_refused() {
        assert!(scan_request(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n").is_err());
        assert!(scan_request(b"garbage").is_err());
        assert!(scan_request(b"").is_err());
    }
}
