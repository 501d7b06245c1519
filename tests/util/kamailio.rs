//! A real Kamailio (Debian's package) playing an SRE Call Processor, from
//! `fixtures/kamailio/cp.cfg`: SIP on UDP and TCP, statistics over JSON-RPC (xhttp) and BINRPC
//! (ctl on a unix socket, TCP and UDP), out of service while a marker file exists.

use super::{fixtures, free_tcp_port, free_udp_tcp_port, wait_tcp, Proc};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the Debian package puts the binary.
pub const KAMAILIO: &str = "/usr/sbin/kamailio";

#[derive(Clone, Debug)]
pub struct Options {
    /// Goes into the Server and User-Agent headers: `srewatch-test-cp NODE`.
    pub node: String,
    /// Extra `listen=` values, e.g. `udp:127.0.0.10:5060` for a VIP.
    pub extra_listen: Vec<String>,
    /// The configuration under `fixtures/`: `kamailio/cp.cfg` (default) or
    /// `kamailio/cp-dialog.cfg`.
    pub fixture: &'static str,
    /// More `@NAME@` placeholders of the fixture and their values.
    pub vars: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node: "cp1".into(),
            extra_listen: Vec::new(),
            fixture: "kamailio/cp.cfg",
            vars: Vec::new(),
        }
    }
}

pub struct Kamailio {
    proc: Option<Proc>,
    pub dir: PathBuf,
    pub opts: Options,
    pub sip_port: u16,
    pub http_port: u16,
    pub ctl_port: u16,
    pub ctl_sock: PathBuf,
    pub oos_file: PathBuf,
    pub cfg: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio with its files under `dir` (created) on free loopback ports; returns once
    /// its SIP, HTTP and ctl listeners accept connections. Panics with the log if it cannot.
    pub fn start(dir: &Path, opts: Options) -> Kamailio {
        std::fs::create_dir_all(dir).unwrap();
        let mut k = Kamailio {
            proc: None,
            dir: dir.to_path_buf(),
            sip_port: free_udp_tcp_port(),
            http_port: free_tcp_port(),
            ctl_port: free_udp_tcp_port(),
            ctl_sock: dir.join("ctl.sock"),
            oos_file: dir.join("cp.oos"),
            cfg: dir.join("kamailio.cfg"),
            opts,
        };
        k.write_cfg();
        k.launch();
        k
    }

    pub fn write_cfg(&self) {
        let mut template = std::fs::read_to_string(fixtures().join(self.opts.fixture)).unwrap();
        for (name, value) in &self.opts.vars {
            template = template.replace(&format!("@{name}@"), value);
        }
        let extra: String = self
            .opts
            .extra_listen
            .iter()
            .map(|l| format!("listen={l}\n"))
            .collect();
        let cfg = template
            .replace("@SIP_PORT@", &self.sip_port.to_string())
            .replace("@HTTP_PORT@", &self.http_port.to_string())
            .replace("@CTL_PORT@", &self.ctl_port.to_string())
            .replace("@CTL_SOCK@", self.ctl_sock.to_str().unwrap())
            .replace("@OOS_FILE@", self.oos_file.to_str().unwrap())
            .replace("@NODE@", &self.opts.node)
            .replace("@EXTRA_LISTEN@", &extra);
        std::fs::write(&self.cfg, cfg).unwrap();
    }

    fn launch(&mut self) {
        assert!(
            Path::new(KAMAILIO).exists(),
            "{KAMAILIO} not found: install Debian's kamailio package (scripts/test does)"
        );
        let _ = std::fs::remove_file(&self.ctl_sock);
        let log = self.log_path();
        let mut cmd = Command::new(KAMAILIO);
        cmd.arg("-DD").arg("-E").arg("-f").arg(&self.cfg);
        cmd.arg("-P")
            .arg(self.dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(&self.dir);
        cmd.args(["-m", "32", "-M", "8"]);
        let mut p = Proc::spawn("kamailio", cmd, &log);
        for port in [self.sip_port, self.http_port, self.ctl_port] {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let start = std::time::Instant::now();
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if p.exited() || start.elapsed() > Duration::from_secs(10) {
                    panic!("Kamailio did not start; its log:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        wait_tcp(
            ([127, 0, 0, 1], self.sip_port).into(),
            Duration::from_secs(1),
        );
        self.proc = Some(p);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kamailio.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `sip:127.0.0.1:PORT`.
    pub fn sip_uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.sip_port)
    }

    pub fn sip_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.sip_port).into()
    }

    /// `http://127.0.0.1:PORT/RPC`, the JSON-RPC endpoint.
    pub fn jsonrpc_url(&self) -> String {
        format!("http://127.0.0.1:{}/RPC", self.http_port)
    }

    /// Creates (true) or removes (false) the out-of-service marker, like `touch /tmp/cp.oos`.
    pub fn set_out_of_service(&self, oos: bool) {
        if oos {
            std::fs::write(&self.oos_file, b"").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.oos_file);
        }
    }

    /// Stops Kamailio with SIGTERM (it stops its children) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            if p.terminate(Duration::from_secs(5)).is_none() {
                p.kill();
            }
            // Children may linger a moment after the main process exits.
            let addr: SocketAddr = ([127, 0, 0, 1], self.sip_port).into();
            let start = std::time::Instant::now();
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
                && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(30));
            }
        }
    }

    /// Starts it again on the same ports with the same files (its counters start from zero).
    /// Node `node` of a cluster, in `parent/NODE`, with the stock CP configuration and the extra
    /// `listen=` values `extra_listen` (a VIP's, say).
    pub fn start_node(parent: &Path, node: &str, extra_listen: &[String]) -> Kamailio {
        Kamailio::start(
            &parent.join(node),
            Options {
                node: node.into(),
                extra_listen: extra_listen.to_vec(),
                ..Default::default()
            },
        )
    }

    pub fn start_again(&mut self) {
        assert!(self.proc.is_none(), "Kamailio is still running");
        self.launch();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// One statistic read with Debian's own `kamcmd` over the ctl TCP socket, as an independent
    /// check of what srewatch reads. `name` is e.g. `core:rcv_requests_options`.
    pub fn kamcmd_stat(&self, name: &str) -> i64 {
        let out = Command::new("/usr/sbin/kamcmd")
            .arg("-s")
            .arg(format!("tcp:127.0.0.1:{}", self.ctl_port))
            .args([
                "stats.get_statistics",
                name.split_once(':').map_or(name, |(_, n)| n),
            ])
            .output()
            .expect("kamcmd");
        let text = String::from_utf8_lossy(&out.stdout);
        let want = format!("{name} = ");
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&want)
                    .map(|v| v.trim().parse::<i64>().unwrap())
            })
            .unwrap_or_else(|| {
                panic!(
                    "kamcmd gave no {name}: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}
