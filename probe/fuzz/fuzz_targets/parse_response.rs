//! Any bytes into the codec (response and request readers, stream framer) and the receive
//! checks: never a panic.
//!
//! Run with `cargo +nightly fuzz run parse_response` from `probe/` (corpus in
//! `probe/fuzz/corpus/parse_response`, also replayed by the normal test suite).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = probe::message::parse_response(data);
    let _ = probe::transport::accept(data, ([127, 0, 0, 1], 5060).into());
    let _ = probe::sip::read_request(data);
    let _ = probe::sip::frame(data, 16 * 1024);
});
