//! The one header-line iterator (RFC 3261 §7.3.1): every reader of SIP bytes walks headers
//! through [`Headers`].
//!
//! - Lines end in CRLF or a bare LF (§7.5 asks for CRLF; LF alone is read too).
//! - A line that starts with SP or HTAB continues the previous header (folding); the value is
//!   returned as it stands in the message, from its first to its last non-LWS byte, folds
//!   included: the readers in [`super::value`] treat CR and LF inside a value as LWS, which is
//!   what unfolding (replacing the line break and the whitespace by one SP) means for them.
//! - LWS may stand before and after the colon; names are case-insensitive; the compact forms
//!   of §7.3.3 resolve to the same [`Name`] as the long ones.
//! - The head ends at the first empty line; [`Headers::body_start`] then says where the body is.
//!   A datagram may also end right after a whole header line (no body). Other bytes that end
//!   before the empty line are [`Error::Truncated`]; a CR that does not end a line, a line
//!   with no colon, with a name
//!   that is not a token, or a fold with nothing before it is [`Error::BadLine`].

use super::value::{is_token, trim};
use super::Error;

/// The headers the codec knows by name (long and compact forms); everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    RecordRoute,
    ContentLength,
    MaxForwards,
    RetryAfter,
    Server,
    Other,
}

impl Name {
    /// The header a name stands for, case-insensitive, compact forms included.
    #[inline]
    pub fn of(n: &[u8]) -> Name {
        if n.len() == 1 {
            return match n[0].to_ascii_lowercase() {
                b'v' => Name::Via,
                b'f' => Name::From,
                b't' => Name::To,
                b'i' => Name::CallId,
                b'm' => Name::Contact,
                b'l' => Name::ContentLength,
                _ => Name::Other,
            };
        }
        let is = |s: &[u8]| n.eq_ignore_ascii_case(s);
        match n.len() {
            2 if is(b"to") => Name::To,
            3 if is(b"via") => Name::Via,
            4 if is(b"cseq") => Name::CSeq,
            4 if is(b"from") => Name::From,
            6 if is(b"server") => Name::Server,
            7 if is(b"call-id") => Name::CallId,
            7 if is(b"contact") => Name::Contact,
            11 if is(b"retry-after") => Name::RetryAfter,
            12 if is(b"record-route") => Name::RecordRoute,
            12 if is(b"max-forwards") => Name::MaxForwards,
            14 if is(b"content-length") => Name::ContentLength,
            _ => Name::Other,
        }
    }
}

/// One header, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name as written (without the LWS around it).
    pub name: &'a [u8],
    pub kind: Name,
    /// The value without LWS at either end; folds inside it are kept as they are.
    pub value: &'a [u8],
    /// The whole header from its name to the end of its last line (without the line end).
    pub raw: &'a [u8],
}

/// The headers of a message head, in order. Stops at the first error.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    buf: &'a [u8],
    pos: usize,
    body: Option<usize>,
    done: bool,
    /// A datagram may end right after its last header line (no empty line): the head ends
    /// there, with no body. A stream must show the empty line.
    datagram: bool,
}

/// The end of the line at `pos` (without CR) and the start of the next, if a LF ends it.
#[inline]
fn line(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = pos + memchr::memchr(b'\n', &buf[pos..])?;
    let end = if nl > pos && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

/// [`line`] for a header line, in one pass: `Err(BadLine)` for a CR that is not right before
/// the LF ending the line (only when a LF follows at all: without one the line is not whole).
#[inline]
fn header_line(buf: &[u8], pos: usize) -> Result<Option<(usize, usize)>, Error> {
    let s = &buf[pos..];
    match memchr::memchr2(b'\r', b'\n', s) {
        None => Ok(None),
        Some(i) if s[i] == b'\n' => Ok(Some((pos + i, pos + i + 1))),
        Some(i) if s.get(i + 1) == Some(&b'\n') => Ok(Some((pos + i, pos + i + 2))),
        Some(i) => match memchr::memchr(b'\n', &s[i..]) {
            Some(_) => Err(Error::BadLine),
            None => Ok(None),
        },
    }
}

/// The start line of a datagram and an iterator over its headers.
/// `Err(Truncated)` when there is not even one whole line.
#[inline]
pub fn split(buf: &[u8]) -> Result<(&[u8], Headers<'_>), Error> {
    let (end, next) = line(buf, 0).ok_or(Error::Truncated)?;
    let mut h = Headers::at(buf, next);
    h.datagram = true;
    Ok((&buf[..end], h))
}

impl<'a> Headers<'a> {
    /// The headers of `buf` starting at byte `pos` (the start of the first header line), read
    /// as a stream: the head ends only at an empty line.
    pub fn at(buf: &'a [u8], pos: usize) -> Headers<'a> {
        Headers {
            buf,
            pos,
            body: None,
            done: false,
            datagram: false,
        }
    }

    /// Where the body starts, once the iterator has reached the empty line.
    pub fn body_start(&self) -> Option<usize> {
        self.body
    }

    fn fail(&mut self, e: Error) -> Option<Result<Header<'a>, Error>> {
        self.done = true;
        Some(Err(e))
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Result<Header<'a>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let buf = self.buf;
        let start = self.pos;
        let Ok(found) = header_line(buf, start) else {
            return self.fail(Error::BadLine);
        };
        let Some((end, next)) = found else {
            if self.datagram && start == buf.len() {
                self.done = true;
                self.body = Some(start);
                return None;
            }
            return self.fail(Error::Truncated);
        };
        if end == start {
            self.done = true;
            self.body = Some(next);
            return None;
        }
        // The name: a token (so not starting with SP or HT), LWS, then the colon.
        let l = &buf[start..end];
        let n = l.iter().position(|&c| !is_token(c)).unwrap_or(l.len());
        let colon = n + l[n..]
            .iter()
            .position(|&c| !matches!(c, b' ' | b'\t'))
            .unwrap_or(l.len() - n);
        if n == 0 || l.get(colon) != Some(&b':') {
            return self.fail(Error::BadLine);
        }
        let name = &l[..n];
        let mut vend = end;
        let mut p = next;
        while p < buf.len() && matches!(buf[p], b' ' | b'\t') {
            match header_line(buf, p) {
                Ok(Some((e, n))) => {
                    vend = e;
                    p = n;
                }
                Ok(None) => return self.fail(Error::Truncated),
                Err(e) => return self.fail(e),
            }
        }
        self.pos = p;
        Some(Ok(Header {
            name,
            kind: Name::of(name),
            value: trim(&buf[start + colon + 1..vend]),
            raw: &buf[start..vend],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(m: &[u8]) -> (Vec<(Name, String)>, Option<usize>, Option<Error>) {
        let (_, mut h) = split(m).unwrap();
        let mut v = Vec::new();
        let mut err = None;
        for x in h.by_ref() {
            match x {
                Ok(x) => v.push((x.kind, String::from_utf8_lossy(x.value).into_owned())),
                Err(e) => err = Some(e),
            }
        }
        (v, h.body_start(), err)
    }

    #[test]
    fn folding_lws_compact_and_line_ends() {
        let m = b"SIP/2.0 200 OK\r\nVia \t: SIP/2.0/UDP h\r\n ;branch=z9hG4bKa\r\nt:<sip:a>\n\tx\nX-A:\r\n\r\nbody";
        let (v, body, err) = all(m);
        assert_eq!(err, None);
        assert_eq!(
            v,
            vec![
                (Name::Via, "SIP/2.0/UDP h\r\n ;branch=z9hG4bKa".to_string()),
                (Name::To, "<sip:a>\n\tx".to_string()),
                (Name::Other, String::new()),
            ]
        );
        assert_eq!(&m[body.unwrap()..], b"body");
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            all(b"SIP/2.0 200 OK\r\n x: y\r\n\r\n").2,
            Some(Error::BadLine)
        );
        assert_eq!(
            all(b"SIP/2.0 200 OK\r\nnocolon\r\n\r\n").2,
            Some(Error::BadLine)
        );
        assert_eq!(
            all(b"SIP/2.0 200 OK\r\nA B: y\r\n\r\n").2,
            Some(Error::BadLine)
        );
        assert_eq!(all(b"SIP/2.0 200 OK\r\nA: y").2, Some(Error::Truncated));
        assert_eq!(all(b"SIP/2.0 200 OK\r\nA: y\r\n").1, Some(22));
        assert_eq!(split(b"SIP/2.0 200 OK").unwrap_err(), Error::Truncated);
    }

    #[test]
    fn names() {
        for (n, k) in [
            (&b"v"[..], Name::Via),
            (b"VIA", Name::Via),
            (b"I", Name::CallId),
            (b"call-ID", Name::CallId),
            (b"l", Name::ContentLength),
            (b"Content-Length", Name::ContentLength),
            (b"m", Name::Contact),
            (b"Record-Route", Name::RecordRoute),
            (b"s", Name::Other),
        ] {
            assert_eq!(Name::of(n), k, "{}", String::from_utf8_lossy(n));
        }
    }
}
