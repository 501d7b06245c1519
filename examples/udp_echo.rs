//! A plain UDP echo pair: the ceiling `srewatch bench` is measured against.
//!
//! Same batching as the bench and the responder (`recvmmsg`/`sendmmsg`, 64 datagrams a batch,
//! the same deep socket buffers), no SIP work at all: the server sends every datagram back, the
//! client keeps a fixed number of datagrams in flight (closed loop, like
//! `srewatch bench --max-outstanding N`) and counts round trips.
//!
//! ```sh
//! cargo build --release --example udp_echo
//! target/release/examples/udp_echo server 127.0.0.1:27070 &
//! target/release/examples/udp_echo client 127.0.0.1:27070 [OUTSTANDING] [SECONDS] [SIZE]
//! # prints: round_trips N seconds S rate R/s user_s U sys_s Y
//! ```
//! `scripts/bench-sip` runs both, then the bench and the responder, and prints the ratio.

use probe::mmsg::{deep_buffers, wait_readable, RecvBatch, SendBatch, SendResult};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BATCH: usize = 64;

fn socket(bind: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    deep_buffers(&s);
    s.bind(&bind.into())?;
    Ok(s.into())
}

/// Echoes every datagram to its sender until killed.
fn server(addr: SocketAddr) -> std::io::Result<()> {
    let sock = socket(addr)?;
    let fd = sock.as_raw_fd();
    let mut rx = RecvBatch::new(BATCH, 2048);
    let mut tx = SendBatch::new(BATCH);
    let mut res = SendResult::default();
    loop {
        let n = rx.recv(fd, libc::MSG_WAITFORONE)?;
        for i in 0..n {
            tx.next_slot().extend_from_slice(rx.get(i));
            tx.commit(Some(rx.addr(i)));
        }
        tx.send(fd, &mut res);
    }
}

/// Keeps `outstanding` datagrams of `size` bytes in flight for `secs` seconds.
fn client(addr: SocketAddr, outstanding: usize, secs: f64, size: usize) -> std::io::Result<()> {
    let local: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let sock = socket(local)?;
    sock.connect(addr)?;
    let fd = sock.as_raw_fd();
    let payload = vec![b'x'; size];
    let mut rx = RecvBatch::new(BATCH, 2048);
    let mut tx = SendBatch::new(BATCH);
    let mut res = SendResult::default();
    let mut in_flight = 0usize;
    let mut round_trips = 0u64;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let t0 = cpu();
    let mut top_up = |in_flight: &mut usize, tx: &mut SendBatch| {
        while *in_flight < outstanding {
            tx.next_slot().extend_from_slice(&payload);
            tx.commit(None);
            *in_flight += 1;
            if tx.is_full() {
                tx.send(fd, &mut res);
            }
        }
        tx.send(fd, &mut res);
    };
    top_up(&mut in_flight, &mut tx);
    while Instant::now() < end {
        // A lost datagram (loopback never loses one with deep buffers, but be safe) would
        // shrink the window for good: after 20 ms of silence, count the window as lost.
        if !wait_readable(fd, Duration::from_millis(20)) {
            in_flight = 0;
            top_up(&mut in_flight, &mut tx);
            continue;
        }
        let n = rx.recv(fd, libc::MSG_DONTWAIT).unwrap_or(0);
        round_trips += n as u64;
        in_flight = in_flight.saturating_sub(n);
        top_up(&mut in_flight, &mut tx);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (u, s) = cpu();
    println!(
        "round_trips {round_trips} seconds {elapsed:.3} rate {:.0}/s user_s {:.3} sys_s {:.3}",
        round_trips as f64 / elapsed,
        u - t0.0,
        s - t0.1
    );
    Ok(())
}

/// User and system CPU seconds of this process.
fn cpu() -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!(
            "usage: udp_echo server ADDR | udp_echo client ADDR [OUTSTANDING] [SECONDS] [SIZE]"
        );
        std::process::exit(2)
    };
    let addr: SocketAddr = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage());
    let num = |i: usize, d: f64| {
        args.get(i)
            .map(|s| s.parse::<f64>().unwrap_or_else(|_| usage()))
            .unwrap_or(d)
    };
    match args.first().map(String::as_str) {
        Some("server") => server(addr),
        Some("client") => client(
            addr,
            num(2, 1000.0) as usize,
            num(3, 5.0),
            num(4, 400.0) as usize,
        ),
        _ => usage(),
    }
}
