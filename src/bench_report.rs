//! `srewatch bench --report FILE.html` and `srewatch bench report RUN.json -o FILE.html`: one
//! self-contained HTML page (inline CSS and SVG drawn with plotters; no script, no font or
//! anything else from the network) from a bench summary ([`crate::bench_run`]), one run or a
//! merge of several.
//!
//! Every figure printed in a table carries an `id` (`total-sent`, `latency-p99`, ...) so a test
//! can compare the page with the JSON it was made from.

use crate::bench_run::{decode_hist, new_hist};
use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde_json::Value;
use std::fmt::Write as _;

/// Width and height of each chart, px.
pub const CHART: (u32, u32) = (960, 300);

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JSON value as printed in the page: integers as they are, floats with up to 3 decimals,
/// null as `-`.
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{f:.0}")
            } else {
                format!("{f:.3}")
            }
        }
        Value::String(s) => esc(s),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        v => esc(&v.to_string()),
    }
}

/// µs as milliseconds with 3 decimals (`-` for null).
pub fn show_ms(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |us| format!("{:.3} ms", us / 1000.0))
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1000px}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;white-space:nowrap}\
th{background:#f0f0f0}td.l,th.l{text-align:left}.ok{color:#070}.bad{color:#b00;font-weight:bold}\
.acct{font-family:monospace;background:#f7f7f7;padding:6px;border:1px solid #ddd}svg{display:block}";

/// The HTML page of a summary.
pub fn render(v: &Value) -> anyhow::Result<String> {
    let total = v.get("total").context("the summary has no total")?;
    let hist = match total.get("histogram").and_then(Value::as_str) {
        Some(s) => decode_hist(s)?,
        None => new_hist(),
    };
    let mut h = String::new();
    let title = format!("srewatch bench: {}", v["uri"].as_str().unwrap_or("?"));
    write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    )?;

    // Parameters.
    h.push_str("<h2>Parameters</h2>\n<table>\n");
    let mut param = |name: &str, val: String| {
        let _ = writeln!(
            h,
            "<tr><th class=\"l\">{name}</th><td class=\"l\">{val}</td></tr>"
        );
    };
    let load = match v["steps"].as_array() {
        Some(s) if s.iter().any(|s| s["rate"].is_number()) => s
            .iter()
            .map(|s| format!("{}/s for {}s", show(&s["rate"]), show(&s["duration_s"])))
            .collect::<Vec<_>>()
            .join(", "),
        _ => format!("closed loop, {}s", show(&v["steps"][0]["duration_s"])),
    };
    param(
        "target",
        format!("{} ({})", show(&v["uri"]), show(&v["target"])),
    );
    if let Some(runs) = v["runs"].as_array().filter(|r| r.len() > 1) {
        param(
            "merged runs",
            format!("<span id=\"merged\">{}</span>", runs.len()),
        );
    }
    param("start", start_time(v));
    param("load", esc(&load));
    param("method", show(&v["method"]));
    param("transport", show(&v["transport"]));
    param("sockets", show(&v["sockets"]));
    param("retransmit", show(&v["retransmit"]));
    param("timeout", format!("{} s", show(&v["timeout_s"])));
    param("expected status", show(&v["expected_status"]));
    param(
        "a step holds when",
        format!(
            "failures &le; {} of its requests and p99 &lt; {}",
            show(&v["hold_rule"]["max_failure_ratio"]),
            show_ms(&v["hold_rule"]["p99_max_us"])
        ),
    );
    param("elapsed", format!("{} s", show(&v["elapsed_s"])));
    param("peak outstanding", show(&v["peak_outstanding"]));
    param("max send lag", show_ms(&v["max_send_lag_us"]));
    h.push_str("</table>\n");

    // Accounting.
    let a = &v["accounting"];
    let statuses: Vec<String> = total["by_status"]
        .as_object()
        .map(|m| m.iter().map(|(k, n)| format!("{k}: {}", show(n))).collect())
        .unwrap_or_default();
    let balanced = a["balanced"].as_bool().unwrap_or(false);
    write!(
        h,
        "<h2>Accounting</h2>\n<p class=\"acct\" id=\"accounting\">sent <span id=\"total-sent\">{}</span> = answered <span id=\"total-answered\">{}</span> ({}) + timed_out <span id=\"total-timed_out\">{}</span> + send_errors <span id=\"total-send_errors\">{}</span>{} <span class=\"{}\">{}</span></p>\n",
        show(&a["sent"]),
        show(&a["answered"]),
        esc(&statuses.join(", ")),
        show(&a["timed_out"]),
        show(&a["send_errors"]),
        match a["abandoned"].as_u64() {
            Some(n) if n > 0 => {
                format!(" + abandoned <span id=\"total-abandoned\">{n}</span>")
            }
            _ => String::new(),
        },
        if balanced { "ok" } else { "bad" },
        if balanced { "OK" } else { "DOES NOT BALANCE" }
    )?;
    h.push_str("<table><tr>");
    let extra = [
        "retransmits",
        "late",
        "stray",
        "invalid",
        "unreachable",
        "accepted",
        "failures",
    ];
    for k in extra {
        write!(h, "<th>{k}</th>")?;
    }
    h.push_str("</tr><tr>");
    for k in extra {
        write!(h, "<td id=\"total-{k}\">{}</td>", show(&total[k]))?;
    }
    h.push_str("</tr></table>\n");

    // Whole-run latency.
    let l = &total["latency_us"];
    h.push_str("<h2>Latency, whole run</h2>\n<table><tr><th>answered</th><th>min</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr><tr>");
    write!(h, "<td id=\"latency-count\">{}</td>", show(&l["count"]))?;
    for k in ["min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
        write!(h, "<td id=\"latency-{k}\">{}</td>", show_ms(&l[k]))?;
    }
    h.push_str("</tr></table>\n");
    h.push_str(&percentile_chart(&hist)?);

    // Status codes.
    h.push_str("<h2>Status codes</h2>\n<table><tr><th>status</th><th>answers</th></tr>\n");
    if let Some(m) = total["by_status"].as_object() {
        for (k, n) in m {
            writeln!(
                h,
                "<tr><td>{}</td><td id=\"status-{}\">{}</td></tr>",
                esc(k),
                esc(k),
                show(n)
            )?;
        }
    }
    h.push_str("</table>\n");

    // Steps.
    h.push_str("<h2>Steps</h2>\n<table><tr><th>step</th><th>target/s</th><th>sent/s</th><th>sent</th><th>answered</th><th>timed out</th><th>send errors</th><th>failures</th><th>p50</th><th>p99</th><th>max</th><th>held</th></tr>\n");
    for (i, s) in v["steps"].as_array().into_iter().flatten().enumerate() {
        let n = i + 1;
        let held = s["held"].as_bool().unwrap_or(false);
        writeln!(
            h,
            "<tr><td>{n}</td><td>{}</td><td>{}</td><td id=\"step{n}-sent\">{}</td><td id=\"step{n}-answered\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td id=\"step{n}-held\" class=\"{}\">{}</td></tr>",
            show(&s["rate"]),
            show(&s["achieved_rate"]),
            show(&s["sent"]),
            show(&s["answered"]),
            show(&s["timed_out"]),
            show(&s["send_errors"]),
            show(&s["failures"]),
            show_ms(&s["latency_us"]["p50"]),
            show_ms(&s["latency_us"]["p99"]),
            show_ms(&s["latency_us"]["max"]),
            if held { "ok" } else { "bad" },
            if held { "held" } else { "not held" }
        )?;
    }
    h.push_str("</table>\n");
    if v["steps"].as_array().is_some_and(|s| s.len() > 1) {
        let rate = |r: &Value| {
            if r.is_null() {
                "none".to_string()
            } else {
                format!("{}/s", show(r))
            }
        };
        writeln!(
            h,
            "<p>Highest step that held: <span id=\"highest-held\">{}</span>; first step that did not hold: <span id=\"first-failed\">{}</span>.</p>",
            rate(&v["highest_held_rate"]),
            rate(&v["first_failed_rate"])
        )?;
    }

    // Per second.
    let secs: Vec<&Value> = v["seconds"].as_array().into_iter().flatten().collect();
    h.push_str("<h2>Per second</h2>\n");
    h.push_str(&rate_chart(&secs)?);
    h.push_str(&latency_chart(&secs)?);
    h.push_str("<p>Latency from the send (at the latest one send window after the scheduled time) to the kernel's receive time of the final response.</p>\n</body></html>\n");
    Ok(h)
}

fn start_time(v: &Value) -> String {
    match v["start_unix_ms"].as_u64() {
        Some(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        None => "-".into(),
    }
}

fn err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("cannot draw a chart: {e:?}")
}

fn num(s: &Value, k: &str) -> f64 {
    s[k].as_f64().unwrap_or(0.0)
}

/// Target, sent and answered per second; timeouts and send errors per second.
fn rate_chart(secs: &[&Value]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = secs.len().max(1) as f64;
        let top = secs
            .iter()
            .flat_map(|s| {
                [
                    "target_rate",
                    "sent",
                    "answered",
                    "timed_out",
                    "send_errors",
                ]
                .map(|k| num(s, k))
            })
            .fold(1.0, f64::max)
            * 1.1;
        let mut c = ChartBuilder::on(&root)
            .caption("requests per second", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n + 1.0, 0.0..top)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("second")
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        let series: [(&str, RGBColor); 5] = [
            ("target_rate", RGBColor(150, 150, 150)),
            ("sent", BLUE),
            ("answered", RGBColor(0, 140, 0)),
            ("timed_out", RED),
            ("send_errors", RGBColor(200, 120, 0)),
        ];
        for (k, color) in series {
            let pts: Vec<(f64, f64)> = secs
                .iter()
                .filter(|s| !s[k].is_null())
                .map(|s| (num(s, "second"), num(s, k)))
                .collect();
            let label = if k == "target_rate" { "target" } else { k };
            c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// p50, p90, p99 and max of each second, ms on a log axis.
fn latency_chart(secs: &[&Value]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = secs.len().max(1) as f64;
        let vals: Vec<f64> = secs
            .iter()
            .flat_map(|s| ["p50_us", "p90_us", "p99_us", "max_us"].map(|k| s[k].as_f64()))
            .flatten()
            .map(|us| us / 1000.0)
            .collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(0.0, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > 0.0 {
            (lo.max(0.001) / 2.0, hi * 2.0)
        } else {
            (0.01, 10.0)
        };
        let mut c = ChartBuilder::on(&root)
            .caption("latency per second (ms, log scale)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n + 1.0, (lo..hi).log_scale())
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("second")
            .light_line_style(WHITE)
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(err)?;
        let series: [(&str, &str, RGBColor); 4] = [
            ("p50_us", "p50", RGBColor(0, 140, 0)),
            ("p90_us", "p90", BLUE),
            ("p99_us", "p99", RGBColor(200, 120, 0)),
            ("max_us", "max", RED),
        ];
        for (k, label, color) in series {
            let pts: Vec<(f64, f64)> = secs
                .iter()
                .filter_map(|s| s[k].as_f64().map(|us| (num(s, "second"), us / 1000.0)))
                .collect();
            c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The whole-run percentile curve, HdrHistogram style: x = 1/(1-p) on a log scale.
fn percentile_chart(hist: &Histogram<u64>) -> anyhow::Result<String> {
    let mut pts: Vec<(f64, f64)> = Vec::new();
    if !hist.is_empty() {
        for it in hist.iter_quantiles(5) {
            let q = it.quantile_iterated_to();
            if q >= 1.0 {
                break;
            }
            pts.push((1.0 / (1.0 - q), it.value_iterated_to() as f64 / 1000.0));
        }
    }
    let xmax = pts.iter().map(|p| p.0).fold(100.0, f64::max).min(1e7) * 10.0;
    let ymax = hist.max().max(1) as f64 / 1000.0 * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut c = ChartBuilder::on(&root)
            .caption("latency by percentile (ms), whole run", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((1.0..xmax).log_scale(), 0.0..ymax)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("percentile")
            .light_line_style(WHITE)
            .x_label_formatter(&|x| percentile_label(*x))
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            pts.iter().copied().filter(|p| p.0 < xmax),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// 1/(1-p) as a percentile: 1 -> 0%, 10 -> 90%, 1000 -> 99.9%.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let s = format!("{p:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }
}
