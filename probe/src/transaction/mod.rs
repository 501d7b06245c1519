//! The client transaction core (RFC 3261 section 17.1), shared by the monitor and the bench.
//! Sans I/O: the caller owns the socket and the clock and passes `Instant`s in.
//!
//! - [`key`]: transaction keys (top Via branch + CSeq method), section 17.1.3.
//! - [`timers`]: retransmission schedules, Timer A (INVITE) and Timer E (non-INVITE).
//! - [`table`]: the slab of outstanding transactions; the branch we send encodes slot and
//!   generation, so matching a response is an index plus a comparison.
//! - [`client`]: the INVITE and non-INVITE client state machines: responses and timer ticks in,
//!   [`Action`]s (retransmit, ACK, CANCEL, ACK+BYE, outcome) out.

pub mod client;
pub mod key;
pub mod table;
pub mod timers;

pub use client::{Action, ClientTx, Outcome, Send, State, TransportErrorKind, TxConfig};
pub use key::{Key, Method};
pub use table::{Branch, Lookup, Slot, Table};
pub use timers::Retransmit;
