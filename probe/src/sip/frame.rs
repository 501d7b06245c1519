//! Message boundaries: the one Content-Length rule and the stream framer.
//!
//! The rule ([`ContentLength`]), for datagrams and streams alike: a Content-Length (or `l`)
//! that is not a number, or a second one, makes the message invalid. Over a stream a missing
//! Content-Length counts as 0; in a datagram the body is then the rest of the datagram. A
//! datagram whose body is shorter than its Content-Length is discarded (RFC 3261 §18.3); bytes
//! beyond it are not part of the message.

use super::head::{Headers, Name};
use super::value::number;
use super::Error;

/// Folds the Content-Length headers of one message into one value.
#[derive(Debug, Default, Clone, Copy)]
pub struct ContentLength(Option<u32>);

impl ContentLength {
    /// Takes one Content-Length value.
    #[inline]
    pub fn add(&mut self, value: &[u8]) -> Result<(), Error> {
        const BAD: Error = Error::BadHeader("Content-Length");
        if self.0.is_some() {
            return Err(BAD);
        }
        self.0 = Some(number(value).ok_or(BAD)?);
        Ok(())
    }

    pub fn get(self) -> Option<usize> {
        self.0.map(|n| n as usize)
    }

    /// The body of a datagram whose head ends at `body_at`.
    #[inline]
    pub fn datagram_body(self, buf: &[u8], body_at: usize) -> Result<&[u8], Error> {
        let rest = &buf[body_at..];
        match self.get() {
            Some(n) if n > rest.len() => Err(Error::Truncated),
            Some(n) => Ok(&rest[..n]),
            None => Ok(rest),
        }
    }
}

/// What the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many bytes.
    Complete(usize),
    /// A keep-alive line end between messages (RFC 5626 §3.5.1) of this many bytes: skipped by
    /// every reader, never read as a message nor counted as one.
    KeepAlive(usize),
    /// Not yet a whole message: read more.
    Incomplete,
    /// Cannot be framed: the connection must be closed. `Oversized` when the head or the
    /// message would exceed the limit; `BadHeader`/`BadLine` for an unreadable head.
    Invalid(Error),
}

/// Frames the first message of a stream buffer, looking at no more than `max` bytes of it.
/// Checks before parse: only the head's lines and Content-Length are read.
pub fn frame(buf: &[u8], max: usize) -> Frame {
    if buf.starts_with(b"\r\n") {
        return Frame::KeepAlive(2);
    }
    if buf.starts_with(b"\n") {
        return Frame::KeepAlive(1);
    }
    let Some(first) = memchr::memchr(b'\n', buf) else {
        return incomplete(buf, max);
    };
    let mut headers = Headers::at(buf, first + 1);
    let mut cl = ContentLength::default();
    for h in headers.by_ref() {
        match h {
            Ok(h) if h.kind == Name::ContentLength => {
                if let Err(e) = cl.add(h.value) {
                    return Frame::Invalid(e);
                }
            }
            Ok(_) => {}
            Err(Error::Truncated) => return incomplete(buf, max),
            Err(e) => return Frame::Invalid(e),
        }
    }
    let Some(body_at) = headers.body_start() else {
        return incomplete(buf, max);
    };
    let total = body_at + cl.get().unwrap_or(0);
    if total > max {
        Frame::Invalid(Error::Oversized)
    } else if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Incomplete
    }
}

fn incomplete(buf: &[u8], max: usize) -> Frame {
    if buf.len() > max {
        Frame::Invalid(Error::Oversized)
    } else {
        Frame::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let m = b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabcSIP/2.0";
        assert_eq!(frame(m, 100), Frame::Complete(40));
        assert_eq!(frame(&m[..39], 100), Frame::Incomplete);
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n", 100),
            Frame::Complete(24)
        );
        assert_eq!(frame(b"SIP/2.0 200 OK\r\n", 100), Frame::Incomplete);
        assert_eq!(frame(b"\r\n\r\nSIP", 100), Frame::KeepAlive(2));
        assert_eq!(frame(b"\nSIP", 100), Frame::KeepAlive(1));
        // Folded Content-Length, LF line ends, no Content-Length.
        assert_eq!(
            frame(b"SIP/2.0 200 OK\nl:\n 2\n\nab", 100),
            Frame::Complete(24)
        );
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nA: b\r\n\r\nxyz", 100),
            Frame::Complete(24)
        );
        // The one rule: bad or duplicate Content-Length is invalid.
        let bad = Frame::Invalid(Error::BadHeader("Content-Length"));
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n", 100),
            bad
        );
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nl: 0\r\nContent-Length: 0\r\n\r\n", 100),
            bad
        );
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n", 100),
            bad
        );
        let huge = b"SIP/2.0 200 OK\r\nContent-Length: 999999\r\n\r\n";
        assert_eq!(frame(huge, 16384), Frame::Invalid(Error::Oversized));
        assert_eq!(frame(&[b'a'; 101], 100), Frame::Invalid(Error::Oversized));
    }

    #[test]
    fn datagram_bodies() {
        let mut cl = ContentLength::default();
        cl.add(b"3").unwrap();
        assert_eq!(cl.datagram_body(b"xxabcd", 2), Ok(&b"abc"[..]));
        assert_eq!(cl.datagram_body(b"xxab", 2), Err(Error::Truncated));
        assert_eq!(cl.add(b"3"), Err(Error::BadHeader("Content-Length")));
        assert_eq!(
            ContentLength::default().datagram_body(b"xxab", 2),
            Ok(&b"ab"[..])
        );
    }
}
