//! The one request writer ([`write_request`]), used by the prober's
//! [`Leg`](crate::message::Leg) with real values and by the bench's
//! [`Template`](crate::fast::Template) with placeholders it patches per request; and the
//! responder's response writer ([`write_response`]).

use super::head::Name;
use super::request::Request;
use super::Transport;
use crate::consts::MAX_FORWARDS;

/// The Route header of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLine<'a> {
    None,
    /// `Route: <value>\r\n`.
    Value(&'a str),
    /// Written as is where the Route line goes (a template's placeholder for a whole line).
    Raw(&'a str),
}

/// Everything that goes into a request head. More than 12 fields: one per header the prober
/// and the bench write, so that both write the same head in the same order.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub transport: Transport,
    /// `host:port` of the top Via.
    pub sent_by: &'a str,
    pub branch: &'a str,
    pub route: RouteLine<'a>,
    /// The From value (with its tag).
    pub from: &'a str,
    /// The To value.
    pub to: &'a str,
    pub call_id: &'a str,
    /// The CSeq number as written.
    pub cseq: &'a str,
    /// The Contact value (INVITE).
    pub contact: Option<&'a str>,
    /// `Accept: application/sdp` (OPTIONS, INVITE).
    pub accept_sdp: bool,
    pub user_agent: &'a str,
}

/// Writes a request without body (appends to `out`).
pub fn write_request(out: &mut Vec<u8>, r: &RequestHead<'_>) {
    let mut put = |parts: &[&str]| {
        for p in parts {
            out.extend_from_slice(p.as_bytes());
        }
    };
    put(&[r.method, " ", r.uri, " SIP/2.0\r\n"]);
    put(&[
        "Via: SIP/2.0/",
        r.transport.via_name(),
        " ",
        r.sent_by,
        ";branch=",
        r.branch,
        ";rport\r\n",
    ]);
    let mut mf = itoa::Buffer::new();
    put(&["Max-Forwards: ", mf.format(MAX_FORWARDS), "\r\n"]);
    match r.route {
        RouteLine::None => {}
        RouteLine::Value(v) => put(&["Route: ", v, "\r\n"]),
        RouteLine::Raw(v) => put(&[v]),
    }
    put(&["From: ", r.from, "\r\n"]);
    put(&["To: ", r.to, "\r\n"]);
    put(&["Call-ID: ", r.call_id, "\r\n"]);
    put(&["CSeq: ", r.cseq, " ", r.method, "\r\n"]);
    if let Some(c) = r.contact {
        put(&["Contact: ", c, "\r\n"]);
    }
    if r.accept_sdp {
        put(&["Accept: application/sdp\r\n"]);
    }
    put(&["User-Agent: ", r.user_agent, "\r\n"]);
    put(&["Content-Length: 0\r\n\r\n"]);
}

/// A To tag for the calls a stateless UAS answers: the same for the retransmissions of one
/// request (a hash of its Call-ID and From tag), a fresh one for every call.
pub fn to_tag_of(req: &Request<'_>) -> [u8; 16] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in req
        .call_id
        .iter()
        .chain(b"/")
        .chain(req.from_tag.unwrap_or(b""))
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Writes a stateless response to `req` into `out` (cleared first): status line; the Via,
/// From, To, Call-ID and CSeq headers copied in order (folds turned into spaces), `to_tag`
/// added to a To without a tag; `contact` as a Contact header; a Server header and no body.
pub fn write_response(
    out: &mut Vec<u8>,
    req: &Request<'_>,
    status: u16,
    reason: &str,
    to_tag: &[u8],
    contact: Option<&[u8]>,
) {
    out.clear();
    out.extend_from_slice(b"SIP/2.0 ");
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in req.headers().map_while(Result::ok) {
        if !matches!(
            h.kind,
            Name::Via | Name::From | Name::To | Name::CallId | Name::CSeq
        ) {
            continue;
        }
        out.extend(h.raw.trim_ascii_end().iter().map(|&c| {
            if c == b'\r' || c == b'\n' {
                b' '
            } else {
                c
            }
        }));
        if h.kind == Name::To && req.to_tag.is_none() {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(to_tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(c) = contact {
        out.extend_from_slice(b"Contact: <");
        out.extend_from_slice(c);
        out.extend_from_slice(b">\r\n");
    }
    out.extend_from_slice(b"Server: srewatch-responder\r\nContent-Length: 0\r\n\r\n");
}
