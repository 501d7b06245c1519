//! Any bytes into the codec (response and request readers, stream framer) and the receive
//! checks: never a panic. rsip is the reference oracle: wherever both rsip and the codec read
//! a response, they read the same status, top Via branch, CSeq and Call-ID.
//!
//! Run with `cargo +nightly fuzz run parse_response` from `probe/` (corpus in
//! `probe/fuzz/corpus/parse_response`, also replayed by the normal test suite).
#![no_main]

use libfuzzer_sys::fuzz_target;

type Fields = (u16, String, u32, String, String);

fn oracle(buf: &[u8]) -> Option<Fields> {
    use rsip::headers::{ToTypedHeader, UntypedHeader};
    use rsip::message::HeadersExt;
    let r = rsip::Response::try_from(buf).ok()?;
    let via = r.via_header().ok()?.typed().ok()?;
    let cs = r.cseq_header().ok()?.typed().ok()?;
    Some((
        r.status_code().code(),
        via.branch()?.to_string(),
        cs.seq,
        cs.method.to_string(),
        r.call_id_header().ok()?.value().trim().to_string(),
    ))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = probe::sip::read_response(data) {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let codec = (
            r.status,
            s(r.via.branch),
            r.cseq,
            s(r.cseq_method),
            s(r.call_id),
        );
        if let Some(o) = oracle(data) {
            assert_eq!(codec, o);
        }
    }
    let _ = probe::message::parse_response(data);
    let _ = probe::transport::accept(data, ([127, 0, 0, 1], 5060).into());
    let _ = probe::sip::read_request(data);
    let _ = probe::sip::frame(data, 16 * 1024);
});
