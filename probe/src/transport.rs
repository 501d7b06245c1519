//! UDP and TCP transports for one target, and the checks every received message goes through
//! before it may reach a transaction.
//!
//! - [`Endpoint`]: one socket per target. UDP: a socket bound to the configured [`Source`]
//!   (else an ephemeral port of the address the route to the target uses), *not* connected, so that an answer from another
//!   address of the target (a CP listening on `0.0.0.0`) is received and its source reported;
//!   `IP_RECVERR` makes an ICMP port or host unreachable come back as `ECONNREFUSED` /
//!   `EHOSTUNREACH` on the next receive (the error queue is drained), reported as a
//!   [`TransportErrorKind`], never as a status code. TCP:
//!   a connection opened on first send (from the [`Source`], if any) and re-opened after it
//!   closes, framed by the codec's
//!   one framer ([`crate::sip::frame()`]); a stream that cannot be framed is closed.
//! - [`RxStats`]: counts of what was received and ignored (garbage, oversized, malformed,
//!   not ours, stray, late, duplicate, other Call-ID), kept locally and read once per window.
//! - [`accept`]: the pure check of one received message (parse, then the matching rules).

use crate::consts::MAX_RESPONSE;
use crate::message::{check_response, Discard, ParseError, Response, Transport};
use crate::sip::Frame;
use crate::transaction::TransportErrorKind;
use bytes::{Buf, BytesMut};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// The local address and port a probe or the bench sends from (`ADDR`, `ADDR:PORT`, or
/// `[V6ADDR]:PORT`; port 0 or none = any free port): on a multi-homed node, the address of
/// the signalling network. The Via sent-by and the Contact name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(pub SocketAddr);

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Source, String> {
        let a = match (s.parse::<SocketAddr>(), s.parse::<IpAddr>()) {
            (Ok(a), _) => Some(a),
            (_, Ok(ip)) => Some(SocketAddr::new(ip, 0)),
            _ => None,
        };
        if let Some(a) = a {
            if a.ip().is_unspecified() || a.ip().is_multicast() {
                return Err(format!(
                    "{s:?}: one unicast address of this host is needed (the Via and Contact \
                     name it)"
                ));
            }
            return Ok(Source(a));
        }
        Err(format!(
            "{s:?}: expected an IP address with an optional port, e.g. 10.1.2.3, 10.1.2.3:5070 \
             or [2001:db8::1]:5070"
        ))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.port() == 0 {
            write!(f, "{}", self.0.ip())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Source {
    /// Checks that the source can reach `target` (same address family).
    pub fn towards(self, target: SocketAddr) -> io::Result<SocketAddr> {
        if self.0.is_ipv4() != target.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot bind source {self}: not of the address family of {target}"),
            ));
        }
        Ok(self.0)
    }

    /// `e` with the source named, for the target's state or the bench's error.
    pub fn bind_error(self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("cannot bind source {self}: {e}"))
    }
}

/// What was received and ignored, counted locally.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxStats {
    /// Messages received (datagrams or TCP frames).
    pub received: u64,
    /// Not a SIP response at all (including requests sent to us).
    pub garbage: u64,
    /// Longer than [`MAX_RESPONSE`].
    pub oversized: u64,
    /// A SIP response with a missing or malformed header we need.
    pub malformed: u64,
    /// More than one Via or a sent-by we did not write.
    pub not_ours: u64,
    /// A branch no transaction of ours ever had.
    pub stray: u64,
    /// A branch of a transaction that is gone.
    pub late: u64,
    /// A retransmitted final response.
    pub duplicate: u64,
    /// The right branch with another Call-ID.
    pub other_call_id: u64,
    /// Answers to our probes that came from another address than the probed one (matched and
    /// used, not ignored).
    pub source_mismatch: u64,
}

impl RxStats {
    /// Counts a message that [`accept`] refused.
    pub fn count(&mut self, why: Ignored) {
        match why {
            Ignored::Parse(ParseError::Oversized) => self.oversized += 1,
            Ignored::Parse(ParseError::Empty)
            | Ignored::Parse(ParseError::NotSip)
            | Ignored::Parse(ParseError::NotResponse) => self.garbage += 1,
            Ignored::Parse(_) => self.malformed += 1,
            Ignored::Discard(Discard::OtherCallId) => self.other_call_id += 1,
            Ignored::Discard(_) => self.not_ours += 1,
        }
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, o: &RxStats) {
        self.received += o.received;
        self.garbage += o.garbage;
        self.oversized += o.oversized;
        self.malformed += o.malformed;
        self.not_ours += o.not_ours;
        self.stray += o.stray;
        self.late += o.late;
        self.duplicate += o.duplicate;
        self.other_call_id += o.other_call_id;
        self.source_mismatch += o.source_mismatch;
    }

    /// Everything received that was not a first answer to a live transaction.
    pub fn ignored(&self) -> u64 {
        self.garbage
            + self.oversized
            + self.malformed
            + self.not_ours
            + self.stray
            + self.late
            + self.duplicate
            + self.other_call_id
    }
}

/// Why a received message was ignored before transaction matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    Parse(ParseError),
    Discard(Discard),
}

/// Parses `buf` and applies the rules that need only our sent-by.
pub fn accept(buf: &[u8], local: SocketAddr) -> Result<Response, Ignored> {
    if buf.len() > MAX_RESPONSE {
        return Err(Ignored::Parse(ParseError::Oversized));
    }
    let r = crate::sip::read_response(buf).map_err(Ignored::Parse)?;
    check_response(&r, local).map_err(Ignored::Discard)?;
    Ok(Response::of(&r, buf))
}

/// A receive buffer big enough to notice an oversized datagram.
pub fn recv_buffer() -> Vec<u8> {
    vec![0u8; MAX_RESPONSE + 1]
}

enum Conn {
    Udp(UdpSocket),
    Tcp {
        stream: Option<TcpStream>,
        buf: BytesMut,
        connect_timeout: Duration,
        source: Option<SocketAddr>,
    },
}

/// One target's socket.
pub struct Endpoint {
    target: SocketAddr,
    transport: Transport,
    conn: Conn,
    local: SocketAddr,
}

impl Endpoint {
    /// Opens the socket for `target` from the address the route to it uses.
    pub async fn open(
        target: SocketAddr,
        transport: Transport,
        connect_timeout: Duration,
    ) -> io::Result<Endpoint> {
        Endpoint::open_from(target, transport, connect_timeout, None).await
    }

    /// Opens the socket for `target`, bound to `source` if given. UDP binds at once; TCP
    /// checks at once that `source` can be bound (so that an address not on this host or a
    /// port in use is an error here, not a failed probe) and connects on the first
    /// [`Endpoint::connect`] or [`Endpoint::send`].
    pub async fn open_from(
        target: SocketAddr,
        transport: Transport,
        connect_timeout: Duration,
        source: Option<Source>,
    ) -> io::Result<Endpoint> {
        let bind = source.map(|s| s.towards(target)).transpose()?;
        let unspecified: SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        match transport {
            Transport::Udp => {
                let sock = match (source, bind) {
                    (Some(s), Some(b)) => {
                        std::net::UdpSocket::bind(b).map_err(|e| s.bind_error(e))?
                    }
                    _ => {
                        // The source address the kernel would use towards the target (no
                        // packet sent).
                        let route = std::net::UdpSocket::bind(unspecified)?;
                        route.connect(target)?;
                        std::net::UdpSocket::bind((route.local_addr()?.ip(), 0))?
                    }
                };
                set_recverr(&sock, target.is_ipv4())?;
                sock.set_nonblocking(true)?;
                let sock = UdpSocket::from_std(sock)?;
                let local = sock.local_addr()?;
                Ok(Endpoint {
                    target,
                    transport,
                    conn: Conn::Udp(sock),
                    local,
                })
            }
            Transport::Tcp => {
                if let (Some(s), Some(b)) = (source, bind) {
                    tcp_socket(b).map_err(|e| s.bind_error(e))?;
                }
                Ok(Endpoint {
                    target,
                    transport,
                    conn: Conn::Tcp {
                        stream: None,
                        buf: BytesMut::with_capacity(8192),
                        connect_timeout,
                        source: bind,
                    },
                    local: bind.unwrap_or(unspecified),
                })
            }
        }
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Our address for the Via sent-by (for TCP, of the current connection).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Makes sure a TCP connection is up; returns the local address to write in the Via.
    pub async fn connect(&mut self) -> Result<SocketAddr, TransportErrorKind> {
        if let Conn::Tcp {
            stream,
            buf,
            connect_timeout,
            source,
        } = &mut self.conn
        {
            if stream.is_none() {
                let (target, src) = (self.target, *source);
                let connect = async move {
                    match src {
                        Some(b) => tcp_socket(b)?.connect(target).await,
                        None => TcpStream::connect(target).await,
                    }
                };
                let s = match tokio::time::timeout(*connect_timeout, connect).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(_)) | Err(_) => return Err(TransportErrorKind::ConnectFailed),
                };
                let _ = s.set_nodelay(true);
                self.local = s
                    .local_addr()
                    .map_err(|_| TransportErrorKind::ConnectFailed)?;
                buf.clear();
                *stream = Some(s);
            }
        }
        Ok(self.local)
    }

    /// Sends one whole message to the target.
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), TransportErrorKind> {
        self.send_to(msg, self.target).await
    }

    /// Sends one whole message to `dest`: over UDP any address (the socket is unconnected),
    /// over TCP always the target's connection (`dest` is ignored: the caller checks it).
    pub async fn send_to(
        &mut self,
        msg: &[u8],
        dest: SocketAddr,
    ) -> Result<(), TransportErrorKind> {
        match &mut self.conn {
            Conn::Udp(s) => match s.send_to(msg, dest).await {
                Ok(_) => Ok(()),
                Err(e) => Err(TransportErrorKind::from_io(&e)),
            },
            Conn::Tcp { .. } => {
                self.connect().await?;
                let Conn::Tcp { stream, .. } = &mut self.conn else {
                    unreachable!("checked above")
                };
                let s = stream.as_mut().ok_or(TransportErrorKind::ConnectFailed)?;
                if let Err(e) = s.write_all(msg).await {
                    *stream = None;
                    return Err(match TransportErrorKind::from_io(&e) {
                        TransportErrorKind::SendFailed => TransportErrorKind::ConnectionClosed,
                        k => k,
                    });
                }
                Ok(())
            }
        }
    }

    /// Receives one message into `buf` (from [`recv_buffer`]) and returns its length and where
    /// it came from (UDP: any address; TCP: the target); a length above [`MAX_RESPONSE`] means
    /// it was oversized (and truncated). Cancel-safe. Pending forever while a TCP endpoint has
    /// no connection.
    pub async fn recv(
        &mut self,
        out: &mut [u8],
    ) -> Result<(usize, SocketAddr), TransportErrorKind> {
        let from = self.target;
        match &mut self.conn {
            Conn::Udp(s) => match s.recv_from(out).await {
                Ok(r) => Ok(r),
                Err(e) => {
                    drain_error_queue(s);
                    Err(TransportErrorKind::from_io(&e))
                }
            },
            Conn::Tcp { stream, buf, .. } => loop {
                match crate::sip::frame(buf, MAX_RESPONSE) {
                    Frame::Complete(n) => {
                        out[..n].copy_from_slice(&buf[..n]);
                        buf.advance(n);
                        return Ok((n, from));
                    }
                    Frame::Invalid(e) => {
                        // Cannot be framed: drop the connection (nothing after it can be
                        // found). What was buffered goes to the caller to be counted:
                        // oversized, or refused by the reader like a datagram.
                        let keep = buf.len().min(out.len());
                        out[..keep].copy_from_slice(&buf[..keep]);
                        buf.clear();
                        *stream = None;
                        let n = if e == ParseError::Oversized {
                            MAX_RESPONSE + 1
                        } else {
                            keep
                        };
                        return Ok((n, from));
                    }
                    Frame::KeepAlive(n) => {
                        buf.advance(n);
                        continue;
                    }
                    Frame::Incomplete => {}
                }
                let Some(s) = stream.as_mut() else {
                    return std::future::pending().await;
                };
                match s.read_buf(buf).await {
                    Ok(0) => {
                        *stream = None;
                        buf.clear();
                        return Err(TransportErrorKind::ConnectionClosed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        *stream = None;
                        buf.clear();
                        return Err(match TransportErrorKind::from_io(&e) {
                            TransportErrorKind::SendFailed => TransportErrorKind::ConnectionClosed,
                            k => k,
                        });
                    }
                }
            },
        }
    }
}

/// A TCP socket bound to `addr`, not connected. `SO_REUSEADDR`: a fixed source port can be
/// bound again while the previous connection from it is in TIME_WAIT.
fn tcp_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    Ok(s)
}

/// Asks the kernel to report ICMP errors on an unconnected UDP socket (`IP_RECVERR` /
/// `IPV6_RECVERR`): the next receive fails with the error, the details go to the error queue.
fn set_recverr(sock: &std::net::UdpSocket, v4: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    let (level, name) = if v4 {
        (libc::SOL_IP, libc::IP_RECVERR)
    } else {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    };
    // SAFETY: a valid socket descriptor and a c_int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Empties the socket's error queue (filled by `IP_RECVERR`): its entries count against the
/// receive buffer and keep the socket signalling an error. Each ICMP error has already been
/// reported once by the failed receive.
fn drain_error_queue(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let mut data = [0u8; 512];
    let mut control = [0u8; 512];
    for _ in 0..64 {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr zeroed, then pointed at buffers that outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: a valid descriptor and a msghdr describing live buffers.
        let n = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_by_reason() {
        let mut s = RxStats::default();
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for m in [&b"garbage"[..], b"", b"INVITE sip:a SIP/2.0\r\n\r\n"] {
            s.count(accept(m, local).unwrap_err());
        }
        s.count(accept(&vec![b'x'; MAX_RESPONSE + 1], local).unwrap_err());
        s.count(
            accept(
                b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bKa\r\nCSeq: 1 OPTIONS\r\nTo: <sip:a>\r\n\r\n",
                local,
            )
            .unwrap_err(),
        );
        s.count(
            accept(
                b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5001;branch=z9hG4bKa\r\nCSeq: 1 OPTIONS\r\nCall-ID: x\r\nTo: <sip:a>\r\n\r\n",
                local,
            )
            .unwrap_err(),
        );
        s.count(Ignored::Discard(Discard::OtherCallId));
        assert_eq!(
            s,
            RxStats {
                garbage: 3,
                oversized: 1,
                malformed: 1,
                not_ours: 1,
                other_call_id: 1,
                ..Default::default()
            }
        );
        assert_eq!(s.ignored(), 7);
    }

    #[tokio::test]
    async fn udp_port_unreachable_is_a_transport_error() {
        // A port that was just free: the kernel answers with ICMP port unreachable.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut ep = Endpoint::open(
            ([127, 0, 0, 1], port).into(),
            Transport::Udp,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(ep.local().ip().to_string(), "127.0.0.1");
        ep.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n").await.unwrap();
        let mut buf = recv_buffer();
        let r = tokio::time::timeout(Duration::from_secs(2), ep.recv(&mut buf))
            .await
            .expect("ICMP error within 2 s");
        assert_eq!(r, Err(TransportErrorKind::PortUnreachable));
        // Reported once per ICMP error, the queue drained: the next one comes back too, and a
        // datagram from another address of the host is still received.
        ep.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n").await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), ep.recv(&mut buf))
            .await
            .expect("second ICMP error within 2 s");
        assert_eq!(r, Err(TransportErrorKind::PortUnreachable));
        let other = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        other.send_to(b"hello", ep.local()).unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), ep.recv(&mut buf))
            .await
            .expect("datagram within 2 s")
            .unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"hello"[..], other.local_addr().unwrap())
        );
    }

    /// One framer with one rule. Over TCP a Content-Length that is
    /// not a number, or a second one, makes the stream unframeable: the message is refused
    /// (counted as malformed), not read with a guessed length.
    #[tokio::test]
    async fn tcp_bad_or_duplicate_content_length_is_refused() {
        let head = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKa\r\n\
                    Call-ID: c\r\nCSeq: 1 OPTIONS\r\nTo: <sip:a>;tag=t\r\n";
        for (cl, n) in [
            ("Content-Length: x\r\n", 0),
            ("Content-Length: 0\r\nContent-Length: 4\r\n", 1),
        ] {
            let msg = format!("{head}{cl}\r\nbody");
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                use std::io::{Read, Write};
                let (mut s, _) = l.accept().unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b);
                s.write_all(msg.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
            });
            let mut ep = Endpoint::open(addr, Transport::Tcp, Duration::from_secs(1))
                .await
                .unwrap();
            ep.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n").await.unwrap();
            let mut buf = recv_buffer();
            let (len, _) = tokio::time::timeout(Duration::from_secs(2), ep.recv(&mut buf))
                .await
                .expect("a frame within 2 s")
                .unwrap();
            let mut s = RxStats::default();
            s.count(accept(&buf[..len], ep.local()).unwrap_err());
            assert_eq!(s.malformed, 1, "case {n}");
            server.join().unwrap();
        }
    }

    #[test]
    fn source_parses_and_shows_as_written() {
        for (text, shown) in [
            ("10.1.2.3", "10.1.2.3"),
            ("10.1.2.3:5070", "10.1.2.3:5070"),
            ("10.1.2.3:0", "10.1.2.3"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]:5070", "[2001:db8::1]:5070"),
        ] {
            assert_eq!(text.parse::<Source>().unwrap().to_string(), shown);
        }
        for bad in [
            "",
            "signalling",
            "10.1.2.3:99999",
            "10.1.2.3:",
            "[::1]",
            "0.0.0.0",
            "[::]:5070",
            "224.0.0.1",
        ] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn source_of_another_family_is_refused_with_its_name() {
        let src: Source = "::1".parse().unwrap();
        let e = Endpoint::open_from(
            ([127, 0, 0, 1], 9).into(),
            Transport::Udp,
            Duration::from_secs(1),
            Some(src),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "cannot bind source ::1: not of the address family of 127.0.0.1:9"
        );
    }

    #[tokio::test]
    async fn tcp_connect_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut ep = Endpoint::open(
            ([127, 0, 0, 1], port).into(),
            Transport::Tcp,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(ep.send(b"x").await, Err(TransportErrorKind::ConnectFailed));
    }
}
