//! One batch delivered: bisection on rejected lines, and cutting lines to fit a batch.

use super::http::{truncate, Answer, Failure, Http, TOO_LARGE_FLOOR};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub(super) fn count_lines(b: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', b).count()
}

/// Byte offset just after the `k`-th newline (`k` ≥ 1).
pub(super) fn after_line(b: &[u8], k: usize) -> usize {
    memchr::memchr_iter(b'\n', b)
        .nth(k - 1)
        .map_or(b.len(), |p| p + 1)
}

/// What became of one batch.
#[derive(Debug, Default)]
pub(super) struct Delivery {
    pub(super) points: u64,
    pub(super) bytes: u64,
    pub(super) rejected: u64,
    /// First rejected line: status, server message, start of the line.
    pub(super) first_reject: Option<(u16, String, String)>,
    /// Lines not delivered (in order) and why.
    pub(super) rest: Option<(Bytes, Failure)>,
}

/// Sends `lines`, bisecting on 400/413/422 until the rejected lines stand alone. Stops at the
/// first failure of another kind and returns the lines not yet delivered.
pub(super) async fn deliver(http: Arc<Http>, bucket: String, lines: Bytes) -> Delivery {
    let mut d = Delivery::default();
    // Adjacent pieces of `lines`, the next to send on top.
    let mut stack = vec![lines.clone()];
    while let Some(piece) = stack.pop() {
        match http.post(&bucket, &piece).await {
            Answer::Accepted => {
                d.points += count_lines(&piece) as u64;
                d.bytes += piece.len() as u64;
            }
            Answer::Reject {
                status: 413,
                message,
                sent,
            } if count_lines(&piece) <= 1 || piece.len() <= TOO_LARGE_FLOOR => {
                http.stats.too_large.fetch_add(1, Relaxed);
                let lines_len = piece.len();
                let f = Failure::TooLarge {
                    sent,
                    lines: lines_len,
                    message,
                };
                d.rest = Some((rest_of(&lines, piece, &stack), f));
                break;
            }
            Answer::Reject {
                status, message, ..
            } => {
                let n = count_lines(&piece);
                if n <= 1 {
                    d.rejected += n as u64;
                    if d.first_reject.is_none() {
                        let mut line =
                            String::from_utf8_lossy(piece.strip_suffix(b"\n").unwrap_or(&piece))
                                .into_owned();
                        truncate(&mut line, 200);
                        d.first_reject = Some((status, message, line));
                    }
                } else {
                    let mid = after_line(&piece, n / 2);
                    stack.push(piece.slice(mid..));
                    stack.push(piece.slice(..mid));
                }
            }
            Answer::Fail(f) => {
                d.rest = Some((rest_of(&lines, piece, &stack), f));
                break;
            }
        }
    }
    d
}

/// The lines not delivered: `piece` and the pieces on `stack`. They are adjacent slices of
/// `lines` ending at its end, so the rest is the tail of `lines` from `piece` on; rebuilt by
/// copying if not.
pub(super) fn rest_of(lines: &Bytes, piece: Bytes, stack: &[Bytes]) -> Bytes {
    let offset = (piece.as_ptr() as usize).wrapping_sub(lines.as_ptr() as usize);
    if stack.is_empty() {
        piece
    } else if offset < lines.len()
        && lines.len() - offset == piece.len() + stack.iter().map(Bytes::len).sum::<usize>()
    {
        lines.slice(offset..)
    } else {
        let mut m = BytesMut::from(&piece[..]);
        for p in stack.iter().rev() {
            m.extend_from_slice(p);
        }
        m.freeze()
    }
}

/// How many whole lines of `b` fit in `room_bytes` and `room_points`: (bytes, lines).
pub(super) fn fit(b: &[u8], room_bytes: usize, room_points: usize) -> (usize, usize) {
    let (mut len, mut pts) = (0, 0);
    if room_points == 0 {
        return (0, 0);
    }
    for nl in memchr::memchr_iter(b'\n', b) {
        if nl + 1 > room_bytes {
            break;
        }
        len = nl + 1;
        pts += 1;
        if pts == room_points {
            break;
        }
    }
    (len, pts)
}
