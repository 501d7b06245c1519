//! BINRPC, the binary RPC of Kamailio's `ctl` module (what `kamcmd` speaks), written from the
//! protocol description in Kamailio's `src/modules/ctl/binrpc.h`.
//!
//! ## Packet
//! ```text
//!   4 bits   4 bits    4 bits  2b   2b
//! | MAGIC=A | VERS=1 || TYPE  | LL | CL || total_len (LL+1 bytes) || cookie (CL+1 bytes) || body
//! ```
//! Big endian; TYPE 0 request, 1 reply, 3 fault; `total_len` counts the body only.
//!
//! ## Record
//! ```text
//!   1 bit  3 bits  4 bits
//! | S    | size  | type  || [value length, `size` bytes, when S=1] || value
//! ```
//! Types: 0 int (big-endian, minimal bytes), 1 str (NUL-terminated, the length counts the NUL),
//! 2 double (fixed point: int of value*1000), 3 struct, 4 array, 5 avp name (only in structs),
//! 6 bytes. A struct or array starts with `size=0` and ends with S=1, size=0 (`0x83`, `0x84`).
//!
//! A request body is the method name (str) followed by its parameters. The reply of
//! `stats.get_statistics all` is one str record per statistic (`core:rcv_requests = 5`); a fault
//! is an int code and a str message.
//!
//! The parser follows "check before parse": [`check`] says whether a whole packet is in the
//! buffer (and how long it is) before [`scan_reply`] walks its records.

use super::FetchError;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const MAGIC_VERS: u8 = 0xA1;
pub const T_REQ: u8 = 0;
pub const T_REPL: u8 = 1;
pub const T_FAULT: u8 = 3;

pub const REC_INT: u8 = 0;
pub const REC_STR: u8 = 1;
pub const REC_DOUBLE: u8 = 2;
pub const REC_STRUCT: u8 = 3;
pub const REC_ARRAY: u8 = 4;
pub const REC_AVP: u8 = 5;
pub const REC_BYTES: u8 = 6;

/// Largest reply body accepted (a full statistics dump is a few tens of KiB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What is wrong with a packet. Strings handed out before the error stay valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("not a BINRPC packet (first byte {0:#04x})")]
    BadMagic(u8),
    #[error("unexpected packet type {0}")]
    BadType(u8),
    #[error("packet body of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("reply cookie {got:#x} does not match request cookie {want:#x}")]
    Cookie { got: u32, want: u32 },
    #[error("RPC fault {code}: {message}")]
    Fault { code: i64, message: String },
    #[error("record at body byte {0} runs past the end of the packet")]
    Truncated(usize),
    #[error("bad record at body byte {0}")]
    BadRecord(usize),
}

/// Header fields of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub cookie: u32,
    /// Header length in bytes.
    pub header_len: usize,
    /// Body length in bytes.
    pub body_len: usize,
}

/// Minimal big-endian byte count of `v` (0 for 0).
fn int_len(v: u32) -> usize {
    (4 - v.leading_zeros() as usize / 8).min(4)
}

fn push_be(out: &mut Vec<u8>, v: u32, n: usize) {
    for k in (0..n).rev() {
        out.push((v >> (8 * k)) as u8);
    }
}

/// Appends a str record (NUL-terminated).
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    let l = s.len() + 1;
    if l < 8 {
        out.push(((l as u8) << 4) | REC_STR);
    } else {
        let n = int_len(l as u32);
        out.push((((n as u8) | 8) << 4) | REC_STR);
        push_be(out, l as u32, n);
    }
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Appends an int record in its minimal form.
pub fn push_int(out: &mut Vec<u8>, v: i32) {
    let n = int_len(v as u32);
    out.push(((n as u8) << 4) | REC_INT);
    push_be(out, v as u32, n);
}

/// Builds a whole packet (header and body) into `out`.
pub fn build_packet(out: &mut Vec<u8>, kind: u8, cookie: u32, body: &[u8]) {
    let ll = int_len(body.len() as u32).max(1);
    let cl = int_len(cookie).max(1);
    out.clear();
    out.push(MAGIC_VERS);
    out.push((kind << 4) | (((ll - 1) as u8) << 2) | (cl - 1) as u8);
    push_be(out, body.len() as u32, ll);
    push_be(out, cookie, cl);
    out.extend_from_slice(body);
}

/// A request packet calling `method` with string parameters.
pub fn build_request(out: &mut Vec<u8>, cookie: u32, method: &str, params: &[&str]) {
    let mut body = Vec::with_capacity(64);
    push_str(&mut body, method);
    for p in params {
        push_str(&mut body, p);
    }
    build_packet(out, T_REQ, cookie, &body);
}

/// Check before parse: `Ok(None)` while more bytes are needed, `Ok(Some(header))` once a
/// whole packet (`header_len + body_len` bytes) is in `buf`.
pub fn check(buf: &[u8]) -> Result<Option<Header>, PacketError> {
    let h = match header(buf)? {
        None => return Ok(None),
        Some(h) => h,
    };
    if buf.len() < h.header_len + h.body_len {
        return Ok(None);
    }
    Ok(Some(h))
}

/// Reads the header once its bytes are there.
pub fn header(buf: &[u8]) -> Result<Option<Header>, PacketError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] != MAGIC_VERS {
        return Err(PacketError::BadMagic(buf[0]));
    }
    let kind = buf[1] >> 4;
    if !matches!(kind, T_REQ | T_REPL | T_FAULT) {
        return Err(PacketError::BadType(kind));
    }
    let ll = ((buf[1] >> 2) & 3) as usize + 1;
    let cl = (buf[1] & 3) as usize + 1;
    let header_len = 2 + ll + cl;
    if buf.len() < header_len {
        return Ok(None);
    }
    let be = |b: &[u8]| b.iter().fold(0u32, |a, &x| (a << 8) | x as u32);
    let body_len = be(&buf[2..2 + ll]) as usize;
    if body_len > MAX_BODY {
        return Err(PacketError::TooLarge(body_len));
    }
    Ok(Some(Header {
        kind,
        cookie: be(&buf[2 + ll..header_len]),
        header_len,
        body_len,
    }))
}

/// Walks the records of a reply body. Each str record at the top level (not inside a struct) is
/// handed to `on_line` without its NUL; each other value (int, double, bytes, struct member) is
/// counted through `on_other`. A fault packet returns [`PacketError::Fault`].
pub fn scan_reply(
    h: &Header,
    body: &[u8],
    on_line: &mut dyn FnMut(&[u8]),
    on_other: &mut dyn FnMut(),
) -> Result<(), PacketError> {
    if h.kind == T_FAULT {
        return Err(fault(body));
    }
    if h.kind != T_REPL {
        return Err(PacketError::BadType(h.kind));
    }
    let mut i = 0;
    let mut depth = 0usize;
    while i < body.len() {
        let at = i;
        let (typ, end_tag, len, val) = record(body, &mut i)?;
        match typ {
            REC_STRUCT | REC_ARRAY => {
                if end_tag {
                    depth = depth.checked_sub(1).ok_or(PacketError::BadRecord(at))?;
                } else {
                    depth += 1;
                }
                let _ = len;
            }
            REC_STR if depth == 0 => {
                let s = val.strip_suffix(b"\0").unwrap_or(val);
                on_line(s);
            }
            REC_AVP => {} // a struct member's name; its value follows as its own record
            REC_INT | REC_STR | REC_DOUBLE | REC_BYTES => on_other(),
            _ => return Err(PacketError::BadRecord(at)),
        }
    }
    Ok(())
}

/// One record at `*i`: (type, end tag, value length, value bytes); advances `*i`.
fn record<'b>(body: &'b [u8], i: &mut usize) -> Result<(u8, bool, usize, &'b [u8]), PacketError> {
    let at = *i;
    let b = body[at];
    let typ = b & 0x0f;
    let mut len = (b >> 4) as usize;
    let mut p = at + 1;
    let end_tag = len & 8 != 0;
    if end_tag {
        let n = len & 7;
        if n > 4 {
            return Err(PacketError::BadRecord(at));
        }
        if p + n > body.len() {
            return Err(PacketError::Truncated(at));
        }
        len = body[p..p + n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | x as usize);
        p += n;
    }
    if p + len > body.len() {
        return Err(PacketError::Truncated(at));
    }
    *i = p + len;
    Ok((typ, end_tag && len == 0, len, &body[p..p + len]))
}

fn read_int(v: &[u8]) -> i64 {
    // Up to 4 bytes: a C `int`, so a 4-byte value is signed.
    let u = v.iter().fold(0u32, |a, &x| (a << 8) | x as u32);
    if v.len() >= 4 {
        u as i32 as i64
    } else {
        u as i64
    }
}

fn fault(body: &[u8]) -> PacketError {
    let mut i = 0;
    let mut code = 0;
    let mut message = String::new();
    while i < body.len() {
        let Ok((typ, _, _, val)) = record(body, &mut i) else {
            break;
        };
        match typ {
            REC_INT => code = read_int(val),
            REC_STR | REC_BYTES if message.is_empty() => {
                message =
                    String::from_utf8_lossy(val.strip_suffix(b"\0").unwrap_or(val)).into_owned()
            }
            _ => {}
        }
    }
    PacketError::Fault { code, message }
}

/// Where the `ctl` module listens: `unix:/run/kamailio/kamailio_ctl` (stream),
/// `tcp:HOST:PORT` or `udp:HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp(String),
    Udp(String),
}

impl Endpoint {
    pub fn parse(s: &str) -> Option<Endpoint> {
        if let Some(p) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("unixs:")) {
            return (!p.is_empty()).then(|| Endpoint::Unix(p.into()));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            return a.rsplit_once(':').and_then(|(h, p)| {
                (!h.is_empty() && p.parse::<u16>().is_ok()).then(|| Endpoint::Tcp(a.into()))
            });
        }
        if let Some(a) = s.strip_prefix("udp:") {
            return a.rsplit_once(':').and_then(|(h, p)| {
                (!h.is_empty() && p.parse::<u16>().is_ok()).then(|| Endpoint::Udp(a.into()))
            });
        }
        None
    }
}

/// A BINRPC client for one target. A new stream connection per poll (the ctl module closes idle
/// ones, and a poll every few seconds does not need more); buffers are reused.
pub struct Client {
    ep: Endpoint,
    cookie: u32,
    req: Vec<u8>,
}

impl Client {
    pub fn new(ep: Endpoint) -> Client {
        Client {
            ep,
            cookie: std::process::id().wrapping_mul(7919),
            req: Vec::with_capacity(64),
        }
    }

    /// Sends `stats.get_statistics all`; on success `out` holds one whole packet. A stream that
    /// closes early leaves the bytes that came in `out` and returns `FetchError::ShortRead`, so the caller
    /// can still use every whole record.
    pub async fn fetch(&mut self, out: &mut Vec<u8>) -> Result<Header, FetchError> {
        self.cookie = self.cookie.wrapping_add(1);
        build_request(&mut self.req, self.cookie, "stats.get_statistics", &["all"]);
        out.clear();
        let r = self.exchange(out).await;
        let cookie_ok = |h: &Header| {
            if h.cookie == self.cookie {
                Ok(())
            } else {
                Err(FetchError::Packet(PacketError::Cookie {
                    got: h.cookie,
                    want: self.cookie,
                }))
            }
        };
        match r {
            Ok(h) => cookie_ok(&h).map(|_| h),
            // Part of a reply: still ours only if the cookie matches.
            Err(FetchError::ShortRead) => match header(out) {
                Ok(Some(h)) => cookie_ok(&h).and(Err(FetchError::ShortRead)),
                _ => Err(FetchError::ShortRead),
            },
            Err(e) => Err(e),
        }
    }

    async fn exchange(&mut self, out: &mut Vec<u8>) -> Result<Header, FetchError> {
        let h = match &self.ep {
            Endpoint::Unix(p) => {
                let mut s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| FetchError::Io(format!("connect {}: {e}", p.display())))?;
                s.write_all(&self.req)
                    .await
                    .map_err(|e| FetchError::Io(format!("send: {e}")))?;
                read_packet(&mut s, out).await?
            }
            Endpoint::Tcp(a) => {
                let mut s = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(|e| FetchError::Io(format!("connect {a}: {e}")))?;
                let _ = s.set_nodelay(true);
                s.write_all(&self.req)
                    .await
                    .map_err(|e| FetchError::Io(format!("send: {e}")))?;
                read_packet(&mut s, out).await?
            }
            Endpoint::Udp(a) => {
                let s = tokio::net::UdpSocket::bind(if a.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .await
                .map_err(|e| FetchError::Io(format!("bind: {e}")))?;
                s.connect(a.as_str())
                    .await
                    .map_err(|e| FetchError::Io(format!("connect {a}: {e}")))?;
                s.send(&self.req)
                    .await
                    .map_err(|e| FetchError::Io(format!("send: {e}")))?;
                out.resize(65536, 0);
                let n = s
                    .recv(out)
                    .await
                    .map_err(|e| FetchError::Io(format!("recv: {e}")))?;
                out.truncate(n);
                match check(out).map_err(FetchError::Packet)? {
                    Some(h) => h,
                    None => return Err(FetchError::Packet(PacketError::Truncated(out.len()))),
                }
            }
        };
        Ok(h)
    }
}

/// Reads until one whole packet is in `out`. A stream that ends early returns
/// `FetchError::ShortRead` with what arrived left in `out`.
async fn read_packet<S: AsyncReadExt + Unpin>(
    s: &mut S,
    out: &mut Vec<u8>,
) -> Result<Header, FetchError> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(h) = check(out).map_err(FetchError::Packet)? {
            out.truncate(h.header_len + h.body_len);
            return Ok(h);
        }
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| FetchError::Io(format!("recv: {e}")))?;
        if n == 0 {
            return Err(FetchError::ShortRead);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Default wait for a reply, used by tools outside the poller.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(lines: &[&str]) -> Vec<u8> {
        let mut body = Vec::new();
        for l in lines {
            push_str(&mut body, l);
        }
        let mut p = Vec::new();
        build_packet(&mut p, T_REPL, 0x42, &body);
        p
    }

    fn scan(p: &[u8]) -> (Vec<String>, usize, Result<(), PacketError>) {
        let mut lines = Vec::new();
        let mut other = 0;
        let r = match check(p) {
            Ok(Some(h)) => scan_reply(
                &h,
                &p[h.header_len..h.header_len + h.body_len],
                &mut |l| lines.push(String::from_utf8_lossy(l).into_owned()),
                &mut || other += 1,
            ),
            Ok(None) => Err(PacketError::Truncated(p.len())),
            Err(e) => Err(e),
        };
        (lines, other, r)
    }

    /// The byte layouts given as examples in binrpc.h.
    #[test]
    fn header_file_examples() {
        let mut b = Vec::new();
        push_int(&mut b, 0x1234);
        assert_eq!(b, [0x20, 0x12, 0x34]);
        b.clear();
        push_int(&mut b, 7);
        assert_eq!(b, [0x10, 0x07]);
        b.clear();
        push_int(&mut b, 0);
        assert_eq!(b, [0x00]);
        b.clear();
        push_str(&mut b, "abcdef");
        assert_eq!(b, b"\x71abcdef\x00");
        b.clear();
        push_str(&mut b, "abcdefhij");
        assert_eq!(b, b"\x91\x0Aabcdefhij\x00");
        b.clear();
        push_str(&mut b, "");
        assert_eq!(b, [0x11, 0x00]);
        // struct{ intval: int 3, s: str "abc" } as in the header's example.
        let s = b"\x03\x75intval\x00\x10\x03\x25s\x00\x41abc\x00\x83";
        let mut p = Vec::new();
        build_packet(&mut p, T_REPL, 1, s);
        let (l, o, r) = scan(&p);
        r.unwrap();
        assert!(l.is_empty());
        assert_eq!(o, 2);
    }

    /// The bytes a real Kamailio 5.6 sent (captured over the ctl TCP socket).
    #[test]
    fn captured_kamailio_packets() {
        let start = b"\xa1\x14\x0f\x96\x42\x91\x17core:bad_URIs_rcvd = 0\x00";
        let h = header(start).unwrap().unwrap();
        assert_eq!(
            h,
            Header {
                kind: T_REPL,
                cookie: 0x42,
                header_len: 5,
                body_len: 0x0f96
            }
        );
        let fault_pkt = b"\xa10$B \x01\xf4\x91\x1fcommand stats.nosuch not found\x00";
        assert_eq!(
            scan(fault_pkt).2,
            Err(PacketError::Fault {
                code: 500,
                message: "command stats.nosuch not found".into()
            })
        );
    }

    #[test]
    fn request_layout() {
        let mut p = Vec::new();
        build_request(&mut p, 0x42, "stats.get_statistics", &["all"]);
        let mut want = vec![0xA1, 0x00, 28, 0x42, 0x91, 21];
        want.extend_from_slice(b"stats.get_statistics\0");
        want.extend_from_slice(b"\x41all\0");
        assert_eq!(p, want);
        // A body of 300 bytes needs a 2-byte length: LL=1.
        let long = "x".repeat(290);
        build_request(&mut p, 0x1_0000, &long, &[]);
        assert_eq!(p[1], (1 << 2) | 2);
        assert_eq!(check(&p).unwrap().unwrap().body_len, 294);
    }

    #[test]
    fn lines_and_truncation() {
        let p = reply(&["core:a = 1", "sl:200_replies = 22", "x:y = 3"]);
        let (l, o, r) = scan(&p);
        r.unwrap();
        assert_eq!(l, ["core:a = 1", "sl:200_replies = 22", "x:y = 3"]);
        assert_eq!(o, 0);
        for cut in 0..p.len() {
            assert_eq!(check(&p[..cut]), Ok(None), "cut {cut}");
        }
        // A header that claims more than arrived: the whole records before the cut are usable.
        let h = header(&p).unwrap().unwrap();
        let body = &p[h.header_len..p.len() - 3];
        let mut got = Vec::new();
        let r = scan_reply(&h, body, &mut |l| got.push(l.to_vec()), &mut || {});
        assert_eq!(got.len(), 2);
        assert!(matches!(r, Err(PacketError::Truncated(_))));
    }

    #[test]
    fn bad_packets_do_not_panic() {
        assert_eq!(check(b"\x00\x00"), Err(PacketError::BadMagic(0)));
        assert_eq!(check(b"\xa1\x20\x00\x00"), Err(PacketError::BadType(2)));
        assert_eq!(
            check(b"\xa1\x1c\xff\xff\xff\xff\x01"),
            Err(PacketError::TooLarge(0xffff_ffff))
        );
        // Unbalanced end tag, bad record type, oversize length-of-length.
        for body in [&b"\x84"[..], b"\x0f", b"\xf1\x01\x02"] {
            let mut p = Vec::new();
            build_packet(&mut p, T_REPL, 1, body);
            assert!(scan(&p).2.is_err(), "{body:?}");
        }
        // Random bytes: never a panic.
        let mut seed = 0x9E3779B97F4A7C15u64;
        for n in 0..20000usize {
            let mut body = Vec::new();
            for _ in 0..(n % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                body.push(seed as u8);
            }
            let mut p = Vec::new();
            build_packet(&mut p, if n % 5 == 0 { T_FAULT } else { T_REPL }, 1, &body);
            let _ = scan(&p);
            let _ = scan(&body);
        }
    }

    /// Mutated and cut copies of a real-looking reply (flipped bits, changed bytes, cuts):
    /// never a panic, and a reply whose body is only cut yields a prefix of its lines.
    #[test]
    fn mutated_packets_do_not_panic() {
        let lines: Vec<String> = (0..60)
            .map(|i| format!("core:stat_{i} = {}", i * 977))
            .collect();
        let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
        let base = reply(&refs);
        let mut seed = 0xda3e39cb94b95bdbu64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20000 {
            let mut p = base.clone();
            let mutate = round % 2 == 0;
            if mutate {
                for _ in 0..(1 + rnd() % 3) {
                    let i = (rnd() as usize) % p.len();
                    if rnd() % 2 == 0 {
                        p[i] ^= 1 << (rnd() % 8);
                    } else {
                        p[i] = rnd() as u8;
                    }
                }
            }
            let cut = (rnd() as usize) % (p.len() + 1);
            p.truncate(cut);
            let (got, _, _) = scan(&p);
            if !mutate {
                // A cut packet is never whole (`check` waits), but its body can be scanned:
                // every line handed out is one of the originals, in order.
                if let Ok(Some(h)) = header(&p) {
                    let body = &p[h.header_len.min(p.len())..];
                    let mut out = Vec::new();
                    let _ = scan_reply(&h, body, &mut |l| out.push(l.to_vec()), &mut || {});
                    for (k, l) in out.iter().enumerate() {
                        assert_eq!(l.as_slice(), lines[k].as_bytes());
                    }
                }
                assert!(got.is_empty() || cut == base.len());
            }
        }
    }
}
