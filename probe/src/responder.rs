//! A stateless SIP UAS for lab tests and for measuring the bench's own ceiling.
//!
//! Answers OPTIONS with the chosen status and INVITE with the chosen INVITE status (no
//! provisional response), absorbs ACKs, answers BYE 200 and other methods 501. Requests are
//! read by the codec ([`crate::sip::read_request`]: folded lines, compact forms, any number of
//! Via headers; a body shorter than its Content-Length is not answered). A 2xx to INVITE
//! carries a Contact (the socket's address) and every answer a To tag of its call (a hash of
//! Call-ID and From tag: the same for retransmissions, another for every call). Several
//! threads, each with its own `SO_REUSEPORT` UDP socket on the same address, move datagrams in
//! batches with `recvmmsg`/`sendmmsg`. Optional: a fixed delay before each answer, and
//! dropping every n-th request (deterministic fault injection for tests; ACKs are never
//! dropped).
//!
//! Counters are kept per thread and added to the shared atomics once per batch.

use crate::fast::reason;
use crate::mmsg::{wait_readable, RawAddr, RecvBatch, SendBatch, SendResult};
use crate::sip::build::{to_tag_of, write_response};
use crate::sip::read_request;
use crate::transaction::key::Method;
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const SLOT: usize = 4096;

/// How the responder behaves.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    pub listen: SocketAddr,
    /// Status for OPTIONS.
    pub status: u16,
    /// Status for INVITE (default: the same as `status`).
    pub invite_status: u16,
    /// Wait this long before each answer.
    pub delay: Duration,
    /// Drop every n-th request (OPTIONS/INVITE/other, never ACK) across all threads; 0: never.
    pub drop_every: u64,
    /// Threads (one socket each); 0: one per CPU.
    pub threads: usize,
}

impl ResponderConfig {
    pub fn new(listen: SocketAddr) -> Self {
        ResponderConfig {
            listen,
            status: 200,
            invite_status: 200,
            delay: Duration::ZERO,
            drop_every: 0,
            threads: 0,
        }
    }
}

/// What the responder has seen (totals since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponderStats {
    /// Datagrams received.
    pub received: u64,
    pub options: u64,
    pub invites: u64,
    pub acks: u64,
    /// Requests of other methods (BYE answered 200, the rest 501).
    pub other: u64,
    /// Requests deliberately dropped (`drop_every`).
    pub dropped: u64,
    /// Datagrams that were not a request it could answer (counted, not answered).
    pub invalid: u64,
    /// Responses sent.
    pub answered: u64,
    pub send_errors: u64,
}

#[derive(Default)]
struct Shared {
    received: AtomicU64,
    options: AtomicU64,
    invites: AtomicU64,
    acks: AtomicU64,
    other: AtomicU64,
    dropped: AtomicU64,
    invalid: AtomicU64,
    answered: AtomicU64,
    send_errors: AtomicU64,
    /// Requests seen, for `drop_every`.
    seq: AtomicU64,
}

impl Shared {
    fn add(&self, l: &ResponderStats) {
        let r = Ordering::Relaxed;
        self.received.fetch_add(l.received, r);
        self.options.fetch_add(l.options, r);
        self.invites.fetch_add(l.invites, r);
        self.acks.fetch_add(l.acks, r);
        self.other.fetch_add(l.other, r);
        self.dropped.fetch_add(l.dropped, r);
        self.invalid.fetch_add(l.invalid, r);
        self.answered.fetch_add(l.answered, r);
        self.send_errors.fetch_add(l.send_errors, r);
    }

    fn snapshot(&self) -> ResponderStats {
        let r = Ordering::Relaxed;
        ResponderStats {
            received: self.received.load(r),
            options: self.options.load(r),
            invites: self.invites.load(r),
            acks: self.acks.load(r),
            other: self.other.load(r),
            dropped: self.dropped.load(r),
            invalid: self.invalid.load(r),
            answered: self.answered.load(r),
            send_errors: self.send_errors.load(r),
        }
    }
}

/// A running responder; stops its threads when dropped.
pub struct Responder {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn reuseport_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    crate::mmsg::deep_buffers(&s);
    s.bind(&addr.into())?;
    // Wake up now and then to look at the stop flag.
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s.into())
}

impl Responder {
    /// Binds every socket, then starts the threads. Port 0 picks a free port for all of them.
    pub fn start(cfg: ResponderConfig) -> io::Result<Responder> {
        let threads = if cfg.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.threads
        };
        let first = reuseport_socket(cfg.listen)?;
        let local = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..threads {
            sockets.push(reuseport_socket(local)?);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let mut handles = Vec::new();
        for (i, sock) in sockets.into_iter().enumerate() {
            let (stop, shared, cfg) = (stop.clone(), shared.clone(), cfg.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("responder-{i}"))
                    .spawn(move || serve(sock, cfg, &stop, &shared))?,
            );
        }
        tracing::info!(listen = %local, threads, status = cfg.status,
            invite_status = cfg.invite_status, delay = ?cfg.delay, "Responder listening");
        Ok(Responder {
            local,
            stop,
            shared,
            threads: handles,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> ResponderStats {
        self.shared.snapshot()
    }

    /// Stops the threads and returns the final counts.
    pub fn stop(mut self) -> ResponderStats {
        self.halt();
        self.shared.snapshot()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// An answer waiting for its delay to pass.
struct Delayed {
    due: Instant,
    to: RawAddr,
    bytes: Vec<u8>,
}

fn serve(sock: UdpSocket, cfg: ResponderConfig, stop: &AtomicBool, shared: &Shared) {
    let fd = sock.as_raw_fd();
    let mut rx = RecvBatch::new(BATCH, SLOT);
    let mut tx = SendBatch::new(BATCH);
    let mut res = SendResult::default();
    let mut delayed: VecDeque<Delayed> = VecDeque::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut scratch = Vec::with_capacity(1500);
    let mut logged_invalid = false;
    let mut logged_send = false;
    // The Contact of a 2xx to INVITE (§13.3.1.4): this socket's address; bound to a wildcard
    // address, the host the request was sent to (its Request-URI's) with this socket's port.
    let bound = sock.local_addr().unwrap_or(cfg.listen);
    let fixed_contact = format!("sip:srewatch-responder@{bound}").into_bytes();
    let mut wild_contact = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut local = ResponderStats::default();
        // Send what is due.
        if !cfg.delay.is_zero() {
            let now = Instant::now();
            while delayed.front().is_some_and(|d| d.due <= now) {
                let d = delayed.pop_front().unwrap();
                let slot = tx.next_slot();
                slot.extend_from_slice(&d.bytes);
                tx.commit(Some(&d.to));
                spare.push(d.bytes);
                if tx.is_full() {
                    flush(&mut tx, fd, &mut res, &mut local, &mut logged_send);
                }
            }
            flush(&mut tx, fd, &mut res, &mut local, &mut logged_send);
            let wait = delayed
                .front()
                .map_or(Duration::from_millis(50), |d| {
                    d.due.saturating_duration_since(now)
                })
                .min(Duration::from_millis(50));
            if !wait_readable(fd, wait) {
                shared.add(&local);
                continue;
            }
        }
        let flags = if cfg.delay.is_zero() {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        let n = match rx.recv(fd, flags) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "Responder receive failed");
                std::thread::sleep(Duration::from_millis(10));
                0
            }
        };
        let now = Instant::now();
        for i in 0..n {
            local.received += 1;
            let dgram = rx.get(i);
            let req = match read_request(dgram) {
                Ok(r) if !rx.truncated(i) => r,
                Ok(_) | Err(_) => {
                    local.invalid += 1;
                    if !logged_invalid {
                        logged_invalid = true;
                        tracing::warn!(from = ?rx.addr(i), len = dgram.len(),
                            "Responder ignores a datagram that is not a usable SIP request");
                    }
                    continue;
                }
            };
            let status = match req.method() {
                Some(Method::Ack) => {
                    local.acks += 1;
                    continue;
                }
                Some(Method::Options) => {
                    local.options += 1;
                    cfg.status
                }
                Some(Method::Invite) => {
                    local.invites += 1;
                    cfg.invite_status
                }
                // The hang-up of a call an `invite_status` 2xx "accepted".
                Some(Method::Bye) => {
                    local.other += 1;
                    200
                }
                _ => {
                    local.other += 1;
                    501
                }
            };
            if cfg.drop_every > 0 {
                let k = shared.seq.fetch_add(1, Ordering::Relaxed);
                if k % cfg.drop_every == cfg.drop_every - 1 {
                    local.dropped += 1;
                    continue;
                }
            }
            let tag = to_tag_of(&req);
            let contact = if !(req.method() == Some(Method::Invite) && (200..300).contains(&status))
            {
                None
            } else if bound.ip().is_unspecified() {
                wild_contact.clear();
                wild_contact.extend_from_slice(b"sip:srewatch-responder@");
                wild_contact.extend_from_slice(uri_host(req.uri).unwrap_or(b"127.0.0.1"));
                wild_contact.extend_from_slice(format!(":{}", bound.port()).as_bytes());
                Some(wild_contact.as_slice())
            } else {
                Some(fixed_contact.as_slice())
            };
            if cfg.delay.is_zero() {
                let slot = tx.next_slot();
                write_response(slot, &req, status, reason(status), &tag, contact);
                tx.commit(Some(rx.addr(i)));
            } else {
                write_response(&mut scratch, &req, status, reason(status), &tag, contact);
                let mut bytes = spare.pop().unwrap_or_default();
                bytes.clear();
                bytes.extend_from_slice(&scratch);
                delayed.push_back(Delayed {
                    due: now + cfg.delay,
                    to: *rx.addr(i),
                    bytes,
                });
            }
        }
        flush(&mut tx, fd, &mut res, &mut local, &mut logged_send);
        shared.add(&local);
    }
}

/// The host of a `sip:`/`sips:` Request-URI (an IPv6 reference with its brackets).
fn uri_host(uri: &[u8]) -> Option<&[u8]> {
    let rest = uri
        .strip_prefix(b"sip:")
        .or_else(|| uri.strip_prefix(b"sips:"))?;
    let end = rest
        .iter()
        .position(|&c| matches!(c, b';' | b'?'))
        .unwrap_or(rest.len());
    let hostport = &rest[..end];
    let hostport = match hostport.iter().rposition(|&c| c == b'@') {
        Some(at) => &hostport[at + 1..],
        None => hostport,
    };
    let host = if hostport.starts_with(b"[") {
        &hostport[..=hostport.iter().position(|&c| c == b']')?]
    } else {
        hostport.split(|&c| c == b':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn flush(
    tx: &mut SendBatch,
    fd: i32,
    res: &mut SendResult,
    local: &mut ResponderStats,
    logged: &mut bool,
) {
    if tx.is_empty() {
        return;
    }
    tx.send(fd, res);
    local.answered += res.sent as u64;
    local.send_errors += res.failed.len() as u64;
    if let Some((_, e)) = res.failed.first() {
        if !*logged {
            *logged = true;
            tracing::warn!(error = %e, failed = res.failed.len(), "Responder send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::Template;
    use crate::sip::{read_response, Transport};

    fn exchange(r: &Responder, method: Method, n: u64) -> (UdpSocket, Template, Vec<u16>) {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(r.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let t = Template::new(
            method,
            "sip:127.0.0.1",
            c.local_addr().unwrap(),
            Transport::Udp,
            1,
        );
        let mut out = Vec::new();
        let mut codes = Vec::new();
        let mut buf = [0u8; 2048];
        for i in 0..n {
            let branch = format!("z9hG4bKt-{i:x}-0");
            t.write(&mut out, branch.as_bytes(), i);
            c.send(&out).unwrap();
            if let Ok(len) = c.recv(&mut buf) {
                let resp = read_response(&buf[..len]).unwrap();
                assert_eq!(resp.via.branch, branch.as_bytes());
                codes.push(resp.status);
                if method == Method::Invite {
                    assert!(t.write_ack(&mut out, branch.as_bytes(), i, resp.to));
                    c.send(&out).unwrap();
                }
            }
        }
        (c, t, codes)
    }

    #[test]
    fn answers_options_and_invite_and_absorbs_acks() {
        let mut cfg = ResponderConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.status = 200;
        cfg.invite_status = 503;
        cfg.threads = 2;
        let r = Responder::start(cfg).unwrap();
        let (_, _, codes) = exchange(&r, Method::Options, 3);
        assert_eq!(codes, [200, 200, 200]);
        let (_, _, codes) = exchange(&r, Method::Invite, 2);
        assert_eq!(codes, [503, 503]);
        // Garbage is counted, not answered.
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(b"hello", r.local_addr()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while r.stats().received < 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = r.stop();
        assert_eq!(
            s,
            ResponderStats {
                received: 8,
                options: 3,
                invites: 2,
                acks: 2,
                other: 0,
                dropped: 0,
                invalid: 1,
                answered: 5,
                send_errors: 0,
            }
        );
    }

    #[test]
    fn request_uri_hosts() {
        assert_eq!(
            uri_host(b"sip:u@10.0.0.1:5060;transport=udp"),
            Some(&b"10.0.0.1"[..])
        );
        assert_eq!(uri_host(b"sip:[::1]:5060"), Some(&b"[::1]"[..]));
        assert_eq!(uri_host(b"sips:host.example"), Some(&b"host.example"[..]));
        assert_eq!(uri_host(b"tel:+1"), None);
    }

    #[test]
    fn drops_every_nth_request() {
        let mut cfg = ResponderConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.drop_every = 3;
        cfg.threads = 1;
        let r = Responder::start(cfg).unwrap();
        let (_, _, codes) = exchange(&r, Method::Options, 9);
        assert_eq!(codes.len(), 6);
        let s = r.stop();
        assert_eq!((s.options, s.dropped, s.answered), (9, 3, 6));
    }

    #[test]
    fn delays_answers() {
        let mut cfg = ResponderConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.delay = Duration::from_millis(30);
        cfg.threads = 1;
        let r = Responder::start(cfg).unwrap();
        let start = Instant::now();
        let (_, _, codes) = exchange(&r, Method::Options, 2);
        assert_eq!(codes, [200, 200]);
        assert!(start.elapsed() >= Duration::from_millis(60));
    }
}
