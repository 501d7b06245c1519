//! The SIP codec: the one place where SIP bytes are read and requests are written.
//!
//! - [`head`]: the header-line iterator ([`Headers`]): CRLF or bare LF line ends, folded lines
//!   (RFC 3261 §7.3.1) joined into one value, LWS around the colon, case-insensitive names and
//!   compact forms (§7.3.3) resolved to a [`Name`].
//! - [`value`]: LWS-aware readers of header values (comma-separated values, `;params`, the
//!   Via sent-protocol and sent-by, CSeq, name-addr tags and URIs).
//! - [`response`]: the borrowed response reader [`read_response`] used by the prober, the
//!   bench and the differential tests; nothing is copied for the fields they use.
//! - [`request`]: the borrowed request reader [`read_request`] of the responder.
//! - [`mod@frame`]: the Content-Length rule and the stream framer [`frame()`] (check before parse) used by every TCP reader.
//! - [`build`]: the request writer [`build::write_request`] used by the prober's
//!   [`Leg`](crate::message::Leg) and the bench's [`Template`](crate::fast::Template), and the
//!   response writer of the responder.
//!
//! - `rfc4475`: where the conformance tests find the RFC 4475 torture messages.
//!
//! One error type, [`Error`], for everything that refuses bytes; one [`Transport`].

pub mod build;
pub mod frame;
pub mod head;
#[cfg(test)]
mod oracle;
pub mod request;
pub mod response;
mod rfc4475;
pub mod value;

pub use frame::{frame, Frame};
pub use head::{Header, Headers, Name};
pub use request::{read_request, Request};
pub use response::{read_response, Response, Via};
pub use rfc4475::{rfc4475_dir, RFC4475_HINT};

/// The transport a target is probed over (and the one named in a Via).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

impl Transport {
    /// As written in a Via: `UDP`, `TCP`.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// As written in a URI parameter: `udp`, `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    pub fn is_reliable(self) -> bool {
        self == Transport::Tcp
    }
}

/// Why bytes were not read as a SIP message (or not as one a transaction can use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("empty message")]
    Empty,
    #[error("message larger than the limit")]
    Oversized,
    #[error("not a SIP message")]
    NotSip,
    #[error("a request, not a response")]
    NotResponse,
    #[error("a response, not a request")]
    NotRequest,
    #[error("malformed header line")]
    BadLine,
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    /// The head has no blank line, or the body is shorter than its Content-Length (§18.3).
    #[error("truncated message")]
    Truncated,
}

impl Error {
    /// A short fixed name usable as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Error::Empty => "empty",
            Error::Oversized => "oversized",
            Error::NotSip => "not_sip",
            Error::NotResponse => "not_response",
            Error::NotRequest => "not_request",
            Error::BadLine => "bad_line",
            Error::MissingHeader(_) => "missing_header",
            Error::BadHeader(_) => "bad_header",
            Error::Truncated => "truncated",
        }
    }
}

/// The URI of the first Contact of a message (inside `<>`, or up to `;`/`,`), for the
/// Request-URI of the ACK and BYE of a 2xx; read with the header iterator (folded lines,
/// compact `m`), from a head that need not read as a whole response. `None` when there is no
/// usable Contact (the caller then uses the INVITE's Request-URI) or the head does not read
/// up to it.
pub fn contact_uri(buf: &[u8]) -> Option<&[u8]> {
    let (_, headers) = head::split(buf).ok()?;
    let h = headers
        .map_while(Result::ok)
        .find(|h| h.kind == Name::Contact)?;
    value::values(h.value).next().and_then(value::uri)
}

/// `SIP/2.0`, case-insensitive (§7.1).
pub(crate) fn is_version(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"SIP/2.0")
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

/// A 200 OK to the bench's OPTIONS as Kamailio writes it (a test fixture of the readers).
#[cfg(test)]
pub(crate) const KAMAILIO_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKdeadbeef000000010000002a;rport=40000;received=127.0.0.1\r\n\
From: <sip:srewatch-bench@127.0.0.1>;tag=00000007\r\n\
To: <sip:127.0.0.1:5060>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-1fa2\r\n\
Call-ID: 0000000000000007-deadbeef@127.0.0.1\r\n\
CSeq: 1000000007 OPTIONS\r\n\
Server: srewatch-test-cp cp1\r\n\
Content-Length: 0\r\n\r\n";
