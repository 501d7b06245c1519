//! Classification, events, alarms, VIP ownership and per-minute summaries: sans I/O, fed with
//! [`ProbeResult`]s in arrival order.
//!
//! - State events: on every change of a target's OPTIONS state (and at its first probe).
//! - Alarms are conditions: raised once when they become true, cleared once when they stop.
//! - VIP ownership: each CP's direct answers teach the fingerprint → CP map; a VIP's answer is
//!   attributed by its fingerprint. A change of owner is a failover event.
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

struct TargetState {
    name: Arc<str>,
    role: Role,
    expect: Expect,
    invite_probe: InviteProbe,
    state: Option<ServiceState>,
    owner: Option<Arc<str>>,
    alarms: HashSet<AlarmKind>,
    window: Option<Window>,
}

/// The sans-IO core of the monitor's report stage.
pub struct Tracker {
    targets: Vec<TargetState>,
    by_name: HashMap<Arc<str>, usize>,
    /// Fingerprint → CP that answered with it directly.
    fingerprints: HashMap<String, Arc<str>>,
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
            fingerprints: HashMap::new(),
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
            state: None,
            owner: None,
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
        self.fingerprints.retain(|_, cp| **cp != *name);
        for (j, t) in self.targets.iter().enumerate().skip(i) {
            self.by_name.insert(t.name.clone(), j);
        }
    }

    /// The CP currently seen answering for `vip`.
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
        // Ownership.
        if let Some(fp) = &r.fingerprint {
            if t.role == Role::Cp && r.status.is_some() {
                self.fingerprints.insert(fp.clone(), t.name.clone());
            }
        }
        if self.targets[i].role == Role::Vip {
            self.on_vip(i, &mut r, out);
        }
        // State change.
        let t = &mut self.targets[i];
        if t.state != Some(r.state) {
            out.push(Output::Event(Event {
                at: r.at,
                target: t.name.clone(),
                role: t.role,
                kind: EventKind::State {
                    from: t.state,
                    to: r.state,
                    status: r.status,
                },
            }));
            t.state = Some(r.state);
        }
        if t.role == Role::Cp {
            let wrong = !t.expect.allows(r.state);
            let msg = format!(
                "expected {} observed {}{}",
                t.expect.as_str(),
                r.state.as_str(),
                r.status.map(|s| format!(" ({s})")).unwrap_or_default()
            );
            set_alarm(t, AlarmKind::Unexpected, wrong, r.at, msg, out);
            if r.state == ServiceState::InService && t.invite_probe != InviteProbe::Always {
                // No INVITE check applies any more.
                set_alarm(t, AlarmKind::InviteNot503, false, r.at, String::new(), out);
                set_alarm(t, AlarmKind::CallAccepted, false, r.at, String::new(), out);
            }
        }
        out.push(Output::Result(r));
    }

    fn on_vip(&mut self, i: usize, r: &mut ProbeResult, out: &mut Vec<Output>) {
        let owner = r
            .fingerprint
            .as_ref()
            .map(|fp| self.fingerprints.get(fp).cloned());
        let t = &mut self.targets[i];
        if let Some(owner) = owner {
            if owner != t.owner {
                out.push(Output::Event(Event {
                    at: r.at,
                    target: t.name.clone(),
                    role: t.role,
                    kind: EventKind::Owner {
                        from: t.owner.clone(),
                        to: owner.clone(),
                    },
                }));
                t.owner = owner;
            }
        }
        r.owner = t.owner.clone();
        let not_in_service = r.state != ServiceState::InService;
        let msg = format!(
            "VIP answered {}{}",
            r.state.as_str(),
            r.status.map(|s| format!(" ({s})")).unwrap_or_default()
        );
        set_alarm(
            t,
            AlarmKind::VipNotInService,
            not_in_service,
            r.at,
            msg,
            out,
        );
        let owner_state = t
            .owner
            .clone()
            .and_then(|o| self.by_name.get(&o).copied())
            .and_then(|j| self.targets[j].state);
        let t = &mut self.targets[i];
        let owner_oos = r.status.is_some() && owner_state == Some(ServiceState::OutOfService);
        let msg = format!(
            "VIP answered by {} which is out of service",
            t.owner.as_deref().unwrap_or("?")
        );
        set_alarm(
            t,
            AlarmKind::VipOwnerOutOfService,
            owner_oos,
            r.at,
            msg,
            out,
        );
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
            EventKind::Owner { from, to } => tracing::warn!(
                target = %e.target,
                from = %from.as_deref().unwrap_or("unknown"),
                to = %to.as_deref().unwrap_or("unknown"),
                "VIP failover: another CP answers"
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
                "result vip cp1",
            ]
        );
        assert_eq!(t.owner("vip").as_deref(), Some("cp1"));
        // cp1 leaves: its fingerprint no longer names the VIP's owner.
        out.clear();
        t.remove("cp1", &mut out);
        assert_eq!(kinds(&out), vec!["summary cp1 2"]);
        out.clear();
        t.on_result(res("vip", 4, Some(200), 1, "aaa"), &mut out);
        assert_eq!(kinds(&out), vec!["owner vip cp1->?", "result vip -"]);
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
                "owner vip ?->cp1",
                "state vip none->in_service",
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
        // cp1 out of service against expectation; VIP down keeps its last owner.
        t.on_result(res("cp1", 4, Some(503), 1, "aaa"), &mut out);
        t.on_result(res("vip", 4, None, 0, ""), &mut out);
        assert_eq!(
            kinds(&out),
            vec![
                "state cp1 in_service->out_of_service",
                "alarm cp1 unexpected_state raised",
                "result cp1 -",
                "alarm vip vip_not_in_service raised",
                "alarm vip vip_owner_out_of_service cleared",
                "state vip in_service->down",
                "result vip cp2",
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
}
