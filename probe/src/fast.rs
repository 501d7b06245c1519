//! The hot-path codec of the bench and the responder.
//!
//! - [`Template`]: a request built once per socket; per request only the branch, Call-ID, From
//!   tag and CSeq number are patched in place (fixed-width fields, so the length never changes).
//! - [`scan_response`]: reads the status code, the top Via branch, the CSeq number and method
//!   and the To header of a response without a full parse. Anything unusual (folded lines,
//!   compact `v:`/`t:` headers written oddly, missing headers) is left to [`parse_response`],
//!   which uses rsip; [`decode_response`] tries the first and falls back to the second.
//! - [`scan_request`] and [`write_response`]: the responder's side, a stateless answer that
//!   copies Via, From, To, Call-ID and CSeq from the request.
//!
//! Nothing here allocates per message on the fast paths; the rsip fallback does.
//! Figures: `cargo bench --bench sip` (see docs/bench.md).

use crate::transaction::key::Method;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Width of the hex id in a branch (a u64).
const ID_HEX: usize = 16;
/// Width of the per-run nonce in branches and Call-IDs (a u32).
const NONCE_HEX: usize = 8;
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
fn put_cseq(out: &mut [u8], n: u32) {
    let mut v = CSEQ_BASE + n % CSEQ_BASE;
    for b in out[..CSEQ_DIGITS].iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Parses a lower- or upper-case hex number of at most 16 digits.
#[inline]
fn parse_hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

/// What varies from one request to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// Goes into the branch: the transaction table's id (slot and generation).
    pub tx: u64,
    /// Goes into the Call-ID (hex), the From tag (low 32 bits, hex) and the CSeq number.
    pub seq: u64,
}

/// Byte offsets of the patched fields in a template.
#[derive(Debug, Clone, Copy)]
struct Fields {
    branch: usize,
    call_id: usize,
    tag: usize,
    cseq: usize,
}

/// A request built once; [`Template::patch`] writes a new transaction's ids into a copy.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    fields: Fields,
    method: Method,
    nonce: u32,
    /// The ACK of a non-2xx final response for an INVITE template: everything before the To
    /// header value and everything after it, with the same fields to patch.
    ack: Option<AckTemplate>,
}

#[derive(Debug, Clone)]
struct AckTemplate {
    head: Vec<u8>,
    tail: Vec<u8>,
    head_fields: Fields,
    /// Offsets of Call-ID and CSeq inside `tail` (branch and tag are in `head`).
    tail_call_id: usize,
    tail_cseq: usize,
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

impl Template {
    /// A request of `method` (OPTIONS or INVITE) to `uri`, sent from `local` over `transport`.
    /// `nonce` is the run's random number: it goes into every branch and Call-ID so that two
    /// runs never produce the same ids.
    pub fn new(
        method: Method,
        uri: &str,
        local: SocketAddr,
        transport: ViaTransport,
        nonce: u32,
    ) -> Template {
        let (bytes, fields) = Self::render(method, uri, local, transport, None);
        let ack = (method == Method::Invite).then(|| {
            let (full, f) = Self::render(Method::Ack, uri, local, transport, Some("\u{0}TO\u{0}"));
            let at = find(&full, b"\x00TO\x00").expect("marker");
            let head = full[..at].to_vec();
            let tail = full[at + 4..].to_vec();
            AckTemplate {
                head_fields: f,
                tail_call_id: f.call_id - (at + 4),
                tail_cseq: f.cseq - (at + 4),
                head,
                tail,
            }
        });
        let mut t = Template {
            bytes,
            fields,
            method,
            nonce,
            ack,
        };
        // Fill the nonce part of every id once; `patch` only writes the varying part.
        let mut b = std::mem::take(&mut t.bytes);
        t.write_nonce(&mut b, t.fields);
        t.bytes = b;
        if let Some(mut a) = t.ack.take() {
            put_hex_u32(&mut a.head[a.head_fields.branch + 7..], nonce);
            put_hex_u32(&mut a.tail[a.tail_call_id + ID_HEX + 1..], nonce);
            t.ack = Some(a);
        }
        t
    }

    fn write_nonce(&self, b: &mut [u8], f: Fields) {
        put_hex_u32(&mut b[f.branch + 7..], self.nonce);
        put_hex_u32(&mut b[f.call_id + ID_HEX + 1..], self.nonce);
    }

    fn render(
        method: Method,
        uri: &str,
        local: SocketAddr,
        transport: ViaTransport,
        to: Option<&str>,
    ) -> (Vec<u8>, Fields) {
        let branch_ph = format!("z9hG4bK{}{}", "n".repeat(NONCE_HEX), "b".repeat(ID_HEX));
        let call_id_ph = format!("{}-{}", "c".repeat(ID_HEX), "n".repeat(NONCE_HEX));
        let tag_ph = "t".repeat(8);
        let cseq_ph = "1".repeat(CSEQ_DIGITS);
        let host = match local {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let to_value = to.map(str::to_string).unwrap_or_else(|| format!("<{uri}>"));
        let mut s = String::with_capacity(512);
        let _ = write!(
            s,
            "{m} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{tr} {host}:{port};branch={branch_ph};rport\r\n\
             Max-Forwards: {mf}\r\n\
             From: <sip:srewatch-bench@{host}>;tag={tag_ph}\r\n\
             To: {to_value}\r\n\
             Call-ID: {call_id_ph}@{host}\r\n\
             CSeq: {cseq_ph} {m}\r\n",
            m = method.as_str(),
            tr = transport.as_str(),
            port = local.port(),
            mf = crate::consts::MAX_FORWARDS,
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
        let b = s.into_bytes();
        let fields = Fields {
            branch: find(&b, branch_ph.as_bytes()).expect("branch"),
            call_id: find(&b, call_id_ph.as_bytes()).expect("call-id"),
            tag: find(&b, tag_ph.as_bytes()).expect("tag"),
            cseq: find(&b, cseq_ph.as_bytes()).expect("cseq"),
        };
        (b, fields)
    }

    /// The request bytes with placeholders; copy them into a send buffer once, then
    /// [`Template::patch`] it for every request.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn nonce(&self) -> u32 {
        self.nonce
    }

    /// Writes `ids` into `buf`, which must hold a copy of [`Template::bytes`].
    #[inline]
    pub fn patch(&self, buf: &mut [u8], ids: Ids) {
        debug_assert_eq!(buf.len(), self.bytes.len());
        Self::patch_fields(buf, self.fields, ids);
    }

    #[inline]
    fn patch_fields(buf: &mut [u8], f: Fields, ids: Ids) {
        put_hex_u64(&mut buf[f.branch + 7 + NONCE_HEX..], ids.tx);
        put_hex_u64(&mut buf[f.call_id..], ids.seq);
        put_hex_u32(&mut buf[f.tag..], ids.seq as u32);
        put_cseq(&mut buf[f.cseq..], ids.seq as u32);
    }

    /// Copies the template into `out` (cleared first) and patches it: a complete request.
    pub fn write(&self, out: &mut Vec<u8>, ids: Ids) {
        out.clear();
        out.extend_from_slice(&self.bytes);
        self.patch(out, ids);
    }

    /// The ACK for a non-2xx final response to an INVITE built from this template (RFC 3261
    /// section 17.1.1.3): same branch, Call-ID, From tag and CSeq number, the To header of the
    /// response. `to` is the To header value of the response. Returns false for a non-INVITE
    /// template.
    pub fn write_ack(&self, out: &mut Vec<u8>, ids: Ids, to: &[u8]) -> bool {
        let Some(a) = &self.ack else { return false };
        out.clear();
        out.extend_from_slice(&a.head);
        let f = a.head_fields;
        put_hex_u64(&mut out[f.branch + 7 + NONCE_HEX..], ids.tx);
        put_hex_u32(&mut out[f.tag..], ids.seq as u32);
        out.extend_from_slice(to);
        let base = out.len();
        out.extend_from_slice(&a.tail);
        put_hex_u64(&mut out[base + a.tail_call_id..], ids.seq);
        put_cseq(&mut out[base + a.tail_cseq..], ids.seq as u32);
        true
    }

    /// The transaction id in a branch this template produced, or None for a foreign branch.
    #[inline]
    pub fn branch_id(&self, branch: &[u8]) -> Option<u64> {
        if branch.len() != 7 + NONCE_HEX + ID_HEX || &branch[..7] != b"z9hG4bK" {
            return None;
        }
        if parse_hex(&branch[7..7 + NONCE_HEX])? != self.nonce as u64 {
            return None;
        }
        parse_hex(&branch[7 + NONCE_HEX..])
    }
}

#[inline]
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
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
    let at = find(first, b";branch=")?;
    let b = &first[at + 8..];
    let end = b
        .iter()
        .position(|&c| matches!(c, b';' | b' ' | b'\t' | b','))
        .unwrap_or(b.len());
    (end > 0).then(|| &b[..end])
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
            r.to_has_tag = find(value, b";tag=").is_some();
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
        let ids = Ids {
            tx: 0x0000_0001_0000_002a,
            seq: 7,
        };
        t.write(&mut out, ids);
        assert_eq!(out.len(), t.len());
        let r = rsip::Request::try_from(out.as_slice()).unwrap();
        assert_eq!(r.method, rsip::Method::Options);
        let via = r.via_header().unwrap().typed().unwrap();
        let branch = via.branch().unwrap().to_string();
        assert_eq!(branch, "z9hG4bKdeadbeef000000010000002a");
        assert_eq!(t.branch_id(branch.as_bytes()), Some(0x0000_0001_0000_002a));
        assert_eq!(
            r.call_id_header().unwrap().value(),
            "0000000000000007-deadbeef@127.0.0.1"
        );
        let cs = r.cseq_header().unwrap().typed().unwrap();
        assert_eq!(cs.seq, 1_000_000_007);
        assert!(r.from_header().unwrap().value().ends_with(";tag=00000007"));
        // A second patch overwrites every field.
        t.patch(
            &mut out,
            Ids {
                tx: u64::MAX,
                seq: u64::MAX,
            },
        );
        let r = rsip::Request::try_from(out.as_slice()).unwrap();
        let cs = r.cseq_header().unwrap().typed().unwrap();
        assert_eq!(cs.seq, CSEQ_BASE + (u32::MAX % CSEQ_BASE));
        assert!(cs.seq < 1 << 31);
    }

    #[test]
    fn foreign_branches_are_not_ours() {
        let t = template(Method::Options);
        assert_eq!(
            t.branch_id(b"z9hG4bKdeadbeef000000010000002a"),
            Some(0x1_0000_002a)
        );
        assert_eq!(t.branch_id(b"z9hG4bKdeadbeee000000010000002a"), None);
        assert_eq!(t.branch_id(b"z9hG4bKdeadbeef00000001000000"), None);
        assert_eq!(t.branch_id(b"z9hG4bKdeadbeef00000001000000zz"), None);
        assert_eq!(t.branch_id(b""), None);
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
        let ids = Ids { tx: 42, seq: 9 };
        t.write(&mut req, ids);
        let r = scan_request(&req).unwrap();
        assert_eq!(r.method(), Some(Method::Invite));
        let mut out = Vec::new();
        write_response(&mut out, &r, 503, reason(503));
        let resp = scan_response(&out).unwrap();
        assert_eq!(resp.status, 503);
        assert_eq!(t.branch_id(resp.branch), Some(42));
        assert_eq!(resp.method, Method::Invite);
        assert_eq!(resp.to, b"<sip:127.0.0.1:5060>;tag=srewatch-responder");
        // rsip agrees the answer is a well-formed response.
        let mut s = Scratch::default();
        assert_eq!(parse_response(&out, &mut s).unwrap(), resp);

        // The ACK: same branch, Call-ID, tag, CSeq number; To from the response.
        let mut ack = Vec::new();
        assert!(t.write_ack(&mut ack, ids, resp.to));
        let a = rsip::Request::try_from(ack.as_slice()).unwrap();
        let text = String::from_utf8(ack.clone()).unwrap();
        assert_eq!(a.method, rsip::Method::Ack);
        assert!(
            text.contains(";branch=z9hG4bKdeadbeef000000000000002a;"),
            "{text}"
        );
        assert!(text.contains("\r\nTo: <sip:127.0.0.1:5060>;tag=srewatch-responder\r\n"));
        assert!(text.contains("\r\nCall-ID: 0000000000000009-deadbeef@127.0.0.1\r\n"));
        assert!(text.contains("\r\nCSeq: 1000000009 ACK\r\n"));
        assert!(text.contains(";tag=00000009\r\n"));
        let ar = scan_request(&ack).unwrap();
        assert_eq!(ar.method(), Some(Method::Ack));
        // OPTIONS templates have no ACK.
        assert!(!template(Method::Options).write_ack(&mut ack, ids, b"x"));
    }

    #[test]
    fn requests_missing_headers_are_refused() {
        assert!(scan_request(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n").is_err());
        assert!(scan_request(b"garbage").is_err());
        assert!(scan_request(b"").is_err());
    }
}
