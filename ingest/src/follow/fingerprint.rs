//! The content fingerprint: a 64-bit hash of a file's whole content, so a snapshot is new
//! exactly when its content differs from the last one handed out (length + hash).

/// The content's hash as [`super::read::read_hashed`] computes it: 64-bit XXH3 of the content, or for a
/// file of [`SPLIT_READ`] bytes or more, of its two halves (read and hashed on two threads).
/// A change of content is missed only on a 64-bit collision, and it runs at memory speed
/// (SipHash, the previous choice, took a fifth of a rewrite's time).
pub(super) fn content_hash(data: &[u8]) -> u64 {
    use xxhash_rust::xxh3::xxh3_64;
    if data.len() >= SPLIT_READ {
        let mid = data.len() / 2;
        join_halves(xxh3_64(&data[..mid]), xxh3_64(&data[mid..]))
    } else {
        xxh3_64(data)
    }
}

pub(super) fn join_halves(first: u64, second: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&second.to_le_bytes(), first)
}

/// A file of at least this many bytes is read in two halves on two threads (copying a
/// 116 MB file out of the page cache and hashing it took 35-45 ms on one core).
pub(super) const SPLIT_READ: usize = 8 << 20;
