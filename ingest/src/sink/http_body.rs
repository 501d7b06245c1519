//! Bounded reads of what the InfluxDB server sends back, and the redirect policy.
//!
//! An error body is read up to [`ERROR_BODY_MAX`] bytes; the rest is not read (the connection
//! is closed instead of being reused), so a 400 with a body of gigabytes costs 64 KiB of memory
//! and no CPU. A redirect is followed only to the same scheme, host and port: a `307` to
//! another host is returned as it is and the writer logs it (it would otherwise send the data
//! and the token elsewhere without a word).

use bytes::BytesMut;
use reqwest::redirect::{Attempt, Policy};
use reqwest::Url;

/// Bytes of an error body read at most.
pub const ERROR_BODY_MAX: usize = 64 * 1024;

/// Redirects followed in a row at most (same host only).
const REDIRECTS_MAX: usize = 5;

/// An error body as read: its first bytes, and whether the rest was left unread.
pub struct Body {
    pub text: String,
    /// Bytes read before stopping, when the body was longer than the cap.
    pub cut_at: Option<usize>,
    /// The length the server announced (`Content-Length`), if any.
    pub announced: Option<u64>,
}

/// Reads at most `max` bytes of `resp`'s body (then drops it, closing the connection).
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Body {
    let announced = resp.content_length();
    let mut buf = BytesMut::new();
    let mut cut_at = None;
    while let Ok(Some(c)) = resp.chunk().await {
        let room = max - buf.len();
        if c.len() > room {
            buf.extend_from_slice(&c[..room]);
            cut_at = Some(buf.len());
            break;
        }
        buf.extend_from_slice(&c);
        if buf.len() == max {
            // Exactly at the cap: cut unless the server said that was all.
            if announced != Some(max as u64) {
                cut_at = Some(max);
            }
            break;
        }
    }
    Body {
        text: String::from_utf8_lossy(&buf).into_owned(),
        cut_at,
        announced,
    }
}

/// Follows redirects only to `origin`'s scheme, host and port.
pub fn same_origin_redirects(origin: &Url) -> Policy {
    let origin = (
        origin.scheme().to_owned(),
        origin.host_str().map(str::to_owned),
        origin.port_or_known_default(),
    );
    Policy::custom(move |a: Attempt| {
        let u = a.url();
        let same = u.scheme() == origin.0
            && u.host_str().map(str::to_owned) == origin.1
            && u.port_or_known_default() == origin.2;
        if !same {
            a.stop()
        } else if a.previous().len() > REDIRECTS_MAX {
            a.error("too many redirects")
        } else {
            a.follow()
        }
    })
}
