//! A production-like Kamailio cluster on loopback: CPs that share ONE configuration file,
//! `fixtures/kamailio/cluster.cfg`, each on its own address (`127.0.NET.2`, `127.0.NET.3`, …)
//! and the same port (5060 when it is free on every address, else one free port shared by
//! all), with a VIP on `127.0.NET.10` that moves between them. Only the node's own address and
//! name differ (`-A NODE_ADDR=… -A NODE_NAME=…`); the cluster's layout (`VIP_FIRST`,
//! `TM_REPLY`, `NODE_SERVER`, …) is the same on every node.
//!
//! Kamailio 5.6 cannot bind an address another process holds, so the VIP moves by stopping its
//! holder and starting the other node with the VIP listen ([`Cluster::start`] with
//! `with_vip`). [`Cluster::reuseport`] instead lets every node bind the VIP at once, as
//! production nodes do with `net.ipv4.ip_nonlocal_bind`, through an `SO_REUSEPORT` LD_PRELOAD
//! shim built from `fixtures/kamailio/reuseport.c`.

use super::{fixtures, Proc};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const KAMAILIO: &str = "/usr/sbin/kamailio";

pub struct Node {
    pub name: String,
    pub addr: Ipv4Addr,
    proc: Option<Proc>,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// Cluster-wide defines, e.g. `VIP_FIRST`, `TM_REPLY`, `NODE_SERVER`.
    pub modes: Vec<String>,
    pub nodes: Vec<Node>,
    shim: Option<PathBuf>,
}

/// Whether `port` can be bound for UDP on every address now.
fn udp_free(addrs: &[Ipv4Addr], port: u16) -> bool {
    let socks: Vec<_> = addrs.iter().map(|a| UdpSocket::bind((*a, port))).collect();
    socks.iter().all(|s| s.is_ok())
}

impl Cluster {
    /// `nodes` CPs named cp1, cp2, … on `127.0.NET.2`, `.3`, …, VIP `127.0.NET.10`; nothing
    /// started yet. Each test uses its own `net` so tests can run side by side.
    pub fn new(dir: &Path, net: u8, nodes: usize, modes: &[&str]) -> Cluster {
        let nodes: Vec<Node> = (0..nodes)
            .map(|i| Node {
                name: format!("cp{}", i + 1),
                addr: Ipv4Addr::new(127, 0, net, 2 + i as u8),
                proc: None,
            })
            .collect();
        let vip = Ipv4Addr::new(127, 0, net, 10);
        let mut addrs: Vec<Ipv4Addr> = nodes.iter().map(|n| n.addr).collect();
        addrs.push(vip);
        let port = if udp_free(&addrs, 5060) {
            5060
        } else {
            loop {
                let p = UdpSocket::bind((addrs[0], 0))
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                if udp_free(&addrs, p) {
                    break p;
                }
            }
        };
        Cluster {
            dir: dir.to_path_buf(),
            vip,
            port,
            modes: modes.iter().map(|m| m.to_string()).collect(),
            nodes,
            shim: None,
        }
    }

    /// One CP (cp1 on `127.0.NET.2`) listening on 0.0.0.0 (`LISTEN_ANY`) on a port free on every
    /// address, so that it answers from 127.0.0.1 rather than the probed address; not started.
    pub fn listen_any(dir: &Path, net: u8) -> Cluster {
        let mut c = Cluster::new(dir, net, 1, &["LISTEN_ANY"]);
        c.port = UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        c
    }

    /// Every node will bind with `SO_REUSEPORT` (the shim is compiled here), so all of them
    /// can list the VIP at once.
    pub fn reuseport(&mut self) {
        let so = self.dir.join("reuseport.so");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&so)
            .arg(fixtures().join("kamailio/reuseport.c"))
            .arg("-ldl")
            .output()
            .expect("cc (build-essential) to build the SO_REUSEPORT shim");
        assert!(
            out.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.shim = Some(so);
    }

    pub fn uri(&self, i: usize) -> String {
        format!("sip:{}:{}", self.nodes[i].addr, self.port)
    }

    pub fn vip_uri(&self) -> String {
        format!("sip:{}:{}", self.vip, self.port)
    }

    fn oos_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.oos", self.nodes[i].name))
    }

    /// Creates (true) or removes the node's out-of-service marker.
    pub fn set_out_of_service(&self, i: usize, oos: bool) {
        if oos {
            std::fs::write(self.oos_file(i), b"").unwrap();
        } else {
            let _ = std::fs::remove_file(self.oos_file(i));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.nodes[i].name)))
            .unwrap_or_default()
    }

    /// Starts node `i` (with the VIP listen when `with_vip`, or on every node under
    /// [`Cluster::reuseport`]) and waits until it answers an OPTIONS on its own address.
    pub fn start(&mut self, i: usize, with_vip: bool) {
        assert!(self.nodes[i].proc.is_none(), "node {i} is running");
        assert!(
            Path::new(KAMAILIO).exists(),
            "{KAMAILIO} not found: install Debian's kamailio package (scripts/test does)"
        );
        let run = self.dir.join(&self.nodes[i].name);
        std::fs::create_dir_all(&run).unwrap();
        let mut cmd = Command::new(KAMAILIO);
        cmd.arg("-DD").arg("-E").arg("-f");
        cmd.arg(fixtures().join("kamailio/cluster.cfg"));
        cmd.arg("-P")
            .arg(run.join("kamailio.pid"))
            .arg("-Y")
            .arg(&run);
        cmd.args(["-m", "16", "-M", "4"]);
        let node = &self.nodes[i];
        for d in [
            format!("NODE_ADDR={}", node.addr),
            format!("NODE_NAME={}", node.name),
            format!("SIP_PORT={}", self.port),
            format!("VIP_ADDR={}", self.vip),
            format!("OOS_DIR=\"{}\"", self.dir.display()),
        ] {
            cmd.arg("-A").arg(d);
        }
        for m in &self.modes {
            cmd.arg("-A").arg(m);
        }
        if self.modes.iter().any(|m| m == "NODE_SERVER") {
            cmd.arg("-A")
                .arg(format!("SERVER_HEADER=\"Server: kamailio {}\"", node.name));
        }
        if with_vip {
            cmd.arg("-A").arg("WITH_VIP");
        }
        if let Some(so) = &self.shim {
            cmd.env("LD_PRELOAD", so);
        }
        let log = self.dir.join(format!("{}.log", node.name));
        let mut p = Proc::spawn("kamailio", cmd, &log);
        let addr: SocketAddr = (node.addr, self.port).into();
        let start = Instant::now();
        while !answers(addr) {
            if p.exited() || start.elapsed() > Duration::from_secs(15) {
                panic!(
                    "Kamailio {} did not start; its log:\n{}",
                    node.name,
                    self.log(i)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.nodes[i].proc = Some(p);
    }

    /// Stops node `i` (SIGKILL to its process group) and waits until its address no longer
    /// answers.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill();
            let addr: SocketAddr = (self.nodes[i].addr, self.port).into();
            let start = Instant::now();
            while answers(addr) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Whether something answers a SIP OPTIONS sent to `addr` within 200 ms, from any address
/// (a node listening on 0.0.0.0 answers from another one).
pub fn answers(addr: SocketAddr) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = s.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKcluster{}\r\nFrom: <sip:ping@{local}>;tag=1\r\nTo: <sip:{addr}>\r\nCall-ID: cluster-ping-{}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    if s.send_to(msg.as_bytes(), addr).is_err() {
        return false;
    }
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    matches!(s.recv(&mut buf), Ok(n) if buf[..n].starts_with(b"SIP/2.0 "))
}

/// The md5 Kamailio puts before the separator of its To tags (core/tags.h `init_tags`): over
/// `signature` (`KAMAILIO-stateless` for sl, `SER-TM/tags` for tm) and the first listen
/// socket's address and port. Computed with coreutils' md5sum, independently of srewatch.
pub fn kamailio_tag_md5(signature: &str, addr: Ipv4Addr, port: u16) -> String {
    use std::io::Write;
    let mut c = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum");
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{signature}{addr}{port}").as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut p) = n.proc.take() {
                p.kill();
            }
        }
    }
}
