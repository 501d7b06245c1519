//! The transaction user's follow-up of an INVITE, sans I/O: the pieces of the call core
//! ([`crate::call`], which the prober drives) that the bench ([`crate::bench`]) also uses
//! directly.
//!
//! Inputs are what the INVITE's [`ClientTx`] decided ([`Send`]), responses to the CANCEL and
//! the BYE, and timer ticks; outputs are what to send ([`FollowUp`], [`CancelEvent`]) and the
//! outcomes to report ([`ByeResult`]). The drivers render the messages (the prober with rsip,
//! the bench from templates without allocating) and own the sockets and the clock.
//!
//! - [`follow_up`]: what an INVITE event asks for: the ACK of a non-2xx in its transaction
//!   (RFC 3261 section 17.1.1.3), the ACK and BYE of a 2xx (13.2.2.4, 15.1.1), the same ACK
//!   again for a retransmitted 2xx, or a CANCEL (9.1).
//! - [`RouteSet`]: the route set of a 2xx (12.1.2, 12.2.1.1): its Record-Route values
//!   reversed into Route, loose routing (`;lr`: Request-URI = the Contact, all routes in Route)
//!   or strict routing (Request-URI = the first route, the Contact appended to Route).
//! - [`RouteSet::next_hop`]: where the ACK and BYE go (8.1.2, 12.2.1.1, 18.1.1): the first
//!   route's URI, else the Contact, else the target ([`NextHop`]); host or `maddr`, port
//!   (default 5060), `;transport=` (default the target's). An IP literal is final; a host
//!   name is for the driver to resolve. The prober sends there (a name resolved once, with a
//!   bound; the probed address, logged, when that fails or over TCP to another address); the
//!   bench always sends to its target (its socket is connected).
//! - [`Cancel`]: the CANCEL's own non-INVITE transaction with its own Timer E and Timer F
//!   ([`FollowConfig`]), whatever the driver does with its own retransmissions.
//! - [`ByeResult`]: the BYE's own final status: only a 2xx hangs the call up; anything else
//!   is a failure of its own (the call may still be up).
//!
//! CSeq (sections 13.2.2.4, 12.2.1.1, 9.1): the ACK of a 2xx and the CANCEL carry the INVITE's
//! CSeq number, the BYE the INVITE's number + 1 ([`BYE_CSEQ_ADD`]). The ACK of a 2xx and the
//! BYE each get a branch of their own; the ACK of a non-2xx and the CANCEL reuse the INVITE's.

use crate::consts::{T1, T2};
use crate::sip::Transport;
use crate::transaction::key::Method;
use crate::transaction::{Action, ClientTx, Outcome, Send, TransportErrorKind, TxConfig};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The BYE's CSeq number is the INVITE's plus this (the next request of the dialog).
pub const BYE_CSEQ_ADD: u32 = 1;

/// Most Record-Route values followed; a 2xx with more is answered without a route set and
/// reported ([`RouteError::TooMany`]).
pub const MAX_ROUTES: usize = 8;

/// Timers of the follow-up transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowConfig {
    /// T1 of the CANCEL and the BYE: never zero, even when the driver does not retransmit its
    /// own requests (`bench --no-retransmit`).
    pub t1: Duration,
    pub t2: Duration,
    /// A BYE without a final response this long after its first send failed.
    pub bye_timeout: Duration,
    /// Reliable transport: no retransmissions.
    pub reliable: bool,
}

impl FollowConfig {
    /// `t1` zero (retransmissions off in the driver) means the RFC's T1.
    pub fn new(t1: Duration, bye_timeout: Duration, reliable: bool) -> FollowConfig {
        let t1 = if t1.is_zero() { T1 } else { t1 };
        FollowConfig {
            t1,
            t2: T2.max(t1),
            bye_timeout,
            reliable,
        }
    }

    /// Timer F of the CANCEL: 64·T1.
    pub fn timer_f(&self) -> Duration {
        self.t1 * 64
    }

    fn tx(&self, method: Method, timeout: Duration, now: Instant) -> ClientTx {
        let cfg = TxConfig {
            t1: self.t1,
            t2: self.t2,
            timeout,
            reliable: self.reliable,
            retransmit: true,
        };
        ClientTx::new(method, &cfg, now)
    }

    /// The BYE's transaction, first sent at `now`.
    pub fn bye_tx(&self, now: Instant) -> ClientTx {
        self.tx(Method::Bye, self.bye_timeout, now)
    }
}

/// What to send after an event of the INVITE's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Nothing,
    /// ACK the non-2xx final in the INVITE's transaction: same branch, Request-URI, Call-ID,
    /// From and CSeq number, the response's To (with its tag).
    AckInTx,
    /// The first 2xx: the call was accepted. ACK it along its [`RouteSet`] (a new branch) and
    /// hang up with a BYE (a transaction of its own, [`FollowConfig::bye_tx`]).
    Accept,
    /// A retransmitted 2xx: the same ACK again, no new BYE.
    AckAgain,
    /// Only provisional answers by the deadline: CANCEL the INVITE ([`Cancel`]).
    Cancel,
}

/// What an INVITE [`Action`]'s [`Send`] means for a response of `status` (`None` on a timer).
pub fn follow_up(send: Send, status: Option<u16>) -> FollowUp {
    match send {
        Send::Nothing => FollowUp::Nothing,
        Send::Ack if status.is_some_and(|s| s < 300) => FollowUp::AckAgain,
        Send::Ack => FollowUp::AckInTx,
        Send::AckAndBye => FollowUp::Accept,
        Send::Cancel => FollowUp::Cancel,
    }
}

/// The [`Send`] of an INVITE action (what [`follow_up`] reads), `Nothing` for the others.
pub fn send_of(a: &Action) -> Send {
    match *a {
        Action::Done { send, .. } | Action::Duplicate { send } | Action::Late { send, .. } => send,
        _ => Send::Nothing,
    }
}

/// What happened to a CANCEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelEvent {
    Wait,
    /// Send the CANCEL (again): Timer E fired.
    Retransmit,
    /// Its final response came (reported once).
    Answered(u16),
    /// No final response by Timer F, or it could not be sent (reported once).
    Failed,
}

/// The CANCEL of one INVITE: a non-INVITE transaction of its own (same branch as the INVITE,
/// method CANCEL) with Timer E and Timer F from [`FollowConfig`]; its driver (the call core,
/// [`crate::call::Call`]) keeps the INVITE until it has ended and the INVITE's final came.
#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Option<ClientTx>,
}

impl Cancel {
    /// A CANCEL first sent at `now`.
    pub fn start(cfg: &FollowConfig, now: Instant) -> Cancel {
        Cancel {
            tx: Some(cfg.tx(Method::Cancel, cfg.timer_f(), now)),
        }
    }

    /// A response to the CANCEL.
    pub fn on_response(&mut self, status: u16, now: Instant) -> CancelEvent {
        let Some(tx) = &mut self.tx else {
            return CancelEvent::Wait;
        };
        match tx.on_response(status, now) {
            Action::Done { .. } => {
                self.tx = None;
                CancelEvent::Answered(status)
            }
            _ => CancelEvent::Wait,
        }
    }

    /// A tick at or after [`Cancel::next_wakeup`].
    pub fn on_timer(&mut self, now: Instant) -> CancelEvent {
        let Some(tx) = &mut self.tx else {
            return CancelEvent::Wait;
        };
        if tx.next_wakeup().is_none_or(|w| w > now) {
            return CancelEvent::Wait;
        }
        match tx.on_timer(now) {
            Action::Retransmit => CancelEvent::Retransmit,
            Action::Done { .. } | Action::Terminated => {
                self.tx = None;
                CancelEvent::Failed
            }
            _ => CancelEvent::Wait,
        }
    }

    /// The CANCEL could not be sent.
    pub fn on_send_error(&mut self) -> CancelEvent {
        match self.tx.take() {
            Some(_) => CancelEvent::Failed,
            None => CancelEvent::Wait,
        }
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        self.tx.as_ref().and_then(ClientTx::next_wakeup)
    }

    /// Still waiting for the CANCEL's final response.
    pub fn pending(&self) -> bool {
        self.tx.is_some()
    }
}

/// How the BYE that hangs up an accepted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByeResult {
    /// A 2xx: the call is over.
    HungUp { status: u16 },
    /// Another final status (e.g. `404 Not here` from a proxy that could not route it): the
    /// call may still be up.
    Refused { status: u16 },
    /// No final response within the BYE's timeout.
    NoAnswer,
    /// It could not be delivered (a local or transport error).
    NotSent(TransportErrorKind),
}

impl ByeResult {
    /// The result of a BYE's transaction [`Action`], once it ends.
    pub fn of(a: &Action) -> Option<ByeResult> {
        match *a {
            Action::Done { outcome, .. } => Some(match outcome {
                Outcome::Final { status, .. } if (200..300).contains(&status) => {
                    ByeResult::HungUp { status }
                }
                Outcome::Final { status, .. } => ByeResult::Refused { status },
                Outcome::Timeout { .. } => ByeResult::NoAnswer,
                Outcome::TransportError { kind, .. } => ByeResult::NotSent(kind),
            }),
            _ => None,
        }
    }

    pub fn hung_up(&self) -> bool {
        matches!(self, ByeResult::HungUp { .. })
    }

    /// The final status, if one came.
    pub fn status(&self) -> Option<u16> {
        match *self {
            ByeResult::HungUp { status } | ByeResult::Refused { status } => Some(status),
            _ => None,
        }
    }

    /// A short fixed name usable as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            ByeResult::HungUp { .. } => "hung_up",
            ByeResult::Refused { .. } => "refused",
            ByeResult::NoAnswer => "no_answer",
            ByeResult::NotSent(_) => "not_sent",
        }
    }

    /// For alarm texts: says "hung up" only when the BYE got a 2xx.
    pub fn describe(&self) -> String {
        match self {
            ByeResult::HungUp { status } => format!("ACKed and hung up: BYE answered {status}"),
            ByeResult::Refused { status } => {
                format!("ACKed; BYE answered {status}: the call may still be up")
            }
            ByeResult::NoAnswer => "ACKed; BYE got no answer: the call may still be up".into(),
            ByeResult::NotSent(k) => format!(
                "ACKed; BYE could not be sent ({}): the call may still be up",
                k.as_str()
            ),
        }
    }
}

/// Why a 2xx's route set was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("more than {MAX_ROUTES} Record-Route values")]
    TooMany,
    #[error("a Record-Route value without a usable URI")]
    Bad,
}

/// The route set of a 2xx and the Request-URI of its ACK and BYE, borrowed from the response.
/// Building it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSet<'a> {
    /// Route values in the order to send them (the Record-Route values reversed, each as
    /// received: `<uri>;params`).
    routes: [&'a [u8]; MAX_ROUTES],
    n: usize,
    /// The Contact URI of the 2xx (no angle brackets).
    contact: Option<&'a [u8]>,
    /// The first route's URI when it is a strict router (no `;lr`).
    strict: Option<&'a [u8]>,
}

impl<'a> RouteSet<'a> {
    /// No route set: the ACK and BYE go to the Contact (or, without one, the INVITE's
    /// Request-URI).
    pub fn direct(contact: Option<&'a [u8]>) -> RouteSet<'a> {
        RouteSet {
            routes: [&[]; MAX_ROUTES],
            n: 0,
            contact,
            strict: None,
        }
    }

    /// From the Record-Route values of the 2xx as they came (top first; one header may hold
    /// several, see [`record_route_values`]) and its Contact URI.
    pub fn of_2xx<I>(record_route: I, contact: Option<&'a [u8]>) -> Result<RouteSet<'a>, RouteError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut rs = RouteSet::direct(contact);
        for v in record_route {
            let v = trim(v);
            if v.is_empty() {
                continue;
            }
            if uri_of(v).is_none() {
                return Err(RouteError::Bad);
            }
            if rs.n == MAX_ROUTES {
                return Err(RouteError::TooMany);
            }
            rs.routes[rs.n] = v;
            rs.n += 1;
        }
        rs.routes[..rs.n].reverse();
        if rs.n > 0 {
            let first = uri_of(rs.routes[0]).unwrap_or(&[]);
            if !has_lr(first) {
                rs.strict = Some(first);
            }
        }
        Ok(rs)
    }

    /// Route values in sending order (without the Contact a strict route adds).
    pub fn routes(&self) -> &[&'a [u8]] {
        &self.routes[..self.n]
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn is_strict(&self) -> bool {
        self.strict.is_some()
    }

    /// The Request-URI of the ACK and BYE: the Contact (loose routing or no route set), the
    /// first route's URI (strict routing), `None` for the INVITE's own Request-URI.
    pub fn request_uri(&self) -> Option<&'a [u8]> {
        self.strict.or(self.contact)
    }

    /// The Route header line (`Route: v1,v2\r\n`), or nothing without a route set: loose
    /// routing sends every route; strict routing the others and then the Contact.
    pub fn write_route_header(&self, out: &mut Vec<u8>) {
        let (skip, tail) = match self.strict {
            Some(_) => (1, self.contact),
            None => (0, None),
        };
        let mut first = true;
        let mut put = |v: &[u8], angle: bool, out: &mut Vec<u8>| {
            out.extend_from_slice(if first { b"Route: " } else { b"," });
            first = false;
            if angle {
                out.push(b'<');
                out.extend_from_slice(v);
                out.push(b'>');
            } else {
                out.extend_from_slice(v);
            }
        };
        for v in &self.routes[skip..self.n] {
            put(v, false, out);
        }
        if let Some(c) = tail {
            put(c, true, out);
        }
        if !first {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The Route header's value (for a driver that builds messages with rsip).
    pub fn route_value(&self) -> Option<String> {
        let mut v = Vec::new();
        self.write_route_header(&mut v);
        let s = String::from_utf8_lossy(&v);
        let s = s.strip_prefix("Route: ")?.trim_end();
        Some(s.to_string())
    }
}

/// Where the ACK and the BYE of a 2xx are sent ([`RouteSet::next_hop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop<'a> {
    /// No route set and no Contact: the INVITE's own Request-URI, i.e. the probed address.
    Target,
    /// An IP literal: send there.
    Addr(SocketAddr, Transport),
    /// A host name the driver resolves (A/AAAA of `host`, at `port`; no NAPTR/SRV).
    Name {
        host: &'a str,
        port: u16,
        transport: Transport,
    },
}

/// Why the URI that decides the next hop cannot be used (the driver falls back to the probed
/// address and says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HopError {
    #[error("not a sip: URI (sips: and others are not supported)")]
    Scheme,
    #[error("a transport other than udp or tcp")]
    Transport,
    #[error("no usable host or port")]
    Bad,
}

impl HopError {
    /// A short fixed name usable as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            HopError::Scheme => "scheme",
            HopError::Transport => "transport",
            HopError::Bad => "bad_uri",
        }
    }
}

impl<'a> RouteSet<'a> {
    /// The next hop of the ACK and the BYE (RFC 3261 section 12.2.1.1 and 8.1.2): the first
    /// route's URI when there is a route set (loose routing: the first Route; strict routing:
    /// the Request-URI, which is that same URI), else the Contact, else [`NextHop::Target`].
    /// Host (or `maddr`), port (default 5060) and `;transport=` (default `default`, the
    /// target's) come from that URI (section 18.1.1, 19.1.1).
    pub fn next_hop(&self, default: Transport) -> Result<NextHop<'a>, HopError> {
        let uri = match self.routes().first() {
            Some(r) => uri_of(r).ok_or(HopError::Bad)?,
            None => match self.contact {
                Some(c) => c,
                None => return Ok(NextHop::Target),
            },
        };
        next_hop_of(uri, default)
    }
}

/// The next hop of a SIP URI (see [`RouteSet::next_hop`]).
pub fn next_hop_of(uri: &[u8], default: Transport) -> Result<NextHop<'_>, HopError> {
    let uri = std::str::from_utf8(uri).map_err(|_| HopError::Bad)?;
    let rest = match uri.get(..4) {
        Some(s) if s.eq_ignore_ascii_case("sip:") => &uri[4..],
        _ => return Err(HopError::Scheme),
    };
    // Headers go; the user part (up to the last `@` before the parameters) too.
    let rest = rest.split('?').next().unwrap_or("");
    let (hostport, params) = match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let hostport = match hostport.rfind('@') {
        Some(i) => &hostport[i + 1..],
        None => hostport,
    };
    let (mut host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let end = v6.find(']').ok_or(HopError::Bad)?;
        (&v6[..end], v6[end + 1..].strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(HopError::Bad)?,
        None => crate::consts::SIP_PORT,
    };
    let mut transport = default;
    for p in params.split(';') {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("transport") {
            transport = match value.trim() {
                v if v.eq_ignore_ascii_case("udp") => Transport::Udp,
                v if v.eq_ignore_ascii_case("tcp") => Transport::Tcp,
                _ => return Err(HopError::Transport),
            };
        } else if name.eq_ignore_ascii_case("maddr") {
            host = value.trim();
            host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
        }
    }
    if host.is_empty() {
        return Err(HopError::Bad);
    }
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => NextHop::Addr(SocketAddr::new(ip, port), transport),
        Err(_)
            if host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.') =>
        {
            NextHop::Name {
                host,
                port,
                transport,
            }
        }
        Err(_) => return Err(HopError::Bad),
    })
}

/// The Record-Route values of a message head, top first, each `<uri>;params` (the values of
/// one header split at commas outside quotes and angle brackets), read with the codec's header
/// iterator (folded lines included). At most [`MAX_ROUTES`] + 1 values are returned (enough to
/// tell that there were too many); a head that does not read gives the values before the fault.
pub fn record_route_values(msg: &[u8]) -> RecordRoutes<'_> {
    let mut out = RecordRoutes {
        vals: [&[]; MAX_ROUTES + 1],
        n: 0,
    };
    let Ok((_, headers)) = crate::sip::head::split(msg) else {
        return out;
    };
    let rr = headers
        .map_while(Result::ok)
        .filter(|h| h.kind == crate::sip::Name::RecordRoute)
        .flat_map(|h| crate::sip::value::values(h.value));
    for (slot, v) in out.vals.iter_mut().zip(rr) {
        *slot = v;
        out.n += 1;
    }
    out
}

/// Record-Route values borrowed from a message (see [`record_route_values`]).
#[derive(Debug, Clone, Copy)]
pub struct RecordRoutes<'a> {
    vals: [&'a [u8]; MAX_ROUTES + 1],
    n: usize,
}

impl<'a> RecordRoutes<'a> {
    pub fn as_slice(&self) -> &[&'a [u8]] {
        &self.vals[..self.n]
    }
}

/// The URI of a name-addr (`"x" <uri>;p`) or addr-spec (`uri;p`) value.
fn uri_of(v: &[u8]) -> Option<&[u8]> {
    let u = match memchr::memchr(b'<', v) {
        Some(lt) => {
            let rest = &v[lt + 1..];
            &rest[..memchr::memchr(b'>', rest)?]
        }
        None => v,
    };
    let u = trim(u);
    (!u.is_empty() && u.iter().all(|&c| c > b' ' && c < 0x7f)).then_some(u)
}

/// Whether a URI has the `lr` parameter (before any `?headers`).
fn has_lr(uri: &[u8]) -> bool {
    let params = match memchr::memchr(b'?', uri) {
        Some(q) => &uri[..q],
        None => uri,
    };
    params.split(|&c| c == b';').skip(1).any(|p| {
        let name = p.split(|&c| c == b'=').next().unwrap_or(&[]);
        trim(name).eq_ignore_ascii_case(b"lr")
    })
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn head(extra: &str) -> String {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n{extra}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    }

    fn route_header(rs: &RouteSet<'_>) -> String {
        let mut v = Vec::new();
        rs.write_route_header(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn loose_route_set_is_the_record_route_reversed() {
        let m = head(
            "Record-Route: <sip:p2.example;lr>, <sip:p3.example;lr;ftag=1>\r\n\
             Record-Route: <sip:10.0.0.1:5060;lr>\r\n\
             Contact: <sip:cp@10.0.0.9:5070>\r\n",
        );
        let rr = record_route_values(m.as_bytes());
        assert_eq!(rr.as_slice().len(), 3);
        let rs = RouteSet::of_2xx(
            rr.as_slice().iter().copied(),
            crate::sip::contact_uri(m.as_bytes()),
        )
        .unwrap();
        assert!(!rs.is_strict());
        assert_eq!(rs.request_uri(), Some(&b"sip:cp@10.0.0.9:5070"[..]));
        assert_eq!(
            route_header(&rs),
            "Route: <sip:10.0.0.1:5060;lr>,<sip:p3.example;lr;ftag=1>,<sip:p2.example;lr>\r\n"
        );
        assert_eq!(
            rs.route_value().unwrap(),
            "<sip:10.0.0.1:5060;lr>,<sip:p3.example;lr;ftag=1>,<sip:p2.example;lr>"
        );
    }

    #[test]
    fn strict_router_takes_the_request_uri_and_the_contact_goes_last() {
        let m = head("Record-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:strict.example>\r\nm: <sip:cp@10.0.0.9>\r\n");
        let rr = record_route_values(m.as_bytes());
        let rs = RouteSet::of_2xx(
            rr.as_slice().iter().copied(),
            crate::sip::contact_uri(m.as_bytes()),
        )
        .unwrap();
        assert!(rs.is_strict());
        assert_eq!(rs.request_uri(), Some(&b"sip:strict.example"[..]));
        assert_eq!(
            route_header(&rs),
            "Route: <sip:p2.example;lr>,<sip:cp@10.0.0.9>\r\n"
        );
    }

    fn rs_of<'a>(m: &'a str) -> RouteSet<'a> {
        let rr = record_route_values(m.as_bytes());
        let v: Vec<&'a [u8]> = rr.as_slice().to_vec();
        RouteSet::of_2xx(v, crate::sip::contact_uri(m.as_bytes())).unwrap()
    }

    /// RFC 3261 12.2.1.1 / 8.1.2: the ACK and BYE go to the first route (loose or strict),
    /// else the Contact, else the probed target; host, `maddr`, port (default 5060) and
    /// `;transport=` (default the target's) from that URI.
    #[test]
    fn next_hop_is_the_first_route_else_the_contact() {
        use std::net::SocketAddr;
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let udp = Transport::Udp;
        // Loose: the first Route (the last Record-Route), not the Contact.
        let m = head(
            "Record-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:127.0.0.5:5071;lr>\r\n\
             Contact: <sip:cp@10.0.0.9:5070>\r\n",
        );
        assert_eq!(
            rs_of(&m).next_hop(udp),
            Ok(NextHop::Addr(a("127.0.0.5:5071"), udp))
        );
        // Strict: the Request-URI, i.e. the same first route; no port means 5060.
        let m = head("Record-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:10.0.0.7>\r\nContact: <sip:cp@10.0.0.9>\r\n");
        let rs = rs_of(&m);
        assert!(rs.is_strict());
        assert_eq!(rs.next_hop(udp), Ok(NextHop::Addr(a("10.0.0.7:5060"), udp)));
        // No route set: the Contact, user part and parameters aside; its transport wins.
        let m = head("Contact: <sip:cp@[::1]:5080;transport=TCP;ob>\r\n");
        assert_eq!(
            rs_of(&m).next_hop(udp),
            Ok(NextHop::Addr(a("[::1]:5080"), Transport::Tcp))
        );
        // maddr overrides the host.
        let m = head("Record-Route: <sip:p1.example:5090;maddr=127.0.0.9;lr>\r\n");
        assert_eq!(
            rs_of(&m).next_hop(Transport::Tcp),
            Ok(NextHop::Addr(a("127.0.0.9:5090"), Transport::Tcp))
        );
        // A host name is for the driver to resolve.
        let m =
            head("Record-Route: <sip:Proxy-1.example;lr;ftag=x>\r\nContact: <sip:10.0.0.9>\r\n");
        assert_eq!(
            rs_of(&m).next_hop(udp),
            Ok(NextHop::Name {
                host: "Proxy-1.example",
                port: 5060,
                transport: udp
            })
        );
        // Neither route nor Contact: the probed target.
        assert_eq!(RouteSet::direct(None).next_hop(udp), Ok(NextHop::Target));
        // Unusable URIs are errors (the driver falls back to the target and says so).
        for (c, e) in [
            ("sips:cp@10.0.0.9", HopError::Scheme),
            ("sip:cp@10.0.0.9;transport=tls", HopError::Transport),
            ("sip:cp@10.0.0.9:0", HopError::Bad),
            ("sip:cp@10.0.0.9:99999", HopError::Bad),
            ("sip:cp@", HopError::Bad),
            ("sip:bad_host!", HopError::Bad),
        ] {
            let rs = RouteSet::direct(Some(c.as_bytes()));
            assert_eq!(rs.next_hop(udp), Err(e), "{c}");
        }
    }

    #[test]
    fn no_record_route_no_route_header() {
        let m = head("Contact: <sip:cp@10.0.0.9>\r\n");
        let rr = record_route_values(m.as_bytes());
        let rs = RouteSet::of_2xx(rr.as_slice().iter().copied(), Some(b"sip:cp@10.0.0.9")).unwrap();
        assert!(rs.is_empty());
        assert_eq!(route_header(&rs), "");
        assert_eq!(rs.route_value(), None);
        assert_eq!(RouteSet::direct(None).request_uri(), None);
    }

    #[test]
    fn too_many_or_bad_routes_are_refused() {
        let many: String = (0..MAX_ROUTES + 1)
            .map(|i| format!("Record-Route: <sip:p{i}.example;lr>\r\n"))
            .collect();
        let m = head(&many);
        let rr = record_route_values(m.as_bytes());
        assert_eq!(
            RouteSet::of_2xx(rr.as_slice().iter().copied(), None),
            Err(RouteError::TooMany)
        );
        assert_eq!(RouteSet::of_2xx([&b"<>"[..]], None), Err(RouteError::Bad));
        // Not in the body; garbage is no route.
        let m = "SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\nRecord-Route: <sip:x;lr>\r\n";
        assert!(record_route_values(m.as_bytes()).as_slice().is_empty());
        assert!(record_route_values(b"\xff\xfe").as_slice().is_empty());
        // Every prefix and byte flip of a message with routes: never a panic, never more
        // values than it holds.
        let m = head(
            "Record-Route: \"a,b\" <sip:p1;lr>, <sip:p2;lr>\r\nRecord-Route: <sip:p3>\r\nContact: <sip:c>\r\n",
        )
        .into_bytes();
        let full = record_route_values(&m);
        assert_eq!(
            full.as_slice().len(),
            3,
            "a quoted comma is not a separator"
        );
        for i in 0..m.len() {
            let rr = record_route_values(&m[..i]);
            assert!(rr.as_slice().len() <= 3);
            let _ = RouteSet::of_2xx(
                rr.as_slice().iter().copied(),
                crate::sip::contact_uri(&m[..i]),
            );
            let mut f = m.clone();
            f[i] = b",<>\";\r\n"[i % 6];
            let rr = record_route_values(&f);
            let _ = RouteSet::of_2xx(rr.as_slice().iter().copied(), None).map(|rs| {
                let mut v = Vec::new();
                rs.write_route_header(&mut v);
            });
        }
    }

    #[test]
    fn follow_up_of_each_send() {
        assert_eq!(follow_up(Send::Ack, Some(487)), FollowUp::AckInTx);
        assert_eq!(follow_up(Send::Ack, Some(200)), FollowUp::AckAgain);
        assert_eq!(follow_up(Send::AckAndBye, Some(200)), FollowUp::Accept);
        assert_eq!(follow_up(Send::Cancel, None), FollowUp::Cancel);
        assert_eq!(follow_up(Send::Nothing, None), FollowUp::Nothing);
    }

    /// A late 2xx (after the INVITE timed out without a provisional) is still accepted: ACKed
    /// and hung up.
    #[test]
    fn late_2xx_is_accepted() {
        let t0 = Instant::now();
        let cfg = TxConfig {
            retransmit: false,
            ..TxConfig::new(ms(1000), false)
        };
        let mut inv = ClientTx::new(Method::Invite, &cfg, t0);
        let a = inv.on_timer(t0 + ms(1000));
        assert_eq!(follow_up(send_of(&a), None), FollowUp::Nothing);
        // Kept until 64·T1 for late answers even without retransmissions.
        assert_eq!(inv.next_wakeup(), Some(t0 + ms(32_000)));
        let a = inv.on_response(200, t0 + ms(3000));
        assert_eq!(follow_up(send_of(&a), Some(200)), FollowUp::Accept);
        let a = inv.on_response(200, t0 + ms(3500));
        assert_eq!(follow_up(send_of(&a), Some(200)), FollowUp::AckAgain);
    }

    /// The CANCEL has its own Timer E and Timer F even when the driver does not retransmit
    /// (`T1 = 0` in its configuration), and the INVITE waits 64·T1 for the 487.
    #[test]
    fn cancel_keeps_its_own_timers_without_retransmissions() {
        let t0 = Instant::now();
        let cfg = FollowConfig::new(Duration::ZERO, ms(2000), false);
        assert_eq!((cfg.t1, cfg.timer_f()), (T1, ms(32_000)));
        let txcfg = TxConfig {
            retransmit: false,
            ..TxConfig::new(ms(1000), false)
        };
        let mut inv = ClientTx::new(Method::Invite, &txcfg, t0);
        assert_eq!(inv.on_response(180, t0 + ms(10)), Action::Wait);
        let a = inv.on_timer(t0 + ms(1000));
        assert_eq!(follow_up(send_of(&a), None), FollowUp::Cancel);
        assert_eq!(inv.next_wakeup(), Some(t0 + ms(33_000)));
        let mut c = Cancel::start(&cfg, t0 + ms(1000));
        let mut at = Vec::new();
        let mut now = t0 + ms(1000);
        loop {
            let w = c.next_wakeup().unwrap();
            now = now.max(w);
            match c.on_timer(now) {
                CancelEvent::Retransmit => at.push((now - t0).as_millis() as u64),
                CancelEvent::Failed => {
                    at.push((now - t0).as_millis() as u64);
                    break;
                }
                e => panic!("{e:?}"),
            }
        }
        // Timer E: 0.5, 1.5, 3.5, 7.5 s then every T2 = 4 s; Timer F at 32 s.
        assert_eq!(
            at,
            vec![1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500, 33000]
        );
        assert!(!c.pending());
    }

    #[test]
    fn cancel_answered_then_487() {
        let t0 = Instant::now();
        let cfg = FollowConfig::new(ms(100), ms(2000), false);
        let mut c = Cancel::start(&cfg, t0);
        assert_eq!(c.on_timer(t0 + ms(100)), CancelEvent::Retransmit);
        assert_eq!(c.on_response(200, t0 + ms(150)), CancelEvent::Answered(200));
        assert!(!c.pending());
        assert_eq!(c.on_response(200, t0 + ms(160)), CancelEvent::Wait);
        assert_eq!(c.on_send_error(), CancelEvent::Wait);
        let mut c = Cancel::start(&cfg, t0);
        assert_eq!(c.on_send_error(), CancelEvent::Failed);
        assert_eq!(c.next_wakeup(), None);
    }

    #[test]
    fn bye_result_says_hung_up_only_for_2xx() {
        let t0 = Instant::now();
        let cfg = FollowConfig::new(ms(500), ms(2000), false);
        let mut b = cfg.bye_tx(t0);
        let r = ByeResult::of(&b.on_response(404, t0 + ms(2))).unwrap();
        assert_eq!(r, ByeResult::Refused { status: 404 });
        assert!(!r.hung_up());
        assert_eq!(
            r.describe(),
            "ACKed; BYE answered 404: the call may still be up"
        );
        assert!(!r.describe().contains("hung up"));
        let mut b = cfg.bye_tx(t0);
        let r = ByeResult::of(&b.on_response(200, t0 + ms(2))).unwrap();
        assert_eq!(r.describe(), "ACKed and hung up: BYE answered 200");
        let mut b = cfg.bye_tx(t0);
        assert_eq!(b.on_timer(t0 + ms(500)), Action::Retransmit);
        assert_eq!(b.on_timer(t0 + ms(1500)), Action::Retransmit);
        let r = ByeResult::of(&b.on_timer(t0 + ms(2000))).unwrap();
        assert_eq!((r, r.as_str()), (ByeResult::NoAnswer, "no_answer"));
        assert_eq!(ByeResult::of(&Action::Wait), None);
    }
}
