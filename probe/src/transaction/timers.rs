//! Retransmission schedules over unreliable transports (RFC 3261 sections 17.1.1.2, 17.1.2.2).
//!
//! Non-INVITE (Timer E): first retransmission after T1, the interval doubling up to T2.
//! INVITE (Timer A): first after T1, doubling without cap. Both stop at the transaction
//! deadline (Timer F / Timer B, or the shorter probe timeout).

use crate::consts::{T1, T2};
use std::time::Duration;

/// Iterator over the offsets (from the first transmission) at which to retransmit.
#[derive(Debug, Clone)]
pub struct Retransmit {
    next: Duration,
    interval: Duration,
    cap: Option<Duration>,
    deadline: Duration,
}

impl Retransmit {
    /// Timer E for a non-INVITE request that gives up at `deadline`.
    pub fn non_invite(deadline: Duration) -> Self {
        Self::with(T1, Some(T2), deadline)
    }

    /// Timer A for an INVITE that gives up at `deadline`.
    pub fn invite(deadline: Duration) -> Self {
        Self::with(T1, None, deadline)
    }

    /// A schedule with a custom T1 and cap (tests and lab use).
    pub fn with(t1: Duration, cap: Option<Duration>, deadline: Duration) -> Self {
        Retransmit {
            next: t1,
            interval: t1,
            cap,
            deadline,
        }
    }
}

impl Iterator for Retransmit {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        if self.next >= self.deadline || self.interval.is_zero() {
            return None;
        }
        let at = self.next;
        let mut iv = self.interval * 2;
        if let Some(cap) = self.cap {
            iv = iv.min(cap);
        }
        self.interval = iv;
        self.next = at + iv;
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn timer_e_doubles_to_t2() {
        // 500, 1000, 2000, 4000, 4000 ms intervals: sends at 0.5, 1.5, 3.5, 7.5, 11.5, 15.5 ...
        let v: Vec<_> = Retransmit::non_invite(Duration::from_secs(16)).collect();
        assert_eq!(v, ms(&[500, 1500, 3500, 7500, 11500, 15500]));
    }

    #[test]
    fn timer_a_doubles_without_cap() {
        let v: Vec<_> = Retransmit::invite(Duration::from_secs(32)).collect();
        assert_eq!(v, ms(&[500, 1500, 3500, 7500, 15500, 31500]));
    }

    #[test]
    fn probe_timeout_of_two_seconds() {
        let v: Vec<_> = Retransmit::non_invite(Duration::from_secs(2)).collect();
        assert_eq!(v, ms(&[500, 1500]));
    }
}
