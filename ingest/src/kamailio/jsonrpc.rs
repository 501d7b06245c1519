//! JSON-RPC 2.0 over HTTP (Kamailio's `xhttp` + `jsonrpcs` modules): the request, and a
//! lenient scanner for the reply.
//!
//! The reply of `stats.get_statistics` with `all` is
//! `{"jsonrpc":"2.0","result":["core:bad_URIs_rcvd = 0", ...],"id":1}`, or
//! `{"jsonrpc":"2.0","error":{"code":500,"message":"..."},"id":1}`.
//!
//! The scanner walks the bytes once, hands every string of `result` to a callback as soon as it
//! is complete (borrowed when it has no escapes, decoded into a reused scratch buffer when it
//! has), and skips everything else. A reply cut short still yields every string that arrived
//! whole: the scanner returns [`ReplyError::Truncated`] only after handing those out.

use super::FetchError;

/// Largest reply body read (as BINRPC's [`super::binrpc::MAX_BODY`]): a longer one is cut
/// there ([`FetchError::TooLarge`]), and the statistics before the cut are used.
pub const MAX_REPLY: usize = super::binrpc::MAX_BODY;

/// The request body for `stats.get_statistics all`.
pub fn request_body(id: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"stats.get_statistics","params":["all"],"id":{id}}}"#)
}

/// What went wrong with a reply. Strings handed out before the error stay valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("reply ends early (truncated) at byte {0}")]
    Truncated(usize),
    #[error("malformed JSON at byte {0}")]
    Malformed(usize),
    #[error("reply has neither `result` nor `error`")]
    NoResult,
}

/// Scans a JSON-RPC reply; `on_line` gets each string of the `result` array, `on_other` is
/// called once per element of `result` that is not a string. `scratch` is reused for strings
/// with escapes.
pub fn scan_reply(
    body: &[u8],
    scratch: &mut Vec<u8>,
    on_line: &mut dyn FnMut(&[u8]),
    on_other: &mut dyn FnMut(),
) -> Result<(), ReplyError> {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
    s.expect(b'{')?;
    let mut seen_result = false;
    let mut rpc_error = None;
    s.ws();
    if s.peek()? == b'}' {
        return Err(ReplyError::NoResult);
    }
    loop {
        s.ws();
        let key_is = {
            let k = s.string(scratch)?;
            match k {
                b"result" => 1,
                b"error" => 2,
                _ => 0,
            }
        };
        s.ws();
        s.expect(b':')?;
        s.ws();
        match key_is {
            1 if s.peek()? == b'[' => {
                seen_result = true;
                s.i += 1;
                s.ws();
                if s.peek()? == b']' {
                    s.i += 1;
                } else {
                    loop {
                        s.ws();
                        if s.peek()? == b'"' {
                            let line = s.string(scratch)?;
                            on_line(line);
                        } else {
                            s.skip_value()?;
                            on_other();
                        }
                        s.ws();
                        match s.next()? {
                            b',' => continue,
                            b']' => break,
                            _ => return Err(ReplyError::Malformed(s.i - 1)),
                        }
                    }
                }
            }
            1 => {
                // `result` that is not an array: an answer to some other method.
                seen_result = true;
                s.skip_value()?;
                on_other();
            }
            2 if s.peek()? == b'{' => rpc_error = Some(s.error_object(scratch)?),
            _ => s.skip_value()?,
        }
        s.ws();
        match s.next()? {
            b',' => continue,
            b'}' => break,
            _ => return Err(ReplyError::Malformed(s.i - 1)),
        }
    }
    if let Some(e) = rpc_error {
        return Err(e);
    }
    if !seen_result {
        return Err(ReplyError::NoResult);
    }
    Ok(())
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Result<u8, ReplyError> {
        self.b
            .get(self.i)
            .copied()
            .ok_or(ReplyError::Truncated(self.i))
    }

    fn next(&mut self) -> Result<u8, ReplyError> {
        let c = self.peek()?;
        self.i += 1;
        Ok(c)
    }

    fn expect(&mut self, c: u8) -> Result<(), ReplyError> {
        if self.next()? != c {
            return Err(ReplyError::Malformed(self.i - 1));
        }
        Ok(())
    }

    /// A string at the cursor: borrowed from the input when it has no escape, else decoded
    /// into `scratch`.
    fn string<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Result<&'s [u8], ReplyError>
    where
        'a: 's,
    {
        self.expect(b'"')?;
        let start = self.i;
        let rest = &self.b[start..];
        match memchr::memchr2(b'"', b'\\', rest) {
            None => Err(ReplyError::Truncated(self.b.len())),
            Some(p) if rest[p] == b'"' => {
                self.i = start + p + 1;
                Ok(&self.b[start..start + p])
            }
            Some(p) => {
                scratch.clear();
                scratch.extend_from_slice(&rest[..p]);
                self.i = start + p;
                loop {
                    let c = self.next()?;
                    match c {
                        b'"' => return Ok(&scratch[..]),
                        b'\\' => {
                            let e = self.next()?;
                            match e {
                                b'"' | b'\\' | b'/' => scratch.push(e),
                                b'b' => scratch.push(8),
                                b'f' => scratch.push(12),
                                b'n' => scratch.push(b'\n'),
                                b'r' => scratch.push(b'\r'),
                                b't' => scratch.push(b'\t'),
                                b'u' => {
                                    let mut cp = self.hex4()?;
                                    if (0xD800..0xDC00).contains(&cp)
                                        && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                                    {
                                        self.i += 2;
                                        let lo = self.hex4()?;
                                        if (0xDC00..0xE000).contains(&lo) {
                                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                        }
                                    }
                                    let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                                    let mut tmp = [0u8; 4];
                                    scratch.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                                }
                                _ => return Err(ReplyError::Malformed(self.i - 1)),
                            }
                        }
                        c if c < 0x20 => return Err(ReplyError::Malformed(self.i - 1)),
                        c => scratch.push(c),
                    }
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ReplyError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = self.next()?;
            let d = (c as char)
                .to_digit(16)
                .ok_or(ReplyError::Malformed(self.i - 1))?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    /// Skips one JSON value of any kind (nesting tracked, strings honoured).
    fn skip_value(&mut self) -> Result<(), ReplyError> {
        let mut depth = 0usize;
        loop {
            self.ws();
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    loop {
                        let rest = &self.b[self.i..];
                        match memchr::memchr2(b'"', b'\\', rest) {
                            None => return Err(ReplyError::Truncated(self.b.len())),
                            Some(p) if rest[p] == b'"' => {
                                self.i += p + 1;
                                break;
                            }
                            Some(p) => self.i += p + 2,
                        }
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                    continue;
                }
                b'}' | b']' => {
                    if depth == 0 {
                        return Err(ReplyError::Malformed(self.i));
                    }
                    depth -= 1;
                    self.i += 1;
                }
                b',' | b':' if depth > 0 => {
                    self.i += 1;
                    continue;
                }
                c if c == b'-' || c.is_ascii_alphanumeric() => {
                    while self.i < self.b.len()
                        && matches!(self.b[self.i], b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
                    {
                        self.i += 1;
                    }
                    if self.i >= self.b.len() {
                        return Err(ReplyError::Truncated(self.i));
                    }
                }
                _ => return Err(ReplyError::Malformed(self.i)),
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    fn error_object(&mut self, scratch: &mut Vec<u8>) -> Result<ReplyError, ReplyError> {
        self.expect(b'{')?;
        let (mut code, mut message) = (0i64, String::new());
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(ReplyError::Rpc { code, message });
        }
        loop {
            self.ws();
            let which = match self.string(scratch)? {
                b"code" => 1,
                b"message" => 2,
                _ => 0,
            };
            self.ws();
            self.expect(b':')?;
            self.ws();
            match which {
                1 if self.peek()? != b'"' => {
                    let start = self.i;
                    self.skip_value()?;
                    code = super::parse::parse_int(&self.b[start..self.i]).unwrap_or(0);
                }
                2 if self.peek()? == b'"' => {
                    message = String::from_utf8_lossy(self.string(scratch)?).into_owned();
                }
                _ => self.skip_value()?,
            }
            self.ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Ok(ReplyError::Rpc { code, message }),
                _ => return Err(ReplyError::Malformed(self.i - 1)),
            }
        }
    }
}

/// A JSON-RPC client for one target: reuses the HTTP connection (keep-alive) between polls.
pub struct Client {
    http: reqwest::Client,
    url: String,
    id: u64,
}

impl Client {
    pub fn new(http: reqwest::Client, url: &str) -> Client {
        Client {
            http,
            url: url.to_string(),
            id: 0,
        }
    }

    /// Sends `stats.get_statistics all` and returns the raw reply body, at most [`MAX_REPLY`]
    /// bytes of it.
    pub async fn fetch(&mut self, out: &mut Vec<u8>) -> Result<(), FetchError> {
        self.id += 1;
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(request_body(self.id))
            .send()
            .await
            .map_err(|e| FetchError::Io(format!("HTTP request to {}: {e}", self.url)))?;
        let status = resp.status();
        // Chunk by chunk, so that a body cut short still leaves its whole lines in `out`.
        out.clear();
        let mut resp = resp;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) if c.len() > MAX_REPLY - out.len() => {
                    // Cut at the cap; the connection is dropped with the rest unread.
                    let room = MAX_REPLY - out.len();
                    out.extend_from_slice(&c[..room]);
                    return Err(FetchError::TooLarge(MAX_REPLY));
                }
                Ok(Some(c)) => out.extend_from_slice(&c),
                Ok(None) => break,
                Err(_) if !out.is_empty() => return Err(FetchError::ShortRead),
                Err(e) => return Err(FetchError::Io(format!("HTTP body from {}: {e}", self.url))),
            }
        }
        // An error status with a JSON body is a JSON-RPC error the scanner reports.
        if !status.is_success() && out.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(FetchError::Http(status.as_u16()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON-RPC reply is never read whole: against a fault server streaming a 40 MiB reply, the
    /// body is cut at 16 MiB (like BINRPC), the cut is an error of its own, and the whole
    /// statistics before the cut are still there.
    #[tokio::test]
    async fn kamailio_jsonrpc_reply_is_capped() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let line = "\"core:s = 1\",".repeat(1024);
        let total = 40usize << 20;
        let server = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut req = [0u8; 4096];
            let _ = c.read(&mut req).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n{{\"jsonrpc\":\"2.0\",\"result\":["
            );
            c.write_all(head.as_bytes()).await.unwrap();
            let mut sent = 0;
            while sent < total {
                if c.write_all(line.as_bytes()).await.is_err() {
                    return sent;
                }
                sent += line.len();
            }
            sent
        });
        let mut client = Client::new(reqwest::Client::new(), &format!("http://{addr}/RPC"));
        let mut out = Vec::new();
        let r = client.fetch(&mut out).await;
        let max = super::super::binrpc::MAX_BODY;
        assert_eq!(r.map_err(|e| e.as_str()), Err("too_large"));
        assert_eq!(out.len(), max);
        let mut n = 0;
        let _ = scan_reply(&out, &mut Vec::new(), &mut |_| n += 1, &mut || {});
        // `{"jsonrpc":"2.0","result":[` (27 bytes), then 13 bytes a statistic.
        assert_eq!(n, (max - 27 + 1) / 13);
        drop(client);
        let sent = server.await.unwrap();
        assert!(sent < total, "the server could send all {sent} bytes");
    }

    fn scan(body: &[u8]) -> (Vec<String>, usize, Result<(), ReplyError>) {
        let mut lines = Vec::new();
        let mut others = 0;
        let mut scratch = Vec::new();
        let r = scan_reply(
            body,
            &mut scratch,
            &mut |l| lines.push(String::from_utf8(l.to_vec()).unwrap()),
            &mut || others += 1,
        );
        (lines, others, r)
    }

    #[test]
    fn result_strings() {
        let (l, o, r) = scan(
            br#" {"jsonrpc":"2.0","result":["core:a = 1", "sl:b\u0020= 2", 7, {"x":[1,"]"]}, "t:c = \"3\""],"id":8599}"#,
        );
        r.unwrap();
        assert_eq!(l, ["core:a = 1", "sl:b = 2", "t:c = \"3\""]);
        assert_eq!(o, 2);
    }

    #[test]
    fn rpc_error() {
        let (l, _, r) =
            scan(br#"{"jsonrpc":"2.0","error":{"code":500,"message":"Method Not Found"},"id":1}"#);
        assert!(l.is_empty());
        assert_eq!(
            r,
            Err(ReplyError::Rpc {
                code: 500,
                message: "Method Not Found".into()
            })
        );
    }

    #[test]
    fn truncated_keeps_whole_strings() {
        let full = br#"{"jsonrpc":"2.0","result":["core:a = 1","core:b = 2","core:c = 3"],"id":1}"#;
        for cut in 0..full.len() {
            let (l, _, r) = scan(&full[..cut]);
            assert!(r.is_err(), "cut {cut}");
            assert!(
                matches!(r, Err(ReplyError::Truncated(_))),
                "cut {cut}: {r:?}"
            );
            let whole = ["core:a = 1", "core:b = 2", "core:c = 3"];
            assert_eq!(l[..], whole[..l.len()], "cut {cut}");
        }
        let (l, _, r) = scan(full);
        r.unwrap();
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn malformed_and_missing() {
        assert!(matches!(scan(b"<html>").2, Err(ReplyError::Malformed(0))));
        assert_eq!(scan(br#"{"id":1}"#).2, Err(ReplyError::NoResult));
        assert_eq!(scan(br#"{}"#).2, Err(ReplyError::NoResult));
        let (l, _, r) = scan(br#"{"result":["a:b = 1" "c:d = 2"]}"#);
        assert_eq!(l, ["a:b = 1"]);
        assert!(matches!(r, Err(ReplyError::Malformed(_))));
    }

    /// Differential: on well-formed replies the scanner gives exactly serde_json's strings.
    #[test]
    fn agrees_with_serde_json() {
        let samples = [
            "plain = 1",
            "esc\"aped\\ \u{e9} \u{1F680}\n\t",
            "",
            "ctl\u{0001}",
        ];
        let v = serde_json::json!({"jsonrpc":"2.0","id":3,"result": samples});
        let text = serde_json::to_vec(&v).unwrap();
        let (l, o, r) = scan(&text);
        r.unwrap();
        assert_eq!(o, 0);
        assert_eq!(l, samples);
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        assert_eq!(scan(&pretty).0, samples);
    }

    /// Random mutations and cuts of a real reply: never a panic, and the lines handed out
    /// before an error are whole lines of the original.
    #[test]
    fn mutated_replies_do_not_panic() {
        let lines: Vec<String> = (0..40).map(|i| format!("core:s{i} = {i}")).collect();
        let base = serde_json::to_vec(&serde_json::json!({"jsonrpc":"2.0","result": lines,"id":1}))
            .unwrap();
        let mut seed = 0x853c49e6748fea9bu64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"{}[]\",:\\ u0aZ-9";
        let mut scratch = Vec::new();
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..(rnd() % 4) {
                let i = (rnd() as usize) % b.len();
                b[i] = alphabet[(rnd() as usize) % alphabet.len()];
            }
            b.truncate((rnd() as usize) % (b.len() + 1));
            let mut got = Vec::new();
            let _ = scan_reply(&b, &mut scratch, &mut |l| got.push(l.to_vec()), &mut || {});
            assert!(got.len() <= lines.len());
        }
    }
}
