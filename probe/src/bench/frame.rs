//! Framing of SIP responses over TCP.

/// Framing of SIP over a stream: the head ends at CRLFCRLF, the body is Content-Length long.
pub(super) enum Frame {
    Complete(usize),
    Incomplete,
    Invalid,
}

pub(super) fn frame(buf: &[u8]) -> Frame {
    // Keep-alive CRLFs between messages (RFC 5626) are skipped as a message of their own.
    if buf.starts_with(b"\r\n") {
        return Frame::Complete(2);
    }
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > 65536 {
            Frame::Invalid
        } else {
            Frame::Incomplete
        };
    };
    let head = &buf[..end + 2];
    let mut len = 0usize;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = line[colon + 1..].trim_ascii();
            match std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) {
                Some(n) => len = n,
                None => return Frame::Invalid,
            }
        }
    }
    let total = end + 4 + len;
    if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_by_content_length() {
        let m = b"SIP/2.0 200 OK\r\nContent-Length: 4\r\n\r\nabcdSIP/2.0";
        assert!(matches!(frame(m), Frame::Complete(41)));
        assert!(matches!(frame(&m[..40]), Frame::Incomplete));
        assert!(matches!(frame(b"\r\nSIP"), Frame::Complete(2)));
        assert!(matches!(
            frame(b"SIP/2.0 200 OK\r\nl: x\r\n\r\n"),
            Frame::Invalid
        ));
    }
}
