//! Where the RFC 4475 torture messages are read from by the conformance tests.
//!
//! The 49 messages are other people's material and are not kept in this repository. The tests
//! read them byte-exact from the directory named by `SREWATCH_RFC4475_DIR`, else from
//! `shared/reference/rfc4475` beside the checkout (where the workplace lays its shared reference
//! material). `scripts/rfc4475` brings them from the npm registry (`scripts/test` runs it and
//! sets `SREWATCH_RFC4475_REQUIRED`, so that a test that cannot find them fails);
//! `fixtures/sip/rfc4475.md` says where the files come from.

use std::path::PathBuf;

/// What a test prints when the messages are absent.
pub const RFC4475_HINT: &str = "set SREWATCH_RFC4475_DIR to a directory of the RFC 4475 \
    messages as <name>.dat files (scripts/rfc4475 brings them; see fixtures/sip/rfc4475.md)";

/// The directory of the RFC 4475 messages, if it holds `wsinv.dat`.
///
/// # Panics
/// When none does and `SREWATCH_RFC4475_REQUIRED` is set (as `scripts/test` sets it).
pub fn rfc4475_dir() -> Option<PathBuf> {
    let found = find();
    if found.is_none() && std::env::var_os("SREWATCH_RFC4475_REQUIRED").is_some() {
        panic!(
            "RFC 4475 messages not found although SREWATCH_RFC4475_REQUIRED is set: {RFC4475_HINT}"
        );
    }
    found
}

fn find() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SREWATCH_RFC4475_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/rfc4475")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("wsinv.dat").is_file())
}
