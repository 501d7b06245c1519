//! The call core, sans I/O (str0m's shape): one accepted or cancelled INVITE finished to the
//! end, whoever drives it.
//!
//! The driver sends the INVITE, creates a [`Call`], and then feeds it what happens:
//! [`Call::handle_response`] (a response already matched to this call: the INVITE's, the
//! CANCEL's or the BYE's, told apart by its CSeq method), [`Call::handle_timeout`] (at the
//! instant [`Call::poll_output`] asked for) and [`Call::handle_send_error`]. After each, it drains
//! [`Call::poll_output`] until [`Output::Timeout`]: the messages to transmit ([`Msg`], rendered
//! by the driver from the response just handled, to the [`Dest`] named) and the results to
//! report. `Output::Timeout(None)` means the call is over and can be dropped.
//!
//! The core runs the INVITE's [`ClientTx`], the CANCEL ([`crate::dialog::Cancel`], its own
//! Timer E and Timer F) and the BYE (its own transaction, [`FollowConfig::bye_tx`]), and decides
//! with [`follow_up`]: the ACK of a non-2xx in its transaction, the ACK and BYE of the first 2xx,
//! the same ACK again for a retransmitted 2xx, the CANCEL of an INVITE with only provisional
//! answers at its deadline, and the ACK and BYE of a 2xx that comes late (after the timeout was
//! reported, or after the CANCEL's 487).
//!
//! Where the prober and the bench differ, a [`CallSettings`] field says so
//! ([`CallSettings::PROBER`], [`CallSettings::BENCH`]).

use crate::dialog::{follow_up, ByeResult, Cancel, CancelEvent, FollowConfig, FollowUp};
use crate::sip::Response;
use crate::transaction::key::Method;
use crate::transaction::{Action, ClientTx, Outcome, TransportErrorKind, TxConfig};
use std::collections::VecDeque;
use std::time::Instant;

/// The branch of the ACK of a 2xx (a transaction of its own, RFC 3261 section 17.1.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckBranch {
    /// A fresh random branch (the prober).
    Fresh,
    /// The INVITE's branch with `a` appended: unique, and derived without state (the bench).
    InvitePlusA,
}

/// Where the ACK of a 2xx and the BYE go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The next hop of the 2xx's route set ([`crate::dialog::RouteSet::next_hop`]).
    RouteSet,
    /// The target, always (the bench's socket is connected).
    Target,
}

/// How a driver wants its calls finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSettings {
    /// Keep the INVITE's transaction after its final response (Timer D / M) to re-ACK a
    /// retransmitted final; when off, it is dropped at its final response (in time or late)
    /// and a retransmission is [`Output::Late`].
    pub keep_after_final: bool,
    pub ack_branch: AckBranch,
    pub hop: Hop,
    /// Hold the result of an accepted INVITE until its BYE's, reported together
    /// ([`Output::Accepted`]); when off, [`Output::Invite`] at once and [`Output::Bye`] later.
    pub hold_result: bool,
}

impl CallSettings {
    /// The prober's.
    pub const PROBER: CallSettings = CallSettings {
        keep_after_final: true,
        ack_branch: AckBranch::Fresh,
        hop: Hop::RouteSet,
        hold_result: true,
    };
    /// The bench's.
    pub const BENCH: CallSettings = CallSettings {
        keep_after_final: false,
        ack_branch: AckBranch::InvitePlusA,
        hop: Hop::Target,
        hold_result: false,
    };
}

/// A message for the driver to render and send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// The INVITE again (Timer A).
    InviteAgain,
    /// The ACK of a non-2xx final, in the INVITE's transaction (its branch, the response's To).
    AckInTx,
    /// The ACK of the 2xx just handled, along its route set; keep it for [`Msg::AckAgain`].
    Ack2xx(AckBranch),
    /// The same ACK of a 2xx again (the 2xx was retransmitted).
    AckAgain,
    /// The BYE that hangs up the 2xx just handled (INVITE's CSeq + 1, a branch of its own).
    Bye,
    /// The same BYE again (its Timer E).
    ByeAgain,
    /// The CANCEL of the INVITE (its branch and CSeq number).
    Cancel,
    /// The same CANCEL again (its Timer E).
    CancelAgain,
}

/// Where a [`Msg`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Where the INVITE went.
    Target,
    /// The next hop of the 2xx's route set.
    NextHop,
}

/// What the driver must do or report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Transmit(Msg, Dest),
    /// The INVITE's result (not held): a final, a timeout, a transport error.
    Invite(Outcome),
    /// A final response to the INVITE after its result was reported (a timeout, a CANCEL's
    /// 487) or, without [`CallSettings::keep_after_final`], a retransmitted final.
    Late {
        status: u16,
    },
    /// An accepted INVITE's held result with its BYE's (`result` read from `bye`).
    Accepted {
        invite: Outcome,
        bye: Outcome,
        result: ByeResult,
    },
    /// A BYE's result when the INVITE's was not held.
    Bye(Outcome, ByeResult),
    /// The CANCEL's final status, or [`CancelEvent::Failed`].
    Cancel(CancelEvent),
    /// Call [`Call::handle_timeout`] at this instant; `None`: the call is over.
    Timeout(Option<Instant>),
}

/// One INVITE and what finishes it: its transaction inline, the rest (CANCEL, BYE, outputs
/// waiting) boxed once something happens, so that a call in the bench's table costs little
/// more than a transaction. The CANCEL's and BYE's timers ([`FollowConfig`]) are the driver's,
/// passed to each `handle_*`.
#[derive(Debug)]
pub struct Call {
    invite: Option<ClientTx>,
    rare: Option<Box<Rare>>,
    settings: CallSettings,
}

/// What a call needs once it gets a final answer or a deadline.
#[derive(Debug, Default)]
struct Rare {
    cancel: Option<Cancel>,
    bye: Option<ClientTx>,
    /// Where the 2xx's ACK went, for its re-ACK.
    ack_dest: Option<Dest>,
    held: Option<Outcome>,
    out: VecDeque<Output>,
}

impl Call {
    /// An INVITE first sent at `now`, with its transaction's timers (`tx`).
    pub fn new(settings: CallSettings, tx: &TxConfig, now: Instant) -> Call {
        Call {
            invite: Some(ClientTx::new(Method::Invite, tx, now)),
            rare: None,
            settings,
        }
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn push(&mut self, o: Output) {
        self.rare().out.push_back(o);
    }

    pub fn settings(&self) -> &CallSettings {
        &self.settings
    }

    /// The INVITE's transaction, while kept.
    pub fn invite(&self) -> Option<&ClientTx> {
        self.invite.as_ref()
    }

    /// A response matched to this call, at `now`.
    pub fn handle_response(&mut self, r: &Response<'_>, follow: &FollowConfig, now: Instant) {
        self.handle_status(r.method, r.status, follow, now);
    }

    /// A response of `status` to the request of `method` of this call, at `now`.
    pub fn handle_status(
        &mut self,
        method: Option<Method>,
        status: u16,
        follow: &FollowConfig,
        now: Instant,
    ) {
        match method {
            Some(Method::Invite) => match &mut self.invite {
                Some(tx) => {
                    let a = tx.on_response(status, now);
                    self.on_invite(a, Some(status), follow, now);
                }
                None if status >= 200 => self.push(Output::Late { status }),
                None => {}
            },
            Some(Method::Cancel) => {
                if let Some(c) = self.rare.as_deref_mut().and_then(|r| r.cancel.as_mut()) {
                    let e = c.on_response(status, now);
                    self.on_cancel(e);
                }
            }
            Some(Method::Bye) => {
                if let Some(tx) = self.rare.as_deref_mut().and_then(|r| r.bye.as_mut()) {
                    let a = tx.on_response(status, now);
                    self.on_bye(a);
                }
            }
            _ => {}
        }
    }

    /// A tick at `now` (at or after the instant asked for).
    pub fn handle_timeout(&mut self, follow: &FollowConfig, now: Instant) {
        if let Some(c) = self.rare.as_deref_mut().and_then(|r| r.cancel.as_mut()) {
            let e = c.on_timer(now);
            self.on_cancel(e);
        }
        if let Some(tx) = self.rare.as_deref_mut().and_then(|r| r.bye.as_mut()) {
            if tx.next_wakeup().is_some_and(|t| t <= now) {
                let a = tx.on_timer(now);
                self.on_bye(a);
            }
        }
        if let Some(tx) = &mut self.invite {
            if tx.next_wakeup().is_some_and(|t| t <= now) {
                let a = tx.on_timer(now);
                self.on_invite(a, None, follow, now);
            }
        }
    }

    /// Sending the request of `method` failed.
    pub fn handle_send_error(
        &mut self,
        method: Method,
        kind: TransportErrorKind,
        follow: &FollowConfig,
        now: Instant,
    ) {
        match method {
            Method::Invite => {
                if let Some(tx) = &mut self.invite {
                    let a = tx.on_transport_error(kind, now);
                    self.on_invite(a, None, follow, now);
                }
            }
            Method::Bye => {
                if let Some(tx) = self.rare.as_deref_mut().and_then(|r| r.bye.as_mut()) {
                    let a = tx.on_transport_error(kind, now);
                    self.on_bye(a);
                }
            }
            Method::Cancel => {
                if let Some(c) = self.rare.as_deref_mut().and_then(|r| r.cancel.as_mut()) {
                    let e = c.on_send_error();
                    self.on_cancel(e);
                }
            }
            _ => {}
        }
    }

    /// The next thing to do; [`Output::Timeout`] when nothing is queued.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.rare.as_deref_mut().and_then(|r| r.out.pop_front()) {
            return o;
        }
        Output::Timeout(self.next_timeout())
    }

    /// When [`Call::handle_timeout`] is next due; `None` once the call is over.
    pub fn next_timeout(&self) -> Option<Instant> {
        let rare = self.rare.as_deref();
        let cancel = rare
            .and_then(|r| r.cancel.as_ref())
            .and_then(Cancel::next_wakeup);
        let bye = rare
            .and_then(|r| r.bye.as_ref())
            .and_then(ClientTx::next_wakeup);
        let invite = self.invite.as_ref().and_then(ClientTx::next_wakeup);
        [cancel, bye, invite].into_iter().flatten().min()
    }

    /// Its CANCEL is waiting for its final response.
    pub fn cancel_pending(&self) -> bool {
        self.rare
            .as_deref()
            .and_then(|r| r.cancel.as_ref())
            .is_some_and(Cancel::pending)
    }

    /// Its BYE is waiting for its final response.
    pub fn bye_pending(&self) -> bool {
        self.rare.as_deref().is_some_and(|r| r.bye.is_some())
    }

    /// A result is still to come: the INVITE's, or the BYE's with the INVITE's held.
    pub fn unreported(&self) -> bool {
        use crate::transaction::State;
        self.rare.as_deref().is_some_and(|r| r.held.is_some())
            || self
                .invite
                .as_ref()
                .is_some_and(|tx| matches!(tx.state(), State::Calling | State::Proceeding))
    }

    fn hop(&self) -> Dest {
        match self.settings.hop {
            Hop::RouteSet => Dest::NextHop,
            Hop::Target => Dest::Target,
        }
    }

    fn on_invite(&mut self, a: Action, status: Option<u16>, follow: &FollowConfig, now: Instant) {
        match a {
            Action::Wait => {}
            Action::Retransmit => self.push(Output::Transmit(Msg::InviteAgain, Dest::Target)),
            Action::Done { outcome, send } => {
                let hold = match follow_up(send, outcome.status()) {
                    FollowUp::Accept => {
                        self.accept(follow, now);
                        self.settings.hold_result
                    }
                    f => {
                        self.follow(f, follow, now);
                        false
                    }
                };
                if hold {
                    self.rare().held = Some(outcome);
                } else {
                    self.push(Output::Invite(outcome));
                }
                if !self.settings.keep_after_final && outcome.status().is_some() {
                    self.invite = None;
                }
            }
            Action::Duplicate { send } => {
                let f = follow_up(send, status);
                if let (FollowUp::Accept, Some(s)) = (f, status) {
                    // A 2xx after the 487 to a CANCEL: late too.
                    self.push(Output::Late { status: s });
                }
                self.follow(f, follow, now);
            }
            Action::Late { status: s, send } => {
                self.push(Output::Late { status: s });
                self.follow(follow_up(send, status), follow, now);
                if !self.settings.keep_after_final {
                    self.invite = None;
                }
            }
            Action::Terminated => self.invite = None,
        }
    }

    /// Carries out a follow-up other than the first 2xx's (see [`Call::accept`]).
    fn follow(&mut self, f: FollowUp, follow: &FollowConfig, now: Instant) {
        match f {
            FollowUp::Nothing => {}
            FollowUp::AckInTx => {
                self.push(Output::Transmit(Msg::AckInTx, Dest::Target));
            }
            FollowUp::AckAgain => {
                if let Some(d) = self.rare.as_deref().and_then(|r| r.ack_dest) {
                    self.push(Output::Transmit(Msg::AckAgain, d));
                }
            }
            FollowUp::Accept => self.accept(follow, now),
            FollowUp::Cancel => {
                self.rare().cancel = Some(Cancel::start(follow, now));
                self.push(Output::Transmit(Msg::Cancel, Dest::Target));
            }
        }
    }

    /// The first 2xx: ACK it and start the BYE.
    fn accept(&mut self, follow: &FollowConfig, now: Instant) {
        let d = self.hop();
        self.rare().ack_dest = Some(d);
        self.push(Output::Transmit(Msg::Ack2xx(self.settings.ack_branch), d));
        self.push(Output::Transmit(Msg::Bye, d));
        self.rare().bye = Some(follow.bye_tx(now));
    }

    fn on_bye(&mut self, a: Action) {
        match a {
            Action::Retransmit => {
                let d = self
                    .rare
                    .as_deref()
                    .and_then(|r| r.ack_dest)
                    .unwrap_or(Dest::Target);
                self.push(Output::Transmit(Msg::ByeAgain, d));
            }
            Action::Done { outcome, .. } => {
                if let Some(result) = ByeResult::of(&a) {
                    let held = self.rare().held.take();
                    self.push(match held {
                        Some(invite) => Output::Accepted {
                            invite,
                            bye: outcome,
                            result,
                        },
                        None => Output::Bye(outcome, result),
                    });
                }
                // Its retransmitted finals need no answer: drop it.
                self.rare().bye = None;
            }
            Action::Terminated => self.rare().bye = None,
            _ => {}
        }
    }

    fn on_cancel(&mut self, e: CancelEvent) {
        match e {
            CancelEvent::Wait => {}
            CancelEvent::Retransmit => self.push(Output::Transmit(Msg::CancelAgain, Dest::Target)),
            e => self.push(Output::Cancel(e)),
        }
    }
}

#[cfg(test)]
mod tests;
