//! Batched UDP I/O with `recvmmsg(2)`/`sendmmsg(2)` (Linux), used by the bench and the
//! responder: one system call moves up to a batch of datagrams. Buffers are allocated once and
//! reused; the `iovec`/`mmsghdr` arrays are re-pointed before each call, so the batch can move.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// A socket address in the form the kernel fills in and reads.
#[derive(Clone, Copy)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Default for RawAddr {
    fn default() -> Self {
        RawAddr {
            storage: unsafe { zeroed() },
            len: 0,
        }
    }
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_std())
    }
}

impl RawAddr {
    pub fn from_std(a: SocketAddr) -> RawAddr {
        let mut r = RawAddr::default();
        match a {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                unsafe {
                    std::ptr::write(&mut r.storage as *mut _ as *mut libc::sockaddr_in, sin);
                }
                r.len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: v6.scope_id(),
                };
                unsafe {
                    std::ptr::write(&mut r.storage as *mut _ as *mut libc::sockaddr_in6, sin6);
                }
                r.len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        r
    }

    pub fn to_std(&self) -> Option<SocketAddr> {
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET => {
                let sin = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
                Some(SocketAddr::from((
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let s = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::from((
                    s.sin6_addr.s6_addr,
                    u16::from_be(s.sin6_port),
                )))
            }
            _ => None,
        }
    }
}

/// Buffers for receiving up to `capacity` datagrams in one call.
pub struct RecvBatch {
    data: Vec<u8>,
    slot: usize,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    addrs: Vec<RawAddr>,
    /// Control-message space per datagram, for kernel receive timestamps.
    control: Vec<u64>,
    n: usize,
}

/// u64 words of control-message space per datagram (a cmsghdr with a timespec needs 32 bytes).
const CONTROL_WORDS: usize = 8;

// The raw pointers inside point into the batch's own buffers and are rewritten before use.
unsafe impl Send for RecvBatch {}

/// Asks the kernel to stamp every received datagram with its arrival time (`SO_TIMESTAMPNS`,
/// CLOCK_REALTIME); [`RecvBatch::timestamp_ns`] reads it.
pub fn enable_rx_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &on as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl RecvBatch {
    /// `capacity` datagrams of at most `slot` bytes each (longer ones are truncated and
    /// reported by [`RecvBatch::truncated`]).
    pub fn new(capacity: usize, slot: usize) -> RecvBatch {
        RecvBatch {
            data: vec![0; capacity * slot],
            slot,
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                capacity
            ],
            hdrs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            addrs: vec![RawAddr::default(); capacity],
            control: vec![0; capacity * CONTROL_WORDS],
            n: 0,
        }
    }

    /// One `recvmmsg` call; `flags` e.g. `libc::MSG_DONTWAIT` or `libc::MSG_WAITFORONE`.
    /// Returns the number of datagrams (0 when it would block).
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        let cap = self.hdrs.len();
        for i in 0..cap {
            self.iov[i] = libc::iovec {
                iov_base: self.data[i * self.slot..].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.slot,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_name = &mut self.addrs[i].storage as *mut _ as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_control = self.control[i * CONTROL_WORDS..].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = CONTROL_WORDS * 8;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                cap as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            self.n = 0;
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.n = r as usize;
        for i in 0..self.n {
            self.addrs[i].len = self.hdrs[i].msg_hdr.msg_namelen;
        }
        Ok(self.n)
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The i-th datagram received by the last call.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(self.slot);
        &self.data[i * self.slot..i * self.slot + len]
    }

    /// Whether the i-th datagram was longer than a slot.
    #[inline]
    pub fn truncated(&self, i: usize) -> bool {
        self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    /// The kernel's arrival time of the i-th datagram (ns since the Unix epoch, CLOCK_REALTIME)
    /// when [`enable_rx_timestamps`] was called on the socket.
    pub fn timestamp_ns(&self, i: usize) -> Option<u64> {
        let h = &self.hdrs[i].msg_hdr;
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                    return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// The sender of the i-th datagram.
    #[inline]
    pub fn addr(&self, i: usize) -> &RawAddr {
        &self.addrs[i]
    }
}

/// Up to `capacity` datagrams to send in one call; slots are reused vectors.
pub struct SendBatch {
    slots: Vec<Vec<u8>>,
    addrs: Vec<Option<RawAddr>>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
}

unsafe impl Send for SendBatch {}

/// What happened to a batch: how many went out, and the errors of those that did not (as
/// (index in the batch, error)).
#[derive(Debug, Default)]
pub struct SendResult {
    pub sent: usize,
    pub failed: Vec<(usize, io::Error)>,
    /// ICMP errors (port / host / network unreachable) the kernel had kept on a connected
    /// socket for an EARLIER datagram and reported on this call instead of sending; reporting
    /// clears them, and the datagram was sent again (so it is not in `failed` for that).
    pub unreachable: usize,
}

impl SendBatch {
    pub fn new(capacity: usize) -> SendBatch {
        SendBatch {
            slots: (0..capacity).map(|_| Vec::with_capacity(1500)).collect(),
            addrs: vec![None; capacity],
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                capacity
            ],
            hdrs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            n: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn is_full(&self) -> bool {
        self.n == self.slots.len()
    }

    /// The next free slot (cleared) to write a datagram into; [`SendBatch::commit`] keeps it.
    #[inline]
    pub fn next_slot(&mut self) -> &mut Vec<u8> {
        let s = &mut self.slots[self.n];
        s.clear();
        s
    }

    /// The next free slot without clearing it: for a template copied in once and patched.
    #[inline]
    pub fn next_slot_raw(&mut self) -> &mut Vec<u8> {
        &mut self.slots[self.n]
    }

    /// Keeps the slot written by [`SendBatch::next_slot`]; `to` None for a connected socket.
    #[inline]
    pub fn commit(&mut self, to: Option<&RawAddr>) {
        self.addrs[self.n] = to.copied();
        self.n += 1;
    }

    /// Forgets the pending datagrams (their buffers are kept).
    pub fn clear(&mut self) {
        self.n = 0;
    }

    /// The datagram at `i` of the pending batch.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.slots[i]
    }

    /// Sends everything pending (retrying after partial sends); the batch is empty afterwards.
    /// A datagram the kernel refuses is reported in `failed` and skipped. With `blocking`
    /// false, EAGAIN on a full socket buffer also counts as a failure of that datagram.
    pub fn send(&mut self, fd: RawFd, out: &mut SendResult) {
        out.sent = 0;
        out.failed.clear();
        out.unreachable = 0;
        let mut retried = usize::MAX;
        let n = self.n;
        for i in 0..n {
            let s = &mut self.slots[i];
            self.iov[i] = libc::iovec {
                iov_base: s.as_mut_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            match &mut self.addrs[i] {
                Some(a) => {
                    h.msg_name = &mut a.storage as *mut _ as *mut libc::c_void;
                    h.msg_namelen = a.len;
                }
                None => {
                    h.msg_name = std::ptr::null_mut();
                    h.msg_namelen = 0;
                }
            }
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut at = 0;
        while at < n {
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[at..].as_mut_ptr(),
                    (n - at) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // A pending error of an earlier datagram (a socket read would have taken it):
                // it is cleared now, so this datagram goes again, once.
                if retried != at
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
                    )
                {
                    retried = at;
                    out.unreachable += 1;
                    continue;
                }
                // The first datagram of the remainder failed: report it and go on.
                out.failed.push((at, e));
                at += 1;
            } else {
                out.sent += r as usize;
                at += r as usize;
            }
        }
        self.n = 0;
    }
}

/// Socket buffer size asked for by [`deep_buffers`].
pub const DEEP_BUFFER: usize = 32 << 20;

/// Gives a UDP socket deep receive and send buffers, so that a load generator or responder
/// descheduled for a while (a busy machine) loses nothing: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`
/// when allowed (CAP_NET_ADMIN), else the plain options (capped by `net.core.rmem_max`).
pub fn deep_buffers(s: &socket2::Socket) {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let v = DEEP_BUFFER as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let set = |opt| unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set(force) != 0 {
            set(plain);
        }
    }
}

/// Waits until `fd` is readable or `timeout` passes (nanosecond resolution, `ppoll`).
/// Returns whether it is readable.
pub fn wait_readable(fd: RawFd, timeout: std::time::Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    let r = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
    r > 0 && p.revents & libc::POLLIN != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn an_earlier_datagrams_icmp_error_does_not_fail_the_next_send() {
        // Connected to a port nobody listens on: the first datagram's ICMP port unreachable
        // is kept on the socket and reported by the next send call, which then sends nothing.
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = closed.local_addr().unwrap();
        drop(closed);
        a.connect(to).unwrap();
        let fd = a.as_raw_fd();
        let mut sb = SendBatch::new(8);
        let mut res = SendResult::default();
        sb.next_slot().extend_from_slice(b"first");
        sb.commit(None);
        sb.send(fd, &mut res);
        assert_eq!((res.sent, res.failed.len(), res.unreachable), (1, 0, 0));
        let mut p = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        assert_eq!(
            unsafe { libc::poll(&mut p, 1, 2000) },
            1,
            "ICMP error pending"
        );
        assert!(p.revents & libc::POLLERR != 0);
        for _ in 0..3 {
            sb.next_slot().extend_from_slice(b"next");
            sb.commit(None);
        }
        sb.send(fd, &mut res);
        assert_eq!(res.unreachable, 1);
        assert!(res.failed.is_empty(), "{:?}", res.failed);
        assert_eq!(res.sent, 3);
    }

    #[test]
    fn batches_round_trip_between_two_sockets() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = RawAddr::from_std(b.local_addr().unwrap());
        assert_eq!(to.to_std(), Some(b.local_addr().unwrap()));
        let mut sb = SendBatch::new(8);
        for i in 0..5u8 {
            sb.next_slot().extend_from_slice(&[i; 10]);
            sb.commit(Some(&to));
        }
        let mut res = SendResult::default();
        sb.send(a.as_raw_fd(), &mut res);
        assert_eq!(res.sent, 5);
        assert!(res.failed.is_empty());
        let mut rb = RecvBatch::new(8, 64);
        enable_rx_timestamps(b.as_raw_fd()).unwrap();
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut got = 0;
        while got < 5 {
            assert!(wait_readable(
                b.as_raw_fd(),
                std::time::Duration::from_secs(2)
            ));
            let n = rb.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap();
            for i in 0..n {
                assert_eq!(rb.get(i), &[(got + i) as u8; 10]);
                assert_eq!(rb.addr(i).to_std(), Some(a.local_addr().unwrap()));
                assert!(!rb.truncated(i));
                // Stamped when it arrived, which was before now and not long before `before`.
                let ts = rb.timestamp_ns(i).expect("timestamp");
                assert!(ts + 1_000_000_000 > before && ts < before + 5_000_000_000);
            }
            got += n;
        }
        assert_eq!(got, 5);
        assert_eq!(rb.recv(b.as_raw_fd(), libc::MSG_DONTWAIT).unwrap(), 0);
    }
}
