//! RFC 3261 timer values and protocol constants (section 17.1.1.1, table 4).

use std::time::Duration;

/// Round-trip time estimate.
pub const T1: Duration = Duration::from_millis(500);
/// Maximum retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// Maximum duration a message will remain in the network.
pub const T4: Duration = Duration::from_secs(5);
/// Timer B / Timer F: transaction timeout, 64·T1.
pub const TIMER_B: Duration = Duration::from_secs(32);
/// Timer F: non-INVITE transaction timeout, 64·T1.
pub const TIMER_F: Duration = TIMER_B;
/// The magic cookie every RFC 3261 branch starts with (section 8.1.1.7).
pub const BRANCH_MAGIC: &str = "z9hG4bK";
/// Max-Forwards on every request we originate (section 8.1.1.6).
pub const MAX_FORWARDS: u32 = 70;
/// Largest datagram we accept; anything longer is counted as oversized and dropped.
pub const MAX_DATAGRAM: usize = 65_535;
/// Largest response the prober accepts (UDP datagram or TCP message); longer ones are counted
/// as oversized and dropped.
pub const MAX_RESPONSE: usize = 16 * 1024;

/// The port of a `sip:` URI without one (RFC 3261 section 19.1.2).
pub const SIP_PORT: u16 = 5060;
