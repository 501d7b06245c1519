//! The transactions of one worker and their counts: start, timers, responses, send failures.
//! An OPTIONS is a plain [`ClientTx`]; an INVITE is a [`Call`] (the call core, settings
//! [`CallSettings::BENCH`]), which alone decides its ACK, BYE, CANCEL and late 2xx: this file
//! renders what it asks for and counts what it reports. No socket: the worker hands it
//! datagrams and flushes its batch.

use super::counts::Counts;
use super::logs::{Logged, Once};
use super::timers::Timers;
use super::{BenchConfig, BATCH};
use crate::call::{Call, CallSettings, Msg, Output};
use crate::dialog::{record_route_values, ByeResult, CancelEvent, FollowConfig, RouteSet};
use crate::fast::Template;
use crate::mmsg::{SendBatch, SendResult};
use crate::sip::{read_response, Error, Response};
use crate::transaction::client::{Action, ClientTx, Outcome, State, TransportErrorKind, TxConfig};
use crate::transaction::key::Method;
use crate::transaction::table::{Lookup, Slot, Table};
use std::io;
use std::sync::Arc;
use std::time::Instant;

/// A transaction in flight: the shared core's state plus the bench's bookkeeping.
#[derive(Debug)]
pub struct BenchTx {
    pub core: Core,
    /// Where latency is measured from, ns since the start: when the request left, or one send
    /// window after its scheduled time if it left later than that (see `Engine::start`).
    pub from_ns: u64,
    /// Goes into Call-ID, From tag and CSeq (and the same again on retransmission).
    pub seq: u64,
    pub step: u32,
    /// Index in the worker's `Aux` slab ([`NO_AUX`] for none): the BYE of a call. Fits in what
    /// would be padding.
    pub aux: u32,
}

/// What a table entry runs.
#[derive(Debug)]
pub enum Core {
    /// A non-INVITE request (OPTIONS): its transaction alone.
    Tx(ClientTx),
    /// An INVITE and what finishes it, boxed: an OPTIONS entry stays the size of a
    /// transaction.
    Call(Box<Call>),
    /// The BYE of the call at this slot (its branch is this entry's; the call runs it).
    Bye(Slot),
}

/// No `Aux` entry.
pub const NO_AUX: u32 = u32::MAX;

/// What a call's BYE needs beside the table, in a slab whose entries (and buffers) are reused:
/// its message (for its retransmissions) and the table entry of its branch.
#[derive(Default)]
pub(super) struct Aux {
    pub(super) msg: Vec<u8>,
    pub(super) bye: Option<Slot>,
}

/// Bytes per outstanding transaction in the table (entry, value and free-list slot), plus one
/// timer entry.
pub const fn bytes_per_outstanding() -> usize {
    crate::transaction::table::entry_size::<BenchTx>()
        + std::mem::size_of::<u32>()
        + std::mem::size_of::<(u64, Slot)>()
}

/// What a pending datagram in the send batch is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pending {
    Request(Slot),
    Ack,
    /// The BYE of the call at this slot.
    Bye(Slot),
    /// The CANCEL of the INVITE at this slot.
    Cancel(Slot),
}

/// Everything of a worker but its socket: the transactions, the messages going out, the counts.
pub(super) struct Engine {
    pub(super) cfg: Arc<BenchConfig>,
    pub(super) clock: Clock,
    pub(super) txs: Txs,
    pub(super) out: Outbox,
    pub(super) txcfg: TxConfig,
    /// Timers of the CANCEL and BYE transactions (the call core's).
    pub(super) follow: FollowConfig,
    pub(super) counts: Counts,
    pub(super) logged: Logged,
}

/// The codec's one response reader ([`read_response`]) with the prober's rules for an answer
/// to us: exactly one Via (RFC 3261 §8.1.3.3; else `BadHeader("Via")`) and a CSeq method the
/// bench sends (else `BadHeader("CSeq")`; the prober counts it as stray: neither takes it as
/// an answer).
#[inline]
pub fn read_answer(msg: &[u8]) -> Result<(Response<'_>, Method), Error> {
    let r = read_response(msg)?;
    if r.vias != 1 {
        return Err(Error::BadHeader("Via"));
    }
    let method = r.method.ok_or(Error::BadHeader("CSeq"))?;
    Ok((r, method))
}

/// The run's time base: the monotonic start and the same instant on the wall clock.
pub(super) struct Clock {
    pub(super) epoch: Instant,
    /// CLOCK_REALTIME at `epoch`, ns since the Unix epoch: converts kernel receive timestamps.
    pub(super) real_ns: u64,
}

impl Clock {
    pub(super) fn new(epoch: Instant) -> Self {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            epoch,
            real_ns: real.saturating_sub(epoch.elapsed()).as_nanos() as u64,
        }
    }

    /// ns since the start at `t`.
    #[inline]
    pub(super) fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// The transactions in flight: the table, their timers, the slab of the calls' BYEs.
pub(super) struct Txs {
    pub(super) table: Table<BenchTx>,
    pub(super) timers: Timers,
    pub(super) aux: Vec<Aux>,
    pub(super) aux_free: Vec<u32>,
    /// The last sequence number given (Call-ID, From tag, CSeq).
    pub(super) seq: u64,
}

impl Txs {
    /// Room for `n` outstanding transactions up front (a closed loop knows its most: no
    /// growth, and no copy, later).
    pub(super) fn with_capacity(n: usize) -> Self {
        Txs {
            table: Table::with_random_prefix().with_capacity(n),
            timers: Timers::with_capacity(n),
            aux: Vec::new(),
            aux_free: Vec::new(),
            seq: 0,
        }
    }

    /// The call at `slot`.
    fn call(&mut self, slot: Slot) -> Option<&mut BenchTx> {
        self.table
            .get_mut(slot)
            .filter(|bt| matches!(bt.core, Core::Call(_)))
    }
}

/// What is being sent: the templates, the batch and what each datagram in it is for.
pub(super) struct Outbox {
    pub(super) tmpl: Template,
    pub(super) txb: SendBatch,
    pub(super) pending: Vec<Pending>,
    pub(super) res: SendResult,
    /// The Route line of the ACK and BYE of a 2xx, reused.
    pub(super) route_buf: Vec<u8>,
}

impl Outbox {
    pub(super) fn new(tmpl: Template) -> Self {
        Outbox {
            tmpl,
            // Room for a round's ACKs (4 receive batches) on top of a batch of requests.
            txb: SendBatch::new(5 * BATCH),
            pending: Vec::with_capacity(BATCH),
            res: SendResult::default(),
            route_buf: Vec::with_capacity(256),
        }
    }

    /// The request (first send or retransmission) of the transaction at `slot`.
    fn request(&mut self, slot: Slot, branch: &[u8], seq: u64) {
        self.tmpl.write(self.txb.next_slot(), branch, seq);
        self.txb.commit(None);
        self.pending.push(Pending::Request(slot));
    }
}

/// The response a call is handling, for the messages rendered from it.
struct Answer<'m, 'r> {
    msg: &'m [u8],
    r: &'r Response<'m>,
}

impl Engine {
    /// Starts one transaction scheduled at `sched_ns` (or counts it as a send error).
    ///
    /// Its latency runs from when it leaves (`now_ns`: the batch is sent in this round), but
    /// from no later than one send window after `sched_ns`: requests due within the window
    /// leave together without that wait distorting their latency, while a bench that falls
    /// further behind its schedule counts the excess as latency (no coordinated omission).
    #[inline]
    pub(super) fn start(
        &mut self,
        now: Instant,
        now_ns: u64,
        sched_ns: u64,
        step: usize,
        down: bool,
    ) {
        self.counts.max_lag_ns = self.counts.max_lag_ns.max(now_ns.saturating_sub(sched_ns));
        let from_ns = now_ns.min(sched_ns.saturating_add(self.cfg.send_window.as_nanos() as u64));
        self.counts.cur_step = step;
        let st = self.counts.at(step);
        st.sent += 1;
        st.mark_send(now_ns);
        if down || self.txs.table.len() * self.cfg.sockets >= self.cfg.outstanding_limit {
            st.send_errors += 1;
            if !down {
                st.limited += 1;
                if self.logged.first(Once::Limit) {
                    tracing::warn!(
                        limit = self.cfg.outstanding_limit,
                        "Bench outstanding limit reached: further requests count as send errors"
                    );
                }
            }
            return;
        }
        self.txs.seq += 1;
        let seq = self.txs.seq;
        let method = self.out.tmpl.method();
        let (core, wake) = if method == Method::Invite {
            let call = Call::new(CallSettings::BENCH, &self.txcfg, now);
            let wake = call.next_timeout();
            (Core::Call(Box::new(call)), wake)
        } else {
            let tx = ClientTx::new(method, &self.txcfg, now);
            let wake = tx.next_wakeup();
            (Core::Tx(tx), wake)
        };
        let (slot, branch) = self.txs.table.insert(
            method,
            BenchTx {
                core,
                from_ns,
                seq,
                step: step as u32,
                aux: NO_AUX,
            },
        );
        if let Some(w) = wake {
            self.txs.timers.arm(self.clock.ns(w), slot);
        }
        self.counts.peak = self.counts.peak.max(self.txs.table.len() as u64);
        self.out.request(slot, branch.as_bytes(), seq);
    }

    /// When the next timer of a live transaction is due; the entries of ended transactions
    /// before it are dropped, so they wake nobody.
    pub(super) fn next_live_timer(&mut self) -> Option<u64> {
        let table = &self.txs.table;
        self.txs.timers.next_live(|s| table.method(s).is_some())
    }

    /// Timer E / A and timeouts; a call's timers go to the call.
    pub(super) fn fire_timers(&mut self, now: Instant, now_ns: u64) -> bool {
        let mut any = false;
        while !self.out.txb.is_full() {
            let Some(slot) = self.txs.timers.pop_due(now_ns) else {
                break;
            };
            let Some(bt) = self.txs.table.get_mut(slot) else {
                continue; // ended already
            };
            any = true;
            let step = bt.step as usize;
            let tx = match &mut bt.core {
                Core::Tx(tx) => tx,
                Core::Call(call) => {
                    call.handle_timeout(&self.follow, now);
                    self.drive(slot, None, now_ns);
                    continue;
                }
                Core::Bye(_) => continue, // its call's timers run it
            };
            match tx.on_timer(now) {
                Action::Retransmit => {
                    let seq = bt.seq;
                    if let Some(w) = tx.next_wakeup() {
                        self.txs.timers.arm(self.clock.ns(w), slot);
                    }
                    self.counts.at(step).retransmits += 1;
                    let branch = self.txs.table.branch(slot);
                    self.out.request(slot, branch.as_bytes(), seq);
                }
                Action::Done {
                    outcome: Outcome::Timeout { .. },
                    ..
                } => {
                    // A timeout counts in `hist_all` at the time it happened.
                    let us = (now_ns.saturating_sub(bt.from_ns) / 1000).max(1);
                    let st = self.counts.at(step);
                    st.timed_out += 1;
                    st.hist_all.saturating_record(us);
                    self.remove(slot);
                }
                Action::Wait => {
                    if let Some(w) = tx.next_wakeup() {
                        self.txs.timers.arm(self.clock.ns(w), slot);
                    }
                }
                // Final and transport outcomes are handled (and the transaction removed) where
                // they happen, so nothing else is live here.
                _ => self.remove(slot),
            }
        }
        any
    }

    /// Removes a transaction, and a call's BYE entry with it.
    pub(super) fn remove(&mut self, slot: Slot) {
        if let Some(bt) = self.txs.table.remove(slot) {
            if bt.aux != NO_AUX {
                let a = &mut self.txs.aux[bt.aux as usize];
                a.msg.clear();
                if let Some(b) = a.bye.take() {
                    self.txs.table.remove(b);
                }
                self.txs.aux_free.push(bt.aux);
            }
        }
    }

    pub(super) fn alloc_aux(&mut self) -> u32 {
        match self.txs.aux_free.pop() {
            Some(i) => i,
            None => {
                self.txs.aux.push(Aux::default());
                (self.txs.aux.len() - 1) as u32
            }
        }
    }

    /// Carries out and counts what the call at `slot` asks for, after a `handle_*` (`answer`:
    /// the response it handled), until it waits: then its timer is armed, or it is removed
    /// when over.
    fn drive(&mut self, slot: Slot, answer: Option<Answer<'_, '_>>, now_ns: u64) {
        let Some(bt) = self.txs.call(slot) else {
            return;
        };
        let (step, from_ns) = (bt.step as usize, bt.from_ns);
        loop {
            let Some(BenchTx {
                core: Core::Call(call),
                ..
            }) = self.txs.table.get_mut(slot)
            else {
                return;
            };
            match call.poll_output() {
                Output::Transmit(m, _) => self.transmit(m, slot, answer.as_ref()),
                Output::Invite(outcome) => {
                    let us = (now_ns.saturating_sub(from_ns) / 1000).max(1);
                    let st = self.counts.at(step);
                    match outcome {
                        Outcome::Final { status, .. } => {
                            let i = (status as usize).saturating_sub(100).min(599);
                            st.status[i] += 1;
                            st.hist.saturating_record(us);
                            st.hist_all.saturating_record(us);
                        }
                        // A timeout counts in `hist_all` at the time it happened.
                        Outcome::Timeout { .. } => {
                            st.timed_out += 1;
                            st.hist_all.saturating_record(us);
                        }
                        _ => st.send_errors += 1,
                    }
                }
                Output::Late { .. } => self.counts.at(step).late += 1,
                Output::Bye(_, result) => {
                    if let Some(a) = self.txs.table.get(slot).map(|bt| bt.aux) {
                        if let Some(b) = self.txs.aux.get_mut(a as usize).and_then(|a| a.bye.take())
                        {
                            self.txs.table.remove(b);
                        }
                    }
                    self.bye_ended(step, result);
                }
                Output::Accepted { result, .. } => self.bye_ended(step, result),
                Output::Cancel(CancelEvent::Failed) => self.counts.at(step).cancel_failures += 1,
                Output::Cancel(_) => {}
                Output::Timeout(Some(t)) => {
                    self.txs.timers.arm(self.clock.ns(t), slot);
                    return;
                }
                Output::Timeout(None) => {
                    self.remove(slot);
                    return;
                }
            }
        }
    }

    /// Renders (and counts) one message of the call at `slot`.
    fn transmit(&mut self, m: Msg, slot: Slot, answer: Option<&Answer<'_, '_>>) {
        let Some(bt) = self.txs.table.get(slot) else {
            return;
        };
        let (step, seq, aux) = (bt.step as usize, bt.seq, bt.aux);
        match m {
            Msg::InviteAgain => {
                self.counts.at(step).retransmits += 1;
                let branch = self.txs.table.branch(slot);
                self.out.request(slot, branch.as_bytes(), seq);
            }
            Msg::AckInTx => {
                if let Some(a) = answer {
                    self.ack(a.r.via.branch, seq, a.r.to, step);
                }
            }
            Msg::Ack2xx(_) => {
                if let Some(a) = answer {
                    self.ack_2xx(slot, a, seq, step);
                }
            }
            // The bench keeps no INVITE after its final: a retransmitted 2xx is late, never
            // re-ACKed (see the module's departure from the RFC).
            Msg::AckAgain => {}
            Msg::Bye => {
                if let Some(a) = answer {
                    self.bye(slot, a, seq, step);
                }
            }
            Msg::ByeAgain => {
                self.counts.at(step).retransmits += 1;
                self.send_bye(slot, aux);
            }
            Msg::Cancel => {
                self.counts.at(step).cancels += 1;
                self.send_cancel(slot, seq);
            }
            Msg::CancelAgain => {
                self.counts.at(step).retransmits += 1;
                self.send_cancel(slot, seq);
            }
        }
    }

    fn send_cancel(&mut self, slot: Slot, seq: u64) {
        // Called with room in the batch (timers stop when it is full, responses leave room).
        if self.out.txb.is_full() {
            return; // the CANCEL's Timer E sends it (UDP)
        }
        let branch = self.txs.table.branch(slot);
        self.out
            .tmpl
            .write_cancel(self.out.txb.next_slot(), branch.as_bytes(), seq);
        self.out.txb.commit(None);
        self.out.pending.push(Pending::Cancel(slot));
    }

    fn send_bye(&mut self, slot: Slot, aux: u32) {
        // Without room now, its Timer E sends it (UDP).
        let Some(a) = self.txs.aux.get(aux as usize) else {
            return;
        };
        if !self.out.txb.is_full() {
            let out = self.out.txb.next_slot();
            out.clear();
            out.extend_from_slice(&a.msg);
            self.out.txb.commit(None);
            self.out.pending.push(Pending::Bye(slot));
        }
    }

    pub(super) fn invalid(&mut self, why: &'static str) {
        self.counts.current().invalid += 1;
        if self.logged.first(Once::Invalid) {
            tracing::warn!(target = %self.cfg.target, reason = why,
                "Bench ignores a message that is not a usable SIP response");
        }
    }

    /// One response datagram or TCP message: match, classify, record, ACK.
    #[inline]
    pub(super) fn on_response(&mut self, msg: &[u8], now: Instant, now_ns: u64) {
        let (r, method) = match read_answer(msg) {
            Ok(r) => r,
            Err(e) => {
                self.invalid(e.as_str());
                return;
            }
        };
        let mut slot = match self.txs.table.lookup(r.via.branch, method) {
            Lookup::Found(slot) => slot,
            Lookup::Late => {
                self.counts.current().late += 1;
                return;
            }
            Lookup::Stray => {
                self.counts.current().stray += 1;
                return;
            }
        };
        if let Some(BenchTx {
            core: Core::Bye(call),
            ..
        }) = self.txs.table.get(slot)
        {
            slot = *call; // the BYE of this call
        }
        let Some(bt) = self.txs.table.get_mut(slot) else {
            return;
        };
        let step = bt.step as usize;
        let st = self.counts.at(step);
        let tx = match &mut bt.core {
            Core::Tx(tx) => tx,
            Core::Call(call) => {
                if method == Method::Cancel && !call.cancel_pending() {
                    st.late += 1;
                    return;
                }
                if method == Method::Invite && r.status < 200 {
                    st.provisional += 1;
                }
                call.handle_response(&r, &self.follow, now);
                self.drive(slot, Some(Answer { msg, r: &r }), now_ns);
                return;
            }
            Core::Bye(_) => return,
        };
        match tx.on_response(r.status, now) {
            Action::Wait => {
                st.provisional += 1;
            }
            Action::Done { outcome, .. } => {
                let status = outcome.status().unwrap_or(r.status);
                let us = (now_ns.saturating_sub(bt.from_ns) / 1000).max(1);
                let i = (status as usize).saturating_sub(100).min(599);
                st.status[i] += 1;
                st.hist.saturating_record(us);
                st.hist_all.saturating_record(us);
                self.remove(slot);
            }
            Action::Late { .. } | Action::Duplicate { .. } => {
                st.late += 1;
            }
            _ => {}
        }
    }

    /// The ACK of a non-2xx final response, in its transaction.
    pub(super) fn ack(&mut self, branch: &[u8], seq: u64, to: &[u8], step: usize) {
        self.counts.at(step).acks += 1;
        // The batch has room for a round's ACKs; should it not, the ACK is counted as not sent
        // (the transaction is answered either way).
        if self.out.txb.is_full() {
            self.counts.at(step).ack_send_errors += 1;
        } else {
            self.out
                .tmpl
                .write_ack(self.out.txb.next_slot(), branch, seq, to);
            self.out.txb.commit(None);
            self.out.pending.push(Pending::Ack);
        }
    }

    /// The route set of a 2xx: Record-Route reversed into Route (into `route_buf`), and the
    /// Request-URI (the Contact when loose routing, or the first route when strict).
    fn route_set<'m>(&mut self, a: &Answer<'m, '_>) -> RouteSet<'m> {
        let contact = a.r.contact;
        let rr = record_route_values(a.msg);
        let rs = match RouteSet::of_2xx(rr.as_slice().iter().copied(), contact) {
            Ok(rs) => rs,
            Err(e) => {
                if self.logged.first(Once::Route) {
                    tracing::warn!(target = %self.cfg.target, error = %e,
                        "Bench cannot follow the route set of a 2xx: ACK and BYE go to its Contact without Route");
                }
                RouteSet::direct(contact)
            }
        };
        self.out.route_buf.clear();
        rs.write_route_header(&mut self.out.route_buf);
        rs
    }

    /// The ACK of the 2xx answering the INVITE at `slot`: a transaction of its own, the
    /// INVITE's branch plus `-a`. The call is counted as `accepted`.
    fn ack_2xx(&mut self, slot: Slot, a: &Answer<'_, '_>, seq: u64, step: usize) {
        let rs = self.route_set(a);
        self.counts.at(step).accepted += 1;
        if self.logged.first(Once::Accepted) {
            tracing::error!(target = %self.cfg.target, status = a.r.status,
                "Bench INVITE accepted: ACK and BYE sent at once; further ones are only counted");
        }
        let ib = self.txs.table.branch(slot);
        let mut ack_branch = [0u8; crate::transaction::table::MAX_BRANCH + 2];
        let n = ib.as_bytes().len();
        ack_branch[..n].copy_from_slice(ib.as_bytes());
        ack_branch[n..n + 2].copy_from_slice(b"-a");
        self.counts.at(step).acks += 1;
        if self.out.txb.is_full() {
            self.counts.at(step).ack_send_errors += 1;
        } else {
            self.out.tmpl.write_ack_2xx(
                self.out.txb.next_slot(),
                rs.request_uri(),
                &ack_branch[..n + 2],
                &self.out.route_buf,
                seq,
                a.r.to,
            );
            self.out.txb.commit(None);
            self.out.pending.push(Pending::Ack);
        }
    }

    /// The BYE that hangs up the call at `slot`: a transaction of its own, whose branch is a
    /// table entry of its own ([`Core::Bye`]) leading to the call; its message is kept (in the
    /// `Aux` slab) for its retransmissions.
    fn bye(&mut self, slot: Slot, a: &Answer<'_, '_>, seq: u64, step: usize) {
        let rs = self.route_set(a);
        let i = self.alloc_aux();
        let Some(bt) = self.txs.table.get_mut(slot) else {
            self.txs.aux_free.push(i);
            return;
        };
        bt.aux = i;
        let from_ns = bt.from_ns;
        let (b, branch) = self.txs.table.insert(
            Method::Bye,
            BenchTx {
                core: Core::Bye(slot),
                from_ns,
                seq,
                step: step as u32,
                aux: NO_AUX,
            },
        );
        let aux = &mut self.txs.aux[i as usize];
        aux.bye = Some(b);
        self.out.tmpl.write_bye(
            &mut aux.msg,
            rs.request_uri(),
            branch.as_bytes(),
            &self.out.route_buf,
            seq,
            a.r.to,
        );
        self.counts.peak = self.counts.peak.max(self.txs.table.len() as u64);
        self.counts.at(step).byes += 1;
        self.send_bye(slot, i);
    }

    pub(super) fn flush_udp(&mut self, fd: i32, now: Instant) {
        if self.out.txb.is_empty() {
            return;
        }
        self.out.txb.send(fd, &mut self.out.res);
        if self.out.res.unreachable > 0 {
            let u = self.out.res.unreachable as u64;
            self.counts.current().unreachable += u;
        }
        for k in 0..self.out.res.failed.len() {
            let (i, ref e) = self.out.res.failed[k];
            let kind = TransportErrorKind::from_io(e);
            if self.logged.first(Once::Send) {
                tracing::warn!(target = %self.cfg.target, error = %e, "Bench send failed");
            }
            match self.out.pending[i] {
                Pending::Request(slot) => self.fail(slot, Method::Invite, kind, now),
                Pending::Bye(slot) => self.fail(slot, Method::Bye, kind, now),
                Pending::Cancel(slot) => self.fail(slot, Method::Cancel, kind, now),
                Pending::Ack => {
                    self.counts.current().ack_send_errors += 1;
                }
            }
        }
        self.out.pending.clear();
    }

    /// A BYE ended: only a 2xx hung the call up; a refused or unanswered BYE is counted (and
    /// logged once): the call may still be up.
    pub(super) fn bye_ended(&mut self, step: usize, res: ByeResult) {
        let st = self.counts.at(step);
        match res {
            ByeResult::HungUp { .. } => return,
            ByeResult::Refused { .. } => st.bye_refused += 1,
            ByeResult::NoAnswer | ByeResult::NotSent(_) => st.bye_failures += 1,
        }
        if self.logged.first(Once::Bye) {
            tracing::error!(target = %self.cfg.target, result = res.as_str(),
                status = res.status().unwrap_or(0),
                "Bench BYE of an accepted call failed: the call may still be up; further ones are only counted");
        }
    }

    /// A request of the transaction at `slot` could not be sent: a plain transaction ends as a
    /// send error; a call is told which of its requests failed (`method`: its INVITE, BYE or
    /// CANCEL).
    pub(super) fn fail(
        &mut self,
        slot: Slot,
        method: Method,
        kind: TransportErrorKind,
        now: Instant,
    ) {
        let now_ns = self.clock.ns(now);
        let Some(bt) = self.txs.table.get_mut(slot) else {
            return;
        };
        let step = bt.step as usize;
        match &mut bt.core {
            Core::Tx(tx) => {
                if let Action::Done { .. } = tx.on_transport_error(kind, now) {
                    self.remove(slot);
                    self.counts.at(step).send_errors += 1;
                }
            }
            Core::Call(call) => {
                call.handle_send_error(method, kind, &self.follow, now);
                self.drive(slot, None, now_ns);
            }
            Core::Bye(_) => {}
        }
    }

    /// The run was stopped and its grace ran out: every transaction still in flight is dropped.
    /// A request without its outcome counts as abandoned; a BYE as a BYE failure (the call may
    /// still be up); an INVITE that already timed out (waiting for a late final or its CANCEL)
    /// has its outcome and is only dropped.
    pub(super) fn abandon_all(&mut self) {
        let slots: Vec<Slot> = self.txs.table.slots().collect();
        for slot in slots {
            let Some(bt) = self.txs.table.get_mut(slot) else {
                continue; // a BYE entry removed with its call
            };
            let step = bt.step as usize;
            let (in_flight, bye) = match &bt.core {
                Core::Tx(tx) => (
                    matches!(tx.state(), State::Calling | State::Proceeding),
                    false,
                ),
                Core::Call(call) => (call.unreported(), call.bye_pending()),
                Core::Bye(_) => continue, // counted with its call
            };
            self.remove(slot);
            if bye {
                self.bye_ended(step, ByeResult::NoAnswer);
            }
            if in_flight {
                self.counts.at(step).abandoned += 1;
            }
        }
    }

    /// The TCP connection is gone: every outstanding transaction failed (all of a call's
    /// requests).
    pub(super) fn connection_lost(
        &mut self,
        e: &io::Error,
        now: Instant,
        kind: TransportErrorKind,
    ) {
        tracing::warn!(target = %self.cfg.target, error = %e, outstanding = self.txs.table.len(),
            "Bench TCP connection lost: outstanding transactions count as send errors");
        let slots: Vec<Slot> = self.txs.table.slots().collect();
        for s in slots {
            for m in [Method::Invite, Method::Cancel, Method::Bye] {
                self.fail(s, m, kind, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BenchConfig, BenchMethod, Load, Step};
    use std::time::Duration;

    /// An engine without a socket, its clock starting at `epoch`.
    fn engine(method: BenchMethod, epoch: Instant, set: impl FnOnce(&mut BenchConfig)) -> Engine {
        let target: std::net::SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let load = Load::Open(vec![Step {
            rate: 1000.0,
            duration: Duration::from_secs(1),
        }]);
        let mut cfg = BenchConfig::new("sip:127.0.0.1:5060", target, method, load);
        set(&mut cfg);
        let txcfg = TxConfig {
            t1: cfg.t1,
            t2: cfg.t2,
            timeout: cfg.timeout,
            reliable: false,
            retransmit: cfg.retransmit,
        };
        let follow = FollowConfig::new(cfg.t1, cfg.timeout, false);
        let local = "127.0.0.1:40000".parse().unwrap();
        let tmpl = Template::new(
            method.method(),
            &cfg.uri,
            local,
            crate::sip::Transport::Udp,
            7,
        );
        Engine {
            clock: Clock::new(epoch),
            txs: Txs::with_capacity(16),
            out: Outbox::new(tmpl),
            txcfg,
            follow,
            counts: Counts::new(1),
            logged: Logged::default(),
            cfg: Arc::new(cfg),
        }
    }

    /// The last request put in the batch: its slot.
    fn last_slot(eng: &Engine) -> Slot {
        match eng.out.pending.last() {
            Some(Pending::Request(s)) => *s,
            p => panic!("no request pending: {p:?}"),
        }
    }

    /// A 200 to the OPTIONS at `slot`.
    fn ok_to(eng: &Engine, slot: Slot) -> Vec<u8> {
        let branch = std::str::from_utf8(eng.txs.table.branch(slot).as_bytes())
            .unwrap()
            .to_string();
        std::str::from_utf8(KAMAILIO_200)
            .unwrap()
            .replacen("z9hG4bKdeadbeef000000010000002a", &branch, 1)
            .into_bytes()
    }

    /// The datagrams put in the batch since the last call, as text (the batch is emptied as if
    /// sent).
    fn take_sent(eng: &mut Engine) -> Vec<String> {
        let out = (0..eng.out.txb.len())
            .map(|i| String::from_utf8(eng.out.txb.get(i).to_vec()).unwrap())
            .collect();
        eng.out.txb.clear();
        eng.out.pending.clear();
        out
    }

    /// A response of `status` to `req` (its Via, From, To, Call-ID and CSeq), the To tagged
    /// and a Contact when `uas` says so.
    fn answer(req: &str, status: u16, uas: bool) -> Vec<u8> {
        let mut m = format!("SIP/2.0 {status} {}\r\n", crate::fast::reason(status));
        for l in req.split("\r\n") {
            let name = l.split(':').next().unwrap_or("");
            if ["Via", "From", "Call-ID", "CSeq"].contains(&name) {
                m += &format!("{l}\r\n");
            } else if name == "To" {
                let tag = if uas { ";tag=uas1" } else { "" };
                m += &format!("{l}{tag}\r\n");
            }
        }
        if uas {
            m += "Contact: <sip:uas@127.0.0.1:5062>\r\n";
        }
        m += "Content-Length: 0\r\n\r\n";
        m.into_bytes()
    }

    fn first_line(m: &str) -> &str {
        m.split("\r\n").next().unwrap()
    }

    /// A 2xx that crosses the CANCEL of a ringing INVITE: the call is ACKed and hung up, and the
    /// CANCEL's own 200 answers the CANCEL (not a late response); the call then leaves the
    /// table. The call core decides each message; the engine renders and counts them.
    #[test]
    fn a_2xx_crossing_the_cancel_is_hung_up_and_the_cancel_still_answered() {
        let epoch = Instant::now();
        let at = |ms: u64| (epoch + Duration::from_millis(ms), ms * 1_000_000);
        let mut eng = engine(BenchMethod::Invite503, epoch, |c| {
            c.timeout = Duration::from_secs(1);
            c.retransmit = false;
        });
        let (t, ns) = at(1);
        eng.start(t, ns, ns, 0, false);
        let sent = take_sent(&mut eng);
        assert_eq!(sent.len(), 1);
        let invite = sent[0].clone();
        assert!(invite.starts_with("INVITE "), "{invite}");
        let (t, ns) = at(10);
        eng.on_response(&answer(&invite, 180, false), t, ns);
        assert!(take_sent(&mut eng).is_empty());
        // Only the 180 by the timeout: timed out, CANCELled.
        let (t, ns) = at(1_002);
        assert!(eng.fire_timers(t, ns));
        let sent = take_sent(&mut eng);
        assert_eq!(
            sent.iter().map(|m| first_line(m)).collect::<Vec<_>>(),
            ["CANCEL sip:127.0.0.1:5060 SIP/2.0"]
        );
        let cancel = sent[0].clone();
        // The 2xx crosses the CANCEL: ACK (the INVITE's branch plus -a) and BYE.
        let (t, ns) = at(1_003);
        eng.on_response(&answer(&invite, 200, true), t, ns);
        let sent = take_sent(&mut eng);
        assert_eq!(
            sent.iter().map(|m| first_line(m)).collect::<Vec<_>>(),
            [
                "ACK sip:uas@127.0.0.1:5062 SIP/2.0",
                "BYE sip:uas@127.0.0.1:5062 SIP/2.0"
            ]
        );
        let branch = |m: &str| {
            let v = m.split("\r\n").find(|l| l.starts_with("Via:")).unwrap();
            v.split("branch=")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(branch(&sent[0]), format!("{}-a", branch(&invite)));
        let bye = sent[1].clone();
        // The CANCEL's 200 and the BYE's 200.
        let (t, ns) = at(1_004);
        eng.on_response(&answer(&cancel, 200, false), t, ns);
        let (t, ns) = at(1_005);
        eng.on_response(&answer(&bye, 200, true), t, ns);
        assert!(take_sent(&mut eng).is_empty());
        assert!(eng.txs.table.is_empty());
        let c = eng.counts.tick();
        assert_eq!(
            (
                c.sent,
                c.provisional,
                c.timed_out,
                c.cancels,
                c.cancel_failures
            ),
            (1, 1, 1, 1, 0)
        );
        assert_eq!(
            (
                c.late,
                c.accepted,
                c.acks,
                c.ack_send_errors,
                c.byes,
                c.bye_refused,
                c.bye_failures
            ),
            (1, 1, 1, 0, 1, 0, 0)
        );
        assert_eq!(
            (c.answered(), c.stray, c.invalid, c.retransmits),
            (0, 0, 0, 0)
        );
    }

    /// Latency runs from the send (`now_ns`), but from no later than one send window after the
    /// scheduled time: a request that left 0.4 ms after its schedule (inside a 1 ms window)
    /// counts from its send; one that left 3 ms late counts from 1 ms after its schedule.
    #[test]
    fn latency_runs_from_the_send_but_from_no_later_than_one_window_after_schedule() {
        let epoch = Instant::now();
        let at = |ns: u64| epoch + Duration::from_nanos(ns);
        let mut eng = engine(BenchMethod::Options, epoch, |c| {
            c.send_window = Duration::from_millis(1)
        });
        // Scheduled at 10 ms, sent at 10.4 ms, answered at 12.5 ms: 2,100 µs.
        eng.start(at(10_400_000), 10_400_000, 10_000_000, 0, false);
        let a = last_slot(&eng);
        assert_eq!(eng.txs.table.get_mut(a).unwrap().from_ns, 10_400_000);
        let ok = ok_to(&eng, a);
        eng.on_response(&ok, at(12_500_000), 12_500_000);
        let t = eng.counts.tick();
        assert_eq!((t.answered_with(200), t.hist.len()), (1, 1));
        // One value, exact (HDR holds 2,100 and 4,000 exactly at 3 significant figures).
        assert_eq!(t.hist.min(), 2_100);
        // Scheduled at 20 ms, sent 3 ms late (23 ms), answered at 25 ms: from 21 ms, 4,000 µs
        // (the 2 ms beyond the window count; the answer itself took 2 ms).
        eng.start(at(23_000_000), 23_000_000, 20_000_000, 0, false);
        let b = last_slot(&eng);
        assert_eq!(eng.txs.table.get_mut(b).unwrap().from_ns, 21_000_000);
        let ok = ok_to(&eng, b);
        eng.on_response(&ok, at(25_000_000), 25_000_000);
        let t = eng.counts.tick();
        assert_eq!((t.answered_with(200), t.hist.len()), (1, 1));
        assert_eq!(t.hist.min(), 4_000);
        assert_eq!((t.hist_all.len(), t.hist_all.min()), (1, 4_000));
        assert_eq!(eng.counts.max_lag_ns, 3_000_000);
    }

    #[test]
    fn memory_per_outstanding_transaction_fits() {
        eprintln!(
            "table entry {} + free list 4 + timer 16 = {} bytes per outstanding transaction",
            crate::transaction::table::entry_size::<BenchTx>(),
            bytes_per_outstanding()
        );
        assert!(
            bytes_per_outstanding() <= 256,
            "{}",
            bytes_per_outstanding()
        );
    }
    use crate::sip::KAMAILIO_200;

    /// The bench's reading of an answer: the codec's reader, one Via, a method it sends.
    #[test]
    fn answers_read_and_refused() {
        let (r, m) = read_answer(KAMAILIO_200).unwrap();
        assert_eq!(
            (r.status, r.via.branch, r.cseq, m),
            (
                200,
                &b"z9hG4bKdeadbeef000000010000002a"[..],
                1_000_000_007,
                Method::Options
            )
        );
        let text = std::str::from_utf8(KAMAILIO_200).unwrap();
        let two_vias = text.replacen(
            "\r\nFrom:",
            "\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKother\r\nFrom:",
            1,
        );
        let err = |m: &str| read_answer(m.as_bytes()).err();
        assert_eq!(err(&two_vias), Some(Error::BadHeader("Via")));
        let register = text.replacen("OPTIONS", "REGISTER", 1);
        assert_eq!(err(&register), Some(Error::BadHeader("CSeq")));
        for g in [
            &b""[..],
            b"SIP/2.0 ",
            b"SIP/2.0 2x0 OK\r\n\r\n",
            b"\xff\xfe\x00garbage",
            b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\n\r\n",
        ] {
            assert!(read_answer(g).is_err());
        }
        // Every prefix of a good message is handled without panicking.
        for i in 0..KAMAILIO_200.len() {
            let _ = read_answer(&KAMAILIO_200[..i]);
        }
    }
}
