//! Conditions a worker logs the first time only, then just counts.

/// What is logged once per worker.
#[derive(Debug, Clone, Copy)]
pub(super) enum Once {
    /// A datagram that is not a usable SIP response.
    Invalid,
    /// A send that failed.
    Send,
    /// The outstanding limit reached.
    Limit,
    /// An INVITE accepted.
    Accepted,
    /// A 2xx whose route set cannot be followed.
    Route,
    /// A BYE refused or unanswered.
    Bye,
    /// An error reading the socket.
    Socket,
}

/// The conditions logged already.
#[derive(Debug, Default)]
pub(super) struct Logged(u8);

impl Logged {
    /// True the first time `what` happens (log it then), false after.
    #[inline]
    pub(super) fn first(&mut self, what: Once) -> bool {
        let bit = 1u8 << what as u8;
        let first = self.0 & bit == 0;
        self.0 |= bit;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_condition_is_first_once() {
        let mut l = Logged::default();
        assert!(l.first(Once::Invalid));
        assert!(!l.first(Once::Invalid));
        assert!(l.first(Once::Socket));
        assert!(!l.first(Once::Socket));
        assert!(!l.first(Once::Invalid));
    }
}
