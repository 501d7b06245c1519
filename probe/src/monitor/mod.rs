//! The periodic prober: **schedule → send → match → classify → report**.
//!
//! - this module: the configuration (`[probe]`, `[[probe.target]]`) with `validate()`, and the
//!   typed results the monitor yields ([`ProbeResult`], [`Event`], [`Alarm`], [`Summary`]).
//! - [`prober`]: one task per target: schedules OPTIONS every interval, sends and retransmits
//!   through the transaction core, matches responses, runs the out-of-service INVITE check and
//!   closes every INVITE correctly (ACK, CANCEL, ACK+BYE).
//! - [`tracker`]: sans-IO classification of results into states, events on every change,
//!   alarms (raised once, cleared once), VIP ownership by fingerprint, per-minute HDR summaries.
//!
//! [`spawn`] wires them: probers → tracker → the caller's channel of [`Output`].

pub mod prober;
pub mod tracker;

use crate::message::{TargetUri, Transport};
use crate::transaction::{Method, TransportErrorKind};
use crate::transport::RxStats;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// `[probe]` section with its `[[probe.target]]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// How a VIP's answers are matched to the CP behind it: `to_tag` (the fixed prefix of
    /// Kamailio's stateless To tags), `server` (the Server header), or `header:NAME`.
    pub fingerprint: Option<String>,
    /// `"K/N"`: this instance probes only its share of the targets (checked and applied by the
    /// service, see `srewatch run`); none = every target.
    pub shard: Option<String>,
    pub target: Vec<TargetConfig>,
}

/// One `[[probe.target]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    /// `sip:host[:port][;transport=udp|tcp]`.
    pub uri: String,
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub expect: Expect,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub invite_probe: InviteProbe,
    /// Request-URI of the INVITE check; default: the target URI with `user`.
    #[serde(default)]
    pub invite_uri: Option<String>,
    /// User part of the Request-URI (e.g. `monitor`); none by default.
    #[serde(default)]
    pub user: Option<String>,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl TargetConfig {
    /// A target with the defaults.
    pub fn new(name: &str, uri: &str, role: Role) -> TargetConfig {
        TargetConfig {
            name: name.into(),
            uri: uri.into(),
            role,
            expect: Expect::InService,
            interval: default_interval(),
            timeout: default_timeout(),
            invite_probe: InviteProbe::OosOnly,
            invite_uri: None,
            user: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Cp,
    Vip,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Cp => "cp",
            Role::Vip => "vip",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    #[default]
    InService,
    OutOfService,
    Any,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::InService => "in_service",
            Expect::OutOfService => "out_of_service",
            Expect::Any => "any",
        }
    }

    /// Whether `s` is what this expectation asks for.
    pub fn allows(self, s: ServiceState) -> bool {
        match self {
            Expect::InService => s == ServiceState::InService,
            Expect::OutOfService => s == ServiceState::OutOfService,
            Expect::Any => true,
        }
    }
}

/// When to send the INVITE check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteProbe {
    /// After an OPTIONS answered 503, or any non-2xx final when out of service is expected.
    #[default]
    OosOnly,
    /// After every OPTIONS that got a final answer.
    Always,
    Never,
}

/// How VIP answers are attributed to CPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerprintRule {
    /// The To tag up to its dot: Kamailio's stateless replies carry `<32 hex>.<hex>` where the
    /// part before the dot is fixed per Kamailio instance.
    ToTag,
    Server,
    Header(String),
}

impl FingerprintRule {
    pub fn parse(s: &str) -> Result<FingerprintRule, String> {
        match s {
            "to_tag" => Ok(FingerprintRule::ToTag),
            "server" => Ok(FingerprintRule::Server),
            _ => match s.strip_prefix("header:") {
                Some(h)
                    if !h.is_empty()
                        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
                {
                    Ok(FingerprintRule::Header(h.to_string()))
                }
                _ => Err(format!(
                    "{s:?} is not \"to_tag\", \"server\" or \"header:NAME\""
                )),
            },
        }
    }

    /// The fingerprint of one response under this rule.
    pub fn of(&self, r: &crate::message::Response) -> Option<String> {
        match self {
            FingerprintRule::ToTag => {
                let tag = r.to_tag.as_deref()?;
                let (prefix, _) = tag.split_once('.')?;
                (!prefix.is_empty()).then(|| prefix.to_string())
            }
            FingerprintRule::Server => r.server.clone(),
            FingerprintRule::Header(h) => r.header(h).map(str::to_string),
        }
    }
}

impl ProbeConfig {
    /// The fingerprint rule (default `to_tag`).
    pub fn fingerprint_rule(&self) -> FingerprintRule {
        self.fingerprint
            .as_deref()
            .and_then(|s| FingerprintRule::parse(s).ok())
            .unwrap_or(FingerprintRule::ToTag)
    }

    /// Bad values as (key path under `probe.`, e.g. `target[1].uri`, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(f) = &self.fingerprint {
            if let Err(e) = FingerprintRule::parse(f) {
                out.push(("fingerprint".to_string(), e));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.target.iter().enumerate() {
            let mut bad = |key: &str, reason: String| {
                out.push((format!("target[{i}].{key}"), reason));
            };
            if t.name.is_empty()
                || !t
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                bad(
                    "name",
                    format!("{:?}: use letters, digits, '-', '_' or '.'", t.name),
                );
            } else if !names.insert(t.name.as_str()) {
                bad("name", format!("{:?} is used by another target", t.name));
            }
            if let Err(e) = TargetUri::parse(&t.uri) {
                bad("uri", e.0);
            }
            if t.interval < Duration::from_millis(10) {
                bad("interval", "must be at least 10ms".into());
            }
            if t.timeout < Duration::from_millis(10) || t.timeout > crate::consts::TIMER_F {
                bad("timeout", "must be between 10ms and 32s (64·T1)".into());
            }
            if t.role == Role::Vip && t.expect == Expect::OutOfService {
                bad(
                    "expect",
                    "a VIP must answer 200; out_of_service is for CPs".into(),
                );
            }
            if let Some(u) = &t.user {
                if u.is_empty() || !u.bytes().all(is_user_char) {
                    bad("user", format!("{u:?} is not a valid SIP user"));
                }
            }
            if let Some(u) = &t.invite_uri {
                if !u.starts_with("sip:") || rsip::Uri::try_from(u.as_str()).is_err() {
                    bad("invite_uri", format!("{u:?} is not a sip: URI"));
                }
            }
        }
        out
    }
}

fn is_user_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b)
}

/// What one probe found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// 200 OK.
    InService,
    /// 503 Service Unavailable.
    OutOfService,
    /// Another final status.
    Unexpected,
    /// No final response (timeout or transport error).
    Down,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::InService => "in_service",
            ServiceState::OutOfService => "out_of_service",
            ServiceState::Unexpected => "unexpected",
            ServiceState::Down => "down",
        }
    }

    /// A small number for graphs: 1 in service, 0 out of service, -1 unexpected, -2 down.
    pub fn as_i64(self) -> i64 {
        match self {
            ServiceState::InService => 1,
            ServiceState::OutOfService => 0,
            ServiceState::Unexpected => -1,
            ServiceState::Down => -2,
        }
    }

    /// 200 → in service, 503 → out of service, other final → unexpected, none → down.
    pub fn classify(status: Option<u16>) -> ServiceState {
        match status {
            Some(200) => ServiceState::InService,
            Some(503) => ServiceState::OutOfService,
            Some(_) => ServiceState::Unexpected,
            None => ServiceState::Down,
        }
    }
}

/// The result of one OPTIONS probe or INVITE check.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub target: Arc<str>,
    pub role: Role,
    /// `Options` or `Invite`; `Bye` for the hang-up of a call an INVITE check got accepted
    /// (reported just before that INVITE's result, `status` the BYE's own final status).
    pub method: Method,
    /// When the request was first sent.
    pub at: SystemTime,
    pub state: ServiceState,
    pub status: Option<u16>,
    /// From the first transmission to the final response.
    pub rtt: Option<Duration>,
    pub retransmits: u32,
    /// Seconds, from a Retry-After on a 503.
    pub retry_after: Option<u32>,
    /// A local transport error, when that is why there was no answer.
    pub error: Option<TransportErrorKind>,
    /// The responder's fingerprint (see [`FingerprintRule`]).
    pub fingerprint: Option<String>,
    /// VIPs: the CP whose fingerprint matched (filled in by the tracker).
    pub owner: Option<Arc<str>>,
    /// A final response that came after the probe had been reported as down (INVITE only).
    pub late: bool,
}

/// A state change, logged and written.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: SystemTime,
    pub target: Arc<str>,
    pub role: Role,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The OPTIONS state changed (`from` is `None` at the first probe).
    State {
        from: Option<ServiceState>,
        to: ServiceState,
        status: Option<u16>,
    },
    /// The CP answering for a VIP changed (a failover); `None` = unknown fingerprint.
    Owner {
        from: Option<Arc<str>>,
        to: Option<Arc<str>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmKind {
    /// A CP's observed state differs from the expected one.
    Unexpected,
    /// A VIP answered other than 200 (503, another code, or not at all).
    VipNotInService,
    /// A VIP is answered by a CP that is out of service.
    VipOwnerOutOfService,
    /// The INVITE check did not get a 503.
    InviteNot503,
    /// An INVITE got a 2xx: a call was accepted (it was ACKed and a BYE sent at once).
    CallAccepted,
    /// The BYE of an accepted call got no 2xx (refused, no answer, not sent): the call may
    /// still be up. Cleared by a later BYE answered 2xx.
    ByeFailed,
}

impl AlarmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Unexpected => "unexpected_state",
            AlarmKind::VipNotInService => "vip_not_in_service",
            AlarmKind::VipOwnerOutOfService => "vip_owner_out_of_service",
            AlarmKind::InviteNot503 => "invite_not_503",
            AlarmKind::CallAccepted => "call_accepted",
            AlarmKind::ByeFailed => "bye_failed",
        }
    }
}

/// An alarm raised (`active`) or cleared, once per change.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub at: SystemTime,
    pub target: Arc<str>,
    pub role: Role,
    pub kind: AlarmKind,
    pub active: bool,
    pub message: String,
}

/// Per target and minute: OPTIONS probes, losses and RTT percentiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub target: Arc<str>,
    pub role: Role,
    /// Start of the minute.
    pub minute: SystemTime,
    pub count: u64,
    /// Probes without a final response.
    pub lost: u64,
    pub retransmits: u64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Received messages ignored over the minute, by reason.
    pub rx: RxStats,
}

/// Everything the monitor yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Result(ProbeResult),
    Event(Event),
    Alarm(Alarm),
    Summary(Summary),
}

/// What probers tell the tracker.
#[derive(Debug)]
pub(crate) enum FromProber {
    Result(ProbeResult),
    /// An INVITE answered 2xx (`invite`), reported once its BYE ended: the BYE's own result
    /// (`bye`, method BYE) and what it means (`outcome`).
    Accepted {
        invite: ProbeResult,
        bye: ProbeResult,
        outcome: crate::dialog::ByeResult,
    },
    Rx {
        target: Arc<str>,
        stats: RxStats,
    },
    /// A target added while running (before its prober starts).
    Add(TargetConfig),
    /// A target removed while running (after its prober ended): its window is summarised.
    Remove(Arc<str>),
}

/// Errors starting the monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("target {target}: bad URI: {reason}")]
    Uri { target: String, reason: String },
    #[error("target {target}: cannot resolve {host}: {source}")]
    Resolve {
        target: String,
        host: String,
        source: std::io::Error,
    },
    #[error("target {target}: cannot open a socket: {source}")]
    Socket {
        target: String,
        source: std::io::Error,
    },
    #[error("target {target}: a target of that name is already probed")]
    Duplicate { target: String },
}

impl MonitorError {
    pub fn as_str(&self) -> &'static str {
        match self {
            MonitorError::Uri { .. } => "bad_uri",
            MonitorError::Resolve { .. } => "resolve",
            MonitorError::Socket { .. } => "socket",
            MonitorError::Duplicate { .. } => "duplicate",
        }
    }
}

/// A running monitor.
pub struct MonitorHandle {
    rule: FingerprintRule,
    to_tracker: mpsc::Sender<FromProber>,
    /// Per target: its configuration, its own stop switch and its task, in configuration order.
    probers: Vec<RunningProber>,
    tracker: JoinHandle<()>,
}

struct RunningProber {
    cfg: TargetConfig,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MonitorHandle {
    /// Stops probing, lets the tracker emit the last summaries, and waits for all tasks.
    pub async fn stop(self) {
        for p in &self.probers {
            let _ = p.stop.send(true);
        }
        for p in self.probers {
            let _ = p.task.await;
        }
        drop(self.to_tracker);
        let _ = self.tracker.await;
    }

    /// The targets being probed, in the order they were added.
    pub fn targets(&self) -> impl Iterator<Item = &TargetConfig> {
        self.probers.iter().map(|p| &p.cfg)
    }

    /// Starts probing one more target; the others keep their state and windows. A target of
    /// the same name must have been removed first.
    pub async fn add(&mut self, t: TargetConfig) -> Result<(), MonitorError> {
        if self.probers.iter().any(|p| p.cfg.name == t.name) {
            return Err(MonitorError::Duplicate { target: t.name });
        }
        let p = open(&t, &self.rule, &self.to_tracker).await?;
        let _ = self.to_tracker.send(FromProber::Add(t.clone())).await;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(p.run(stop_rx));
        self.probers.push(RunningProber { cfg: t, stop, task });
        Ok(())
    }

    /// Stops probing the target called `name`: its outstanding probes are reported, then its
    /// open minute is summarised. Returns whether it was there.
    pub async fn remove(&mut self, name: &str) -> bool {
        let Some(i) = self.probers.iter().position(|p| p.cfg.name == name) else {
            return false;
        };
        let p = self.probers.remove(i);
        let _ = p.stop.send(true);
        let _ = p.task.await;
        let _ = self
            .to_tracker
            .send(FromProber::Remove(Arc::from(name)))
            .await;
        true
    }

    /// Makes the probed targets those of `targets`: removes the ones no longer there or whose
    /// configuration changed, adds the new ones; the unchanged keep their state. Returns the
    /// names removed and added; a target that cannot be started is reported and skipped.
    pub async fn reconcile(&mut self, targets: &[TargetConfig]) -> Reconciled {
        let mut r = Reconciled::default();
        let stale: Vec<String> = self
            .probers
            .iter()
            .filter(|p| !targets.contains(&p.cfg))
            .map(|p| p.cfg.name.clone())
            .collect();
        for name in stale {
            self.remove(&name).await;
            r.removed.push(name);
        }
        for t in targets {
            if self.probers.iter().any(|p| p.cfg == *t) {
                continue;
            }
            match self.add(t.clone()).await {
                Ok(()) => r.added.push(t.name.clone()),
                Err(e) => r.failed.push(e),
            }
        }
        r
    }
}

/// What [`MonitorHandle::reconcile`] did.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub removed: Vec<String>,
    pub added: Vec<String>,
    pub failed: Vec<MonitorError>,
}

async fn open(
    t: &TargetConfig,
    rule: &FingerprintRule,
    to_tracker: &mpsc::Sender<FromProber>,
) -> Result<prober::Prober, MonitorError> {
    let uri = TargetUri::parse(&t.uri).map_err(|e| MonitorError::Uri {
        target: t.name.clone(),
        reason: e.0,
    })?;
    let addr = resolve(&uri).await.map_err(|e| MonitorError::Resolve {
        target: t.name.clone(),
        host: uri.host.clone(),
        source: e,
    })?;
    prober::Prober::open(t.clone(), uri, addr, rule.clone(), to_tracker.clone())
        .await
        .map_err(|e| MonitorError::Socket {
            target: t.name.clone(),
            source: e,
        })
}

/// Resolves the targets, opens their sockets and starts probing. Outputs arrive on the
/// returned channel until [`MonitorHandle::stop`]. Targets can be added and removed while
/// running ([`MonitorHandle::add`], [`MonitorHandle::remove`], [`MonitorHandle::reconcile`]).
pub async fn spawn(
    cfg: &ProbeConfig,
) -> Result<(mpsc::Receiver<Output>, MonitorHandle), MonitorError> {
    let rule = cfg.fingerprint_rule();
    let (to_tracker, from_probers) = mpsc::channel(1024);
    let (out_tx, out_rx) = mpsc::channel(1024);
    let mut probers = Vec::new();
    for t in &cfg.target {
        if probers.iter().any(|p: &RunningProber| p.cfg.name == t.name) {
            return Err(MonitorError::Duplicate {
                target: t.name.clone(),
            });
        }
        let p = open(t, &rule, &to_tracker).await?;
        let (stop, stop_rx) = watch::channel(false);
        probers.push(RunningProber {
            cfg: t.clone(),
            stop,
            task: tokio::spawn(p.run(stop_rx)),
        });
    }
    let tracker = tracker::Tracker::new(&cfg.target);
    let tracker = tokio::spawn(tracker.run(from_probers, out_tx));
    Ok((
        out_rx,
        MonitorHandle {
            rule,
            to_tracker,
            probers,
            tracker,
        },
    ))
}

/// The first address of a target's host.
pub async fn resolve(uri: &TargetUri) -> std::io::Result<std::net::SocketAddr> {
    if let Ok(ip) = uri.host.parse::<std::net::IpAddr>() {
        return Ok((ip, uri.port).into());
    }
    tokio::net::lookup_host((uri.host.as_str(), uri.port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

/// Transport of a target URI string (for callers that only hold the config).
pub fn transport_of(uri: &str) -> Option<Transport> {
    TargetUri::parse(uri).ok().map(|u| u.transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ProbeConfig {
        #[derive(Deserialize)]
        struct Doc {
            probe: ProbeConfig,
        }
        toml::from_str::<Doc>(text).unwrap().probe
    }

    #[test]
    fn config_defaults_and_validation() {
        let cfg = parse(
            r#"
[probe]
fingerprint = "header:X-Node"
[[probe.target]]
name = "cp1"
uri = "sip:10.0.0.1"
[[probe.target]]
name = "vip"
uri = "sip:10.0.0.10:5070;transport=tcp"
role = "vip"
interval = "200ms"
timeout = "500ms"
invite_probe = "never"
user = "monitor"
"#,
        );
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let t = &cfg.target[0];
        assert_eq!(t.role, Role::Cp);
        assert_eq!(t.expect, Expect::InService);
        assert_eq!(t.interval, Duration::from_secs(1));
        assert_eq!(t.timeout, Duration::from_secs(2));
        assert_eq!(t.invite_probe, InviteProbe::OosOnly);
        assert_eq!(cfg.target[1].interval, Duration::from_millis(200));
        assert_eq!(
            cfg.fingerprint_rule(),
            FingerprintRule::Header("X-Node".into())
        );

        let bad = parse(
            r#"
[probe]
fingerprint = "md5"
[[probe.target]]
name = "cp1"
uri = "sip:a@10.0.0.1"
timeout = "60s"
[[probe.target]]
name = "cp1"
uri = "sip:10.0.0.2;transport=tls"
role = "vip"
expect = "out_of_service"
user = "a b"
invite_uri = "tel:123"
"#,
        );
        let keys: Vec<String> = bad.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                "fingerprint",
                "target[0].uri",
                "target[0].timeout",
                "target[1].name",
                "target[1].uri",
                "target[1].expect",
                "target[1].user",
                "target[1].invite_uri",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Doc {
            probe: ProbeConfig,
        }
        let e = toml::from_str::<Doc>("[[probe.target]]\nname='a'\nuri='sip:x'\nintervl='1s'\n")
            .unwrap_err();
        assert!(e.to_string().contains("intervl"), "{e}");
    }

    #[test]
    fn classification() {
        assert_eq!(ServiceState::classify(Some(200)), ServiceState::InService);
        assert_eq!(
            ServiceState::classify(Some(503)),
            ServiceState::OutOfService
        );
        assert_eq!(ServiceState::classify(Some(202)), ServiceState::Unexpected);
        assert_eq!(ServiceState::classify(Some(480)), ServiceState::Unexpected);
        assert_eq!(ServiceState::classify(None), ServiceState::Down);
    }

    #[test]
    fn fingerprints() {
        let r = crate::message::parse_response(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKa\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nTo: <sip:x>;tag=0123abcd.ffee\r\nServer: kam cp2\r\nX-Node: n2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(FingerprintRule::ToTag.of(&r).as_deref(), Some("0123abcd"));
        assert_eq!(FingerprintRule::Server.of(&r).as_deref(), Some("kam cp2"));
        assert_eq!(
            FingerprintRule::Header("x-node".into()).of(&r).as_deref(),
            Some("n2")
        );
        assert_eq!(FingerprintRule::Header("X-Other".into()).of(&r), None);
    }
}
