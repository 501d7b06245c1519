//! One task per target: schedule → send → match → classify, over the transaction core.
//!
//! Every `interval` an OPTIONS goes out in a new transaction (its own branch from the
//! [`Table`], its own Call-ID and From tag). Responses are checked ([`accept`]), matched by top
//! Via branch + CSeq method, checked for the Call-ID (one from another address than the probed
//! one is used, counted and reported as `source`), classified by the target's `alive_codes`,
//! and handed to the transaction; retransmits, timeouts and the INVITE check follow the
//! [`Action`]s it returns. An INVITE is always closed by the call core ([`crate::call`], its
//! route set from [`crate::dialog`]):
//! non-2xx finals are ACKed in their transaction, a 2xx is ACKed and hung up with a BYE at once
//! along its route set, sent to the next hop the core names ([`RouteSet::next_hop`]: the
//! first route or the Contact; the INVITE's result is reported with the BYE's own), and an
//! INVITE with only provisional answers at the deadline is cancelled (the CANCEL with its own
//! Timer E and Timer F).

use super::*;
use crate::call::{Call, CallSettings, Msg, Output as CallOut};
use crate::dialog::{CancelEvent, FollowConfig, NextHop, RouteSet};
use crate::message::{random_token, Leg, Response};
use crate::transaction::{Action, Branch, ClientTx, Lookup, Outcome, Slot, Table, TxConfig};
use crate::transport::{accept, recv_buffer, Endpoint, Ignored};
use std::collections::HashSet;
use std::net::SocketAddr;
use tokio::time::Instant as TokioInstant;

/// Longest wait for the DNS answer that names the next hop of a 2xx's ACK and BYE.
pub const HOP_DNS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Options,
    Invite,
    Bye,
}

/// What runs a table entry.
enum Core {
    /// An OPTIONS' transaction.
    Tx(ClientTx),
    /// An INVITE and what finishes it ([`crate::call`]).
    Call(Box<CallState>),
    /// The BYE of the call at this slot: the entry holds its branch; its responses go to the
    /// call.
    ByeOf(Slot),
}

/// A call's driver-side state: the messages it may send again and the results it waits on.
struct CallState {
    call: Call,
    /// The ACK of its 2xx, the BYE and where both go (the next hop of the 2xx).
    ack: Vec<u8>,
    bye: Vec<u8>,
    hop: SocketAddr,
    bye_slot: Option<Slot>,
    bye_at: SystemTime,
    cancel: Vec<u8>,
    /// The INVITE's result once a 2xx came, reported with the BYE's.
    held: Option<ProbeResult>,
}

struct Pending {
    kind: Kind,
    core: Core,
    leg: Leg,
    branch: Branch,
    request: Vec<u8>,
    at: SystemTime,
    /// Where its requests go: the probed address, or for a BYE the next hop of the 2xx.
    dest: SocketAddr,
}

impl Pending {
    fn next_wakeup(&self) -> Option<std::time::Instant> {
        match &self.core {
            Core::Tx(tx) => tx.next_wakeup(),
            Core::Call(c) => c.call.next_timeout(),
            Core::ByeOf(_) => None,
        }
    }
}

/// The per-target task.
///
/// 15 fields: the target's socket, transactions, schedule and counters, all owned by its
/// one task; classification lives apart in the tracker.
pub struct Prober {
    cfg: TargetConfig,
    name: Arc<str>,
    uri: TargetUri,
    ep: Endpoint,
    table: Table<Pending>,
    txcfg: TxConfig,
    /// Timers of the CANCEL and the BYE.
    follow: FollowConfig,
    rule: FingerprintRule,
    out: mpsc::Sender<FromProber>,
    stats: RxStats,
    /// Ignore reasons already logged for this target (each is logged once, then counted).
    logged: HashSet<&'static str>,
    invite_in_flight: bool,
    /// While a received answer is acted on: its source, when not the probed address.
    rx_source: Option<SocketAddr>,
    /// Stop was asked: finish what is outstanding, start nothing new.
    stopping: bool,
    slots: Vec<Slot>,
}

impl Prober {
    pub(crate) async fn open(
        cfg: TargetConfig,
        uri: TargetUri,
        addr: SocketAddr,
        rule: FingerprintRule,
        out: mpsc::Sender<FromProber>,
    ) -> std::io::Result<Prober> {
        let ep = Endpoint::open_from(addr, uri.transport, cfg.timeout, cfg.source_addr()?).await?;
        Ok(Prober {
            name: Arc::from(cfg.name.as_str()),
            txcfg: TxConfig::new(cfg.timeout, uri.transport.is_reliable()),
            follow: FollowConfig::new(crate::consts::T1, cfg.timeout, uri.transport.is_reliable()),
            cfg,
            uri,
            ep,
            table: Table::with_random_prefix(),
            rule,
            out,
            stats: RxStats::default(),
            logged: HashSet::new(),
            invite_in_flight: false,
            rx_source: None,
            stopping: false,
            slots: Vec::new(),
        })
    }

    /// Probes until `stop` is cancelled; then waits for the outstanding probes to be reported
    /// (at most one timeout) and ends.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut buf = recv_buffer();
        let mut next_probe = TokioInstant::now();
        let mut minute = minute_now();
        let mut stopping: Option<TokioInstant> = None;
        loop {
            let now = TokioInstant::now();
            let mut wake = match stopping {
                Some(end) => end,
                None => next_probe,
            };
            for slot in self.table.slots() {
                if let Some(t) = self.table.get(slot).and_then(Pending::next_wakeup) {
                    wake = wake.min(TokioInstant::from_std(t));
                }
            }
            let ev = tokio::select! {
                r = self.ep.recv(&mut buf) => Ev::Recv(r),
                _ = tokio::time::sleep_until(wake.max(now)) => Ev::Timer,
                _ = stop.cancelled(), if stopping.is_none() => Ev::Stop,
            };
            match ev {
                Ev::Recv(Ok((n, from))) => {
                    // Kept while the message is acted on (see `classify` and `result`).
                    self.rx_source = (from != self.ep.target()).then_some(from);
                    self.on_message(&buf[..n.min(buf.len())], n).await;
                    self.rx_source = None;
                }
                Ev::Recv(Err(kind)) => self.on_transport_error(kind).await,
                Ev::Stop => {
                    self.stopping = true;
                    stopping = Some(TokioInstant::now() + self.cfg.timeout);
                }
                Ev::Timer => {}
            }
            let now = TokioInstant::now();
            if let Some(end) = stopping {
                if now >= end || !self.has_unreported() {
                    self.send_rx_stats().await;
                    return;
                }
            } else if now >= next_probe {
                let m = minute_now();
                if m != minute {
                    self.send_rx_stats().await;
                    minute = m;
                }
                self.start(Kind::Options).await;
                // Keep the schedule: skip missed slots instead of bursting.
                while next_probe <= now {
                    next_probe += self.cfg.interval;
                }
            }
            self.on_timers(now.into_std()).await;
        }
    }

    fn has_unreported(&self) -> bool {
        self.table.slots().any(|s| {
            self.table.get(s).is_some_and(|p| match &p.core {
                Core::Tx(tx) => matches!(
                    tx.state(),
                    crate::transaction::State::Calling | crate::transaction::State::Proceeding
                ),
                Core::Call(c) => c.call.unreported(),
                Core::ByeOf(_) => false,
            })
        })
    }

    async fn send_rx_stats(&mut self) {
        if self.stats != RxStats::default() {
            let stats = std::mem::take(&mut self.stats);
            let _ = self
                .out
                .send(FromProber::Rx {
                    target: self.name.clone(),
                    stats,
                })
                .await;
        }
    }

    /// Sends a new OPTIONS or INVITE.
    async fn start(&mut self, kind: Kind) {
        let at = SystemTime::now();
        let local = match self.ep.connect().await {
            Ok(l) => l,
            Err(e) => {
                self.report_outcome(
                    kind,
                    at,
                    Outcome::TransportError {
                        kind: e,
                        retransmits: 0,
                    },
                    None,
                )
                .await;
                return;
            }
        };
        let method = match kind {
            Kind::Invite => Method::Invite,
            _ => Method::Options,
        };
        let mut leg = Leg::new(&self.uri, self.cfg.user.as_deref(), local);
        if kind == Kind::Invite {
            if let Some(u) = &self.cfg.invite_uri {
                leg.request_uri = u.clone();
                leg.to_uri = u.split(';').next().unwrap_or(u).to_string();
            }
        }
        let now = now_std();
        let core = match kind {
            Kind::Invite => Core::Call(Box::new(CallState {
                call: Call::new(CallSettings::PROBER, &self.txcfg, now),
                ack: Vec::new(),
                bye: Vec::new(),
                hop: self.ep.target(),
                bye_slot: None,
                bye_at: at,
                cancel: Vec::new(),
                held: None,
            })),
            _ => Core::Tx(ClientTx::new(method, &self.txcfg, now)),
        };
        let (slot, branch) = self.table.insert(
            method,
            Pending {
                kind,
                core,
                leg,
                branch: self.table.branch(Slot { index: 0, gen: 0 }),
                request: Vec::new(),
                at,
                dest: self.ep.target(),
            },
        );
        let p = self.table.get_mut(slot).expect("just inserted");
        p.branch = branch;
        p.request = p.leg.initial(method, branch.as_str());
        if kind == Kind::Invite {
            self.invite_in_flight = true;
        }
        let request = std::mem::take(&mut p.request);
        let sent = self.ep.send(&request).await;
        let p = self.table.get_mut(slot).expect("just inserted");
        p.request = request;
        if let Err(e) = sent {
            self.send_error(slot, Method::Invite, e, None).await;
        }
    }

    /// Sending a request of the entry at `slot` (`method` for a call's) failed.
    async fn send_error(
        &mut self,
        slot: Slot,
        method: Method,
        e: crate::transaction::TransportErrorKind,
        r: Option<&Response>,
    ) {
        let Some(p) = self.table.get_mut(slot) else {
            return;
        };
        match &mut p.core {
            Core::Tx(tx) => {
                let a = tx.on_transport_error(e, now_std());
                Box::pin(self.act(slot, a, None)).await;
            }
            Core::Call(c) => {
                c.call.handle_send_error(method, e, &self.follow, now_std());
                Box::pin(self.drive(slot, r)).await;
            }
            Core::ByeOf(_) => {}
        }
    }

    async fn on_message(&mut self, msg: &[u8], n: usize) {
        self.stats.received += 1;
        let r = match accept(msg, self.ep.local()) {
            Ok(r) if n <= msg.len() && n <= crate::consts::MAX_RESPONSE => r,
            Ok(_) => return self.ignored(Ignored::Parse(crate::message::ParseError::Oversized)),
            Err(e) => return self.ignored(e),
        };
        let Some(method) = r.method else {
            self.stats.stray += 1;
            return;
        };
        let slot = match self.table.lookup(r.branch.as_bytes(), method) {
            Lookup::Found(s) => s,
            Lookup::Late => {
                self.stats.late += 1;
                return;
            }
            Lookup::Stray => {
                self.stats.stray += 1;
                self.log_once("stray", &r.branch, "Response to a branch never sent");
                return;
            }
        };
        let p = self.table.get_mut(slot).expect("found");
        if r.call_id != p.leg.call_id {
            return self.ignored(Ignored::Discard(crate::message::Discard::OtherCallId));
        }
        // An answer from where the request went (a BYE's next hop) is no mismatch.
        if self.rx_source == Some(p.dest) {
            self.rx_source = None;
        }
        if let Some(from) = self.rx_source {
            self.source_mismatch(from);
        }
        let now = now_std();
        // A BYE's answer goes to its call.
        let slot = match self.table.get(slot).map(|p| &p.core) {
            Some(Core::ByeOf(call)) => *call,
            _ => slot,
        };
        let Some(p) = self.table.get_mut(slot) else {
            self.stats.late += 1;
            return;
        };
        match &mut p.core {
            Core::Tx(tx) => {
                let a = tx.on_response(r.status, now);
                if matches!(a, Action::Duplicate { .. }) {
                    self.stats.duplicate += 1;
                }
                if matches!(a, Action::Late { .. }) {
                    self.stats.late += 1;
                }
                self.act(slot, a, Some(&r)).await;
            }
            Core::Call(c) => {
                let counts = |c: &Call| c.invite().map_or((0, 0), |t| (t.duplicates(), t.late()));
                let (d0, l0) = counts(&c.call);
                c.call
                    .handle_status(Some(method), r.status, &self.follow, now);
                let (d1, l1) = counts(&c.call);
                self.stats.duplicate += u64::from(d1 - d0);
                self.stats.late += u64::from(l1 - l0);
                self.drive(slot, Some(&r)).await;
            }
            Core::ByeOf(_) => {}
        }
    }

    /// Ours by branch and Call-ID, from another address of the target: used, counted and
    /// reported (logged once), so a CP answering from the wrong address is not taken for dead.
    fn source_mismatch(&mut self, from: SocketAddr) {
        self.stats.source_mismatch += 1;
        if self.logged.insert("source_mismatch") {
            tracing::warn!(
                target = %self.name,
                probed = %self.ep.target(),
                source = %from,
                counted_as = if self.cfg.accept_other_source { "its status" } else { "unexpected" },
                "Answer from another address than the probed one; further ones are only counted"
            );
        }
    }

    fn ignored(&mut self, why: Ignored) {
        let reason = match &why {
            Ignored::Parse(e) => e.as_str(),
            Ignored::Discard(d) => d.as_str(),
        };
        self.stats.count(why.clone());
        self.log_once(reason, "", "Received message ignored");
    }

    fn log_once(&mut self, reason: &'static str, detail: &str, what: &str) {
        if self.logged.insert(reason) {
            tracing::warn!(
                target = %self.name,
                reason,
                detail,
                "{what}; further ones are only counted"
            );
        }
    }

    async fn on_transport_error(&mut self, kind: crate::transaction::TransportErrorKind) {
        let now = now_std();
        self.slots.clear();
        self.slots.extend(self.table.slots());
        for i in 0..self.slots.len() {
            let slot = self.slots[i];
            let Some(p) = self.table.get_mut(slot) else {
                continue;
            };
            match &mut p.core {
                Core::Tx(tx) => {
                    let a = tx.on_transport_error(kind, now);
                    self.act(slot, a, None).await;
                }
                Core::Call(c) => {
                    c.call
                        .handle_send_error(Method::Invite, kind, &self.follow, now);
                    c.call
                        .handle_send_error(Method::Bye, kind, &self.follow, now);
                    self.drive(slot, None).await;
                }
                Core::ByeOf(_) => {}
            }
        }
    }

    async fn on_timers(&mut self, now: std::time::Instant) {
        self.slots.clear();
        self.slots.extend(self.table.slots());
        for i in 0..self.slots.len() {
            let slot = self.slots[i];
            let Some(p) = self.table.get_mut(slot) else {
                continue;
            };
            if p.next_wakeup().is_none_or(|t| t > now) {
                continue;
            }
            match &mut p.core {
                Core::Tx(tx) => {
                    let a = tx.on_timer(now);
                    self.act(slot, a, None).await;
                }
                Core::Call(c) => {
                    c.call.handle_timeout(&self.follow, now);
                    self.drive(slot, None).await;
                }
                Core::ByeOf(_) => {}
            }
        }
    }

    /// Carries out what the OPTIONS transaction at `slot` asked for.
    async fn act(&mut self, slot: Slot, a: Action, r: Option<&Response>) {
        let Some(p) = self.table.get_mut(slot) else {
            return;
        };
        let (kind, at) = (p.kind, p.at);
        match a {
            Action::Wait | Action::Duplicate { .. } | Action::Late { .. } => {}
            Action::Retransmit => {
                let req = std::mem::take(&mut p.request);
                let dest = p.dest;
                let res = self.ep.send_to(&req, dest).await;
                if let Some(p) = self.table.get_mut(slot) {
                    p.request = req;
                    if let Err(e) = res {
                        self.send_error(slot, Method::Options, e, None).await;
                    }
                }
            }
            Action::Done { outcome, .. } => {
                let res = self.result(kind, at, Some(outcome), r);
                let _ = self.out.send(FromProber::Result(res)).await;
                if kind == Kind::Options && self.wants_invite(outcome.status()) {
                    Box::pin(self.start(Kind::Invite)).await;
                }
            }
            Action::Terminated => {
                self.table.remove(slot);
            }
        }
    }

    /// Carries out what the call at `slot` asks for ([`Call::poll_output`]) after an event;
    /// `r` is the response just handled, if any (the ACK and BYE of a 2xx are built from it).
    async fn drive(&mut self, slot: Slot, r: Option<&Response>) {
        loop {
            let Some(p) = self.table.get_mut(slot) else {
                return;
            };
            let at = p.at;
            let Core::Call(c) = &mut p.core else {
                return;
            };
            match c.call.poll_output() {
                CallOut::Timeout(Some(_)) => return,
                CallOut::Timeout(None) => {
                    if let Some(b) = c.bye_slot {
                        self.table.remove(b);
                    }
                    self.table.remove(slot);
                    return;
                }
                CallOut::Transmit(msg, _) => self.transmit(slot, msg, r).await,
                CallOut::Invite(outcome) => {
                    self.invite_in_flight = false;
                    let res = self.result(Kind::Invite, at, Some(outcome), r);
                    let _ = self.out.send(FromProber::Result(res)).await;
                }
                CallOut::Late { status } => {
                    // A call accepted after we gave up is reported (late) with its BYE's
                    // result, so the alarm is raised.
                    if (200..300).contains(&status) {
                        let mut res = self.result(Kind::Invite, at, None, r);
                        res.status = Some(status);
                        res.state = ServiceState::classify(Some(status));
                        res.late = true;
                        if let Some(Core::Call(c)) = self.table.get_mut(slot).map(|p| &mut p.core) {
                            c.held = Some(res);
                        }
                    }
                }
                CallOut::Accepted {
                    invite,
                    bye,
                    result,
                } => {
                    let (held, bye_at) = (c.held.take(), c.bye_at);
                    // The INVITE's result as its 2xx left it (fingerprint, source), with the
                    // outcome the core held.
                    let full = self.result(Kind::Invite, at, Some(invite), None);
                    let invite = match held {
                        Some(mut h) => {
                            h.status = full.status;
                            h.rtt = full.rtt;
                            h.retransmits = full.retransmits;
                            h.state = full.state;
                            h.error = full.error;
                            h
                        }
                        None => full,
                    };
                    let bye = self.result(Kind::Bye, bye_at, Some(bye), None);
                    let _ = self
                        .out
                        .send(FromProber::Accepted {
                            invite,
                            bye,
                            outcome: result,
                        })
                        .await;
                }
                CallOut::Bye(bye, result) => {
                    let (held, bye_at) = (c.held.take(), c.bye_at);
                    if let Some(invite) = held {
                        let bye = self.result(Kind::Bye, bye_at, Some(bye), None);
                        let _ = self
                            .out
                            .send(FromProber::Accepted {
                                invite,
                                bye,
                                outcome: result,
                            })
                            .await;
                    }
                }
                CallOut::Cancel(CancelEvent::Failed) => {
                    tracing::warn!(target = %self.name, "CANCEL of the INVITE check got no answer");
                }
                CallOut::Cancel(_) => {}
            }
        }
    }

    /// Renders and sends a call's message.
    async fn transmit(&mut self, slot: Slot, msg: Msg, r: Option<&Response>) {
        let to_tag = r.and_then(|r| r.to_tag.as_deref());
        let Some(p) = self.table.get_mut(slot) else {
            return;
        };
        let Core::Call(c) = &mut p.core else {
            return;
        };
        let (bytes, to, method) = match msg {
            Msg::Ack2xx(_) => return self.accept(slot, r).await,
            Msg::InviteAgain => (p.request.clone(), Some(p.dest), Method::Invite),
            Msg::AckInTx => (
                p.leg.ack_non_2xx(p.branch.as_str(), to_tag),
                None,
                Method::Ack,
            ),
            Msg::Cancel => {
                c.cancel = p.leg.cancel(p.branch.as_str());
                (c.cancel.clone(), None, Method::Cancel)
            }
            Msg::CancelAgain => (c.cancel.clone(), None, Method::Cancel),
            Msg::AckAgain => (c.ack.clone(), Some(c.hop), Method::Ack),
            Msg::Bye | Msg::ByeAgain => (c.bye.clone(), Some(c.hop), Method::Bye),
        };
        let sent = match to {
            Some(dest) => self.ep.send_to(&bytes, dest).await,
            None => self.ep.send(&bytes).await,
        };
        if let (Err(e), Method::Invite | Method::Bye) = (sent, method) {
            if let Some(Core::Call(c)) = self.table.get_mut(slot).map(|p| &mut p.core) {
                c.call.handle_send_error(method, e, &self.follow, now_std());
            }
        }
    }

    /// The first 2xx of a call: its ACK along the route set, sent now, and its BYE (a table
    /// entry of its own for the branch), built for [`Msg::Bye`] to send.
    async fn accept(&mut self, slot: Slot, r: Option<&Response>) {
        let to_tag = r.and_then(|r| r.to_tag.as_deref());
        let contact = r.and_then(|r| r.contact.as_deref());
        let rr = r.map(|r| r.record_route.as_slice()).unwrap_or(&[]);
        let rs = RouteSet::of_2xx(rr.iter().map(|v| v.as_bytes()), contact.map(str::as_bytes))
            .unwrap_or_else(|e| {
                tracing::warn!(target = %self.name, error = %e,
                    "Cannot follow the route set of a 2xx: ACK and BYE go to its Contact without Route");
                RouteSet::direct(contact.map(str::as_bytes))
            });
        let ruri = rs
            .request_uri()
            .map(|u| String::from_utf8_lossy(u).into_owned());
        let route = rs.route_value();
        let dest = self.next_hop(&rs).await;
        // The INVITE has its final answer: the next check may start (its result waits).
        self.invite_in_flight = false;
        let Some(p) = self.table.get_mut(slot) else {
            return;
        };
        let at = p.at;
        let ack_branch = format!("{}{}", crate::consts::BRANCH_MAGIC, random_token(16));
        let ack = p
            .leg
            .ack_2xx(&ack_branch, to_tag, ruri.as_deref(), route.as_deref());
        let leg = p.leg.clone();
        let _ = self.ep.send_to(&ack, dest).await;
        tracing::error!(target = %self.name, status = r.map(|r| r.status).unwrap_or(0),
            route = route.as_deref().unwrap_or(""), to = %dest,
            "INVITE accepted: ACK and BYE sent at once");
        let (bslot, bbranch) = self.table.insert(
            Method::Bye,
            Pending {
                kind: Kind::Bye,
                core: Core::ByeOf(slot),
                leg,
                branch: self.table.branch(Slot { index: 0, gen: 0 }),
                request: Vec::new(),
                at: SystemTime::now(),
                dest,
            },
        );
        let b = self.table.get_mut(bslot).expect("just inserted");
        b.branch = bbranch;
        let bye = b
            .leg
            .bye(bbranch.as_str(), to_tag, ruri.as_deref(), route.as_deref());
        let held = self.result(Kind::Invite, at, None, r);
        if let Some(Core::Call(c)) = self.table.get_mut(slot).map(|p| &mut p.core) {
            c.ack = ack;
            c.bye = bye;
            c.hop = dest;
            c.bye_slot = Some(bslot);
            c.bye_at = SystemTime::now();
            if c.held.is_none() {
                c.held = Some(held);
            }
        }
    }

    /// Where the ACK and the BYE of a 2xx go: the next hop the follow-up core names
    /// ([`RouteSet::next_hop`]). A host name is resolved once, within [`HOP_DNS_TIMEOUT`]
    /// (bounded by the target's timeout), to an address of the socket's family. The probed
    /// address instead, logged once per reason and target: a name that does not resolve in
    /// time, an unusable URI, another transport than the target's, or over TCP another
    /// address than the probed one (only the probed connection is kept).
    async fn next_hop(&mut self, rs: &RouteSet<'_>) -> SocketAddr {
        let target = self.ep.target();
        let transport = self.uri.transport;
        let found = match rs.next_hop(transport) {
            Ok(NextHop::Target) => Ok(target),
            Ok(NextHop::Addr(_, t) | NextHop::Name { transport: t, .. }) if t != transport => {
                Err("other_transport")
            }
            Ok(NextHop::Addr(a, _)) => Ok(a),
            Ok(NextHop::Name { host, port, .. }) => {
                let bound = HOP_DNS_TIMEOUT.min(self.cfg.timeout);
                tokio::time::timeout(bound, tokio::net::lookup_host((host, port)))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|mut it| it.find(|a| a.is_ipv4() == target.is_ipv4()))
                    .ok_or("unresolved")
            }
            Err(e) => Err(e.as_str()),
        };
        let why = match found {
            Ok(d) if transport.is_reliable() && d != target => "tcp_elsewhere",
            Ok(d) => return d,
            Err(why) => why,
        };
        if self.logged.insert(why) {
            let hop = rs
                .routes()
                .first()
                .copied()
                .or(rs.request_uri())
                .map(|u| String::from_utf8_lossy(u).into_owned())
                .unwrap_or_default();
            tracing::warn!(
                target = %self.name,
                reason = why,
                next_hop = %hop,
                sent_to = %target,
                "Cannot send the ACK and BYE of a 2xx to its next hop: sent to the probed \
                 address; further ones are not logged"
            );
        }
        target
    }

    fn wants_invite(&self, status: Option<u16>) -> bool {
        if self.invite_in_flight || self.stopping {
            return false;
        }
        match self.cfg.invite_probe {
            InviteProbe::Never => false,
            InviteProbe::Always => status.is_some(),
            InviteProbe::OosOnly => {
                status == Some(503)
                    || (self.cfg.expect == Expect::OutOfService && status.is_some_and(|s| s >= 300))
            }
        }
    }

    /// The state an OPTIONS answer shows: by the target's alive codes, and `unexpected` for an
    /// answer from another address when `accept_other_source` is off. (An INVITE's state is
    /// that of its status alone, [`ServiceState::classify`].)
    fn classify(&self, kind: Kind, status: Option<u16>) -> ServiceState {
        if kind != Kind::Options {
            return ServiceState::classify(status);
        }
        if status.is_some() && self.rx_source.is_some() && !self.cfg.accept_other_source {
            return ServiceState::Unexpected;
        }
        self.cfg.classify(status)
    }

    fn result(
        &self,
        kind: Kind,
        at: SystemTime,
        outcome: Option<Outcome>,
        r: Option<&Response>,
    ) -> ProbeResult {
        let (status, rtt, retransmits, error) = match outcome {
            Some(Outcome::Final {
                status,
                rtt,
                retransmits,
            }) => (Some(status), Some(rtt), retransmits, None),
            Some(Outcome::Timeout { retransmits, .. }) => (None, None, retransmits, None),
            Some(Outcome::TransportError { kind, retransmits }) => {
                (None, None, retransmits, Some(kind))
            }
            None => (None, None, 0, None),
        };
        ProbeResult {
            target: self.name.clone(),
            role: self.cfg.role,
            method: match kind {
                Kind::Invite => Method::Invite,
                Kind::Bye => Method::Bye,
                Kind::Options => Method::Options,
            },
            at,
            state: self.classify(kind, status),
            status,
            rtt,
            retransmits,
            retry_after: r.filter(|r| r.status == 503).and_then(|r| r.retry_after),
            error,
            fingerprint: r.and_then(|r| self.rule.of(r)),
            owner: None,
            late: false,
            source: r.and(self.rx_source),
        }
    }

    async fn report_outcome(
        &mut self,
        kind: Kind,
        at: SystemTime,
        outcome: Outcome,
        r: Option<&Response>,
    ) {
        let res = self.result(kind, at, Some(outcome), r);
        let _ = self.out.send(FromProber::Result(res)).await;
    }
}

enum Ev {
    Recv(Result<(usize, SocketAddr), crate::transaction::TransportErrorKind>),
    Timer,
    Stop,
}

fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60
}

/// The transaction clock: tokio's, so that paused time in tests drives it too.
fn now_std() -> std::time::Instant {
    TokioInstant::now().into_std()
}

/// Fault injection: a scripted UAS on a loopback UDP socket plays what the test CP cannot
/// (provisional answers, a 2xx to INVITE, garbage and foreign responses).
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    struct Uas {
        sock: UdpSocket,
        peer: Option<SocketAddr>,
    }

    /// A received request: its text and its header values by name.
    struct Req {
        text: String,
    }

    impl Req {
        fn line(&self) -> &str {
            self.text.lines().next().unwrap_or("")
        }
        fn header(&self, name: &str) -> &str {
            let want = format!("{name}: ");
            self.text
                .lines()
                .find_map(|l| l.strip_prefix(want.as_str()))
                .unwrap_or_else(|| panic!("no {name} in {}", self.text))
        }
        fn branch(&self) -> &str {
            self.header("Via").split("branch=").nth(1).unwrap()
        }
    }

    impl Uas {
        async fn new() -> Uas {
            Uas {
                sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
                peer: None,
            }
        }
        fn uri(&self) -> String {
            format!("sip:{}", self.sock.local_addr().unwrap())
        }
        async fn recv(&mut self) -> Req {
            let mut buf = vec![0u8; 65536];
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(10), self.sock.recv_from(&mut buf))
                    .await
                    .expect("a request within 10 s")
                    .unwrap();
            self.peer = Some(from);
            Req {
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            }
        }
        async fn send(&self, b: &[u8]) {
            self.sock.send_to(b, self.peer.unwrap()).await.unwrap();
        }
        /// A response to `req` with `status`, echoing its headers, with `to_tag` and `extra`.
        async fn reply(&self, req: &Req, status: &str, to_tag: Option<&str>, extra: &str) {
            self.send(response(req, status, to_tag, extra).as_bytes())
                .await;
        }
    }

    fn response(req: &Req, status: &str, to_tag: Option<&str>, extra: &str) -> String {
        let to = match to_tag {
            Some(t) => format!("{};tag={t}", req.header("To")),
            None => req.header("To").to_string(),
        };
        format!(
            "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
            req.header("Via"),
            req.header("From"),
            req.header("Call-ID"),
            req.header("CSeq"),
        )
    }

    fn cfg(uri: &str, invite: InviteProbe) -> ProbeConfig {
        let mut t = TargetConfig::new("t", uri, Role::Cp);
        t.interval = Duration::from_secs(60);
        t.timeout = Duration::from_millis(600);
        t.invite_probe = invite;
        t.expect = Expect::Any;
        ProbeConfig {
            fingerprint: None,
            shard: None,
            source: None,
            target: vec![t],
        }
    }

    async fn collect(rx: &mut mpsc::Receiver<Output>, handle: MonitorHandle) -> Vec<Output> {
        handle.stop().await;
        let mut v = Vec::new();
        while let Some(o) = rx.recv().await {
            v.push(o);
        }
        v
    }

    fn results(v: &[Output]) -> Vec<&ProbeResult> {
        v.iter()
            .filter_map(|o| match o {
                Output::Result(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn provisional_only_invite_is_cancelled_and_487_acked() {
        let mut uas = Uas::new().await;
        let addr = uas.sock.local_addr().unwrap();
        let mut c = cfg(&uas.uri(), InviteProbe::OosOnly);
        c.target[0].user = Some("monitor".into());
        c.target[0].invite_uri = Some(format!("sip:probe@{addr}"));
        let (mut rx, handle) = spawn(&c).await.unwrap();
        let opt = uas.recv().await;
        assert_eq!(opt.line(), format!("OPTIONS sip:monitor@{addr} SIP/2.0"));
        assert_eq!(opt.header("To"), format!("<sip:monitor@{addr}>"));
        assert_eq!(opt.header("Max-Forwards"), "70");
        uas.reply(
            &opt,
            "503 Service Unavailable",
            Some("x1"),
            "Retry-After: 120\r\n",
        )
        .await;
        let inv = uas.recv().await;
        assert_eq!(inv.line(), format!("INVITE sip:probe@{addr} SIP/2.0"));
        assert_eq!(inv.header("To"), format!("<sip:probe@{addr}>"));
        assert_eq!(inv.header("CSeq"), "1 INVITE");
        assert_eq!(inv.header("Content-Length"), "0");
        assert_ne!(inv.header("Call-ID"), opt.header("Call-ID"));
        uas.reply(&inv, "100 Trying", None, "").await;
        uas.reply(&inv, "180 Ringing", Some("r1"), "").await;
        // Nothing final before the 600 ms deadline: CANCEL on the INVITE's branch.
        let cancel = uas.recv().await;
        assert!(cancel.line().starts_with("CANCEL "), "{}", cancel.text);
        assert_eq!(cancel.branch(), inv.branch());
        assert_eq!(cancel.header("CSeq"), "1 CANCEL");
        assert_eq!(cancel.header("Call-ID"), inv.header("Call-ID"));
        assert_eq!(cancel.header("To"), inv.header("To"));
        uas.reply(&cancel, "200 OK", Some("r1"), "").await;
        uas.reply(&inv, "487 Request Terminated", Some("r1"), "")
            .await;
        let ack = uas.recv().await;
        assert!(ack.line().starts_with("ACK "), "{}", ack.text);
        assert_eq!(ack.branch(), inv.branch());
        assert_eq!(ack.header("CSeq"), "1 ACK");
        assert_eq!(ack.header("To"), format!("{};tag=r1", inv.header("To")));
        // A retransmitted 487 is ACKed again.
        uas.reply(&inv, "487 Request Terminated", Some("r1"), "")
            .await;
        let ack2 = uas.recv().await;
        assert_eq!(ack2.text, ack.text);
        let out = collect(&mut rx, handle).await;
        let r = results(&out);
        assert_eq!(r.len(), 2, "{out:#?}");
        assert_eq!(
            (r[0].method, r[0].status, r[0].retry_after, r[0].state),
            (
                Method::Options,
                Some(503),
                Some(120),
                ServiceState::OutOfService
            )
        );
        assert_eq!(
            (r[1].method, r[1].status, r[1].state),
            (Method::Invite, None, ServiceState::Down)
        );
        let alarms: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Alarm(a) => Some((a.kind, a.active)),
                _ => None,
            })
            .collect();
        assert_eq!(alarms, vec![(AlarmKind::InviteNot503, true)]);
        let Some(Output::Summary(s)) = out.last() else {
            panic!("{out:#?}")
        };
        assert_eq!((s.rx.late, s.rx.duplicate), (1, 1));
    }

    #[tokio::test]
    async fn accepted_invite_is_acked_and_hung_up_with_an_alarm() {
        let mut uas = Uas::new().await;
        let (mut rx, handle) = spawn(&cfg(&uas.uri(), InviteProbe::Always)).await.unwrap();
        let opt = uas.recv().await;
        uas.reply(&opt, "200 OK", Some("x1"), "").await;
        let inv = uas.recv().await;
        assert!(inv.line().starts_with("INVITE "), "{}", inv.text);
        let contact = format!("sip:uas@{}", uas.sock.local_addr().unwrap());
        uas.reply(
            &inv,
            "200 OK",
            Some("ok1"),
            &format!("Contact: <{contact}>\r\n"),
        )
        .await;
        let ack = uas.recv().await;
        assert_eq!(ack.line(), format!("ACK {contact} SIP/2.0"));
        assert_ne!(ack.branch(), inv.branch());
        assert!(ack.branch().starts_with("z9hG4bK"));
        assert_eq!(ack.header("CSeq"), "1 ACK");
        assert_eq!(ack.header("To"), format!("{};tag=ok1", inv.header("To")));
        let bye = uas.recv().await;
        assert_eq!(bye.line(), format!("BYE {contact} SIP/2.0"));
        assert_eq!(bye.header("CSeq"), "2 BYE");
        assert_eq!(bye.header("Call-ID"), inv.header("Call-ID"));
        assert_eq!(bye.header("To"), format!("{};tag=ok1", inv.header("To")));
        uas.reply(&bye, "200 OK", Some("ok1"), "").await;
        let out = collect(&mut rx, handle).await;
        let r = results(&out);
        assert_eq!(
            r.iter().map(|r| (r.method, r.status)).collect::<Vec<_>>(),
            vec![
                (Method::Options, Some(200)),
                (Method::Bye, Some(200)),
                (Method::Invite, Some(200))
            ]
        );
        assert!(out.iter().any(|o| matches!(o,
            Output::Alarm(a) if a.kind == AlarmKind::CallAccepted && a.active
                && a.message == "INVITE answered 200: a call was accepted (ACKed and hung up: BYE answered 200)")));
        assert!(!out.iter().any(|o| matches!(o,
            Output::Alarm(a) if a.kind == AlarmKind::ByeFailed)));
    }

    /// RFC 3261 12.2.1.1 / 8.1.2: the ACK and the BYE go to the first route's address (a
    /// host name, `localhost`, resolved), not to the probed address; the BYE's 200 from there
    /// is no reply-source mismatch.
    #[tokio::test]
    async fn ack_and_bye_go_to_the_first_route_resolved() {
        let mut uas = Uas::new().await;
        let mut proxy = Uas::new().await;
        let (mut rx, handle) = spawn(&cfg(&uas.uri(), InviteProbe::Always)).await.unwrap();
        let opt = uas.recv().await;
        uas.reply(&opt, "200 OK", Some("x1"), "").await;
        let inv = uas.recv().await;
        let contact = format!("sip:uas@{}", uas.sock.local_addr().unwrap());
        let port = proxy.sock.local_addr().unwrap().port();
        uas.reply(
            &inv,
            "200 OK",
            Some("ok1"),
            &format!("Record-Route: <sip:localhost:{port};lr>\r\nContact: <{contact}>\r\n"),
        )
        .await;
        let ack = proxy.recv().await;
        assert_eq!(ack.line(), format!("ACK {contact} SIP/2.0"));
        assert_eq!(ack.header("Route"), format!("<sip:localhost:{port};lr>"));
        let bye = proxy.recv().await;
        assert_eq!(bye.line(), format!("BYE {contact} SIP/2.0"));
        proxy.reply(&bye, "200 OK", Some("ok1"), "").await;
        let out = collect(&mut rx, handle).await;
        let r = results(&out);
        assert_eq!(
            r.iter()
                .map(|r| (r.method, r.status, r.source))
                .collect::<Vec<_>>(),
            vec![
                (Method::Options, Some(200), None),
                (Method::Bye, Some(200), None),
                (Method::Invite, Some(200), None)
            ]
        );
        let mut buf = [0u8; 2048];
        assert!(
            uas.sock.try_recv_from(&mut buf).is_err(),
            "nothing more went to the probed address"
        );
        let Some(Output::Summary(s)) = out.last() else {
            panic!("{out:#?}")
        };
        assert_eq!(s.rx.source_mismatch, 0);
    }

    /// A next hop srewatch cannot use (`sips:`) falls back to the probed address.
    #[tokio::test]
    async fn unusable_next_hop_falls_back_to_the_probed_address() {
        let mut uas = Uas::new().await;
        let (mut rx, handle) = spawn(&cfg(&uas.uri(), InviteProbe::Always)).await.unwrap();
        let opt = uas.recv().await;
        uas.reply(&opt, "200 OK", Some("x1"), "").await;
        let inv = uas.recv().await;
        uas.reply(
            &inv,
            "200 OK",
            Some("ok1"),
            "Record-Route: <sips:proxy.example;lr>\r\nContact: <sip:uas@127.0.0.1:9>\r\n",
        )
        .await;
        let ack = uas.recv().await;
        assert_eq!(ack.line(), "ACK sip:uas@127.0.0.1:9 SIP/2.0");
        let bye = uas.recv().await;
        assert_eq!(bye.line(), "BYE sip:uas@127.0.0.1:9 SIP/2.0");
        uas.reply(&bye, "200 OK", Some("ok1"), "").await;
        let out = collect(&mut rx, handle).await;
        assert_eq!(
            results(&out)
                .iter()
                .map(|r| (r.method, r.status))
                .collect::<Vec<_>>(),
            vec![
                (Method::Options, Some(200)),
                (Method::Bye, Some(200)),
                (Method::Invite, Some(200))
            ]
        );
    }

    /// Fault injection: the ACK and the BYE of a 2xx follow its
    /// route set (Record-Route reversed into Route, the Contact as Request-URI); a BYE answered
    /// 404 is an alarm of its own, and the call_accepted text does not say "hung up".
    #[tokio::test]
    async fn accepted_invite_follows_the_route_set_and_a_refused_bye_is_an_alarm() {
        let mut uas = Uas::new().await;
        let (mut rx, handle) = spawn(&cfg(&uas.uri(), InviteProbe::Always)).await.unwrap();
        let opt = uas.recv().await;
        uas.reply(&opt, "200 OK", Some("x1"), "").await;
        let inv = uas.recv().await;
        let me = uas.sock.local_addr().unwrap();
        let contact = format!("sip:uas@{me}");
        uas.reply(
            &inv,
            "200 OK",
            Some("ok1"),
            &format!(
                "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr;ftag=a>\r\n\
                 Record-Route: <sip:{me};lr>\r\nContact: <{contact}>\r\n"
            ),
        )
        .await;
        // The ACK and BYE go to the first route (the UAS itself: test traffic stays on
        // loopback), not to the other two.
        let route = format!("<sip:{me};lr>, <sip:p2.example;lr;ftag=a>, <sip:p1.example;lr>");
        let ack = uas.recv().await;
        assert_eq!(ack.line(), format!("ACK {contact} SIP/2.0"));
        assert_eq!(
            ack.header("Route").replace(", ", ","),
            route.replace(", ", ",")
        );
        assert_eq!(ack.header("CSeq"), "1 ACK");
        let bye = uas.recv().await;
        assert_eq!(bye.line(), format!("BYE {contact} SIP/2.0"));
        assert_eq!(
            bye.header("Route").replace(", ", ","),
            route.replace(", ", ",")
        );
        assert_eq!(bye.header("CSeq"), "2 BYE");
        uas.reply(&bye, "404 Not here", Some("ok1"), "").await;
        let out = collect(&mut rx, handle).await;
        let r = results(&out);
        assert_eq!(
            r.iter()
                .map(|r| (r.method.as_str(), r.status))
                .collect::<Vec<_>>(),
            vec![
                ("OPTIONS", Some(200)),
                ("BYE", Some(404)),
                ("INVITE", Some(200))
            ]
        );
        let alarms: Vec<(&str, bool, &str)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Alarm(a) => Some((a.kind.as_str(), a.active, a.message.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            alarms,
            vec![
                (
                    "call_accepted",
                    true,
                    "INVITE answered 200: a call was accepted (ACKed; BYE answered 404: the call may still be up)"
                ),
                (
                    "bye_failed",
                    true,
                    "BYE of the call accepted with 200 answered 404: the call may still be up"
                ),
            ]
        );
    }

    #[tokio::test]
    async fn garbage_and_foreign_responses_are_counted_and_ignored() {
        let mut uas = Uas::new().await;
        let (mut rx, handle) = spawn(&cfg(&uas.uri(), InviteProbe::Never)).await.unwrap();
        let opt = uas.recv().await;
        uas.send(b"hello").await;
        uas.send(&vec![b'S'; crate::consts::MAX_RESPONSE + 100])
            .await;
        uas.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n").await;
        // Our sent-by, a branch we never used.
        let stray = opt.text.replace(opt.branch(), "z9hG4bKnotours-0-0");
        let stray = Req { text: stray };
        uas.reply(&stray, "200 OK", None, "").await;
        // Right branch, another Call-ID.
        let other = Req {
            text: opt.text.replace(opt.header("Call-ID"), "someone-else"),
        };
        uas.reply(&other, "200 OK", None, "").await;
        // Two Vias.
        let two = Req {
            text: opt.text.replace(
                "\r\nVia: ",
                "\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKproxy\r\nVia: ",
            ),
        };
        let msg = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKproxy\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            two.header("Via"),
            opt.header("From"),
            opt.header("To"),
            opt.header("Call-ID")
        );
        uas.send(msg.as_bytes()).await;
        // A malformed CSeq.
        let bad = Req {
            text: opt.text.replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS"),
        };
        uas.reply(&bad, "200 OK", None, "").await;
        // The real answer, then its retransmission.
        let tag = "0123456789abcdef0123456789abcdef.0a1b2c3d";
        uas.reply(&opt, "200 OK", Some(tag), "").await;
        uas.reply(&opt, "200 OK", Some(tag), "").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = collect(&mut rx, handle).await;
        let r = results(&out);
        assert_eq!(r.len(), 1, "{out:#?}");
        assert_eq!(r[0].status, Some(200));
        assert_eq!(
            r[0].fingerprint.as_deref(),
            Some("sl:0123456789abcdef0123456789abcdef")
        );
        let Some(Output::Summary(s)) = out.last() else {
            panic!("{out:#?}")
        };
        assert_eq!(
            s.rx,
            RxStats {
                received: 9,
                garbage: 2,
                oversized: 1,
                malformed: 1,
                not_ours: 1,
                stray: 1,
                late: 0,
                duplicate: 1,
                other_call_id: 1,
                source_mismatch: 0,
            }
        );
        assert_eq!((s.count, s.lost), (1, 0));
    }

    /// Paused tokio time: the OPTIONS to a silent target go out at exactly 0, 500 and 1500 ms
    /// (Timer E), the probe is reported down at 2000 ms, and the next probe starts on schedule.
    #[tokio::test(start_paused = true)]
    async fn timer_e_schedule_with_paused_time() {
        let mut uas = Uas::new().await;
        let mut c = cfg(&uas.uri(), InviteProbe::Never);
        c.target[0].timeout = Duration::from_secs(2);
        c.target[0].interval = Duration::from_secs(5);
        let t0 = TokioInstant::now();
        let (mut rx, handle) = spawn(&c).await.unwrap();
        let mut at = Vec::new();
        let mut branches = Vec::new();
        for _ in 0..4 {
            let r = uas.recv().await;
            at.push((TokioInstant::now() - t0).as_millis());
            branches.push(r.branch().to_string());
        }
        assert_eq!(at, vec![0, 500, 1500, 5000]);
        assert_eq!(branches[0], branches[1]);
        assert_eq!(branches[0], branches[2]);
        assert_ne!(branches[0], branches[3]);
        let o = rx.recv().await.unwrap();
        assert!(matches!(o, Output::Event(_)), "{o:?}");
        let Some(Output::Result(r)) = rx.recv().await else {
            panic!()
        };
        assert_eq!(
            (r.status, r.retransmits, r.state),
            (None, 2, ServiceState::Down)
        );
        drop(handle);
    }

    /// A CP listening on 0.0.0.0 answers from another address of the host. The
    /// answer is matched by its branch, classified with its real status and reported as a
    /// source mismatch; an ICMP error still comes back afterwards.
    #[tokio::test]
    async fn reply_from_another_address_is_seen_and_reported() {
        let mut uas = Uas::new().await;
        let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
        let (mut rx, handle) = spawn(&cfg(&uas.uri(), InviteProbe::Never)).await.unwrap();
        let opt = uas.recv().await;
        let msg = response(&opt, "200 OK", Some("a.b"), "");
        other
            .send_to(msg.as_bytes(), uas.peer.unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = collect(&mut rx, handle).await;
        let r = results(&out);
        assert_eq!(r.len(), 1, "{out:#?}");
        assert_eq!(
            (r[0].status, r[0].state),
            (Some(200), ServiceState::InService),
            "{out:#?}"
        );
        assert_eq!(r[0].source, Some(other.local_addr().unwrap()));
        let Some(Output::Summary(sm)) = out.last() else {
            panic!("{out:#?}")
        };
        assert_eq!((sm.rx.source_mismatch, sm.rx.ignored()), (1, 0));
    }

    /// With `accept_other_source = false`, an answer from another address of the host is
    /// `unexpected`, its status kept; the probed address answering itself is in service.
    #[tokio::test]
    async fn reply_from_another_address_can_count_as_unexpected() {
        let mut uas = Uas::new().await;
        let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
        let mut c = cfg(&uas.uri(), InviteProbe::Never);
        c.target[0].accept_other_source = false;
        c.target[0].interval = Duration::from_millis(300);
        let (mut rx, handle) = spawn(&c).await.unwrap();
        let opt = uas.recv().await;
        let msg = response(&opt, "200 OK", None, "");
        other
            .send_to(msg.as_bytes(), uas.peer.unwrap())
            .await
            .unwrap();
        let opt = uas.recv().await;
        uas.reply(&opt, "200 OK", None, "").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = collect(&mut rx, handle).await;
        let r = results(&out);
        let got: Vec<_> = r.iter().map(|r| (r.status, r.state, r.source)).collect();
        assert_eq!(
            got,
            vec![
                (
                    Some(200),
                    ServiceState::Unexpected,
                    Some(other.local_addr().unwrap())
                ),
                (Some(200), ServiceState::InService, None),
            ]
        );
    }

    /// A CP that answers OPTIONS 404 by design is alive when 404 is listed.
    #[tokio::test]
    async fn alive_codes_make_a_404_in_service() {
        let mut uas = Uas::new().await;
        let mut c = cfg(&uas.uri(), InviteProbe::Never);
        c.target[0].alive_codes = vec![200, 404];
        let (mut rx, handle) = spawn(&c).await.unwrap();
        let opt = uas.recv().await;
        uas.reply(&opt, "404 Not Found", None, "").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = collect(&mut rx, handle).await;
        let r = results(&out);
        assert_eq!(
            r.iter().map(|r| (r.status, r.state)).collect::<Vec<_>>(),
            vec![(Some(404), ServiceState::InService)]
        );
    }
}
