//! A real InfluxDB storage engine for the tests: Debian's `influxd` (InfluxDB 1.6, the TSM
//! engine with InfluxDB's point and field semantics) on free 127.0.0.1 ports with its own
//! meta, data and WAL directories, behind Debian's `nginx` (`nginx-light`) mapping the
//! InfluxDB 2 write API onto the 1.x one:
//!
//! `POST /api/v2/write?bucket=B&precision=P` → `POST /write?db=B&precision=P`
//!
//! (gzip bodies and the `Authorization: Token ..` header pass through; InfluxDB 1.6 without
//! authentication ignores the token). Each bucket is a database, created with
//! `CREATE DATABASE` before use. Read back with InfluxQL ([`Influx::points`]): one row per
//! series and timestamp, with every field the point holds after all writes (InfluxDB merges
//! the fields of one point, the last write wins per field).

use super::victoria::{http, urlencode, which};
use super::{free_tcp_port, wait_tcp, Proc};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A stored point: (measurement, tags) at a time, with its fields.
pub type Key = (String, BTreeMap<String, String>, i64);
/// Field name to value (JSON numbers as f64; InfluxQL does not say int or float).
pub type Fields = BTreeMap<String, f64>;

pub struct Influx {
    /// InfluxDB's own HTTP port (queries).
    pub influx_port: u16,
    /// nginx's port: the InfluxDB 2 write API.
    pub port: u16,
    _influxd: Proc,
    _nginx: Proc,
}

impl Influx {
    /// Starts influxd and nginx under `dir` and creates the databases `buckets`.
    pub fn start(dir: &Path, buckets: &[&str]) -> Influx {
        let root = dir.join("influx");
        for d in ["meta", "data", "wal", "nginx"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let influx_port = free_tcp_port();
        let bind_port = free_tcp_port();
        let conf = root.join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{bind_port}\"\n\
[meta]\n  dir = \"{r}/meta\"\n\
[data]\n  dir = \"{r}/data\"\n  wal-dir = \"{r}/wal\"\n  query-log-enabled = false\n\
[http]\n  enabled = true\n  bind-address = \"127.0.0.1:{influx_port}\"\n  log-enabled = false\n\
[monitor]\n  store-enabled = false\n\
[continuous_queries]\n  enabled = false\n\
[subscriber]\n  enabled = false\n",
                r = root.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(which("influxd"));
        cmd.arg("run").arg("-config").arg(&conf);
        let influxd = Proc::spawn("influxd", cmd, &root.join("influxd.log"));
        let port = free_tcp_port();
        let n = root.join("nginx");
        let nconf = n.join("nginx.conf");
        std::fs::write(
            &nconf,
            format!(
                "daemon off;\nworker_processes 1;\npid {n}/nginx.pid;\nerror_log {n}/error.log;\n\
events {{ worker_connections 64; }}\n\
http {{\n  access_log {n}/access.log;\n\
  client_body_temp_path {n}/body;\n  proxy_temp_path {n}/proxy;\n\
  fastcgi_temp_path {n}/fastcgi;\n  uwsgi_temp_path {n}/uwsgi;\n  scgi_temp_path {n}/scgi;\n\
  client_max_body_size 256m;\n\
  server {{\n    listen 127.0.0.1:{port};\n\
    location = /api/v2/write {{\n\
      proxy_pass http://127.0.0.1:{influx_port}/write?db=$arg_bucket&precision=$arg_precision;\n\
    }}\n\
  }}\n}}\n",
                n = n.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(which("nginx"));
        cmd.arg("-p")
            .arg(&n)
            .arg("-c")
            .arg(&nconf)
            .arg("-e")
            .arg(n.join("error.log"));
        let nginx = Proc::spawn("nginx", cmd, &n.join("stderr.log"));
        let ix = Influx {
            influx_port,
            port,
            _influxd: influxd,
            _nginx: nginx,
        };
        wait_tcp(ix.influx_addr(), Duration::from_secs(30));
        wait_tcp(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(30),
        );
        for b in buckets {
            ix.query(b, &format!("CREATE DATABASE \"{b}\""));
        }
        ix
    }

    fn influx_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.influx_port))
    }

    /// `http://127.0.0.1:PORT` of the InfluxDB 2 write API (nginx).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes line protocol through nginx, as an InfluxDB 2 client would; returns the status.
    pub fn write_v2(&self, bucket: &str, precision: &str, lines: &str) -> u16 {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let path = format!("/api/v2/write?org=o&bucket={bucket}&precision={precision}");
        http(addr, "POST", &path, lines.as_bytes())
            .expect("write")
            .0
    }

    /// Runs an InfluxQL statement; the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let body = format!("db={}&epoch=s&q={}", urlencode(db), urlencode(q));
        let (status, body) =
            http(self.influx_addr(), "POST", "/query", body.as_bytes()).expect("query");
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{q}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert!(v["results"][0].get("error").is_none(), "{q}: {text}");
        v
    }

    /// Every stored point of database `db`: `SELECT * FROM /.*/ GROUP BY *`, fields that are
    /// null (not in the point) left out.
    pub fn points(&self, db: &str) -> BTreeMap<Key, Fields> {
        let v = self.query(db, "SELECT * FROM /.*/ GROUP BY *");
        let mut out = BTreeMap::new();
        let Some(series) = v["results"][0]["series"].as_array() else {
            return out;
        };
        for s in series {
            let name = s["name"].as_str().unwrap().to_string();
            let tags: BTreeMap<String, String> = s["tags"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| !v.as_str().unwrap_or("").is_empty())
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let cols: Vec<&str> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            for row in s["values"].as_array().unwrap() {
                let row = row.as_array().unwrap();
                let t = row[0].as_i64().unwrap();
                let mut fields = Fields::new();
                for (c, v) in cols.iter().zip(row).skip(1) {
                    if let Some(x) = v.as_f64() {
                        fields.insert(c.to_string(), x);
                    }
                }
                out.insert((name.clone(), tags.clone(), t), fields);
            }
        }
        out
    }
}
