//! The call core driven with byte messages and paused time (instants made up, no clock).

use super::*;
use crate::consts::T1;
use crate::sip::read_response;
use std::time::Duration;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A response of `status` to `method` with CSeq number 1 (2 for the BYE).
fn bytes(status: u16, method: &str, to_tag: bool) -> Vec<u8> {
    let reason = match status {
        180 => "Ringing",
        200 => "OK",
        487 => "Request Terminated",
        _ => "Other",
    };
    let cseq = if method == "BYE" { 2 } else { 1 };
    let tag = if to_tag { ";tag=uas1" } else { "" };
    format!(
        "SIP/2.0 {status} {reason}\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKcall1\r\n\
         From: <sip:probe@127.0.0.1>;tag=uac1\r\n\
         To: <sip:uas@127.0.0.1>{tag}\r\n\
         Call-ID: call-1@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:uas@127.0.0.1:5070>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

struct Run {
    call: Call,
    follow: FollowConfig,
    t0: Instant,
}

impl Run {
    fn new(settings: CallSettings) -> Run {
        let t0 = Instant::now();
        let tx = TxConfig::new(ms(2000), false);
        let follow = FollowConfig::new(T1, ms(2000), false);
        Run {
            call: Call::new(settings, &tx, t0),
            follow,
            t0,
        }
    }

    /// Hands the bytes to the core at `at` ms and returns what it asks for.
    fn recv(&mut self, at: u64, status: u16, method: &str) -> Vec<Output> {
        let b = bytes(status, method, status > 100);
        let r = read_response(&b).expect("a valid response");
        self.call
            .handle_response(&r, &self.follow, self.t0 + ms(at));
        self.drain()
    }

    /// Ticks at every instant the core asks for up to `until` ms; the outputs with their ms.
    fn tick_until(&mut self, until: u64) -> Vec<(u64, Output)> {
        let mut seen = Vec::new();
        loop {
            match self.call.poll_output() {
                Output::Timeout(Some(t)) if t <= self.t0 + ms(until) => {
                    self.call.handle_timeout(&self.follow, t);
                    let at = t.duration_since(self.t0).as_millis() as u64;
                    seen.extend(self.drain().into_iter().map(|o| (at, o)));
                }
                Output::Timeout(_) => return seen,
                o => seen.push((u64::MAX, o)),
            }
        }
    }

    fn drain(&mut self) -> Vec<Output> {
        let mut v = Vec::new();
        loop {
            match self.call.poll_output() {
                Output::Timeout(_) => return v,
                o => v.push(o),
            }
        }
    }

    fn over(&mut self) -> bool {
        self.call.poll_output() == Output::Timeout(None)
    }
}

fn final_(status: u16, rtt: u64) -> Outcome {
    Outcome::Final {
        status,
        rtt: ms(rtt),
        retransmits: 0,
    }
}

const ACK: Output = Output::Transmit(Msg::Ack2xx(AckBranch::Fresh), Dest::NextHop);
const BYE: Output = Output::Transmit(Msg::Bye, Dest::NextHop);

#[test]
fn retransmitted_2xx_is_acked_again_along_the_route_set_and_the_result_waits_for_the_bye() {
    let mut r = Run::new(CallSettings::PROBER);
    assert_eq!(r.recv(0, 100, "INVITE"), vec![]);
    assert_eq!(r.recv(40, 200, "INVITE"), vec![ACK, BYE]);
    assert_eq!(
        r.recv(540, 200, "INVITE"),
        vec![Output::Transmit(Msg::AckAgain, Dest::NextHop)]
    );
    assert_eq!(
        r.recv(1540, 200, "INVITE"),
        vec![Output::Transmit(Msg::AckAgain, Dest::NextHop)]
    );
    assert_eq!(r.call.invite().map(ClientTx::duplicates), Some(2));
    assert_eq!(
        r.recv(1600, 200, "BYE"),
        vec![Output::Accepted {
            invite: final_(200, 40),
            bye: final_(200, 1560),
            result: ByeResult::HungUp { status: 200 },
        }]
    );
    // The INVITE is kept for 64·T1 after its 2xx (Timer M), then the call is over.
    assert_eq!(r.tick_until(40 + 32_000 - 1), vec![]);
    assert!(!r.over());
    assert_eq!(r.tick_until(40 + 32_000), vec![]);
    assert!(r.over());
}

#[test]
fn bench_settings_report_at_once_and_count_a_retransmitted_2xx_late() {
    let mut r = Run::new(CallSettings::BENCH);
    assert_eq!(
        r.recv(30, 200, "INVITE"),
        vec![
            Output::Transmit(Msg::Ack2xx(AckBranch::InvitePlusA), Dest::Target),
            Output::Transmit(Msg::Bye, Dest::Target),
            Output::Invite(final_(200, 30)),
        ]
    );
    assert_eq!(
        r.recv(530, 200, "INVITE"),
        vec![Output::Late { status: 200 }]
    );
    assert_eq!(
        r.recv(600, 200, "BYE"),
        vec![Output::Bye(
            final_(200, 570),
            ByeResult::HungUp { status: 200 }
        )]
    );
    assert!(r.over());
}

#[test]
fn lost_bye_is_retransmitted_on_timer_e_and_ends_without_answer() {
    let mut r = Run::new(CallSettings::PROBER);
    assert_eq!(r.recv(100, 200, "INVITE"), vec![ACK, BYE]);
    let again = Output::Transmit(Msg::ByeAgain, Dest::NextHop);
    // Timer E from the BYE's first send at 100 ms: 500 ms, then 1 s; the 2 s timeout at 2100.
    assert_eq!(
        r.tick_until(2100),
        vec![
            (600, again),
            (1600, again),
            (
                2100,
                Output::Accepted {
                    invite: final_(200, 100),
                    bye: Outcome::Timeout {
                        retransmits: 2,
                        provisional: None,
                    },
                    result: ByeResult::NoAnswer,
                }
            ),
        ]
    );
}

#[test]
fn bye_refused_is_reported_with_the_invite() {
    let mut r = Run::new(CallSettings::PROBER);
    r.recv(100, 200, "INVITE");
    assert_eq!(
        r.recv(150, 481, "BYE"),
        vec![Output::Accepted {
            invite: final_(200, 100),
            bye: final_(481, 50),
            result: ByeResult::Refused { status: 481 },
        }]
    );
}

#[test]
fn cancel_racing_a_2xx_acks_and_hangs_up_the_late_2xx() {
    let mut r = Run::new(CallSettings::PROBER);
    assert_eq!(r.recv(20, 180, "INVITE"), vec![]);
    // Timer A ran at 500 ms until the 180; the deadline at 2 s cancels.
    assert_eq!(
        r.tick_until(2000),
        vec![
            (2000, Output::Transmit(Msg::Cancel, Dest::Target)),
            (
                2000,
                Output::Invite(Outcome::Timeout {
                    retransmits: 0,
                    provisional: Some(180),
                })
            ),
        ]
    );
    // The 2xx crosses the CANCEL: it is late, ACKed and hung up.
    assert_eq!(
        r.recv(2010, 200, "INVITE"),
        vec![Output::Late { status: 200 }, ACK, BYE]
    );
    assert_eq!(
        r.recv(2020, 200, "CANCEL"),
        vec![Output::Cancel(CancelEvent::Answered(200))]
    );
    // Nothing held: the INVITE's result went out at its deadline.
    assert_eq!(
        r.recv(2030, 200, "BYE"),
        vec![Output::Bye(
            final_(200, 20),
            ByeResult::HungUp { status: 200 }
        )]
    );
}

#[test]
fn late_2xx_after_the_cancels_487_is_acked_and_hung_up() {
    let mut r = Run::new(CallSettings::PROBER);
    r.recv(20, 180, "INVITE");
    r.tick_until(2000);
    assert_eq!(
        r.recv(2010, 200, "CANCEL"),
        vec![Output::Cancel(CancelEvent::Answered(200))]
    );
    assert_eq!(
        r.recv(2020, 487, "INVITE"),
        vec![
            Output::Late { status: 487 },
            Output::Transmit(Msg::AckInTx, Dest::Target),
        ]
    );
    assert_eq!(
        r.recv(2030, 487, "INVITE"),
        vec![Output::Transmit(Msg::AckInTx, Dest::Target)]
    );
    assert_eq!(
        r.recv(2040, 200, "INVITE"),
        vec![Output::Late { status: 200 }, ACK, BYE]
    );
    assert_eq!(
        r.recv(2050, 200, "INVITE"),
        vec![Output::Transmit(Msg::AckAgain, Dest::NextHop)]
    );
    assert_eq!(
        r.recv(2060, 200, "BYE"),
        vec![Output::Bye(
            final_(200, 20),
            ByeResult::HungUp { status: 200 }
        )]
    );
}

#[test]
fn unanswered_cancel_is_retransmitted_and_fails_at_its_timer_f() {
    let mut r = Run::new(CallSettings::PROBER);
    r.recv(20, 180, "INVITE");
    r.tick_until(2000);
    let again = Output::Transmit(Msg::CancelAgain, Dest::Target);
    let seen = r.tick_until(2000 + 32_000);
    let sends: Vec<u64> = seen
        .iter()
        .filter(|(_, o)| *o == again)
        .map(|(t, _)| *t)
        .collect();
    // Timer E from 2 s: +0.5, +1.5, +3.5, +7.5, then every T2 (4 s) until Timer F (+32 s).
    assert_eq!(
        sends,
        vec![2500, 3500, 5500, 9500, 13500, 17500, 21500, 25500, 29500, 33500]
    );
    assert!(seen.contains(&(34_000, Output::Cancel(CancelEvent::Failed))));
}

#[test]
fn non_2xx_final_is_acked_in_its_transaction_and_reported_at_once() {
    let mut r = Run::new(CallSettings::PROBER);
    assert_eq!(
        r.recv(50, 486, "INVITE"),
        vec![
            Output::Transmit(Msg::AckInTx, Dest::Target),
            Output::Invite(final_(486, 50)),
        ]
    );
    assert_eq!(
        r.recv(60, 486, "INVITE"),
        vec![Output::Transmit(Msg::AckInTx, Dest::Target)]
    );
}

#[test]
fn unanswered_invite_is_retransmitted_on_timer_a_and_times_out() {
    let mut r = Run::new(CallSettings::PROBER);
    let again = Output::Transmit(Msg::InviteAgain, Dest::Target);
    assert_eq!(
        r.tick_until(2000),
        vec![
            (500, again),
            (1500, again),
            (
                2000,
                Output::Invite(Outcome::Timeout {
                    retransmits: 2,
                    provisional: None,
                })
            ),
        ]
    );
}

/// A call in the bench's table costs little more than its INVITE transaction: CANCEL, BYE and
/// waiting outputs are boxed, the timers of CANCEL and BYE are the driver's.
#[test]
fn a_call_is_its_invite_transaction_and_one_pointer() {
    assert_eq!(
        std::mem::size_of::<Call>(),
        std::mem::size_of::<ClientTx>() + 16
    );
}

#[test]
fn bench_settings_drop_the_invite_at_a_late_final_too() {
    let mut r = Run::new(CallSettings::BENCH);
    // No answer by the 2 s timeout (Timer A retransmissions before it).
    let seen = r.tick_until(2000);
    assert_eq!(
        seen.last(),
        Some(&(
            2000,
            Output::Invite(Outcome::Timeout {
                retransmits: 2,
                provisional: None,
            })
        )),
        "{seen:?}"
    );
    assert!(!r.over(), "kept for a late final");
    // A late 503: late, ACKed in its transaction; the call is then over.
    assert_eq!(
        r.recv(2100, 503, "INVITE"),
        vec![
            Output::Late { status: 503 },
            Output::Transmit(Msg::AckInTx, Dest::Target)
        ]
    );
    assert!(r.over());
    // Its retransmission (should the driver still hold the call) is only late.
    assert_eq!(
        r.recv(2200, 503, "INVITE"),
        vec![Output::Late { status: 503 }]
    );
}
