//! The client transaction state machine (RFC 3261 sections 17.1.1 INVITE and 17.1.2
//! non-INVITE), sans I/O: the caller sends the first request, creates a [`ClientTx`], feeds it
//! responses ([`ClientTx::on_response`]) and timer ticks ([`ClientTx::on_timer`] at
//! [`ClientTx::next_wakeup`]) with the current instant, and carries out the [`Action`] returned.
//!
//! Departures from the RFC, all for a prober that reports within its own deadline:
//! - the outcome is reported at `timeout` (shorter than Timer B / F); the transaction then stays
//!   (state `Abandoned`) until 64·T1 after the first send so that a late final response can still
//!   be acknowledged (and a late 2xx to an INVITE ACKed and hung up);
//! - an INVITE that got only provisional responses by `timeout` is cancelled
//!   ([`Send::Cancel`]); the 487 (or anything else) that follows is a [`Action::Late`] response
//!   to ACK.
//!
//! Retransmission happens only over unreliable transports (UDP). Non-INVITE: Timer E from T1
//! doubling to T2, and at T2 once a provisional response came. INVITE: Timer A from T1
//! doubling, stopped by the first provisional response.

use super::key::Method;
use crate::consts::T1;
use crate::consts::T2;
use crate::consts::T4;
use std::time::{Duration, Instant};

/// A local transport failure: srewatch could not deliver the request or the network told it
/// the target is not listening. Never confused with a status code on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportErrorKind {
    /// ICMP port unreachable (ECONNREFUSED): nothing listens on the target's port.
    PortUnreachable,
    /// ICMP host or network unreachable.
    HostUnreachable,
    /// The request could not be sent (local error).
    SendFailed,
    /// TCP connection could not be established.
    ConnectFailed,
    /// TCP connection closed or reset before a final response.
    ConnectionClosed,
}

impl TransportErrorKind {
    /// A short fixed name usable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportErrorKind::PortUnreachable => "port_unreachable",
            TransportErrorKind::HostUnreachable => "host_unreachable",
            TransportErrorKind::SendFailed => "send_failed",
            TransportErrorKind::ConnectFailed => "connect_failed",
            TransportErrorKind::ConnectionClosed => "connection_closed",
        }
    }

    /// Who failed: `"srewatch"` for a local failure to send, `"target"` when the network or
    /// the target refused (nothing listening, unreachable, connection refused or reset).
    pub fn source(self) -> &'static str {
        match self {
            TransportErrorKind::SendFailed => "srewatch",
            _ => "target",
        }
    }

    /// The kind an I/O error on a socket maps to.
    pub fn from_io(e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => TransportErrorKind::PortUnreachable,
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => {
                TransportErrorKind::HostUnreachable
            }
            Some(libc::ECONNRESET) | Some(libc::EPIPE) => TransportErrorKind::ConnectionClosed,
            _ => TransportErrorKind::SendFailed,
        }
    }
}

/// How a transaction ended, as reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A final response; `rtt` from the first transmission.
    Final {
        status: u16,
        rtt: Duration,
        retransmits: u32,
    },
    /// No final response before the timeout; `provisional` is the last 1xx seen, if any.
    Timeout {
        retransmits: u32,
        provisional: Option<u16>,
    },
    /// A local transport error (not a response on the wire).
    TransportError {
        kind: TransportErrorKind,
        retransmits: u32,
    },
}

impl Outcome {
    pub fn retransmits(&self) -> u32 {
        match *self {
            Outcome::Final { retransmits, .. }
            | Outcome::Timeout { retransmits, .. }
            | Outcome::TransportError { retransmits, .. } => retransmits,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match *self {
            Outcome::Final { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// What to send in reply to a final response or a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    Nothing,
    /// ACK the final response: for a non-2xx, in this transaction (same branch, the response's
    /// To tag); for a retransmitted 2xx, the same ACK as before.
    Ack,
    /// A 2xx to an INVITE that was never ACKed: ACK it (new branch) and hang up with BYE at once.
    AckAndBye,
    /// CANCEL the INVITE (same branch, method CANCEL): only provisional responses came.
    Cancel,
}

/// What the caller must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing; wait for the next response or [`ClientTx::next_wakeup`].
    Wait,
    /// Send the request again (Timer A / Timer E fired).
    Retransmit,
    /// The outcome, reported once, and what to send for it.
    Done { outcome: Outcome, send: Send },
    /// A retransmission of the final response (counted); send again what `send` says.
    Duplicate { send: Send },
    /// A final response after the outcome was reported as a timeout (counted).
    Late { status: u16, send: Send },
    /// The transaction is over: remove it from the table.
    Terminated,
}

/// Timers and transport of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxConfig {
    pub t1: Duration,
    pub t2: Duration,
    /// Report a timeout (or cancel an INVITE that only got provisionals) this long after the
    /// first transmission.
    pub timeout: Duration,
    /// Reliable transport (TCP): no retransmissions, no lingering for retransmitted responses.
    pub reliable: bool,
    /// Retransmit (Timer E / A) over an unreliable transport. Off (`bench --no-retransmit`),
    /// T1 still times the lingering for late answers and the 487 after a CANCEL.
    pub retransmit: bool,
}

impl TxConfig {
    /// RFC timers with a probe `timeout`.
    pub fn new(timeout: Duration, reliable: bool) -> Self {
        TxConfig {
            t1: T1,
            t2: T2,
            timeout,
            reliable,
            retransmit: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sent, nothing heard yet (Calling for INVITE, Trying for non-INVITE).
    Calling,
    /// A provisional response came.
    Proceeding,
    /// A final response came and was reported; absorbing retransmissions (Timer D / K).
    Completed,
    /// A timeout or transport error was reported; waiting for late final responses.
    Abandoned,
    /// Over.
    Terminated,
}

/// One client transaction.
///
/// 15 fields, kept flat and small: one per outstanding transaction on the bench's hot path
/// (its timers, counts and state machine together).
#[derive(Debug, Clone)]
pub struct ClientTx {
    first_sent: Instant,
    deadline: Instant,
    next_retx: Option<Instant>,
    /// End of Completed / Abandoned.
    end: Instant,
    interval: Duration,
    t1: Duration,
    t2: Duration,
    method: Method,
    state: State,
    reliable: bool,
    bye_sent: bool,
    retransmits: u32,
    duplicates: u32,
    late: u32,
    /// The final status once known, else the last provisional (0 = none).
    status: u16,
}

impl ClientTx {
    /// A transaction whose request was first sent at `now`.
    pub fn new(method: Method, cfg: &TxConfig, now: Instant) -> Self {
        let deadline = now + cfg.timeout;
        let next_retx = if cfg.reliable || !cfg.retransmit || cfg.t1.is_zero() {
            None
        } else {
            Some(now + cfg.t1).filter(|t| *t < deadline)
        };
        ClientTx {
            first_sent: now,
            deadline,
            next_retx,
            end: deadline,
            interval: cfg.t1,
            t1: cfg.t1,
            t2: cfg.t2,
            method,
            state: State::Calling,
            reliable: cfg.reliable,
            bye_sent: false,
            retransmits: 0,
            duplicates: 0,
            late: 0,
            status: 0,
        }
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn first_sent(&self) -> Instant {
        self.first_sent
    }

    pub fn retransmits(&self) -> u32 {
        self.retransmits
    }

    /// Retransmitted final responses seen.
    pub fn duplicates(&self) -> u32 {
        self.duplicates
    }

    /// Final responses seen after a timeout was reported.
    pub fn late(&self) -> u32 {
        self.late
    }

    /// The final status if one came, else `None`.
    pub fn final_status(&self) -> Option<u16> {
        (self.status >= 200).then_some(self.status)
    }

    /// When [`ClientTx::on_timer`] must next be called; `None` once terminated.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match self.state {
            State::Calling | State::Proceeding => Some(match self.next_retx {
                Some(t) => t.min(self.deadline),
                None => self.deadline,
            }),
            State::Completed | State::Abandoned => Some(self.end),
            State::Terminated => None,
        }
    }

    /// How long to absorb retransmitted final responses after the first one (Timer D for a
    /// non-2xx to INVITE, Timer M for a 2xx, Timer K for non-INVITE; zero over TCP).
    fn completed_linger(&self, status: u16) -> Duration {
        if self.reliable {
            return if self.method == Method::Invite && status < 300 {
                self.t1 * 64
            } else {
                Duration::ZERO
            };
        }
        match self.method {
            Method::Invite if status < 300 => self.t1 * 64,
            Method::Invite => Duration::from_secs(32),
            _ => T4,
        }
    }

    fn reply_to_final(&mut self, status: u16) -> Send {
        if self.method != Method::Invite {
            Send::Nothing
        } else if status >= 300 || self.bye_sent {
            Send::Ack
        } else {
            self.bye_sent = true;
            Send::AckAndBye
        }
    }

    /// A response with this status matched the transaction at `now`.
    pub fn on_response(&mut self, status: u16, now: Instant) -> Action {
        let provisional = status < 200;
        match self.state {
            State::Calling | State::Proceeding if provisional => {
                self.state = State::Proceeding;
                self.status = status;
                if self.method == Method::Invite {
                    self.next_retx = None; // Timer A stops in Proceeding.
                }
                Action::Wait
            }
            State::Calling | State::Proceeding => {
                let send = self.reply_to_final(status);
                self.status = status;
                self.state = State::Completed;
                self.next_retx = None;
                self.end = now + self.completed_linger(status);
                Action::Done {
                    outcome: Outcome::Final {
                        status,
                        rtt: now.saturating_duration_since(self.first_sent),
                        retransmits: self.retransmits,
                    },
                    send,
                }
            }
            State::Completed if !provisional => {
                self.duplicates += 1;
                Action::Duplicate {
                    send: self.reply_to_final(status),
                }
            }
            State::Abandoned if !provisional => {
                self.late += 1;
                let send = self.reply_to_final(status);
                self.status = status;
                self.state = State::Completed;
                self.end = self.end.max(now + self.completed_linger(status));
                Action::Late { status, send }
            }
            _ => Action::Wait,
        }
    }

    /// Call at (or after) [`ClientTx::next_wakeup`].
    pub fn on_timer(&mut self, now: Instant) -> Action {
        match self.state {
            State::Calling | State::Proceeding => {
                if now >= self.deadline {
                    let provisional = (self.state == State::Proceeding).then_some(self.status);
                    let send = if self.method == Method::Invite && provisional.is_some() {
                        Send::Cancel
                    } else {
                        Send::Nothing
                    };
                    self.state = State::Abandoned;
                    self.next_retx = None;
                    // Keep matching until Timer B / F would have fired; after a CANCEL, 64·T1
                    // for the 487 (section 9.1).
                    let rfc_end = if send == Send::Cancel {
                        now + self.t1 * 64
                    } else {
                        self.first_sent + self.t1 * 64
                    };
                    self.end = if self.reliable && send != Send::Cancel {
                        now
                    } else {
                        rfc_end.max(now)
                    };
                    return Action::Done {
                        outcome: Outcome::Timeout {
                            retransmits: self.retransmits,
                            provisional,
                        },
                        send,
                    };
                }
                match self.next_retx {
                    Some(at) if now >= at => {
                        self.retransmits += 1;
                        self.interval = if self.method == Method::Invite {
                            self.interval * 2
                        } else if self.state == State::Proceeding {
                            self.t2
                        } else {
                            (self.interval * 2).min(self.t2)
                        };
                        self.next_retx = Some(at + self.interval).filter(|t| *t < self.deadline);
                        Action::Retransmit
                    }
                    _ => Action::Wait,
                }
            }
            State::Completed | State::Abandoned => {
                if now >= self.end {
                    self.state = State::Terminated;
                    Action::Terminated
                } else {
                    Action::Wait
                }
            }
            State::Terminated => Action::Terminated,
        }
    }

    /// Sending (or a socket error for) this transaction's request failed at `now`.
    pub fn on_transport_error(&mut self, kind: TransportErrorKind, _now: Instant) -> Action {
        match self.state {
            State::Calling | State::Proceeding => {
                self.state = State::Terminated;
                self.next_retx = None;
                Action::Done {
                    outcome: Outcome::TransportError {
                        kind,
                        retransmits: self.retransmits,
                    },
                    send: Send::Nothing,
                }
            }
            _ => Action::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Drives `tx` with timer ticks only, returning (offset ms, action) for each non-Wait action
    /// up to `until`.
    fn run_timers(tx: &mut ClientTx, t0: Instant, until: Duration) -> Vec<(u64, Action)> {
        let mut out = Vec::new();
        while let Some(at) = tx.next_wakeup() {
            if at > t0 + until {
                break;
            }
            let a = tx.on_timer(at);
            if a != Action::Wait {
                out.push(((at - t0).as_millis() as u64, a));
            }
            if a == Action::Terminated {
                break;
            }
        }
        out
    }

    #[test]
    fn non_invite_timer_e_then_timeout() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Options, &TxConfig::new(ms(8000), false), t0);
        let got = run_timers(&mut tx, t0, ms(8000));
        let timeout = Action::Done {
            outcome: Outcome::Timeout {
                retransmits: 4,
                provisional: None,
            },
            send: Send::Nothing,
        };
        assert_eq!(
            got,
            vec![
                (500, Action::Retransmit),
                (1500, Action::Retransmit),
                (3500, Action::Retransmit),
                (7500, Action::Retransmit),
                (8000, timeout),
            ]
        );
        assert_eq!(tx.state(), State::Abandoned);
        // Kept until Timer F (64·T1 = 32 s) for late answers, then terminated.
        assert_eq!(tx.next_wakeup(), Some(t0 + ms(32_000)));
        assert_eq!(
            tx.on_response(200, t0 + ms(9000)),
            Action::Late {
                status: 200,
                send: Send::Nothing
            }
        );
        assert_eq!(tx.late(), 1);
        assert_eq!(tx.on_timer(t0 + ms(32_000)), Action::Terminated);
    }

    #[test]
    fn non_invite_two_second_probe() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Options, &TxConfig::new(ms(2000), false), t0);
        let got = run_timers(&mut tx, t0, ms(2000));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (500, Action::Retransmit));
        assert_eq!(got[1], (1500, Action::Retransmit));
        assert_eq!(got[2].0, 2000);
    }

    #[test]
    fn non_invite_provisional_keeps_timer_e_at_t2() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Options, &TxConfig::new(ms(16_000), false), t0);
        assert_eq!(tx.on_timer(t0 + ms(500)), Action::Retransmit);
        assert_eq!(tx.on_response(100, t0 + ms(600)), Action::Wait);
        assert_eq!(tx.state(), State::Proceeding);
        // Already scheduled at 1500; from then on every T2 = 4 s.
        let got = run_timers(&mut tx, t0, ms(13_000));
        assert_eq!(
            got,
            vec![
                (1500, Action::Retransmit),
                (5500, Action::Retransmit),
                (9500, Action::Retransmit),
            ]
        );
        let done = tx.on_response(200, t0 + ms(10_000));
        assert_eq!(
            done,
            Action::Done {
                outcome: Outcome::Final {
                    status: 200,
                    rtt: ms(10_000),
                    retransmits: 4
                },
                send: Send::Nothing
            }
        );
        // Retransmitted finals are duplicates until Timer K (T4 = 5 s).
        assert_eq!(
            tx.on_response(200, t0 + ms(10_100)),
            Action::Duplicate {
                send: Send::Nothing
            }
        );
        assert_eq!(tx.duplicates(), 1);
        assert_eq!(tx.on_response(180, t0 + ms(10_200)), Action::Wait);
        assert_eq!(tx.next_wakeup(), Some(t0 + ms(15_000)));
        assert_eq!(tx.on_timer(t0 + ms(14_999)), Action::Wait);
        assert_eq!(tx.on_timer(t0 + ms(15_000)), Action::Terminated);
        assert_eq!(tx.next_wakeup(), None);
    }

    #[test]
    fn rtt_is_from_first_transmission() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Options, &TxConfig::new(ms(2000), false), t0);
        assert_eq!(tx.on_timer(t0 + ms(500)), Action::Retransmit);
        assert_eq!(
            tx.on_response(503, t0 + ms(730)),
            Action::Done {
                outcome: Outcome::Final {
                    status: 503,
                    rtt: ms(730),
                    retransmits: 1
                },
                send: Send::Nothing
            }
        );
        assert_eq!(tx.final_status(), Some(503));
    }

    #[test]
    fn invite_non_2xx_is_acked_and_duplicates_acked_again() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Invite, &TxConfig::new(ms(2000), false), t0);
        assert_eq!(
            tx.on_response(503, t0 + ms(3)),
            Action::Done {
                outcome: Outcome::Final {
                    status: 503,
                    rtt: ms(3),
                    retransmits: 0
                },
                send: Send::Ack
            }
        );
        assert_eq!(
            tx.on_response(503, t0 + ms(503)),
            Action::Duplicate { send: Send::Ack }
        );
        // Timer D: 32 s over UDP.
        assert_eq!(tx.next_wakeup(), Some(t0 + ms(32_003)));
    }

    #[test]
    fn invite_timer_a_stops_on_provisional_then_cancel() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Invite, &TxConfig::new(ms(4000), false), t0);
        assert_eq!(tx.on_timer(t0 + ms(500)), Action::Retransmit);
        assert_eq!(tx.on_response(100, t0 + ms(700)), Action::Wait);
        assert_eq!(tx.on_response(180, t0 + ms(800)), Action::Wait);
        // No more retransmissions: next wakeup is the deadline.
        assert_eq!(tx.next_wakeup(), Some(t0 + ms(4000)));
        assert_eq!(
            tx.on_timer(t0 + ms(4000)),
            Action::Done {
                outcome: Outcome::Timeout {
                    retransmits: 1,
                    provisional: Some(180)
                },
                send: Send::Cancel
            }
        );
        // The 487 that follows the CANCEL is ACKed.
        assert_eq!(
            tx.on_response(487, t0 + ms(4010)),
            Action::Late {
                status: 487,
                send: Send::Ack
            }
        );
        assert_eq!(
            tx.on_response(487, t0 + ms(4500)),
            Action::Duplicate { send: Send::Ack }
        );
    }

    #[test]
    fn invite_timer_a_doubles_without_cap() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Invite, &TxConfig::new(ms(32_000), false), t0);
        let got = run_timers(&mut tx, t0, ms(31_999));
        let at: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(at, vec![500, 1500, 3500, 7500, 15500, 31500]);
    }

    #[test]
    fn invite_2xx_is_acked_and_hung_up_once() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Invite, &TxConfig::new(ms(2000), false), t0);
        assert_eq!(
            tx.on_response(200, t0 + ms(10)),
            Action::Done {
                outcome: Outcome::Final {
                    status: 200,
                    rtt: ms(10),
                    retransmits: 0
                },
                send: Send::AckAndBye
            }
        );
        assert_eq!(
            tx.on_response(200, t0 + ms(510)),
            Action::Duplicate { send: Send::Ack }
        );
    }

    #[test]
    fn late_2xx_after_timeout_is_hung_up() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Invite, &TxConfig::new(ms(1000), false), t0);
        assert_eq!(tx.on_timer(t0 + ms(500)), Action::Retransmit);
        assert!(matches!(
            tx.on_timer(t0 + ms(1000)),
            Action::Done {
                outcome: Outcome::Timeout {
                    retransmits: 1,
                    provisional: None
                },
                send: Send::Nothing
            }
        ));
        assert_eq!(
            tx.on_response(200, t0 + ms(5000)),
            Action::Late {
                status: 200,
                send: Send::AckAndBye
            }
        );
    }

    #[test]
    fn reliable_transport_never_retransmits() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Options, &TxConfig::new(ms(2000), true), t0);
        assert_eq!(tx.next_wakeup(), Some(t0 + ms(2000)));
        let got = run_timers(&mut tx, t0, ms(2000));
        // Nothing to wait for over TCP: terminated at once after the timeout.
        assert_eq!(
            got,
            vec![
                (
                    2000,
                    Action::Done {
                        outcome: Outcome::Timeout {
                            retransmits: 0,
                            provisional: None
                        },
                        send: Send::Nothing
                    }
                ),
                (2000, Action::Terminated)
            ]
        );
        let mut tx = ClientTx::new(Method::Options, &TxConfig::new(ms(2000), true), t0);
        assert!(matches!(
            tx.on_response(200, t0 + ms(1)),
            Action::Done { .. }
        ));
        assert_eq!(tx.on_timer(t0 + ms(1)), Action::Terminated);
    }

    #[test]
    fn transport_error_is_not_a_status() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(Method::Options, &TxConfig::new(ms(2000), false), t0);
        assert_eq!(tx.on_timer(t0 + ms(500)), Action::Retransmit);
        let a = tx.on_transport_error(TransportErrorKind::PortUnreachable, t0 + ms(501));
        assert_eq!(
            a,
            Action::Done {
                outcome: Outcome::TransportError {
                    kind: TransportErrorKind::PortUnreachable,
                    retransmits: 1
                },
                send: Send::Nothing
            }
        );
        assert_eq!(tx.state(), State::Terminated);
        assert_eq!(tx.final_status(), None);
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            TransportErrorKind::from_io(&e),
            TransportErrorKind::PortUnreachable
        );
        assert_eq!(
            TransportErrorKind::PortUnreachable.as_str(),
            "port_unreachable"
        );
        assert_eq!(TransportErrorKind::PortUnreachable.source(), "target");
        assert_eq!(TransportErrorKind::SendFailed.source(), "srewatch");
    }

    #[test]
    fn fits_the_bench_budget() {
        // The bench holds one ClientTx plus its own bookkeeping per outstanding transaction
        // within 256 bytes; 144 bytes on x86_64 leaves it over 100.
        assert!(
            super::super::table::entry_size::<ClientTx>() <= 152,
            "{}",
            super::super::table::entry_size::<ClientTx>()
        );
    }
}
