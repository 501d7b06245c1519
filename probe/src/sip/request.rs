//! The request reader of the responder: [`read_request`] checks what a stateless UAS must
//! before answering (RFC 3261 §8.2, §18.3) and keeps the head to copy from.
//!
//! Refused: a request line that is not `Method SP Request-URI SP SIP/2.0` with single spaces,
//! a URI in angle brackets, a missing Via, From, To, Call-ID or CSeq, a CSeq whose method is
//! not the request's or whose number is not a 32-bit number, a Max-Forwards that is not a
//! number up to 255, the Content-Length rule of [`mod@super::frame`], and a body shorter than
//! Content-Length. There is no limit on the number of headers or Via values.

use super::frame::ContentLength;
use super::head::{self, Headers, Name};
use super::value::{self, is_token};
use super::{is_version, Error};
use crate::transaction::key::Method;

/// A request, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method token (any, not only the ones in [`Method`]).
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub call_id: &'a [u8],
    pub from_tag: Option<&'a [u8]>,
    pub to_tag: Option<&'a [u8]>,
    pub cseq: u32,
    pub body: &'a [u8],
    /// From the first header line to the end of the head.
    head: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn method(&self) -> Option<Method> {
        Method::from_bytes(self.method)
    }

    /// The headers, in order.
    pub fn headers(&self) -> Headers<'a> {
        Headers::at(self.head, 0)
    }
}

/// Reads one request. Never panics.
pub fn read_request(buf: &[u8]) -> Result<Request<'_>, Error> {
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::Empty);
    }
    let (line, mut headers) = head::split(buf)?;
    let mut parts = line.split(|&c| c == b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(if line.starts_with(b"SIP/") || line.starts_with(b"sip/") {
            Error::NotRequest
        } else {
            Error::NotSip
        });
    };
    if is_version(method) {
        return Err(Error::NotRequest);
    }
    if method.is_empty()
        || !method.iter().all(|&c| is_token(c))
        || uri.is_empty()
        || uri.starts_with(b"<")
        || !uri.iter().all(|&c| c > b' ' && c < 0x7f)
        || !is_version(version)
    {
        return Err(Error::NotSip);
    }
    let head_start = line.len() + 1 + usize::from(buf.get(line.len()) == Some(&b'\r'));
    let (mut via, mut from, mut to, mut call_id, mut cseq) = (false, None, None, None, None);
    let mut cl = ContentLength::default();
    for h in headers.by_ref() {
        let h = h?;
        match h.kind {
            Name::Via => via = true,
            Name::From if from.is_none() => from = Some(h.value),
            Name::To if to.is_none() => to = Some(h.value),
            Name::CallId if call_id.is_none() => call_id = Some(h.value),
            Name::CSeq if cseq.is_none() => cseq = Some(h.value),
            Name::MaxForwards if value::number(h.value).is_none_or(|n| n > 255) => {
                return Err(Error::BadHeader("Max-Forwards"));
            }
            Name::ContentLength => cl.add(h.value)?,
            _ => {}
        }
    }
    let body_at = headers.body_start().ok_or(Error::Truncated)?;
    let body = cl.datagram_body(buf, body_at)?;
    if !via {
        return Err(Error::MissingHeader("Via"));
    }
    let from = from.ok_or(Error::MissingHeader("From"))?;
    let to = to.ok_or(Error::MissingHeader("To"))?;
    let call_id = call_id.ok_or(Error::MissingHeader("Call-ID"))?;
    if call_id.is_empty() || !call_id.iter().all(|&c| c > b' ' && c < 0x7f) {
        return Err(Error::BadHeader("Call-ID"));
    }
    let (cseq, m) =
        value::cseq(cseq.ok_or(Error::MissingHeader("CSeq"))?).ok_or(Error::BadHeader("CSeq"))?;
    if m != method {
        return Err(Error::BadHeader("CSeq"));
    }
    Ok(Request {
        method,
        uri,
        call_id,
        from_tag: value::tag(from),
        to_tag: value::tag(to),
        cseq,
        body,
        head: &buf[head_start.min(body_at)..body_at],
    })
}
