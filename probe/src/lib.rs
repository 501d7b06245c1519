//! # probe: a SIP engine for monitoring and benchmarking
//!
//! Knows nothing of InfluxDB: it yields typed results that the binary turns into points.
//! Data flows one way: **schedule → send → match → classify → report**.
//!
//! ## Layout
//! - [`consts`]: RFC 3261 timers (T1, T2, T4, 64·T1) and protocol constants, in one place.
//! - [`sip`]: the SIP codec: one header-line iterator, one borrowed response reader, one
//!   request reader, one stream framer, one request writer, one error type, one `Transport`.
//! - [`message`]: the prober's requests (OPTIONS, INVITE, ACK, CANCEL, BYE) and the owned copy
//!   of a response it keeps, both through [`sip`]; garbage is a typed error, never a panic.
//! - [`transaction`]: the sans-IO client transaction core shared by the monitor and the bench:
//!   keys (top Via branch + CSeq method), Timer E/A schedules, the slot table whose branches
//!   encode slot and generation (O(1) matching), and the INVITE / non-INVITE state machines.
//! - [`dialog`]: the sans-IO follow-up of an INVITE shared by the monitor and the bench: ACK
//!   of a non-2xx in its transaction, ACK and BYE of a 2xx along its route set (Record-Route
//!   reversed, loose or strict routing, Contact as Request-URI), the BYE's own result, and the
//!   CANCEL with its own Timer E and Timer F.
//! - [`call`]: the sans-IO call core (`handle_response`, `handle_timeout`, `poll_output`):
//!   one INVITE with its CANCEL and BYE transactions finished to the end (ACK of a 2xx and its
//!   retransmissions, BYE and its result, CANCEL, late 2xx); [`call::CallSettings`] says where
//!   the prober and the bench differ.
//! - [`transport`]: one UDP (unconnected with `IP_RECVERR`: ICMP errors are transport errors,
//!   answers from another address are received) or TCP socket per target, TCP framing, and the
//!   checks every received message passes before matching;
//!   garbage, oversized, malformed, foreign, stray, late and duplicate messages are counted.
//! - [`monitor`]: the periodic prober: configuration and typed outputs; `prober` (one task per
//!   target: schedule, send, match, the out-of-service INVITE check with ACK/CANCEL/ACK+BYE) and
//!   `tracker` (sans-IO classification, events, alarms, VIP ownership, per-minute HDR summaries).
//! - [`fast`]: the bench's request templates (rendered by [`sip`]'s writer, patched in place).
//! - [`bench`](mod@bench): the open/closed-loop load generator with HDR latency recording, by
//!   stage: `config`, `schedule`, `worker` (a thread's socket and loop, TCP framed by
//!   [`sip::frame()`]), `engine` (its transactions; responses read by [`sip`]'s one reader),
//!   `timers`, `tally`.
//! - [`responder`]: a stateless UAS for lab tests and for measuring the bench's own ceiling.
//! - [`mmsg`]: batched UDP I/O (recvmmsg/sendmmsg) for the bench and the responder.

pub mod bench;
pub mod call;
pub mod consts;
pub mod dialog;
pub mod fast;
pub mod message;
pub mod mmsg;
pub mod monitor;
pub mod responder;
pub mod sip;
pub mod transaction;
pub mod transport;
