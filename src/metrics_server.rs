//! The HTTP server of `/metrics`: hyper's HTTP/1 connection over a bounded accept loop, so
//! that no client can take descriptors or time from the rest of the service.
//!
//! - At most [`MAX_CONNECTIONS`] connections at once; a connection beyond that is accepted and
//!   closed at once (counted, logged once per burst), so the service never holds more
//!   descriptors for `/metrics` than that and the CSV files can always be opened.
//! - One request per connection (no keep-alive), served within [`CONNECTION_DEADLINE`] of the
//!   accept: a client that sends nothing, or sends its header slowly, is closed then.
//! - An accept error (such as "too many open files") is logged once until an accept succeeds
//!   again, and the loop waits [`ACCEPT_ERROR_PAUSE`] before the next try.
//!
//! The page itself is [`crate::metrics`]'s; [`Connections`] adds the server's own counters and
//! [`ProbeSetups`] each probe target's start (resolved or not).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 32;
/// From accept to the end of the response; a connection still open then is closed.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Wait after a failed accept (no descriptor left) before the next.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The server's own counters.
#[derive(Debug, Default)]
pub struct Connections {
    accepted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    accept_errors: AtomicU64,
    open: AtomicU64,
}

/// One sample: its labels and its value.
type Sample = (Vec<(&'static str, String)>, Box<dyn EncodeMetric>);

fn encode_one(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[Sample],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        v.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Connections {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = |v: &AtomicU64| -> Box<dyn EncodeMetric> {
            Box::new(ConstCounter::new(v.load(Relaxed)))
        };
        encode_one(
            &mut e,
            "srewatch_metrics_connections",
            "Connections to /metrics, per outcome (served, refused over the cap, closed at the deadline).",
            MetricType::Counter,
            &[
                (vec![("outcome", "served".into())], c(&self.accepted)),
                (vec![("outcome", "refused".into())], c(&self.refused)),
                (vec![("outcome", "timed_out".into())], c(&self.timed_out)),
            ],
        )?;
        encode_one(
            &mut e,
            "srewatch_metrics_accept_errors",
            "Failed accepts on the /metrics socket (such as too many open files).",
            MetricType::Counter,
            &[(vec![], c(&self.accept_errors))],
        )?;
        encode_one(
            &mut e,
            "srewatch_metrics_open_connections",
            "Connections to /metrics open now.",
            MetricType::Gauge,
            &[(
                vec![],
                Box::new(ConstGauge::new(self.open.load(Relaxed) as f64)),
            )],
        )
    }
}

/// Each probe target's start: resolved (and its socket open) or not, and the failed attempts.
#[derive(Debug)]
pub struct ProbeSetups(pub Arc<probe::monitor::setup::Setups>);

impl Collector for ProbeSetups {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.0.snapshot();
        let started: Vec<Sample> = all
            .iter()
            .map(|(n, s)| {
                let v: Box<dyn EncodeMetric> =
                    Box::new(ConstGauge::new(if s.failing.is_none() { 1.0 } else { 0.0 }));
                (vec![("target", n.clone())], v)
            })
            .collect();
        encode_one(
            &mut e,
            "srewatch_probe_target_started",
            "1 when the target's host resolved and its socket is open (probed), 0 while retried.",
            MetricType::Gauge,
            &started,
        )?;
        let failures: Vec<Sample> = all
            .iter()
            .flat_map(|(n, s)| {
                [
                    ("resolve", s.resolve_failures),
                    ("socket", s.socket_failures),
                ]
                .map(|(r, v)| {
                    let v: Box<dyn EncodeMetric> = Box::new(ConstCounter::new(v));
                    (vec![("target", n.clone()), ("reason", r.to_string())], v)
                })
            })
            .collect();
        encode_one(
            &mut e,
            "srewatch_probe_target_start_failures",
            "Failed attempts to start the target, per reason (resolve: its name did not resolve).",
            MetricType::Counter,
            &failures,
        )
    }
}

/// Binds `addr` (before READY=1, so a bad address stops the start) and serves `GET /metrics`
/// from `registry` until `shutdown` resolves.
pub fn serve(
    addr: SocketAddr,
    mut registry: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| anyhow::anyhow!("cannot listen for /metrics on {addr}: {e}"))?;
    let conns = Arc::new(Connections::default());
    registry.register_collector(Box::new(Shared(conns.clone())));
    let registry = Arc::new(registry);
    tracing::info!(address = %addr, "Serving /metrics");
    Ok(tokio::spawn(accept_loop(
        listener, registry, conns, shutdown,
    )))
}

/// [`Connections`] registered while the server keeps counting into it.
#[derive(Debug)]
struct Shared(Arc<Connections>);

impl Collector for Shared {
    fn encode(&self, e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(e)
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    conns: Arc<Connections>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::Http::new();
    http.http1_only(true).http1_keep_alive(false);
    tokio::pin!(shutdown);
    let (mut refusing, mut failing) = (false, false);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                conns.accept_errors.fetch_add(1, Relaxed);
                if !failing {
                    tracing::warn!(error = %e, "Cannot accept /metrics connections (counted, logged again after an accept succeeds)");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        failing = false;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            conns.refused.fetch_add(1, Relaxed);
            if !refusing {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "Too many /metrics connections; new ones are closed (counted, logged again after the next one served)"
                );
                refusing = true;
            }
            drop(stream);
            continue;
        };
        refusing = false;
        conns.accepted.fetch_add(1, Relaxed);
        conns.open.fetch_add(1, Relaxed);
        let registry = registry.clone();
        let conns2 = conns.clone();
        let conn = http.serve_connection(
            stream,
            hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &registry)) }
            }),
        );
        tokio::spawn(async move {
            if tokio::time::timeout(CONNECTION_DEADLINE, conn)
                .await
                .is_err()
            {
                conns2.timed_out.fetch_add(1, Relaxed);
            }
            conns2.open.fetch_sub(1, Relaxed);
            drop(permit);
        });
    }
}

fn respond(req: &hyper::Request<hyper::Body>, registry: &Registry) -> hyper::Response<hyper::Body> {
    use hyper::{Body, Method, Response, StatusCode};
    let resp = if req.uri().path() != "/metrics" {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("not found; try /metrics\n"))
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(Body::empty())
    } else {
        Response::builder()
            .header(
                hyper::header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )
            .body(Body::from(crate::metrics::render(registry)))
    };
    resp.expect("static response")
}
