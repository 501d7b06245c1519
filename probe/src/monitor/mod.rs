//! The periodic prober: **schedule → send → match → classify → report**.
//!
//! - this module: the configuration (`[probe]`, `[[probe.target]]`) with `validate()`, and the
//!   typed results the monitor yields ([`ProbeResult`], [`Event`], [`Alarm`], [`Summary`]).
//! - [`prober`]: one task per target: schedules OPTIONS every interval, sends and retransmits
//!   through the transaction core, matches responses, runs the out-of-service INVITE check and
//!   closes every INVITE correctly (ACK, CANCEL, ACK+BYE).
//! - [`setup`]: starting one target: its host resolved and its socket opened, retried with
//!   backoff; a target that cannot start is that target's alarm, never the monitor's error.
//! - [`tracker`]: sans-IO classification of results into states, events on every change,
//!   alarms (raised once, cleared once), VIP ownership by fingerprint, per-minute HDR summaries.
//!
//! [`spawn`] wires them: probers → tracker → the caller's channel of [`Output`].

pub mod prober;
pub mod setup;
pub mod tracker;

use crate::message::{TargetUri, Transport};
use crate::transaction::{Method, TransportErrorKind};
use crate::transport::{RxStats, Source};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

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
    /// `ADDR[:PORT]` every target sends from unless it sets its own `source` (a multi-homed
    /// node: the signalling network's address); none = the address of the route to the target.
    pub source: Option<String>,
    pub target: Vec<TargetConfig>,
}

/// One `[[probe.target]]`: one field per key of the table (the TOML maps onto it one to one,
/// hence more than a dozen fields).
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
    /// Consecutive probes without an alive answer before the target's state leaves
    /// `in_service` (Kamailio dispatcher's `ds_inactive_threshold`); default 1.
    #[serde(default = "one")]
    pub down_after: u32,
    /// Consecutive alive answers before the target's state returns to `in_service`
    /// (dispatcher's `ds_probing_threshold`); default 1.
    #[serde(default = "one")]
    pub up_after: u32,
    /// OPTIONS status codes that mean alive (`in_service`); default `[200]`. 503 may not be
    /// listed: it always means out of service.
    #[serde(default = "default_alive_codes")]
    pub alive_codes: Vec<u16>,
    /// Whether an answer from another address than the probed one (a CP listening on
    /// `0.0.0.0`) is classified by its status (true, the default) or as `unexpected`. Either
    /// way it is matched, counted (`source_mismatch`) and its source written (`source`).
    #[serde(default = "yes")]
    pub accept_other_source: bool,
    /// `ADDR[:PORT]` to send from (the Via sent-by and Contact name it); default: `[probe]
    /// source`, else the address of the route to the target.
    #[serde(default)]
    pub source: Option<String>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn default_alive_codes() -> Vec<u16> {
    vec![200]
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
            down_after: 1,
            up_after: 1,
            alive_codes: default_alive_codes(),
            accept_other_source: true,
            source: None,
        }
    }

    /// The parsed `source` (an invalid one, refused by `validate()`, is an error here).
    pub fn source_addr(&self) -> std::io::Result<Option<Source>> {
        self.source
            .as_deref()
            .map(|s| {
                s.parse::<Source>().map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("source {e}"))
                })
            })
            .transpose()
    }

    /// The state one OPTIONS answer (or none) shows: an alive code → in service, 503 → out of
    /// service, another final status → unexpected, none → down.
    pub fn classify(&self, status: Option<u16>) -> ServiceState {
        match status {
            Some(503) => ServiceState::OutOfService,
            Some(s) if self.alive_codes.contains(&s) => ServiceState::InService,
            Some(_) => ServiceState::Unexpected,
            None => ServiceState::Down,
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
    /// Kamailio's To tag (core/tags.h `init_tags`): `<md5>.<crc>` from sl (stateless
    /// replies), `<md5>-<crc>` from tm (`t_reply`), the md5 (32 hex) over a fixed signature
    /// and the instance's *first* listen socket. The fingerprint is `sl:<md5>` or `tm:<md5>`;
    /// a To tag of another shape gives none.
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
            FingerprintRule::ToTag => kamailio_tag(r.to_tag.as_deref()?),
            FingerprintRule::Server => r.server.clone(),
            FingerprintRule::Header(h) => r.header(h).map(str::to_string),
        }
    }
}

/// `sl:<md5>` / `tm:<md5>` from a Kamailio To tag `<32 hex><sep><hex>` (sep `.` for sl, `-`
/// for tm), none for any other shape.
fn kamailio_tag(tag: &str) -> Option<String> {
    let (md5, rest) = (tag.get(..32)?, tag.get(32..)?);
    let module = match rest.as_bytes().first()? {
        b'.' => "sl",
        b'-' => "tm",
        _ => return None,
    };
    let suffix = &rest[1..];
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(md5) && !suffix.is_empty() && hex(suffix)).then(|| format!("{module}:{md5}"))
}

/// The `owner` value of a VIP answered with a fingerprint that two or more CPs answer with
/// (their answers cannot tell them apart); no target may be named so.
pub const AMBIGUOUS: &str = "ambiguous";

/// The `from`/`to` value of an owner event when no CP was known; no target may be named so.
pub const UNKNOWN: &str = "unknown";

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
        let default_source = match self.source.as_deref().map(str::parse::<Source>) {
            Some(Err(e)) => {
                out.push(("source".to_string(), e));
                None
            }
            Some(Ok(s)) => Some(("source".to_string(), s)),
            None => None,
        };
        // A fixed source port can be bound once per transport.
        let mut fixed_ports: std::collections::HashMap<(std::net::SocketAddr, bool), String> =
            Default::default();
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
            } else if t.name == AMBIGUOUS || t.name == UNKNOWN {
                bad(
                    "name",
                    format!("{:?} is reserved (a VIP owner value)", t.name),
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
            for (key, n) in [("down_after", t.down_after), ("up_after", t.up_after)] {
                if !(1..=100).contains(&n) {
                    bad(key, format!("{n}: must be between 1 and 100"));
                }
            }
            if t.alive_codes.is_empty() {
                bad(
                    "alive_codes",
                    "list at least one code (default [200])".into(),
                );
            }
            for &c in &t.alive_codes {
                if c == 503 {
                    bad(
                        "alive_codes",
                        "503 always means out of service; it cannot mean alive".into(),
                    );
                } else if !(200..=699).contains(&c) {
                    bad("alive_codes", format!("{c} is not a final SIP status"));
                }
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
            let source = match t.source.as_deref().map(str::parse::<Source>) {
                Some(Err(e)) => {
                    bad("source", e);
                    None
                }
                Some(Ok(s)) => Some((format!("target[{i}].source"), s)),
                None => default_source.clone(),
            };
            if let (Some((key, s)), Ok(uri)) = (source, TargetUri::parse(&t.uri)) {
                if s.0.port() != 0 {
                    let owner = fixed_ports
                        .entry((s.0, uri.transport.is_reliable()))
                        .or_insert_with(|| t.name.clone());
                    if owner != &t.name {
                        let reason = format!(
                            "{s}: target {owner:?} sends from this port already (a fixed port \
                             serves one target per transport)"
                        );
                        // The target's own key if it set one, else the [probe] default.
                        if t.source.is_some() {
                            bad("source", reason);
                        } else {
                            out.push((key, reason));
                        }
                    }
                }
            }
        }
        out
    }

    /// The targets with the `[probe]` defaults applied (`source`).
    pub fn effective_targets(&self) -> Vec<TargetConfig> {
        self.target
            .iter()
            .map(|t| TargetConfig {
                source: t.source.clone().or_else(|| self.source.clone()),
                ..t.clone()
            })
            .collect()
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
///
/// 14 fields: each is a field of the `probe` point written from it.
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
    /// The address the answer came from, when it is not the probed one (a CP listening on
    /// `0.0.0.0` answers from another address of its host).
    pub source: Option<std::net::SocketAddr>,
}

/// A state change, logged and written.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: SystemTime,
    pub target: Arc<str>,
    pub role: Role,
    pub kind: EventKind,
}

impl Event {
    /// A VIP moved from one CP to another (the first owner found is not a failover).
    pub fn is_failover(&self) -> bool {
        matches!(&self.kind, EventKind::Owner { from: Some(f), to: Some(t) } if f != t)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The OPTIONS state changed (`from` is `None` at the first probe).
    State {
        from: Option<ServiceState>,
        to: ServiceState,
        status: Option<u16>,
    },
    /// The CP answering for a VIP changed: from `None` the first owner found, from a CP a
    /// failover (see [`Event::is_failover`]). Answers that cannot be attributed (no answer,
    /// unknown or ambiguous fingerprint) change nothing here.
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
    /// The target's host name does not resolve (retried with backoff; cleared once probed).
    Unresolved,
    /// The socket towards the target cannot be opened (retried; cleared once probed).
    SocketFailed,
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
            AlarmKind::Unresolved => "unresolved",
            AlarmKind::SocketFailed => "socket_failed",
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
    /// An attempt to start the target failed ([`setup`]); it is retried.
    SetupFailed {
        target: Arc<str>,
        failure: setup::Failure,
        reason: String,
    },
    /// The target started after failed attempts.
    Started(Arc<str>),
}

/// Errors starting the monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("target {target}: bad URI: {reason}")]
    Uri { target: String, reason: String },
    #[error("target {target}: a target of that name is already probed")]
    Duplicate { target: String },
}

impl MonitorError {
    pub fn as_str(&self) -> &'static str {
        match self {
            MonitorError::Uri { .. } => "bad_uri",
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
    setups: Arc<setup::Setups>,
}

struct RunningProber {
    cfg: TargetConfig,
    /// Cancelled to stop the target; dropping it (the handle dropped) stops it too.
    stop: DropGuard,
    /// Wakes the task out of a wait between two failed starts.
    retry: Arc<tokio::sync::Notify>,
    task: JoinHandle<()>,
}

impl MonitorHandle {
    /// Stops probing, lets the tracker emit the last summaries, and waits for all tasks.
    pub async fn stop(self) {
        for p in &self.probers {
            p.stop.token().cancel();
        }
        for p in self.probers {
            let _ = p.task.await;
        }
        drop(self.to_tracker);
        let _ = self.tracker.await;
    }

    /// The targets being probed (or being started), in the order they were added.
    pub fn targets(&self) -> impl Iterator<Item = &TargetConfig> {
        self.probers.iter().map(|p| &p.cfg)
    }

    /// Targets not started yet (name not resolved, no socket) try again now instead of at the
    /// end of their backoff.
    pub fn retry_now(&self) {
        for p in &self.probers {
            p.retry.notify_one();
        }
    }

    /// How each target's start went: its address, or why it is not probed yet.
    pub fn setups(&self) -> Arc<setup::Setups> {
        self.setups.clone()
    }

    /// Starts probing one more target; the others keep their state and windows. A target of
    /// the same name must have been removed first.
    pub async fn add(&mut self, t: TargetConfig) -> Result<(), MonitorError> {
        if self.probers.iter().any(|p| p.cfg.name == t.name) {
            return Err(MonitorError::Duplicate { target: t.name });
        }
        let uri = parse_uri(&t)?;
        let _ = self.to_tracker.send(FromProber::Add(t.clone())).await;
        let p = start(&t, uri, &self.rule, &self.to_tracker, &self.setups);
        self.probers.push(p);
        Ok(())
    }

    /// Stops probing the target called `name`: its outstanding probes are reported, then its
    /// open minute is summarised. Returns whether it was there.
    pub async fn remove(&mut self, name: &str) -> bool {
        let Some(i) = self.probers.iter().position(|p| p.cfg.name == name) else {
            return false;
        };
        let p = self.probers.remove(i);
        p.stop.token().cancel();
        let _ = p.task.await;
        self.setups.forget(name);
        let _ = self
            .to_tracker
            .send(FromProber::Remove(Arc::from(name)))
            .await;
        true
    }

    /// Makes the probed targets those of `targets`: removes the ones no longer there or whose
    /// configuration changed, adds the new ones; the unchanged keep their state. Returns the
    /// names removed and added; a target with a bad URI is reported and skipped (one that does
    /// not resolve is added, and retried by its own task). Targets not started yet try again
    /// at once ([`MonitorHandle::retry_now`]).
    pub async fn reconcile(&mut self, targets: &[TargetConfig]) -> Reconciled {
        self.retry_now();
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

fn parse_uri(t: &TargetConfig) -> Result<TargetUri, MonitorError> {
    TargetUri::parse(&t.uri).map_err(|e| MonitorError::Uri {
        target: t.name.clone(),
        reason: e.0,
    })
}

/// Starts one target's task: resolve and open (retried, see [`setup`]), then probe.
fn start(
    t: &TargetConfig,
    uri: TargetUri,
    rule: &FingerprintRule,
    to_tracker: &mpsc::Sender<FromProber>,
    setups: &Arc<setup::Setups>,
) -> RunningProber {
    let stop = CancellationToken::new();
    let retry = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(setup::start(
        t.clone(),
        uri,
        rule.clone(),
        to_tracker.clone(),
        stop.clone(),
        setups.clone(),
        retry.clone(),
    ));
    RunningProber {
        cfg: t.clone(),
        stop: stop.drop_guard(),
        retry,
        task,
    }
}

/// Starts probing the targets: each resolves and opens its socket in its own task (a target
/// that cannot is retried and alarmed, see [`setup`]). Outputs arrive on the returned channel
/// until [`MonitorHandle::stop`]. Targets can be added and removed while running
/// ([`MonitorHandle::add`], [`MonitorHandle::remove`], [`MonitorHandle::reconcile`]). Errors
/// only for a bad URI or a duplicate name, which `validate()` already refuses.
pub async fn spawn(
    cfg: &ProbeConfig,
) -> Result<(mpsc::Receiver<Output>, MonitorHandle), MonitorError> {
    let rule = cfg.fingerprint_rule();
    let (to_tracker, from_probers) = mpsc::channel(1024);
    let (out_tx, out_rx) = mpsc::channel(1024);
    let setups = Arc::new(setup::Setups::default());
    let mut uris = Vec::new();
    for (i, t) in cfg.target.iter().enumerate() {
        if cfg.target[..i].iter().any(|o| o.name == t.name) {
            return Err(MonitorError::Duplicate {
                target: t.name.clone(),
            });
        }
        uris.push(parse_uri(t)?);
    }
    let targets = cfg.effective_targets();
    let tracker = tracker::Tracker::new(&targets);
    let tracker = tokio::spawn(tracker.run(from_probers, out_tx));
    let probers = targets
        .iter()
        .zip(uris)
        .map(|(t, uri)| start(t, uri, &rule, &to_tracker, &setups))
        .collect();
    Ok((
        out_rx,
        MonitorHandle {
            rule,
            to_tracker,
            probers,
            tracker,
            setups,
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
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKa\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nTo: <sip:x>;tag=0123456789abcdef0123456789abcdef.ffee0011\r\nServer: kam cp2\r\nX-Node: n2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            FingerprintRule::ToTag.of(&r).as_deref(),
            Some("sl:0123456789abcdef0123456789abcdef")
        );
        assert_eq!(FingerprintRule::Server.of(&r).as_deref(), Some("kam cp2"));
        assert_eq!(
            FingerprintRule::Header("x-node".into()).of(&r).as_deref(),
            Some("n2")
        );
        assert_eq!(FingerprintRule::Header("X-Other".into()).of(&r), None);
    }

    /// Kamailio's two To-tag forms (core/tags.h `init_tags`): sl replies
    /// `<md5>.<crc>`, tm replies `<md5>-<crc>`, the md5 over a signature and the first listen
    /// socket. The rule keeps the md5 and which module made it.
    #[test]
    fn kamailio_sl_and_tm_to_tags() {
        let tag = |t: &str| {
            crate::message::parse_response(format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKa\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nTo: <sip:x>;tag={t}\r\n\r\n"
            ).as_bytes())
            .unwrap()
        };
        let sl = tag("0ba38723a518365bdb987f24bc77052f.5798eb28");
        let tm = tag("89b74c044bc435a8a35720b72b59fa5a-ada14ee9");
        assert_eq!(
            FingerprintRule::ToTag.of(&sl).as_deref(),
            Some("sl:0ba38723a518365bdb987f24bc77052f")
        );
        assert_eq!(
            FingerprintRule::ToTag.of(&tm).as_deref(),
            Some("tm:89b74c044bc435a8a35720b72b59fa5a")
        );
        // Not Kamailio's shape: no fingerprint rather than a wrong one.
        for t in [
            "a.b",
            "abc-def",
            "0ba38723a518365bdb987f24bc77052f",
            "as4f3b2a1",
        ] {
            assert_eq!(FingerprintRule::ToTag.of(&tag(t)), None, "{t}");
        }
    }

    /// The codes that mean alive are configurable; 503 never is.
    #[test]
    fn alive_codes_and_hysteresis_config() {
        let cfg = parse(
            r#"
[[probe.target]]
name = "cp1"
uri = "sip:10.0.0.1"
alive_codes = [200, 404, 405, 483, 401, 407]
down_after = 3
up_after = 2
accept_other_source = false
[[probe.target]]
name = "cp2"
uri = "sip:10.0.0.2"
alive_codes = [200, 503]
down_after = 0
[[probe.target]]
name = "ambiguous"
uri = "sip:10.0.0.3"
alive_codes = [100]
"#,
        );
        let t = &cfg.target[0];
        assert_eq!(
            (t.down_after, t.up_after, t.accept_other_source),
            (3, 2, false)
        );
        let got: Vec<ServiceState> = [200, 404, 407, 503, 480, 202]
            .into_iter()
            .map(|s| t.classify(Some(s)))
            .chain([t.classify(None)])
            .collect();
        use ServiceState::*;
        assert_eq!(
            got,
            vec![
                InService,
                InService,
                InService,
                OutOfService,
                Unexpected,
                Unexpected,
                Down
            ]
        );
        let d = TargetConfig::new("x", "sip:x", Role::Cp);
        assert_eq!(
            (
                d.down_after,
                d.up_after,
                d.alive_codes.clone(),
                d.accept_other_source
            ),
            (1, 1, vec![200], true)
        );
        assert_eq!(d.classify(Some(404)), Unexpected);
        assert_eq!(
            cfg.validate(),
            vec![
                (
                    "target[1].down_after".to_string(),
                    "0: must be between 1 and 100".to_string()
                ),
                (
                    "target[1].alive_codes".to_string(),
                    "503 always means out of service; it cannot mean alive".to_string()
                ),
                (
                    "target[2].name".to_string(),
                    "\"ambiguous\" is reserved (a VIP owner value)".to_string()
                ),
                (
                    "target[2].alive_codes".to_string(),
                    "100 is not a final SIP status".to_string()
                ),
            ]
        );
    }

    /// Dropping the handle without `stop` stops the targets too (their stop switches are drop
    /// guards): the probers end, then the tracker, and the output channel closes.
    #[tokio::test]
    async fn dropping_the_handle_stops_the_targets() {
        let cfg = ProbeConfig {
            target: vec![TargetConfig {
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(50),
                ..TargetConfig::new("cp1", "sip:127.0.0.1:9", Role::Cp)
            }],
            ..Default::default()
        };
        let (mut rx, handle) = spawn(&cfg).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if let Some(Output::Result(r)) = rx.recv().await {
                    break r;
                }
            }
        })
        .await
        .expect("a result within 2 s");
        assert_eq!(&*first.target, "cp1");
        drop(handle);
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            while rx.recv().await.is_some() {}
        })
        .await;
        assert!(
            closed.is_ok(),
            "the target kept probing after the handle was dropped"
        );
    }

    /// A target whose name does not resolve is a state of that
    /// target (an alarm naming the reason, retried), never an error of the monitor; the other
    /// targets are probed meanwhile.
    #[tokio::test]
    async fn unresolvable_target_is_its_own_state() {
        let cfg = ProbeConfig {
            target: vec![
                TargetConfig::new("cpx", "sip:no-such-cp.invalid:5090", Role::Cp),
                TargetConfig {
                    interval: Duration::from_millis(100),
                    timeout: Duration::from_millis(50),
                    ..TargetConfig::new("cp1", "sip:127.0.0.1:9", Role::Cp)
                },
            ],
            ..Default::default()
        };
        let (mut rx, handle) = spawn(&cfg)
            .await
            .expect("an unresolvable target does not stop the monitor");
        let (mut alarms, mut cp1_results) = (Vec::new(), 0);
        let end = tokio::time::Instant::now() + Duration::from_millis(3500);
        while let Ok(Some(o)) = tokio::time::timeout_at(end, rx.recv()).await {
            match o {
                Output::Alarm(a) if &*a.target == "cpx" => alarms.push(a),
                Output::Result(r) if &*r.target == "cp1" => cp1_results += 1,
                _ => {}
            }
        }
        // Raised once, naming the host, though retried at 1 s and 2 s.
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert_eq!(alarms[0].kind.as_str(), "unresolved");
        assert!(alarms[0].active);
        assert!(
            alarms[0]
                .message
                .starts_with("cannot resolve no-such-cp.invalid:"),
            "{}",
            alarms[0].message
        );
        assert!(cp1_results >= 20, "cp1 probed {cp1_results} times");
        // Attempts at 0 s, 1 s and 3 s (the wait doubles), each counted.
        let setups = handle.setups().snapshot();
        assert_eq!(setups["cpx"].resolve_failures, 3, "{setups:?}");
        assert_eq!(setups["cpx"].addr, None);
        assert_eq!(
            setups["cpx"].failing.as_ref().map(|f| f.0),
            Some(setup::Failure::Resolve)
        );
        assert_eq!(setups["cp1"].addr, Some(([127, 0, 0, 1], 9).into()));
        assert_eq!(setups["cp1"].failing, None);
        assert_eq!(handle.setups().failing(), 1);
        // A reload makes the next attempt now rather than at 7 s.
        handle.retry_now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(handle.setups().snapshot()["cpx"].resolve_failures, 4);
        handle.stop().await;
    }
}
