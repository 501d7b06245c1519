//! The prober's requests and responses (RFC 3261 sections 8.1.1, 9.1, 11, 17.1.1.3), on top of
//! the codec ([`crate::sip`]).
//!
//! - [`TargetUri`]: `sip:host[:port][;transport=udp|tcp]` from the configuration.
//! - [`Leg`]: one call leg (Call-ID, From tag, URIs, sent-by) and the requests built from it
//!   with the codec's request writer: OPTIONS, INVITE (no SDP), ACK (non-2xx: same branch;
//!   2xx: new branch), CANCEL, BYE.
//! - [`Response`]: the owned copy the prober keeps of what the codec's reader read (status, top
//!   Via, CSeq, Call-ID, To tag, Retry-After, Server, Contact, Record-Route), from
//!   [`parse_response`]; malformed input is a [`ParseError`] (the codec's error), never a panic.
//! - [`check_response`]: the matching rules that discard a response before it reaches a
//!   transaction and before anything is copied (more than one Via, a sent-by we did not use;
//!   the caller checks the Call-ID).

use crate::consts::BRANCH_MAGIC;
use crate::transaction::Method;
use std::fmt;
use std::net::SocketAddr;

pub use crate::sip::Transport;

/// A target SIP URI: host (IP address or name), port (default 5060), transport (default UDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUri {
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

/// Why a target URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUri(pub String);

impl TargetUri {
    /// Parses `sip:host[:port][;transport=udp|tcp]` (a user part is refused: use `user`).
    pub fn parse(s: &str) -> Result<TargetUri, BadUri> {
        let rest = s
            .strip_prefix("sip:")
            .ok_or_else(|| BadUri(format!("{s:?} is not a sip: URI")))?;
        if rest.contains('@') {
            return Err(BadUri(format!(
                "{s:?} has a user part; set the request user separately"
            )));
        }
        let (hostport, params) = rest.split_once(';').unwrap_or((rest, ""));
        let mut transport = Transport::Udp;
        for p in params.split(';').filter(|p| !p.is_empty()) {
            match p.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("transport") => {
                    transport = match v.to_ascii_lowercase().as_str() {
                        "udp" => Transport::Udp,
                        "tcp" => Transport::Tcp,
                        _ => return Err(BadUri(format!("transport {v:?} is not udp or tcp"))),
                    }
                }
                _ => return Err(BadUri(format!("unsupported URI parameter {p:?}"))),
            }
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| BadUri(format!("{s:?}: unclosed '['")))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
        {
            return Err(BadUri(format!("{s:?}: bad host {host:?}")));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| BadUri(format!("{s:?}: bad port {p:?}")))?,
            None => 5060,
        };
        Ok(TargetUri {
            host: host.to_string(),
            port,
            transport,
        })
    }

    /// `sip:[user@]host:port[;transport=tcp]`.
    pub fn request_uri(&self, user: Option<&str>) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        let tp = match self.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        format!("sip:{user}{host}:{}{tp}", self.port)
    }
}

impl fmt::Display for TargetUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.request_uri(None))
    }
}

/// A random token of `n` lowercase hex digits (tags, Call-IDs).
pub fn random_token(n: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..n)
        .map(|_| HEX[(rand::random::<u8>() & 0xf) as usize] as char)
        .collect()
}

/// One call leg: everything that stays the same across the requests of one probe.
#[derive(Debug, Clone)]
pub struct Leg {
    pub transport: Transport,
    /// Our address as written in the Via sent-by and the Contact.
    pub local: SocketAddr,
    /// Request-URI of the initial request.
    pub request_uri: String,
    /// To URI (the request URI without parameters).
    pub to_uri: String,
    pub from_uri: String,
    pub from_tag: String,
    pub call_id: String,
    pub cseq: u32,
}

/// What varies between the requests of one leg.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub method: Method,
    pub branch: &'a str,
    pub cseq: u32,
    /// The To tag (ACK, BYE), none for initial requests and CANCEL.
    pub to_tag: Option<&'a str>,
    /// Another Request-URI (the Contact of a 2xx for its ACK and BYE).
    pub request_uri: Option<&'a str>,
    /// The Route header value (the route set of a 2xx for its ACK and BYE).
    pub route: Option<&'a str>,
}

impl Leg {
    /// A new leg towards `target` (with an optional request user) from `local`.
    pub fn new(target: &TargetUri, user: Option<&str>, local: SocketAddr) -> Leg {
        let request_uri = target.request_uri(user);
        let to_uri = request_uri
            .split(';')
            .next()
            .unwrap_or(&request_uri)
            .to_string();
        Leg {
            transport: target.transport,
            local,
            request_uri,
            to_uri,
            from_uri: format!("sip:srewatch@{}", fmt_host(local)),
            from_tag: random_token(16),
            call_id: format!("{}@srewatch", random_token(24)),
            cseq: 1,
        }
    }

    /// The request's bytes, written by the codec's one request writer.
    pub fn encode(&self, p: &Parts<'_>) -> Vec<u8> {
        use crate::sip::build::{write_request, RequestHead, RouteLine};
        // A Request-URI that cannot stand on a request line falls back to the leg's own
        // (always valid: it comes from a checked TargetUri).
        let ruri = p
            .request_uri
            .filter(|u| !u.is_empty() && u.bytes().all(|c| c > b' ' && c < 0x7f))
            .unwrap_or(&self.request_uri);
        let to = match p.to_tag {
            Some(t) => format!("<{}>;tag={t}", self.to_uri),
            None => format!("<{}>", self.to_uri),
        };
        let contact = format!(
            "<sip:srewatch@{};transport={}>",
            fmt_hostport(self.local),
            self.transport.as_str()
        );
        let mut out = Vec::with_capacity(512);
        write_request(
            &mut out,
            &RequestHead {
                method: p.method.as_str(),
                uri: ruri,
                transport: self.transport,
                sent_by: &fmt_hostport(self.local),
                branch: p.branch,
                route: p.route.map_or(RouteLine::None, RouteLine::Value),
                from: &format!("<{}>;tag={}", self.from_uri, self.from_tag),
                to: &to,
                call_id: &self.call_id,
                cseq: &p.cseq.to_string(),
                contact: matches!(p.method, Method::Invite).then_some(contact.as_str()),
                accept_sdp: matches!(p.method, Method::Options | Method::Invite),
                user_agent: concat!("srewatch/", env!("CARGO_PKG_VERSION")),
            },
        );
        out
    }

    /// The initial request of this leg (`Options` or `Invite`).
    pub fn initial(&self, method: Method, branch: &str) -> Vec<u8> {
        self.encode(&Parts {
            method,
            branch,
            cseq: self.cseq,
            to_tag: None,
            request_uri: None,
            route: None,
        })
    }

    /// The ACK of a non-2xx final response to the INVITE sent with `branch` (section 17.1.1.3).
    pub fn ack_non_2xx(&self, branch: &str, to_tag: Option<&str>) -> Vec<u8> {
        self.encode(&Parts {
            method: Method::Ack,
            branch,
            cseq: self.cseq,
            to_tag,
            request_uri: None,
            route: None,
        })
    }

    /// The CANCEL of the INVITE sent with `branch` (section 9.1).
    pub fn cancel(&self, branch: &str) -> Vec<u8> {
        self.encode(&Parts {
            method: Method::Cancel,
            branch,
            cseq: self.cseq,
            to_tag: None,
            request_uri: None,
            route: None,
        })
    }

    /// The ACK of a 2xx (new `branch`, section 13.2.2.4), with the Request-URI and Route of
    /// the 2xx's route set ([`crate::dialog::RouteSet`]; the leg's Request-URI when `None`).
    pub fn ack_2xx(
        &self,
        branch: &str,
        to_tag: Option<&str>,
        request_uri: Option<&str>,
        route: Option<&str>,
    ) -> Vec<u8> {
        self.encode(&Parts {
            method: Method::Ack,
            branch,
            cseq: self.cseq,
            to_tag,
            request_uri,
            route,
        })
    }

    /// The BYE that hangs up a call that a 2xx established (section 15.1.1): Request-URI and
    /// Route as for [`Leg::ack_2xx`], CSeq number of the INVITE + 1.
    pub fn bye(
        &self,
        branch: &str,
        to_tag: Option<&str>,
        request_uri: Option<&str>,
        route: Option<&str>,
    ) -> Vec<u8> {
        self.encode(&Parts {
            method: Method::Bye,
            branch,
            cseq: self.cseq + crate::dialog::BYE_CSEQ_ADD,
            to_tag,
            request_uri,
            route,
        })
    }
}

fn fmt_host(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) => format!("[{}]", v.ip()),
    }
}

fn fmt_hostport(a: SocketAddr) -> String {
    format!("{}:{}", fmt_host(a), a.port())
}

/// Why a response was refused: the codec's one error type.
pub use crate::sip::Error as ParseError;

/// What the prober keeps of a response (owned: it outlives the receive buffer), copied from
/// the codec's borrowed [`crate::sip::Response`].
///
/// 14 fields: one per header value the prober reads, as in the codec's reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Number of via-parms (Via header lines and comma-separated values).
    pub vias: usize,
    /// Branch of the top Via.
    pub branch: String,
    /// Sent-by of the top Via: host as written, port if written.
    pub sent_by_host: String,
    pub sent_by_port: Option<u16>,
    pub cseq: u32,
    /// `None` when the CSeq method is not one we send.
    pub method: Option<Method>,
    pub call_id: String,
    pub to_tag: Option<String>,
    /// Retry-After in seconds, when present and numeric.
    pub retry_after: Option<u32>,
    pub server: Option<String>,
    /// The URI of the first Contact, without angle brackets.
    pub contact: Option<String>,
    /// The Record-Route values, top first, each as received (`<uri>;params`); more than
    /// [`crate::dialog::MAX_ROUTES`] are cut to one more than that.
    pub record_route: Vec<String>,
    /// The message, for [`Response::header`].
    raw: Vec<u8>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Response {
    /// The owned copy of what `r` (read from `raw`) holds.
    pub fn of(r: &crate::sip::Response<'_>, raw: &[u8]) -> Response {
        Response {
            status: r.status,
            vias: r.vias,
            branch: text(r.via.branch),
            sent_by_host: text(r.via.host),
            sent_by_port: r.via.port,
            cseq: r.cseq,
            method: r.method,
            call_id: text(r.call_id),
            to_tag: r.to_tag.map(text),
            retry_after: r.retry_after,
            server: r.server.map(text),
            contact: r.contact.map(text),
            record_route: r
                .record_route()
                .take(crate::dialog::MAX_ROUTES + 1)
                .map(text)
                .collect(),
            raw: raw.to_vec(),
        }
    }

    /// The value of the first header named `name` (case-insensitive), from any header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let v = crate::sip::read_response(&self.raw).ok()?.header(name)?;
        std::str::from_utf8(v).ok()
    }
}

/// Reads one response with the codec's reader. Never panics: any malformed input is a
/// [`ParseError`].
pub fn parse_response(buf: &[u8]) -> Result<Response, ParseError> {
    crate::sip::read_response(buf).map(|r| Response::of(&r, buf))
}

/// Why a well-formed response is not for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// More than one Via (section 8.1.3.3).
    ManyVias,
    /// The top Via's sent-by is not the one we wrote.
    ForeignSentBy,
    /// Not an RFC 3261 branch.
    NoMagicCookie,
    /// Matches a transaction by branch but carries another Call-ID.
    OtherCallId,
}

impl Discard {
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::ManyVias => "many_vias",
            Discard::ForeignSentBy => "foreign_sent_by",
            Discard::NoMagicCookie => "no_magic_cookie",
            Discard::OtherCallId => "other_call_id",
        }
    }
}

/// The checks that need only the response and our sent-by (the Call-ID is checked by the
/// caller once the branch found a transaction).
pub fn check_response(r: &crate::sip::Response<'_>, local: SocketAddr) -> Result<(), Discard> {
    if r.vias != 1 {
        return Err(Discard::ManyVias);
    }
    if !r.via.branch.starts_with(BRANCH_MAGIC.as_bytes()) {
        return Err(Discard::NoMagicCookie);
    }
    let host = r.via.host;
    let host = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    let ip = std::str::from_utf8(host)
        .ok()
        .and_then(|h| h.parse::<std::net::IpAddr>().ok());
    if ip != Some(local.ip()) || r.via.port != Some(local.port()) {
        return Err(Discard::ForeignSentBy);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg() -> Leg {
        let t = TargetUri::parse("sip:127.0.0.1:5070").unwrap();
        let mut l = Leg::new(&t, None, "127.0.0.1:40000".parse().unwrap());
        l.from_tag = "ftag".into();
        l.call_id = "cid@srewatch".into();
        l
    }

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn target_uris() {
        assert_eq!(
            TargetUri::parse("sip:10.0.0.1").unwrap(),
            TargetUri {
                host: "10.0.0.1".into(),
                port: 5060,
                transport: Transport::Udp
            }
        );
        let t = TargetUri::parse("sip:cp1.example:5080;transport=TCP").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("cp1.example", 5080, Transport::Tcp)
        );
        assert_eq!(t.request_uri(None), "sip:cp1.example:5080;transport=tcp");
        assert_eq!(
            t.request_uri(Some("monitor")),
            "sip:monitor@cp1.example:5080;transport=tcp"
        );
        let v6 = TargetUri::parse("sip:[::1]:5062").unwrap();
        assert_eq!(v6.request_uri(None), "sip:[::1]:5062");
        for bad in [
            "http://x",
            "sip:",
            "sip:a@b",
            "sip:h:0",
            "sip:h:99999",
            "sip:h;transport=sctp",
            "sip:h;lr",
            "sip:h o",
        ] {
            assert!(TargetUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_request_exact() {
        let l = leg();
        let got = text(l.initial(Method::Options, "z9hG4bKx-0-0"));
        assert_eq!(
            got,
            "OPTIONS sip:127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKx-0-0;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:srewatch@127.0.0.1>;tag=ftag\r\n\
             To: <sip:127.0.0.1:5070>\r\n\
             Call-ID: cid@srewatch\r\n\
             CSeq: 1 OPTIONS\r\n\
             Accept: application/sdp\r\n\
             User-Agent: srewatch/0.1.0\r\n\
             Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn invite_ack_cancel_bye_exact() {
        let t = TargetUri::parse("sip:127.0.0.1:5070;transport=tcp").unwrap();
        let mut l = Leg::new(&t, Some("monitor"), "127.0.0.1:40000".parse().unwrap());
        l.from_tag = "ftag".into();
        l.call_id = "cid".into();
        let inv = text(l.initial(Method::Invite, "z9hG4bKb"));
        assert!(inv.starts_with("INVITE sip:monitor@127.0.0.1:5070;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKb;rport\r\n"), "{inv}");
        assert!(
            inv.contains("\r\nTo: <sip:monitor@127.0.0.1:5070>\r\n"),
            "{inv}"
        );
        assert!(inv.contains("\r\nCSeq: 1 INVITE\r\n"), "{inv}");
        assert!(
            inv.contains("\r\nContact: <sip:srewatch@127.0.0.1:40000;transport=tcp>\r\n"),
            "{inv}"
        );
        assert!(inv.ends_with("Content-Length: 0\r\n\r\n"), "{inv}");
        let ack = text(l.ack_non_2xx("z9hG4bKb", Some("tt")));
        assert!(ack.starts_with("ACK sip:monitor@127.0.0.1:5070;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKb;rport\r\n"), "{ack}");
        assert!(ack.contains("\r\nTo: <sip:monitor@127.0.0.1:5070>;tag=tt\r\n"));
        assert!(ack.contains("\r\nCSeq: 1 ACK\r\n"));
        assert!(!ack.contains("Accept"));
        let cancel = text(l.cancel("z9hG4bKb"));
        assert!(cancel.starts_with("CANCEL sip:monitor@127.0.0.1:5070;transport=tcp SIP/2.0\r\n"));
        assert!(cancel.contains("branch=z9hG4bKb;rport\r\n"));
        assert!(cancel.contains("\r\nTo: <sip:monitor@127.0.0.1:5070>\r\n"));
        assert!(cancel.contains("\r\nCSeq: 1 CANCEL\r\n"));
        let bye = text(l.bye("z9hG4bKc", Some("tt"), Some("sip:uas@127.0.0.1:5999"), None));
        assert!(!bye.contains("Route:"), "{bye}");
        let routed = text(l.bye(
            "z9hG4bKc",
            Some("tt"),
            Some("sip:uas@127.0.0.1:5999"),
            Some("<sip:127.0.0.1:5070;lr>,<sip:10.0.0.1;lr>"),
        ));
        assert!(
            routed.contains("\r\nRoute: <sip:127.0.0.1:5070;lr>,<sip:10.0.0.1;lr>\r\n"),
            "{routed}"
        );
        assert!(
            bye.starts_with("BYE sip:uas@127.0.0.1:5999 SIP/2.0\r\n"),
            "{bye}"
        );
        assert!(bye.contains("\r\nCSeq: 2 BYE\r\n"));
        assert!(bye.contains("branch=z9hG4bKc;rport\r\n"));
    }

    fn check(m: &str, local: &str) -> Result<(), Discard> {
        let r = crate::sip::read_response(m.as_bytes()).unwrap();
        check_response(&r, local.parse().unwrap())
    }

    const KAMAILIO_503: &str = "SIP/2.0 503 Service Unavailable\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:40000;rport=40000;branch=z9hG4bKab-1-2;received=127.0.0.1\r\n\
        From: <sip:srewatch@127.0.0.1>;tag=ftag\r\n\
        To: <sip:127.0.0.1:5070>;tag=1d24a28a0bded6c40d31e6db8aab9ac6.bd2a0000\r\n\
        Call-ID: cid@srewatch\r\n\
        CSeq: 1 OPTIONS\r\n\
        Retry-After: 30 (maintenance)\r\n\
        Server: srewatch-test-cp cp1\r\n\
        X-Node: cp1\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn parse_kamailio_reply_exact() {
        let r = parse_response(KAMAILIO_503.as_bytes()).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.vias, 1);
        assert_eq!(r.branch, "z9hG4bKab-1-2");
        assert_eq!(r.sent_by_host, "127.0.0.1");
        assert_eq!(r.sent_by_port, Some(40000));
        assert_eq!(r.cseq, 1);
        assert_eq!(r.method, Some(Method::Options));
        assert_eq!(r.call_id, "cid@srewatch");
        assert_eq!(
            r.to_tag.as_deref(),
            Some("1d24a28a0bded6c40d31e6db8aab9ac6.bd2a0000")
        );
        assert_eq!(r.retry_after, Some(30));
        assert_eq!(r.server.as_deref(), Some("srewatch-test-cp cp1"));
        assert_eq!(r.header("x-node"), Some("cp1"));
        assert_eq!(r.header("server"), Some("srewatch-test-cp cp1"));
        assert_eq!(check(KAMAILIO_503, "127.0.0.1:40000"), Ok(()));
        assert_eq!(
            check(KAMAILIO_503, "127.0.0.1:40001"),
            Err(Discard::ForeignSentBy)
        );
    }

    #[test]
    fn matching_rules() {
        let two = KAMAILIO_503.replace(
            "From:",
            "Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKother\r\nFrom:",
        );
        let r = parse_response(two.as_bytes()).unwrap();
        assert_eq!(r.vias, 2);
        assert_eq!(check(&two, "127.0.0.1:40000"), Err(Discard::ManyVias));
        let comma = KAMAILIO_503.replace(
            "received=127.0.0.1\r\n",
            "received=127.0.0.1, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKo\r\n",
        );
        assert_eq!(parse_response(comma.as_bytes()).unwrap().vias, 2);
        let old = KAMAILIO_503.replace("branch=z9hG4bKab-1-2", "branch=1234");
        assert_eq!(check(&old, "127.0.0.1:40000"), Err(Discard::NoMagicCookie));
    }

    #[test]
    fn malformed_is_typed() {
        assert_eq!(parse_response(b""), Err(ParseError::Empty));
        assert_eq!(parse_response(b"\r\n\r\n"), Err(ParseError::Empty));
        assert_eq!(parse_response(b"hello"), Err(ParseError::NotSip));
        assert_eq!(
            parse_response(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            Err(ParseError::NotResponse)
        );
        assert_eq!(
            parse_response(&vec![b'a'; crate::consts::MAX_DATAGRAM + 1]),
            Err(ParseError::Oversized)
        );
        let no_via = KAMAILIO_503.replace("Via:", "X-Via:");
        assert_eq!(
            parse_response(no_via.as_bytes()),
            Err(ParseError::MissingHeader("Via"))
        );
        let bad_cseq = KAMAILIO_503.replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS");
        assert_eq!(
            parse_response(bad_cseq.as_bytes()),
            Err(ParseError::BadHeader("CSeq"))
        );
        let no_branch = KAMAILIO_503.replace(";branch=z9hG4bKab-1-2", "");
        assert_eq!(
            parse_response(no_branch.as_bytes()),
            Err(ParseError::BadHeader("Via"))
        );
        let bad_port = KAMAILIO_503.replace("127.0.0.1:40000;", "127.0.0.1:4x;");
        assert_eq!(
            parse_response(bad_port.as_bytes()),
            Err(ParseError::BadHeader("Via"))
        );
        let no_cid = KAMAILIO_503.replace("Call-ID: cid@srewatch\r\n", "");
        assert_eq!(
            parse_response(no_cid.as_bytes()),
            Err(ParseError::MissingHeader("Call-ID"))
        );
    }

    /// Random bytes and random mutations of a valid response never panic.
    #[test]
    fn random_input_never_panics() {
        use rand::RngExt;
        let mut rng = rand::rng();
        let seed = KAMAILIO_503.as_bytes();
        for i in 0..3000 {
            let mut buf: Vec<u8> = if i % 3 == 0 {
                (0..rng.random_range(0..400))
                    .map(|_| rng.random())
                    .collect()
            } else {
                seed.to_vec()
            };
            for _ in 0..rng.random_range(0..12) {
                if buf.is_empty() {
                    break;
                }
                let at = rng.random_range(0..buf.len());
                match rng.random_range(0..4) {
                    0 => buf[at] = rng.random(),
                    1 => {
                        buf.remove(at);
                    }
                    2 => buf.insert(at, b"\r\n:;,<>\"@ "[rng.random_range(0..10)]),
                    _ => buf.truncate(at),
                }
            }
            let _ = parse_response(&buf);
        }
    }
}

/// The fuzz corpus (`probe/fuzz/corpus/parse_response`: the named seeds plus the minimized
/// inputs of `cargo fuzz run parse_response`) replayed in the normal suite.
#[cfg(test)]
mod corpus {
    use super::*;

    #[test]
    fn corpus_seeds_parse_as_expected() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_response");
        let mut got = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let r = parse_response(&std::fs::read(&p).unwrap());
            // Inputs libFuzzer found (named by their hash) only have to parse without a
            // panic; the named seeds must parse exactly as listed below.
            if !name.contains('.') {
                continue;
            }
            got.push((
                name,
                r.map(|r| (r.status, r.vias, r.method))
                    .map_err(|e| e.as_str()),
            ));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let ok = |s, v, m| Ok((s, v, Some(m)));
        type Parsed = Result<(u16, usize, Option<Method>), &'static str>;
        let want: Vec<(String, Parsed)> = vec![
            ("compact-headers.sip".into(), ok(200, 1, Method::Options)),
            ("garbage.bin".into(), Err("not_sip")),
            ("kamailio-200.sip".into(), ok(200, 1, Method::Options)),
            ("kamailio-503-invite.sip".into(), ok(503, 1, Method::Invite)),
            ("malformed.sip".into(), Err("not_sip")),
            ("many-vias.sip".into(), ok(200, 3, Method::Options)),
            ("request.sip".into(), Err("not_response")),
            ("ringing-with-body.sip".into(), ok(180, 1, Method::Invite)),
        ];
        assert_eq!(got, want);
    }
}
