//! The one response reader: [`read_response`] reads, in one pass over the head and without
//! copying, every field the prober and the bench use.
//!
//! Accepted as RFC 3261 writes it: folded lines anywhere in the head, LWS around colons and
//! inside the Via sent-protocol (`SIP / 2.0 / UDP`), compact header names, a case-insensitive
//! version (`sip/2.0`), an empty reason phrase, several Via values in one header. Refused with
//! an [`Error`]: anything else on the status line, a missing or unreadable Via (top value with
//! a branch), CSeq, Call-ID or To, a bad or second Content-Length, and a body shorter than its
//! Content-Length (§18.3).

use super::frame::ContentLength;
use super::head::{self, Headers, Name};
use super::value::{self, leading_number, tag, values};
use super::{is_version, Error};
use crate::consts::MAX_DATAGRAM;
use crate::transaction::key::Method;

/// The top Via of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// As written (`UDP`, `tcp`...).
    pub transport: &'a [u8],
    /// Host as written (IPv6 with its brackets).
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub branch: &'a [u8],
}

/// A response, borrowed from its bytes. More than 12 fields: it is the one reader of every
/// field the prober and the bench use, read in a single pass; the rare ones (Record-Route,
/// any header by name) are looked up again on demand from `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: &'a [u8],
    /// Number of via-parms (Via header lines and comma-separated values).
    pub vias: usize,
    pub via: Via<'a>,
    pub cseq: u32,
    /// The CSeq method as written.
    pub cseq_method: &'a [u8],
    /// `None` when the CSeq method is not one we send.
    pub method: Option<Method>,
    pub call_id: &'a [u8],
    /// The To value (with its tag), as the ACK of a non-2xx repeats it.
    pub to: &'a [u8],
    pub to_tag: Option<&'a [u8]>,
    /// The URI of the first Contact, without angle brackets.
    pub contact: Option<&'a [u8]>,
    /// Retry-After in seconds, when present and numeric.
    pub retry_after: Option<u32>,
    pub server: Option<&'a [u8]>,
    /// Exactly Content-Length bytes (or the rest of the datagram without one).
    pub body: &'a [u8],
    /// The message from its first header line to the end of the head.
    head: &'a [u8],
}

impl<'a> Response<'a> {
    /// The headers again, for lookups the single pass does not keep.
    pub fn headers(&self) -> Headers<'a> {
        Headers::at(self.head, 0)
    }

    /// The value of the first header named `name` (case-insensitive; compact forms of the
    /// headers the codec knows match their long names).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let want = Name::of(name.as_bytes());
        self.headers().map_while(Result::ok).find_map(|h| {
            let hit = if want == Name::Other {
                h.name.eq_ignore_ascii_case(name.as_bytes())
            } else {
                h.kind == want
            };
            hit.then_some(h.value)
        })
    }

    /// The Record-Route values, top first, each `<uri>;params` as received.
    pub fn record_route(&self) -> impl Iterator<Item = &'a [u8]> {
        self.headers()
            .map_while(Result::ok)
            .filter(|h| h.kind == Name::RecordRoute)
            .flat_map(|h| values(h.value))
    }
}

/// Whether the first line looks like a request line (`... SIP/2.0`).
fn is_request_line(line: &[u8]) -> bool {
    line.len() >= 8 && is_version(&line[line.len() - 7..]) && line[line.len() - 8] == b' '
}

/// Reads one response. Never panics: any malformed input is an [`Error`].
pub fn read_response(buf: &[u8]) -> Result<Response<'_>, Error> {
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::Empty);
    }
    if buf.len() > MAX_DATAGRAM {
        return Err(Error::Oversized);
    }
    let not_sip = |line: &[u8]| {
        if is_request_line(line) {
            Error::NotResponse
        } else {
            Error::NotSip
        }
    };
    let (line, mut headers) = match head::split(buf) {
        Ok(x) => x,
        Err(_) => {
            let first = buf.split(|&c| c == b'\n').next().unwrap_or(buf);
            return Err(not_sip(first.strip_suffix(b"\r").unwrap_or(first)));
        }
    };
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2).
    if line.len() < 12 || !is_version(&line[..7]) || line[7] != b' ' {
        return Err(not_sip(line));
    }
    let d = &line[8..11];
    if !d.iter().all(u8::is_ascii_digit) || !(line.len() == 11 || line[11] == b' ') {
        return Err(Error::NotSip);
    }
    let status = d.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
    if !(100..=699).contains(&status) {
        return Err(Error::NotSip);
    }
    let reason = line.get(12..).unwrap_or(&[]);
    if reason.iter().any(|&c| c < b' ' && c != b'\t') {
        return Err(Error::NotSip);
    }
    let head_start = line.len() + 1 + usize::from(buf.get(line.len()) == Some(&b'\r'));

    let mut vias = 0usize;
    let mut via = None;
    let mut cseq = None;
    let mut call_id = None;
    let mut to = None;
    let mut contact = None;
    let mut retry_after = None;
    let mut server = None;
    let mut cl = ContentLength::default();
    for h in headers.by_ref() {
        let h = h?;
        match h.kind {
            Name::Via => {
                for v in values(h.value) {
                    if vias == 0 {
                        via = Some(v);
                    }
                    vias += 1;
                }
            }
            Name::CSeq if cseq.is_none() => cseq = Some(h.value),
            Name::CallId if call_id.is_none() => call_id = Some(h.value),
            Name::To if to.is_none() => to = Some(h.value),
            Name::Contact if contact.is_none() => contact = Some(h.value),
            Name::RetryAfter if retry_after.is_none() => retry_after = leading_number(h.value),
            Name::Server if server.is_none() => server = Some(h.value),
            Name::ContentLength => cl.add(h.value)?,
            _ => {}
        }
    }
    let body_at = headers.body_start().ok_or(Error::Truncated)?;
    let body = cl.datagram_body(buf, body_at)?;

    let v = via.ok_or(Error::MissingHeader("Via"))?;
    let v = value::via(v).ok_or(Error::BadHeader("Via"))?;
    let branch = value::param(v.params, b"branch")
        .filter(|b| !b.is_empty() && b.iter().all(|&c| value::is_token(c)))
        .ok_or(Error::BadHeader("Via"))?;
    let (cseq, cseq_method) =
        value::cseq(cseq.ok_or(Error::MissingHeader("CSeq"))?).ok_or(Error::BadHeader("CSeq"))?;
    let call_id = call_id.ok_or(Error::MissingHeader("Call-ID"))?;
    if call_id.is_empty() || !call_id.iter().all(|&c| c > b' ' && c < 0x7f) {
        return Err(Error::BadHeader("Call-ID"));
    }
    let to = to.ok_or(Error::MissingHeader("To"))?;
    Ok(Response {
        status,
        reason,
        vias,
        via: Via {
            transport: v.transport,
            host: v.host,
            port: v.port,
            branch,
        },
        cseq,
        cseq_method,
        method: Method::from_bytes(cseq_method),
        call_id,
        to,
        to_tag: tag(to),
        contact: contact.and_then(|c| values(c).next()).and_then(value::uri),
        retry_after,
        server,
        body,
        head: &buf[head_start.min(body_at)..body_at],
    })
}
