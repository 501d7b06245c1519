//! Probe outputs as line-protocol points for bucket `probe` (shared by `srewatch probe run` and
//! the service). The probe crate knows nothing of InfluxDB; this is where its typed results
//! become points.
//!
//! | measurement     | tags                   | fields |
//! |-----------------|------------------------|--------|
//! | `probe`         | target, role, method   | state, state_code, status, rtt_ms, retransmits, retry_after, error, owner, late, source |
//! | `probe_summary` | target, role           | count, lost, loss, retransmits, rtt_p50_ms, rtt_p90_ms, rtt_p99_ms, rtt_max_ms, ignored, stray, late, duplicate, garbage, oversized, malformed, not_ours, other_call_id, source_mismatch |
//! | `probe_event`   | target, role, kind     | from, to, status |
//! | `probe_alarm`   | target, role, alarm    | active, message |
//!
//! RTTs are milliseconds to the microsecond (`rtt_ms=0.908`), `loss` a ratio to 6 decimals.

use ingest::{Field, LineEncoder};
use probe::monitor::{EventKind, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The bucket the probe writes to.
pub const BUCKET: &str = "probe";

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

/// Milliseconds to the microsecond (see `ingest::lineproto`: no float noise in the points).
fn ms(d: Duration) -> f64 {
    ingest::lineproto::millis(d)
}

/// Appends the point(s) for one output.
pub fn encode(o: &Output, enc: &mut LineEncoder) {
    match o {
        Output::Result(r) => {
            let mut f: Vec<(&str, Field<'_>)> = vec![
                ("state", Field::Str(r.state.as_str())),
                ("state_code", Field::Int(r.state.as_i64())),
                ("retransmits", Field::Int(r.retransmits as i64)),
            ];
            if let Some(s) = r.status {
                f.push(("status", Field::Int(s as i64)));
            }
            if let Some(rtt) = r.rtt {
                f.push(("rtt_ms", Field::Float(ms(rtt))));
            }
            if let Some(ra) = r.retry_after {
                f.push(("retry_after", Field::Int(ra as i64)));
            }
            if let Some(e) = r.error {
                f.push(("error", Field::Str(e.as_str())));
            }
            if let Some(owner) = &r.owner {
                f.push(("owner", Field::Str(owner)));
            }
            if r.late {
                f.push(("late", Field::Bool(true)));
            }
            let source = r.source.map(|s| s.to_string());
            if let Some(s) = &source {
                f.push(("source", Field::Str(s)));
            }
            enc.push(
                "probe",
                &[
                    ("target", &r.target),
                    ("role", r.role.as_str()),
                    ("method", r.method.as_str()),
                ],
                &f,
                secs(r.at),
            );
        }
        Output::Summary(s) => {
            let loss = if s.count == 0 {
                0.0
            } else {
                ingest::lineproto::round_to(s.lost as f64 / s.count as f64, 6)
            };
            let rx = &s.rx;
            enc.push(
                "probe_summary",
                &[("target", &s.target), ("role", s.role.as_str())],
                &[
                    ("count", Field::Int(s.count as i64)),
                    ("lost", Field::Int(s.lost as i64)),
                    ("loss", Field::Float(loss)),
                    ("retransmits", Field::Int(s.retransmits as i64)),
                    ("rtt_p50_ms", Field::Float(ms(s.p50))),
                    ("rtt_p90_ms", Field::Float(ms(s.p90))),
                    ("rtt_p99_ms", Field::Float(ms(s.p99))),
                    ("rtt_max_ms", Field::Float(ms(s.max))),
                    ("ignored", Field::Int(rx.ignored() as i64)),
                    ("stray", Field::Int(rx.stray as i64)),
                    ("late", Field::Int(rx.late as i64)),
                    ("duplicate", Field::Int(rx.duplicate as i64)),
                    ("garbage", Field::Int(rx.garbage as i64)),
                    ("oversized", Field::Int(rx.oversized as i64)),
                    ("malformed", Field::Int(rx.malformed as i64)),
                    ("not_ours", Field::Int(rx.not_ours as i64)),
                    ("other_call_id", Field::Int(rx.other_call_id as i64)),
                    ("source_mismatch", Field::Int(rx.source_mismatch as i64)),
                ],
                secs(s.minute),
            );
        }
        Output::Event(e) => match &e.kind {
            EventKind::State { from, to, status } => {
                let mut f = vec![
                    (
                        "from",
                        Field::Str(from.map(|s| s.as_str()).unwrap_or("none")),
                    ),
                    ("to", Field::Str(to.as_str())),
                ];
                if let Some(s) = status {
                    f.push(("status", Field::Int(*s as i64)));
                }
                enc.push(
                    "probe_event",
                    &[
                        ("target", &e.target),
                        ("role", e.role.as_str()),
                        ("kind", "state"),
                    ],
                    &f,
                    secs(e.at),
                );
            }
            EventKind::Owner { from, to } => {
                enc.push(
                    "probe_event",
                    &[
                        ("target", &e.target),
                        ("role", e.role.as_str()),
                        ("kind", "owner"),
                    ],
                    &[
                        ("from", Field::Str(from.as_deref().unwrap_or("unknown"))),
                        ("to", Field::Str(to.as_deref().unwrap_or("unknown"))),
                    ],
                    secs(e.at),
                );
            }
        },
        Output::Alarm(a) => {
            enc.push(
                "probe_alarm",
                &[
                    ("target", &a.target),
                    ("role", a.role.as_str()),
                    ("alarm", a.kind.as_str()),
                ],
                &[
                    ("active", Field::Bool(a.active)),
                    ("message", Field::Str(&a.message)),
                ],
                secs(a.at),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe::monitor::{Alarm, AlarmKind, ProbeResult, Role, ServiceState, Summary};
    use probe::transaction::Method;
    use std::sync::Arc;

    fn text(o: &Output) -> String {
        let mut enc = LineEncoder::new();
        encode(o, &mut enc);
        String::from_utf8(enc.take().to_vec()).unwrap()
    }

    #[test]
    fn points_exact() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let r = ProbeResult {
            target: Arc::from("cp1"),
            role: Role::Cp,
            method: Method::Options,
            at,
            state: ServiceState::OutOfService,
            status: Some(503),
            rtt: Some(Duration::from_micros(1500)),
            retransmits: 1,
            retry_after: Some(30),
            error: None,
            fingerprint: Some("abc".into()),
            owner: None,
            late: false,
            source: None,
        };
        assert_eq!(
            text(&Output::Result(r.clone())),
            "probe,target=cp1,role=cp,method=OPTIONS state=\"out_of_service\",state_code=0i,retransmits=1i,status=503i,rtt_ms=1.5,retry_after=30i 1700000000\n"
        );
        // A VIP answered from another address, by a CP that cannot be told apart.
        let v = ProbeResult {
            target: Arc::from("vip"),
            role: Role::Vip,
            state: ServiceState::InService,
            status: Some(200),
            retry_after: None,
            owner: Some(Arc::from(probe::monitor::AMBIGUOUS)),
            source: Some("127.0.0.1:5060".parse().unwrap()),
            ..r.clone()
        };
        assert_eq!(
            text(&Output::Result(v)),
            "probe,target=vip,role=vip,method=OPTIONS state=\"in_service\",state_code=1i,retransmits=1i,status=200i,rtt_ms=1.5,owner=\"ambiguous\",source=\"127.0.0.1:5060\" 1700000000\n"
        );
        let a = Alarm {
            at,
            target: Arc::from("vip 1"),
            role: Role::Vip,
            kind: AlarmKind::VipNotInService,
            active: true,
            message: "VIP answered down".into(),
        };
        assert_eq!(
            text(&Output::Alarm(a)),
            "probe_alarm,target=vip\\ 1,role=vip,alarm=vip_not_in_service active=true,message=\"VIP answered down\" 1700000000\n"
        );
        let s = Summary {
            target: Arc::from("cp1"),
            role: Role::Cp,
            minute: at,
            count: 4,
            lost: 1,
            retransmits: 2,
            p50: Duration::from_millis(1),
            p90: Duration::from_millis(2),
            p99: Duration::from_millis(3),
            max: Duration::from_millis(4),
            rx: Default::default(),
        };
        // RTTs in ms to the microsecond, no float noise; the loss ratio to 6 decimals.
        let noisy = Summary {
            count: 3,
            lost: 1,
            p50: Duration::from_micros(908),
            p90: Duration::from_nanos(1_499_600),
            p99: Duration::from_micros(2_003),
            max: Duration::from_micros(2_003),
            ..s.clone()
        };
        assert_eq!(
            text(&Output::Summary(noisy)),
            "probe_summary,target=cp1,role=cp count=3i,lost=1i,loss=0.333333,retransmits=2i,rtt_p50_ms=0.908,rtt_p90_ms=1.5,rtt_p99_ms=2.003,rtt_max_ms=2.003,ignored=0i,stray=0i,late=0i,duplicate=0i,garbage=0i,oversized=0i,malformed=0i,not_ours=0i,other_call_id=0i,source_mismatch=0i 1700000000\n"
        );
        let r908 = ProbeResult {
            rtt: Some(Duration::from_nanos(908_400)),
            retry_after: None,
            ..r.clone()
        };
        assert_eq!(
            text(&Output::Result(r908)),
            "probe,target=cp1,role=cp,method=OPTIONS state=\"out_of_service\",state_code=0i,retransmits=1i,status=503i,rtt_ms=0.908 1700000000\n"
        );
        assert_eq!(
            text(&Output::Summary(s)),
            "probe_summary,target=cp1,role=cp count=4i,lost=1i,loss=0.25,retransmits=2i,rtt_p50_ms=1,rtt_p90_ms=2,rtt_p99_ms=3,rtt_max_ms=4,ignored=0i,stray=0i,late=0i,duplicate=0i,garbage=0i,oversized=0i,malformed=0i,not_ours=0i,other_call_id=0i,source_mismatch=0i 1700000000\n"
        );
    }
}
