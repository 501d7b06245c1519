//! The client transaction core (RFC 3261 section 17.1), shared by the monitor and the bench.
//!
//! - [`key`]: transaction keys (top Via branch + CSeq method), section 17.1.3.
//! - [`timers`]: retransmission schedules, Timer A (INVITE) and Timer E (non-INVITE).

pub mod key;
pub mod timers;

pub use key::Key;
pub use timers::Retransmit;
