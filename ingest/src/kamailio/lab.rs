//! Lab responders: small servers that answer `stats.get_statistics` like Kamailio does, from
//! canned replies, over BINRPC (TCP) and JSON-RPC (HTTP/1.1). For the benchmark's fleet of 200
//! targets and for fault-injection tests (errors, bad lines, truncated replies); the real
//! protocol tests run against a real Kamailio.

use super::binrpc;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to send back for the `n`-th request (0-based) of a responder.
pub enum Canned {
    /// These statistic lines (as strings of a reply).
    Lines(Vec<String>),
    /// These exact bytes, then close the connection (faults, truncation, garbage).
    Raw(Vec<u8>),
    /// An RPC error (BINRPC fault packet, JSON-RPC `error` object) with this code and message.
    Fault(i64, String),
    /// These lines, cut `n` bytes before the end of the reply, then close the connection
    /// (HTTP: the `Content-Length` still claims the whole body).
    Truncated(Vec<String>, usize),
    /// Close without answering.
    Close,
}

pub type ReplyFn = Arc<dyn Fn(u64) -> Canned + Send + Sync>;

/// `n` statistic lines like Kamailio's, values derived from `seq` (counters grow with `seq`).
pub fn stat_lines(n: usize, seq: u64) -> Vec<String> {
    const GROUPS: [&str; 6] = ["core", "sl", "tmx", "tcp", "dns", "usrloc"];
    (0..n)
        .map(|i| match i {
            0 => format!("core:rcv_requests = {}", 1_000_000 + seq * 1000),
            1 => format!("core:rcv_requests_options = {}", 500_000 + seq * 100),
            2 => format!("shmem:used_size = {}", 2_718_232 + (seq % 7) * 4096),
            _ => format!(
                "{}:stat_{i:04}_replies = {}",
                GROUPS[i % GROUPS.len()],
                (i as u64) * 1000 + seq * (i as u64 % 5)
            ),
        })
        .collect()
}

/// A whole BINRPC reply packet holding `lines`.
pub fn binrpc_reply(cookie: u32, lines: &[String]) -> Vec<u8> {
    let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 3).sum());
    for l in lines {
        binrpc::push_str(&mut body, l);
    }
    let mut p = Vec::new();
    binrpc::build_packet(&mut p, binrpc::T_REPL, cookie, &body);
    p
}

/// A JSON-RPC reply body holding `lines`.
pub fn jsonrpc_reply(id: u64, lines: &[String]) -> String {
    let v = serde_json::json!({"jsonrpc": "2.0", "result": lines, "id": id});
    v.to_string()
}

/// Serves BINRPC over TCP until the listener fails; every request gets `reply(n)`.
pub async fn serve_binrpc(listener: TcpListener, reply: ReplyFn) {
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    while let Ok((s, _)) = listener.accept().await {
        let reply = reply.clone();
        let counter = counter.clone();
        tokio::spawn(async move {
            let _ = binrpc_conn(s, reply, counter).await;
        });
    }
}

async fn binrpc_conn(
    mut s: TcpStream,
    reply: ReplyFn,
    counter: Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let h = loop {
            match binrpc::check(&buf) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(_) => return Ok(()),
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..h.header_len + h.body_len);
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match reply(n) {
            Canned::Lines(l) => s.write_all(&binrpc_reply(h.cookie, &l)).await?,
            Canned::Fault(code, msg) => {
                let mut body = Vec::new();
                binrpc::push_int(&mut body, code as i32);
                binrpc::push_str(&mut body, &msg);
                let mut p = Vec::new();
                binrpc::build_packet(&mut p, binrpc::T_FAULT, h.cookie, &body);
                s.write_all(&p).await?;
            }
            Canned::Truncated(l, cut) => {
                let p = binrpc_reply(h.cookie, &l);
                s.write_all(&p[..p.len().saturating_sub(cut)]).await?;
                return Ok(());
            }
            Canned::Raw(b) => {
                s.write_all(&b).await?;
                return Ok(());
            }
            Canned::Close => return Ok(()),
        }
    }
}

/// Serves JSON-RPC over HTTP/1.1 (keep-alive) until the listener fails; every request gets
/// `reply(n)`. `Canned::Raw` bytes are sent as the whole HTTP response.
pub async fn serve_jsonrpc(listener: TcpListener, reply: ReplyFn) {
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    while let Ok((s, _)) = listener.accept().await {
        let reply = reply.clone();
        let counter = counter.clone();
        tokio::spawn(async move {
            let _ = http_conn(s, reply, counter).await;
        });
    }
}

async fn http_conn(
    mut s: TcpStream,
    reply: ReplyFn,
    counter: Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        // Headers, then Content-Length bytes of body.
        let (head_end, body_len) = loop {
            if let Some(p) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= p + 4 + len {
                    break (p + 4, len);
                }
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..head_end + body_len);
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match reply(n) {
            Canned::Lines(l) => {
                let body = jsonrpc_reply(n + 1, &l);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                    body.len(),
                    body
                );
                s.write_all(resp.as_bytes()).await?;
            }
            Canned::Fault(code, msg) => {
                let body = serde_json::json!({"jsonrpc": "2.0", "error": {"code": code, "message": msg}, "id": n + 1}).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                    body.len(),
                    body
                );
                s.write_all(resp.as_bytes()).await?;
            }
            Canned::Truncated(l, cut) => {
                let body = jsonrpc_reply(n + 1, &l);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                    body.len(),
                    &body[..body.len().saturating_sub(cut)]
                );
                s.write_all(resp.as_bytes()).await?;
                s.flush().await?;
                return Ok(());
            }
            Canned::Raw(b) => {
                s.write_all(&b).await?;
                return Ok(());
            }
            Canned::Close => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON-RPC client keeps the whole lines of a body cut short.
    #[tokio::test]
    async fn jsonrpc_truncated_body_keeps_lines() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let lines = vec![
            "core:a = 1".to_string(),
            "core:b = 2".to_string(),
            "core:c = 3".to_string(),
        ];
        let body = jsonrpc_reply(1, &lines);
        let cut = body.len() - body.find("core:c").unwrap();
        tokio::spawn(serve_jsonrpc(
            l,
            Arc::new(move |_| Canned::Truncated(lines.clone(), cut)),
        ));
        let mut c = super::super::jsonrpc::Client::new(
            reqwest::Client::new(),
            &format!("http://{addr}/RPC"),
        );
        let mut out = Vec::new();
        let r = c.fetch(&mut out).await;
        assert_eq!(
            r,
            Err(super::super::FetchError::ShortRead),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        let (good, _, r) = super::super::import::read_all(&out);
        assert_eq!(good, [("core:a".to_string(), 1), ("core:b".to_string(), 2)]);
        assert!(r.is_err());
    }
}
