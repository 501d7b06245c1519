//! Classification, events, alarms, VIP ownership and per-minute summaries: sans I/O, fed with
//! [`ProbeResult`]s in arrival order.
//!
//! - State: each OPTIONS result shows a state ([`TargetConfig::classify`]); the target's state
//!   follows after `down_after` consecutive results that are not in service, or `up_after`
//!   consecutive in-service results (1/1: at once). State events on every change of the
//!   target's state (and at its first probe); alarms follow the target's state.
//! - Alarms are conditions: raised once when they become true, cleared once when they stop.
//! - VIP ownership ([`Ownership`]): each CP's answered direct probes give its fingerprint, kept
//!   while it answers and for at most 3 intervals plus the timeout after its last answer. A
//!   VIP's answer is attributed to the one CP whose fingerprint it carries; two or more CPs
//!   with that fingerprint make it [`AMBIGUOUS`] (logged once with the fix), none unknown,
//!   no answer no owner. The first owner found is an owner event; a change from one CP to
//!   another is a failover.
//! - Summaries: per target and minute (of `at`), count, lost, retransmissions and RTT
//!   percentiles from an HDR histogram (microseconds, 3 significant digits), emitted when the
//!   next minute's first result arrives and at the end.

use super::*;
use crate::dialog::ByeResult;
use hdrhistogram::Histogram;
use std::collections::{HashMap, HashSet};
use std::time::UNIX_EPOCH;

struct Window {
    minute: u64,
    count: u64,
    lost: u64,
    retransmits: u64,
    hist: Histogram<u64>,
    rx: RxStats,
}

impl Window {
    fn new(minute: u64) -> Window {
        Window {
            minute,
            count: 0,
            lost: 0,
            retransmits: 0,
            // 1 µs to 10 min.
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            rx: RxStats::default(),
        }
    }
}

/// What the tracker knows of one target.
///
/// 16 fields: state, hysteresis counters, alarms and the minute's summary of one target,
/// updated together by each result.
struct TargetState {
    name: Arc<str>,
    role: Role,
    expect: Expect,
    invite_probe: InviteProbe,
    down_after: u32,
    up_after: u32,
    /// How long a CP's fingerprint holds after its last answer: 3 intervals + the timeout.
    fingerprint_ttl: Duration,
    /// The target's state (after hysteresis).
    state: Option<ServiceState>,
    /// Consecutive results on the other side of in service than `state`.
    streak: u32,
    /// CPs: the fingerprint of the last answered direct probe, and when it was sent.
    fingerprint: Option<(String, SystemTime)>,
    /// VIPs: the attribution of the last answer ([`Ownership::as_owner`]).
    owner: Option<Arc<str>>,
    /// VIPs: the last CP the answers were attributed to (failovers are changes of it).
    last_cp: Option<Arc<str>>,
    /// VIPs: the CP named by an active `vip_owner_out_of_service`.
    oos_owner: Option<Arc<str>>,
    /// VIPs: an unattributable fingerprint was logged (until the next attribution).
    unknown_logged: bool,
    alarms: HashSet<AlarmKind>,
    window: Option<Window>,
}

/// Who answered a VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// No answer: no owner.
    NoAnswer,
    /// Answered before every CP was probed once (no attribution yet, nothing logged).
    Pending,
    /// Answered, but without a fingerprint or with one no CP has.
    Unknown,
    /// The one CP answering with this fingerprint.
    Cp(Arc<str>),
    /// Two or more CPs answer with this fingerprint (sorted names).
    Ambiguous(Vec<Arc<str>>),
}

impl Ownership {
    /// The `owner` of the result: the CP, [`AMBIGUOUS`], or none.
    pub fn as_owner(&self) -> Option<Arc<str>> {
        match self {
            Ownership::Cp(c) => Some(c.clone()),
            Ownership::Ambiguous(_) => Some(Arc::from(AMBIGUOUS)),
            Ownership::NoAnswer | Ownership::Pending | Ownership::Unknown => None,
        }
    }
}

/// The sans-IO core of the monitor's report stage.
pub struct Tracker {
    targets: Vec<TargetState>,
    by_name: HashMap<Arc<str>, usize>,
    /// Fingerprints shared by two or more CPs, already logged (until they differ again).
    ambiguous_logged: HashSet<String>,
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

impl Tracker {
    pub fn new(targets: &[TargetConfig]) -> Tracker {
        let mut t = Tracker {
            targets: Vec::new(),
            by_name: HashMap::new(),
            ambiguous_logged: HashSet::new(),
        };
        for c in targets {
            t.add(c);
        }
        t
    }

    /// Starts tracking one more target (no state yet). A target of the same name is replaced.
    pub fn add(&mut self, c: &TargetConfig) {
        let name: Arc<str> = Arc::from(c.name.as_str());
        let state = TargetState {
            name: name.clone(),
            role: c.role,
            expect: c.expect,
            invite_probe: c.invite_probe,
            down_after: c.down_after.max(1),
            up_after: c.up_after.max(1),
            fingerprint_ttl: c.interval * 3 + c.timeout,
            state: None,
            streak: 0,
            fingerprint: None,
            owner: None,
            last_cp: None,
            oos_owner: None,
            unknown_logged: false,
            alarms: HashSet::new(),
            window: None,
        };
        match self.by_name.get(&name) {
            Some(&i) => self.targets[i] = state,
            None => {
                self.by_name.insert(name, self.targets.len());
                self.targets.push(state);
            }
        }
    }

    /// Stops tracking `name`: its open window is summarised into `out`; its fingerprint no
    /// longer attributes VIP answers. The other targets keep their state.
    pub fn remove(&mut self, name: &str, out: &mut Vec<Output>) {
        let Some(i) = self.by_name.remove(name) else {
            return;
        };
        let mut t = self.targets.remove(i);
        if let Some(w) = t.window.take() {
            out.push(Output::Summary(summary(&t.name, t.role, &w)));
        }
        // An owner alarm naming it can no longer be cleared by its return.
        for v in self.targets.iter_mut() {
            if v.oos_owner.as_deref() == Some(name) {
                v.oos_owner = None;
                let msg = format!("{name}, which answered the VIP, is no longer probed");
                let at = SystemTime::now();
                set_alarm(v, AlarmKind::VipOwnerOutOfService, false, at, msg, out);
            }
        }
        for (j, t) in self.targets.iter().enumerate().skip(i) {
            self.by_name.insert(t.name.clone(), j);
        }
    }

    /// The CP that answered `vip` last ([`AMBIGUOUS`] when it cannot be told; none when it
    /// did not answer or the answer matched no CP).
    pub fn owner(&self, vip: &str) -> Option<Arc<str>> {
        self.by_name
            .get(vip)
            .and_then(|&i| self.targets[i].owner.clone())
    }

    /// Adds received-and-ignored counts to the target's current window.
    pub fn on_rx(&mut self, target: &str, stats: &RxStats) {
        if let Some(&i) = self.by_name.get(target) {
            if let Some(w) = &mut self.targets[i].window {
                w.rx.add(stats);
            }
        }
    }

    /// Takes one result; appends what follows from it to `out` (the result itself last but
    /// summaries first, so points stay in time order).
    pub fn on_result(&mut self, mut r: ProbeResult, out: &mut Vec<Output>) {
        let Some(&i) = self.by_name.get(&*r.target) else {
            return;
        };
        if r.method == Method::Invite {
            self.on_invite(i, &r, None, out);
            out.push(Output::Result(r));
            return;
        }
        // Summaries per minute.
        let minute = minute_of(r.at);
        let t = &mut self.targets[i];
        match &t.window {
            Some(w) if w.minute < minute => {
                let w = t.window.replace(Window::new(minute)).expect("checked");
                out.push(Output::Summary(summary(&t.name, t.role, &w)));
            }
            None => t.window = Some(Window::new(minute)),
            _ => {}
        }
        let w = t.window.as_mut().expect("set above");
        w.count += 1;
        w.retransmits += r.retransmits as u64;
        match r.rtt {
            Some(rtt) if r.status.is_some() => w.hist.saturating_record(micros(rtt).max(1)),
            _ => w.lost += 1,
        }
        // Ownership: a CP's answer gives its fingerprint, no answer takes it away.
        if t.role == Role::Cp {
            let answered = r.fingerprint.clone().filter(|_| r.status.is_some());
            let before =
                std::mem::replace(&mut t.fingerprint, answered.clone().map(|fp| (fp, r.at)));
            // A CP answering with another fingerprint (its configuration changed) ends the
            // ambiguity logged for the old one; a CP merely down does not.
            if let (Some((old, _)), Some(new)) = (before, &answered) {
                if old != *new {
                    self.ambiguous_logged.remove(&old);
                }
            }
            if let Some(fp) = answered {
                self.check_ambiguity(&fp, r.at);
            }
        }
        // State change, after hysteresis.
        let t = &mut self.targets[i];
        if let Some(to) = next_state(t, r.state) {
            out.push(Output::Event(Event {
                at: r.at,
                target: t.name.clone(),
                role: t.role,
                kind: EventKind::State {
                    from: t.state,
                    to,
                    status: r.status,
                },
            }));
            t.state = Some(to);
        }
        if self.targets[i].role == Role::Vip {
            self.on_vip(i, &mut r, out);
        }
        let t = &mut self.targets[i];
        let state = t.state.unwrap_or(r.state);
        if t.role == Role::Cp {
            let wrong = !t.expect.allows(state);
            let msg = format!(
                "expected {} observed {}{}",
                t.expect.as_str(),
                state.as_str(),
                r.status.map(|s| format!(" ({s})")).unwrap_or_default()
            );
            set_alarm(t, AlarmKind::Unexpected, wrong, r.at, msg, out);
            if state == ServiceState::InService && t.invite_probe != InviteProbe::Always {
                // No INVITE check applies any more.
                set_alarm(t, AlarmKind::InviteNot503, false, r.at, String::new(), out);
                set_alarm(t, AlarmKind::CallAccepted, false, r.at, String::new(), out);
            }
            if state == ServiceState::InService {
                self.owner_back_in_service(i, r.at, out);
            }
        }
        out.push(Output::Result(r));
    }

    /// Logs once when `fp` (just answered by a CP) is the live fingerprint of two or more CPs;
    /// returns whether it logged.
    fn check_ambiguity(&mut self, fp: &str, at: SystemTime) -> bool {
        let cps = self.cps_with(fp, at);
        let vips = self.targets.iter().any(|t| t.role == Role::Vip);
        if cps.len() < 2 || !vips || !self.ambiguous_logged.insert(fp.to_string()) {
            return false;
        }
        let names: Vec<&str> = cps.iter().map(|c| &**c).collect();
        let fix = if fp.starts_with("sl:") || fp.starts_with("tm:") {
            "Kamailio's To tag hashes the first listen socket: list each node's own address \
             first (listen=), or add a per-node header (append_to_reply(\"X-Node: NAME\\r\\n\")) \
             and set probe.fingerprint = \"header:X-Node\""
        } else {
            "make the header differ per node (server_header=\"Server: kamailio NAME\", or \
             append_to_reply(\"X-Node: NAME\\r\\n\") with probe.fingerprint = \"header:X-Node\")"
        };
        tracing::warn!(
            cps = %names.join(","),
            fingerprint = %fp,
            fix,
            "CPs answer with the same fingerprint: VIP owner is ambiguous"
        );
        true
    }

    /// The CPs whose fingerprint is `fp` and not older than their TTL at `at`, sorted.
    fn cps_with(&self, fp: &str, at: SystemTime) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .targets
            .iter()
            .filter(|c| c.role == Role::Cp)
            .filter(|c| {
                c.fingerprint.as_ref().is_some_and(|(f, seen)| {
                    f == fp
                        && at
                            .duration_since(*seen)
                            .map_or(true, |age| age <= c.fingerprint_ttl)
                })
            })
            .map(|c| c.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Who answered one VIP result.
    fn ownership(&self, r: &ProbeResult) -> Ownership {
        if r.status.is_none() {
            return Ownership::NoAnswer;
        }
        let Some(fp) = &r.fingerprint else {
            return Ownership::Unknown;
        };
        // Until every CP has been probed, an attribution could be ambiguous unawares.
        if self
            .targets
            .iter()
            .any(|c| c.role == Role::Cp && c.state.is_none())
        {
            return Ownership::Pending;
        }
        let mut cps = self.cps_with(fp, r.at);
        match cps.len() {
            0 => Ownership::Unknown,
            1 => Ownership::Cp(cps.pop().expect("one")),
            _ => Ownership::Ambiguous(cps),
        }
    }

    /// CP `i` is in service: clears the `vip_owner_out_of_service` alarms that name it.
    fn owner_back_in_service(&mut self, i: usize, at: SystemTime, out: &mut Vec<Output>) {
        let cp = self.targets[i].name.clone();
        for v in self.targets.iter_mut() {
            if v.oos_owner.as_ref() == Some(&cp) {
                v.oos_owner = None;
                let msg = format!("{cp}, which answers the VIP, is back in service");
                set_alarm(v, AlarmKind::VipOwnerOutOfService, false, at, msg, out);
            }
        }
    }

    fn on_vip(&mut self, i: usize, r: &mut ProbeResult, out: &mut Vec<Output>) {
        let who = self.ownership(r);
        let owner_state = match &who {
            Ownership::Cp(c) => self.by_name.get(c).and_then(|&j| self.targets[j].state),
            _ => None,
        };
        let t = &mut self.targets[i];
        r.owner = who.as_owner();
        t.owner = r.owner.clone();
        match &who {
            Ownership::Cp(c) => {
                t.unknown_logged = false;
                if t.last_cp.as_ref() != Some(c) {
                    out.push(Output::Event(Event {
                        at: r.at,
                        target: t.name.clone(),
                        role: t.role,
                        kind: EventKind::Owner {
                            from: t.last_cp.clone(),
                            to: Some(c.clone()),
                        },
                    }));
                    t.last_cp = Some(c.clone());
                }
            }
            Ownership::Unknown if !t.unknown_logged => {
                t.unknown_logged = true;
                match &r.fingerprint {
                    Some(fp) => tracing::warn!(
                        target = %t.name,
                        fingerprint = %fp,
                        "VIP answered with a fingerprint no CP answers with; owner unknown"
                    ),
                    None => tracing::warn!(
                        target = %t.name,
                        "VIP answered without a fingerprint under probe.fingerprint; owner unknown"
                    ),
                }
            }
            _ => {}
        }
        let state = t.state.unwrap_or(r.state);
        let msg = format!(
            "VIP answered {}{}",
            state.as_str(),
            r.status.map(|s| format!(" ({s})")).unwrap_or_default()
        );
        let not_in_service = state != ServiceState::InService;
        set_alarm(
            t,
            AlarmKind::VipNotInService,
            not_in_service,
            r.at,
            msg,
            out,
        );
        // The owner alarm names one CP; it holds until that CP is back in service or the VIP
        // is answered by another CP. Answers that cannot be attributed change nothing.
        if let Ownership::Cp(c) = who {
            if owner_state == Some(ServiceState::OutOfService) {
                if t.oos_owner.as_ref() != Some(&c) {
                    if let Some(prev) = t.oos_owner.take() {
                        let msg = format!("VIP now answered by {c} instead of {prev}");
                        set_alarm(t, AlarmKind::VipOwnerOutOfService, false, r.at, msg, out);
                    }
                    let msg = format!("VIP answered by {c} which is out of service");
                    set_alarm(t, AlarmKind::VipOwnerOutOfService, true, r.at, msg, out);
                    t.oos_owner = Some(c);
                }
            } else if let Some(prev) = t.oos_owner.take() {
                let msg = if prev == c {
                    format!("{c}, which answers the VIP, is no longer out of service")
                } else {
                    format!("VIP now answered by {c} instead of {prev}")
                };
                set_alarm(t, AlarmKind::VipOwnerOutOfService, false, r.at, msg, out);
            }
        }
    }

    /// An INVITE answered 2xx whose BYE ended with `bye`: `call_accepted` says whether the
    /// call was hung up, and `bye_failed` is raised when the BYE got no 2xx (the call may still
    /// be up), cleared by a later BYE answered 2xx.
    pub fn on_accepted(
        &mut self,
        r: ProbeResult,
        bye_result: ProbeResult,
        bye: ByeResult,
        out: &mut Vec<Output>,
    ) {
        let Some(&i) = self.by_name.get(&*r.target) else {
            return;
        };
        self.on_invite(i, &r, Some(bye), out);
        let t = &mut self.targets[i];
        let msg = format!(
            "BYE of the call accepted with {} {}",
            r.status.unwrap_or(0),
            match bye {
                ByeResult::Refused { status } =>
                    format!("answered {status}: the call may still be up"),
                ByeResult::NoAnswer => "got no answer: the call may still be up".into(),
                ByeResult::NotSent(k) => {
                    format!(
                        "could not be sent ({}): the call may still be up",
                        k.as_str()
                    )
                }
                ByeResult::HungUp { status } => format!("answered {status}"),
            }
        );
        set_alarm(t, AlarmKind::ByeFailed, !bye.hung_up(), r.at, msg, out);
        out.push(Output::Result(bye_result));
        out.push(Output::Result(r));
    }

    fn on_invite(
        &mut self,
        i: usize,
        r: &ProbeResult,
        bye: Option<ByeResult>,
        out: &mut Vec<Output>,
    ) {
        let t = &mut self.targets[i];
        let accepted = matches!(r.status, Some(200..=299));
        if accepted {
            // "Hung up" only when the BYE got a 2xx.
            let msg = format!(
                "INVITE answered {}{}: a call was accepted ({})",
                r.status.unwrap_or(0),
                if r.late { " after the timeout" } else { "" },
                bye.map(|b| b.describe())
                    .unwrap_or_else(|| "ACK and BYE sent".into())
            );
            set_alarm(t, AlarmKind::CallAccepted, true, r.at, msg, out);
        } else if !r.late {
            set_alarm(t, AlarmKind::CallAccepted, false, r.at, String::new(), out);
        }
        if r.late {
            return;
        }
        // A target whose INVITE check runs only when out of service must answer 503.
        let wrong = r.status != Some(503)
            && (t.invite_probe == InviteProbe::OosOnly || t.expect == Expect::OutOfService);
        let msg = format!(
            "INVITE check got {}",
            r.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no final response".into())
        );
        set_alarm(t, AlarmKind::InviteNot503, wrong, r.at, msg, out);
    }

    /// A target's start failed (`failure`, raising its alarm with `reason` once) or it started
    /// (`None`, clearing the alarms of failed starts).
    pub fn on_setup(
        &mut self,
        target: &str,
        failure: Option<setup::Failure>,
        reason: String,
        out: &mut Vec<Output>,
    ) {
        let Some(&i) = self.by_name.get(target) else {
            return;
        };
        let t = &mut self.targets[i];
        let at = SystemTime::now();
        for f in [setup::Failure::Resolve, setup::Failure::Socket] {
            if Some(f) != failure {
                set_alarm(t, f.alarm(), false, at, "started".into(), out);
            }
        }
        if let Some(f) = failure {
            set_alarm(t, f.alarm(), true, at, reason, out);
        }
    }

    /// Summaries of the open windows (at shutdown).
    pub fn flush(&mut self, out: &mut Vec<Output>) {
        for t in &mut self.targets {
            if let Some(w) = t.window.take() {
                out.push(Output::Summary(summary(&t.name, t.role, &w)));
            }
        }
    }

    /// Runs the tracker until every prober is gone, logging events and alarms.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<FromProber>,
        tx: mpsc::Sender<Output>,
    ) {
        let mut out = Vec::new();
        while let Some(m) = rx.recv().await {
            match m {
                FromProber::Result(r) => self.on_result(r, &mut out),
                FromProber::Accepted {
                    invite,
                    bye,
                    outcome,
                } => self.on_accepted(invite, bye, outcome, &mut out),
                FromProber::Rx { target, stats } => self.on_rx(&target, &stats),
                FromProber::Add(c) => self.add(&c),
                FromProber::Remove(name) => self.remove(&name, &mut out),
                FromProber::SetupFailed {
                    target,
                    failure,
                    reason,
                } => self.on_setup(&target, Some(failure), reason, &mut out),
                FromProber::Started(target) => {
                    self.on_setup(&target, None, String::new(), &mut out)
                }
            }
            for o in out.drain(..) {
                log(&o);
                if tx.send(o).await.is_err() {
                    return;
                }
            }
        }
        self.flush(&mut out);
        for o in out.drain(..) {
            let _ = tx.send(o).await;
        }
    }
}

/// The target's next state after one result showing `raw`, if it changes: at once at the
/// first result and between states on the same side of in service; otherwise after
/// `up_after` (into in service) or `down_after` (out of it) consecutive results.
fn next_state(t: &mut TargetState, raw: ServiceState) -> Option<ServiceState> {
    let alive = raw == ServiceState::InService;
    let Some(cur) = t.state else {
        return Some(raw);
    };
    if (cur == ServiceState::InService) == alive {
        t.streak = 0;
        return (cur != raw).then_some(raw);
    }
    t.streak += 1;
    let need = if alive { t.up_after } else { t.down_after };
    if t.streak >= need {
        t.streak = 0;
        Some(raw)
    } else {
        None
    }
}

fn set_alarm(
    t: &mut TargetState,
    kind: AlarmKind,
    active: bool,
    at: SystemTime,
    message: String,
    out: &mut Vec<Output>,
) {
    let was = t.alarms.contains(&kind);
    if was == active {
        return;
    }
    if active {
        t.alarms.insert(kind);
    } else {
        t.alarms.remove(&kind);
    }
    out.push(Output::Alarm(Alarm {
        at,
        target: t.name.clone(),
        role: t.role,
        kind,
        active,
        message,
    }));
}

fn summary(name: &Arc<str>, role: Role, w: &Window) -> Summary {
    let q = |p: f64| {
        if w.hist.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_micros(w.hist.value_at_quantile(p))
        }
    };
    Summary {
        target: name.clone(),
        role,
        minute: UNIX_EPOCH + Duration::from_secs(w.minute * 60),
        count: w.count,
        lost: w.lost,
        retransmits: w.retransmits,
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: if w.hist.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_micros(w.hist.max())
        },
        rx: w.rx,
    }
}

fn log(o: &Output) {
    match o {
        Output::Event(e) => match &e.kind {
            EventKind::State { from, to, status } => tracing::info!(
                target = %e.target,
                role = %e.role.as_str(),
                from = %from.map(|s| s.as_str()).unwrap_or("none"),
                to = %to.as_str(),
                status = status.unwrap_or(0),
                "Target state changed"
            ),
            EventKind::Owner { from, to } if e.is_failover() => tracing::warn!(
                target = %e.target,
                from = %from.as_deref().unwrap_or(UNKNOWN),
                to = %to.as_deref().unwrap_or(UNKNOWN),
                "VIP failover: another CP answers"
            ),
            EventKind::Owner { to, .. } => tracing::info!(
                target = %e.target,
                owner = %to.as_deref().unwrap_or(UNKNOWN),
                "VIP owner found"
            ),
        },
        Output::Alarm(a) if a.active => tracing::error!(
            target = %a.target,
            role = %a.role.as_str(),
            alarm = %a.kind.as_str(),
            detail = %a.message,
            "Alarm raised"
        ),
        Output::Alarm(a) => tracing::info!(
            target = %a.target,
            role = %a.role.as_str(),
            alarm = %a.kind.as_str(),
            detail = %a.message,
            "Alarm cleared"
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<TargetConfig> {
        let mut cp2 = TargetConfig::new("cp2", "sip:127.0.0.2", Role::Cp);
        cp2.expect = Expect::OutOfService;
        vec![
            TargetConfig::new("cp1", "sip:127.0.0.1", Role::Cp),
            cp2,
            TargetConfig::new("vip", "sip:127.0.0.10", Role::Vip),
        ]
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn res(target: &str, secs: u64, status: Option<u16>, rtt_ms: u64, fp: &str) -> ProbeResult {
        ProbeResult {
            target: Arc::from(target),
            role: if target == "vip" { Role::Vip } else { Role::Cp },
            method: Method::Options,
            at: at(secs),
            state: ServiceState::classify(status),
            status,
            rtt: status.map(|_| Duration::from_millis(rtt_ms)),
            retransmits: 0,
            retry_after: None,
            error: None,
            fingerprint: (!fp.is_empty()).then(|| fp.to_string()),
            owner: None,
            late: false,
            source: None,
        }
    }

    fn kinds(out: &[Output]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Output::Result(r) => {
                    format!("result {} {}", r.target, r.owner.as_deref().unwrap_or("-"))
                }
                Output::Event(e) => match &e.kind {
                    EventKind::State { from, to, .. } => format!(
                        "state {} {}->{}",
                        e.target,
                        from.map(|s| s.as_str()).unwrap_or("none"),
                        to.as_str()
                    ),
                    EventKind::Owner { from, to } => format!(
                        "owner {} {}->{}",
                        e.target,
                        from.as_deref().unwrap_or("?"),
                        to.as_deref().unwrap_or("?")
                    ),
                },
                Output::Alarm(a) => format!(
                    "alarm {} {} {}",
                    a.target,
                    a.kind.as_str(),
                    if a.active { "raised" } else { "cleared" }
                ),
                Output::Summary(s) => format!("summary {} {}", s.target, s.count),
            })
            .collect()
    }

    #[test]
    fn add_and_remove_keep_the_others() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        t.on_result(res("cp1", 0, Some(200), 1, "aaa"), &mut out);
        t.on_result(res("vip", 0, Some(200), 1, "aaa"), &mut out);
        out.clear();
        // cp2 leaves: its window (none yet) and its state go; cp1 and vip keep theirs.
        t.on_result(res("cp2", 1, Some(503), 1, "bbb"), &mut out);
        out.clear();
        t.remove("cp2", &mut out);
        assert_eq!(kinds(&out), vec!["summary cp2 1"]);
        out.clear();
        t.on_result(res("cp2", 2, Some(503), 1, "bbb"), &mut out);
        assert!(out.is_empty(), "results of a removed target are ignored");
        // cp3 joins: a first-probe event for it only; cp1 has no new event (state kept).
        t.add(&TargetConfig::new("cp3", "sip:127.0.0.3", Role::Cp));
        t.on_result(res("cp3", 3, Some(200), 1, "ccc"), &mut out);
        t.on_result(res("cp1", 3, Some(200), 1, "aaa"), &mut out);
        t.on_result(res("vip", 3, Some(200), 1, "aaa"), &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "state cp3 none->in_service",
                "result cp3 -",
                "result cp1 -",
                "owner vip ?->cp1",
                "result vip cp1",
            ]
        );
        assert_eq!(t.owner("vip").as_deref(), Some("cp1"));
        // cp1 leaves: its fingerprint no longer names the VIP's owner (unknown, no event).
        out.clear();
        t.remove("cp1", &mut out);
        assert_eq!(kinds(&out), vec!["summary cp1 2"]);
        out.clear();
        t.on_result(res("vip", 4, Some(200), 1, "aaa"), &mut out);
        assert_eq!(kinds(&out), vec!["result vip -"]);
        out.clear();
        t.flush(&mut out);
        assert_eq!(kinds(&out), vec!["summary vip 3", "summary cp3 1"]);
    }

    #[test]
    fn states_alarms_and_failover() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        t.on_result(res("cp1", 0, Some(200), 1, "aaa"), &mut out);
        t.on_result(res("cp2", 0, Some(503), 1, "bbb"), &mut out);
        t.on_result(res("vip", 0, Some(200), 1, "aaa"), &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "state cp1 none->in_service",
                "result cp1 -",
                "state cp2 none->out_of_service",
                "result cp2 -",
                "state vip none->in_service",
                "owner vip ?->cp1",
                "result vip cp1",
            ]
        );
        out.clear();
        // Persisting states: nothing new but the results.
        t.on_result(res("cp1", 1, Some(200), 1, "aaa"), &mut out);
        t.on_result(res("vip", 1, Some(200), 1, "aaa"), &mut out);
        assert_eq!(kinds(&out), vec!["result cp1 -", "result vip cp1"]);
        out.clear();
        // Failover to the out-of-service CP: owner event and alarm, once.
        t.on_result(res("vip", 2, Some(200), 1, "bbb"), &mut out);
        t.on_result(res("vip", 3, Some(200), 1, "bbb"), &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "owner vip cp1->cp2",
                "alarm vip vip_owner_out_of_service raised",
                "result vip cp2",
                "result vip cp2",
            ]
        );
        assert_eq!(t.owner("vip").as_deref(), Some("cp2"));
        out.clear();
        // cp1 out of service against expectation; the VIP without an answer has no owner and
        // the owner alarm stays (cp2 is still out of service).
        t.on_result(res("cp1", 4, Some(503), 1, "aaa"), &mut out);
        t.on_result(res("vip", 4, None, 0, ""), &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "state cp1 in_service->out_of_service",
                "alarm cp1 unexpected_state raised",
                "result cp1 -",
                "state vip in_service->down",
                "alarm vip vip_not_in_service raised",
                "result vip -",
            ]
        );
        out.clear();
        t.on_result(res("cp1", 5, Some(200), 1, "aaa"), &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "state cp1 out_of_service->in_service",
                "alarm cp1 unexpected_state cleared",
                "result cp1 -",
            ]
        );
    }

    #[test]
    fn invite_check_alarms() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        let mut inv = res("cp2", 0, Some(503), 2, "");
        inv.method = Method::Invite;
        t.on_result(inv.clone(), &mut out);
        assert_eq!(kinds(&out), vec!["result cp2 -"]);
        out.clear();
        inv.status = Some(480);
        t.on_result(inv.clone(), &mut out);
        inv.status = Some(200);
        t.on_result(inv.clone(), &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "alarm cp2 invite_not_503 raised",
                "result cp2 -",
                "alarm cp2 call_accepted raised",
                "result cp2 -",
            ]
        );
        out.clear();
        inv.status = Some(503);
        t.on_result(inv, &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "alarm cp2 call_accepted cleared",
                "alarm cp2 invite_not_503 cleared",
                "result cp2 -",
            ]
        );
    }

    /// A BYE without a 2xx raises `bye_failed` (the call may still be up) and keeps it until a
    /// later BYE hangs up; the BYE's result goes out just before the INVITE's.
    #[test]
    fn bye_failed_until_a_bye_hangs_up() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        let mut inv = res("cp2", 0, Some(200), 2, "");
        inv.method = Method::Invite;
        let mut bye = res("cp2", 0, Some(404), 1, "");
        bye.method = Method::Bye;
        let refused = ByeResult::Refused { status: 404 };
        t.on_accepted(inv.clone(), bye.clone(), refused, &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "alarm cp2 call_accepted raised",
                "alarm cp2 invite_not_503 raised",
                "alarm cp2 bye_failed raised",
                "result cp2 -",
                "result cp2 -",
            ]
        );
        let Output::Result(first) = &out[3] else {
            panic!()
        };
        assert_eq!((first.method, first.status), (Method::Bye, Some(404)));
        out.clear();
        // The next INVITE gets 503: the call the BYE left is still to be checked.
        let mut ok = inv.clone();
        ok.status = Some(503);
        t.on_result(ok, &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "alarm cp2 call_accepted cleared",
                "alarm cp2 invite_not_503 cleared",
                "result cp2 -",
            ]
        );
        out.clear();
        bye.status = Some(200);
        t.on_accepted(inv, bye, ByeResult::HungUp { status: 200 }, &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "alarm cp2 call_accepted raised",
                "alarm cp2 invite_not_503 raised",
                "alarm cp2 bye_failed cleared",
                "result cp2 -",
                "result cp2 -",
            ]
        );
    }

    #[test]
    fn minute_summaries_exact() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        // Minute 1 (60..120 s): RTTs 1..=100 ms and 2 losses.
        for i in 1..=100u64 {
            t.on_result(res("cp1", 60, Some(200), i, "x"), &mut out);
        }
        t.on_result(res("cp1", 61, None, 0, ""), &mut out);
        t.on_result(res("cp1", 62, None, 0, ""), &mut out);
        t.on_rx(
            "cp1",
            &RxStats {
                stray: 3,
                ..Default::default()
            },
        );
        out.clear();
        t.on_result(res("cp1", 120, Some(200), 5, "x"), &mut out);
        let Output::Summary(s) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(s.minute, at(60));
        assert_eq!((s.count, s.lost, s.retransmits), (102, 2, 0));
        // HDR (3 significant digits) reports the highest value equivalent to the recorded one:
        // within 0.1 % above 50, 90, 99 and 100 ms.
        let us = |d: Duration| d.as_micros() as u64;
        assert_eq!(
            [us(s.p50), us(s.p90), us(s.p99), us(s.max)],
            [50_015, 90_047, 99_007, 100_031]
        );
        assert_eq!(s.rx.stray, 3);
        out.clear();
        t.flush(&mut out);
        assert_eq!(kinds(&out), vec!["summary cp1 1"]);
    }

    fn owners(out: &[Output]) -> Vec<String> {
        kinds(out)
            .into_iter()
            .filter(|k| {
                k.starts_with("owner ") || k.starts_with("result vip") || k.contains("vip_owner")
            })
            .collect()
    }

    /// Every node lists the VIP first (or sends the same Server header),
    /// so both CPs answer with one fingerprint. The VIP's owner is `ambiguous`, never a
    /// failover, and no owner alarm flaps when one of them goes out of service.
    #[test]
    fn same_fingerprint_on_two_cps_is_ambiguous_never_a_failover() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        for s in 0..4 {
            t.on_result(res("cp1", s, Some(200), 1, "same"), &mut out);
            t.on_result(res("vip", s, Some(200), 1, "same"), &mut out);
            t.on_result(res("cp2", s, Some(200), 1, "same"), &mut out);
            t.on_result(res("vip", s, Some(200), 1, "same"), &mut out);
        }
        // cp2 goes out of service (as expected of it); the VIP still answers 200.
        for s in 4..8 {
            t.on_result(res("cp2", s, Some(503), 1, "same"), &mut out);
            t.on_result(res("vip", s, Some(200), 1, "same"), &mut out);
            t.on_result(res("cp1", s, Some(200), 1, "same"), &mut out);
        }
        // The first VIP answer comes before cp2 was ever probed: not attributed.
        let mut want = vec!["result vip -"];
        want.extend(["result vip ambiguous"; 11]);
        assert_eq!(owners(&out), want);
        assert_eq!(t.owner("vip").as_deref(), Some("ambiguous"));
    }

    /// A stale fingerprint: cp1 answered with X, then stopped; cp2 restarted with the VIP listen
    /// first answers the VIP with the same X before its own probe was answered. The stale X
    /// credits nobody; cp2's own answer then makes it the owner: one real failover.
    #[test]
    fn stale_fingerprint_of_a_down_cp_credits_nobody() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        t.on_result(res("cp1", 0, Some(200), 1, "x"), &mut out);
        t.on_result(res("cp2", 0, Some(200), 1, "y"), &mut out);
        t.on_result(res("vip", 0, Some(200), 1, "x"), &mut out);
        t.on_result(res("cp1", 1, None, 0, ""), &mut out);
        t.on_result(res("cp2", 1, None, 0, ""), &mut out);
        t.on_result(res("vip", 1, Some(200), 1, "x"), &mut out);
        t.on_result(res("cp2", 2, Some(200), 1, "x"), &mut out);
        t.on_result(res("vip", 2, Some(200), 1, "x"), &mut out);
        assert_eq!(
            owners(&out),
            vec![
                "owner vip ?->cp1",
                "result vip cp1",
                "result vip -",
                "owner vip cp1->cp2",
                "result vip cp2",
            ]
        );
    }

    /// A fingerprint not confirmed by its CP for 3 intervals plus the
    /// timeout (here 3·1 s + 2 s) no longer attributes answers.
    #[test]
    fn fingerprints_age_out() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        t.on_result(res("cp1", 0, Some(200), 1, "x"), &mut out);
        t.on_result(res("cp2", 0, Some(503), 1, "y"), &mut out);
        t.on_result(res("vip", 5, Some(200), 1, "x"), &mut out);
        t.on_result(res("vip", 6, Some(200), 1, "x"), &mut out);
        assert_eq!(
            owners(&out),
            vec!["owner vip ?->cp1", "result vip cp1", "result vip -"]
        );
    }

    /// No answer, no owner; the owner alarm is raised once, kept while the
    /// VIP's answers cannot be attributed, and cleared when that CP is back in service, with
    /// a message naming it.
    #[test]
    fn owner_alarm_raised_once_kept_and_cleared_by_the_right_cp() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        t.on_result(res("cp1", 0, Some(200), 1, "a"), &mut out);
        t.on_result(res("cp2", 0, Some(200), 1, "b"), &mut out);
        t.on_result(res("vip", 0, Some(200), 1, "b"), &mut out);
        t.on_result(res("cp2", 1, Some(503), 1, "b"), &mut out);
        t.on_result(res("vip", 1, Some(200), 1, "b"), &mut out);
        t.on_result(res("vip", 2, None, 0, ""), &mut out);
        t.on_result(res("vip", 3, Some(200), 1, "zzz"), &mut out);
        t.on_result(res("vip", 3, Some(200), 1, "b"), &mut out);
        t.on_result(res("cp2", 4, Some(200), 1, "b"), &mut out);
        t.on_result(res("vip", 4, Some(200), 1, "b"), &mut out);
        assert_eq!(
            owners(&out),
            vec![
                "owner vip ?->cp2",
                "result vip cp2",
                "alarm vip vip_owner_out_of_service raised",
                "result vip cp2",
                "result vip -",
                "result vip -",
                "result vip cp2",
                "alarm vip vip_owner_out_of_service cleared",
                "result vip cp2",
            ]
        );
        let msgs: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                Output::Alarm(a) if a.kind == AlarmKind::VipOwnerOutOfService => {
                    Some(a.message.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            msgs,
            vec![
                "VIP answered by cp2 which is out of service",
                "cp2, which answers the VIP, is back in service",
            ]
        );
    }

    /// The first owner found is an owner event, not a failover (logged at INFO,
    /// not as a WARN "VIP failover"); a move between CPs is one.
    #[test]
    fn first_owner_is_not_a_failover() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        t.on_result(res("cp1", 0, Some(200), 1, "a"), &mut out);
        t.on_result(res("cp2", 0, Some(503), 1, "b"), &mut out);
        t.on_result(res("vip", 0, Some(200), 1, "a"), &mut out);
        t.on_result(res("vip", 1, Some(200), 1, "b"), &mut out);
        let events: Vec<(String, bool)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) if matches!(e.kind, EventKind::Owner { .. }) => {
                    Some((kinds(std::slice::from_ref(o)).remove(0), e.is_failover()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            events,
            vec![
                ("owner vip ?->cp1".to_string(), false),
                ("owner vip cp1->cp2".to_string(), true),
            ]
        );
    }

    fn hysteresis_target(down: u32, up: u32) -> Vec<TargetConfig> {
        let mut c = TargetConfig::new("cp1", "sip:127.0.0.1", Role::Cp);
        c.down_after = down;
        c.up_after = up;
        vec![c]
    }

    fn states(out: &[Output]) -> Vec<String> {
        kinds(out)
            .into_iter()
            .filter(|k| !k.starts_with("result"))
            .collect()
    }

    /// With down_after = 3 and up_after = 2, two lost probes change nothing, the
    /// third makes the CP down once; one answer does not bring it back, the second does.
    #[test]
    fn hysteresis_down_after_and_up_after() {
        let mut t = Tracker::new(&hysteresis_target(3, 2));
        let mut out = Vec::new();
        let seq = [
            Some(200),
            None,
            None,
            Some(200),
            None,
            None,
            None,
            None,
            Some(200),
            None,
            Some(200),
            Some(200),
            Some(503),
            Some(503),
            Some(503),
            None,
        ];
        for (s, st) in seq.into_iter().enumerate() {
            t.on_result(res("cp1", s as u64, st, 1, ""), &mut out);
        }
        assert_eq!(
            states(&out),
            vec![
                "state cp1 none->in_service",
                "state cp1 in_service->down",
                "alarm cp1 unexpected_state raised",
                "state cp1 down->in_service",
                "alarm cp1 unexpected_state cleared",
                "state cp1 in_service->out_of_service",
                "alarm cp1 unexpected_state raised",
                "state cp1 out_of_service->down",
            ]
        );
        // 1/1 (the default) is the state of every probe.
        let mut t = Tracker::new(&hysteresis_target(1, 1));
        let mut out = Vec::new();
        for (s, st) in [Some(200), None, Some(200)].into_iter().enumerate() {
            t.on_result(res("cp1", s as u64, st, 1, ""), &mut out);
        }
        assert_eq!(
            states(&out),
            vec![
                "state cp1 none->in_service",
                "state cp1 in_service->down",
                "alarm cp1 unexpected_state raised",
                "state cp1 down->in_service",
                "alarm cp1 unexpected_state cleared",
            ]
        );
    }

    /// The ambiguity is logged once: not again after one of the CPs lost a probe, again only
    /// after a CP's fingerprint changed and came back.
    #[test]
    fn ambiguity_logged_once_per_occurrence() {
        let mut t = Tracker::new(&targets());
        let mut out = Vec::new();
        t.on_result(res("cp1", 0, Some(200), 1, "x"), &mut out);
        t.on_result(res("cp2", 0, Some(200), 1, "x"), &mut out);
        assert!(t.ambiguous_logged.contains("x"));
        t.on_result(res("cp2", 1, None, 0, ""), &mut out);
        t.on_result(res("cp2", 2, Some(200), 1, "x"), &mut out);
        assert!(!t.check_ambiguity("x", at(2)), "logged a second time");
        t.on_result(res("cp2", 3, Some(200), 1, "y"), &mut out);
        assert!(!t.ambiguous_logged.contains("x"));
        t.on_result(res("cp2", 4, Some(200), 1, "x"), &mut out);
        assert!(t.ambiguous_logged.contains("x"), "logged again");
        // Removing the owner a VIP alarm names clears that alarm, naming it.
        t.on_result(res("cp2", 5, Some(503), 1, "b"), &mut out);
        t.on_result(res("vip", 5, Some(200), 1, "b"), &mut out);
        out.clear();
        t.remove("cp2", &mut out);
        assert_eq!(
            out.iter()
                .filter_map(|o| match o {
                    Output::Alarm(a) => Some((a.kind, a.active, a.message.as_str())),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            vec![(
                AlarmKind::VipOwnerOutOfService,
                false,
                "cp2, which answered the VIP, is no longer probed"
            )]
        );
    }

    /// A failed start raises its alarm once (later failures of the same kind are quiet); a
    /// change of cause swaps the alarm; the start clears it.
    #[test]
    fn failed_starts_raise_one_alarm_and_the_start_clears_it() {
        use setup::Failure::{Resolve, Socket};
        let mut t = Tracker::new(&[TargetConfig::new("cpx", "sip:x.invalid", Role::Cp)]);
        let mut out = Vec::new();
        for _ in 0..3 {
            t.on_setup(
                "cpx",
                Some(Resolve),
                "cannot resolve x.invalid".into(),
                &mut out,
            );
        }
        t.on_setup("cpx", Some(Socket), "no route".into(), &mut out);
        t.on_setup("cpx", None, String::new(), &mut out);
        t.on_setup("nobody", Some(Resolve), "x".into(), &mut out);
        let got: Vec<(&str, bool, &str)> = out
            .iter()
            .map(|o| match o {
                Output::Alarm(a) => (a.kind.as_str(), a.active, a.message.as_str()),
                o => panic!("{o:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("unresolved", true, "cannot resolve x.invalid"),
                ("unresolved", false, "started"),
                ("socket_failed", true, "no route"),
                ("socket_failed", false, "started"),
            ]
        );
    }
}
