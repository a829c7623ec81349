//! The latency-and-faults plot, as a self-contained SVG: one point per operation
//! (x: invocation time, y: latency on a log scale, colour: outcome; unknown outcomes
//! along the top edge), and each fault as a shaded band in its own lane.

use crate::history::{pairs, FaultSpan, Kind, Op};
use std::fmt::Write;

const W: f64 = 1100.0;
const H: f64 = 570.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 100.0;
/// Points drawn at most; ok operations are thinned evenly beyond it.
const MAX_POINTS: usize = 20_000;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn colour(kind: Option<Kind>) -> &'static str {
    match kind {
        Some(Kind::Ok) => "#1f77b4",
        Some(Kind::Fail) => "#ff7f0e",
        _ => "#9467bd",
    }
}

fn fault_colour(name: &str) -> &'static str {
    match name {
        "kill" => "#d62728",
        "pause" => "#8c564b",
        "partition" => "#2ca02c",
        "clock" => "#e377c2",
        "latency" => "#bcbd22",
        _ => "#7f7f7f",
    }
}

pub fn latency_svg(history: &[Op], faults: &[FaultSpan], title: &str) -> String {
    let ps = pairs(history).unwrap_or_default();
    let end_ns = history
        .iter()
        .map(|o| o.time)
        .chain(faults.iter().filter_map(|f| f.end))
        .max()
        .unwrap_or(0)
        .max(1_000_000_000);
    let span_s = end_ns as f64 / 1e9;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |ns: u64| LEFT + (ns as f64 / 1e9) / span_s * pw;
    // Log scale from 0.1 ms to the slowest operation (at least 10 s).
    let max_ms = ps
        .iter()
        .filter_map(|p| p.complete.map(|c| (c.time - p.invoke.time) as f64 / 1e6))
        .fold(10_000.0f64, f64::max);
    let (lo, hi) = (0.1f64.log10(), max_ms.log10());
    let y = |ms: f64| TOP + ph - (ms.max(0.1).log10() - lo) / (hi - lo) * ph;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="14">{}</text>"#,
        esc(title)
    );
    // Fault bands: one lane per fault kind, bands across the whole height, faint.
    let mut lanes: Vec<&str> = Vec::new();
    for f in faults {
        if !lanes.contains(&f.fault.as_str()) {
            lanes.push(&f.fault);
        }
    }
    let lane_h = 12.0;
    for f in faults {
        let lane = lanes.iter().position(|l| *l == f.fault).unwrap_or(0) as f64;
        let (x0, x1) = (x(f.start), x(f.end.unwrap_or(end_ns)));
        let c = fault_colour(&f.fault);
        let _ = write!(
            s,
            r#"<rect class="fault" x="{x0:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="{c}" fill-opacity="0.08"><title>{}</title></rect>"#,
            (x1 - x0).max(1.0),
            esc(&f.description)
        );
        let _ = write!(
            s,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{}" fill="{c}" fill-opacity="0.6"/>"#,
            TOP + ph + 18.0 + lane * lane_h,
            (x1 - x0).max(1.0),
            lane_h - 2.0
        );
    }
    // Axes and ticks.
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let mut ms = 0.1f64;
    while ms <= max_ms * 1.0001 {
        let yy = y(ms);
        let label = if ms < 1.0 {
            format!("{ms}")
        } else {
            format!("{}", ms as u64)
        };
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label} ms</text>"##,
            LEFT + pw,
            LEFT - 4.0,
            yy + 4.0
        );
        ms *= 10.0;
    }
    let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|st| span_s / st <= 12.0)
        .unwrap_or(1200.0);
    let mut t = 0.0;
    while t <= span_s {
        let xx = LEFT + t / span_s * pw;
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{t} s</text>"##,
            TOP + ph,
            TOP + ph + 14.0
        );
        t += step;
    }
    // Points: every non-ok operation, and ok ones thinned to fit.
    let ok_total = ps
        .iter()
        .filter(|p| p.complete.map(|c| c.kind) == Some(Kind::Ok))
        .count();
    let keep_every = ok_total.div_ceil(MAX_POINTS).max(1);
    let mut ok_seen = 0usize;
    for p in &ps {
        let kind = p.complete.map(|c| c.kind);
        if kind == Some(Kind::Ok) {
            ok_seen += 1;
            if !ok_seen.is_multiple_of(keep_every) {
                continue;
            }
        }
        let yy = match (kind, p.complete) {
            (Some(Kind::Ok | Kind::Fail), Some(c)) => y((c.time - p.invoke.time) as f64 / 1e6),
            _ => TOP + 3.0,
        };
        let _ = write!(
            s,
            r#"<circle cx="{:.1}" cy="{yy:.1}" r="1.6" fill="{}" fill-opacity="0.6"/>"#,
            x(p.invoke.time),
            colour(kind)
        );
    }
    // Legend.
    let lx = LEFT + pw + 12.0;
    let mut ly = TOP + 10.0;
    for (name, c) in [
        ("ok", colour(Some(Kind::Ok))),
        ("fail", colour(Some(Kind::Fail))),
        ("info (top edge)", colour(Some(Kind::Info))),
    ] {
        let _ = write!(
            s,
            r#"<circle cx="{lx}" cy="{ly}" r="4" fill="{c}"/><text x="{}" y="{}">{name}</text>"#,
            lx + 8.0,
            ly + 4.0
        );
        ly += 16.0;
    }
    ly += 8.0;
    for (i, lane) in lanes.iter().enumerate() {
        let _ = write!(
            s,
            r#"<rect x="{}" y="{ly}" width="10" height="10" fill="{}" fill-opacity="0.6"/><text x="{}" y="{}">{}</text>"#,
            lx - 4.0,
            fault_colour(lane),
            lx + 10.0,
            ly + 9.0,
            esc(lane)
        );
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##,
            LEFT + pw + 4.0,
            TOP + ph + 27.0 + i as f64 * lane_h,
            esc(lane)
        );
        ly += 16.0;
    }
    let _ = write!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">latency</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use serde_json::json;

    #[test]
    fn draws_points_bands_and_lanes() {
        let mut h = H::default();
        h.op(1, "write", json!(["r", 1]), "ok");
        h.op(2, "write", json!(["r", 2]), "info");
        h.op(3, "read", json!(["r", null]), "fail");
        h.event(4, "invoke", "read", json!(["r", null]));
        let faults = vec![
            FaultSpan {
                fault: "kill".into(),
                description: "kill -9 node 1 <leader>".into(),
                nodes: vec![1],
                start: 1_000_000,
                end: Some(3_000_000),
            },
            FaultSpan {
                fault: "partition".into(),
                description: "partition [1] | [2, 3]".into(),
                nodes: vec![1],
                start: 4_000_000,
                end: None,
            },
        ];
        let svg = latency_svg(&h.ops, &faults, "a & b");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="fault""#).count(), 2);
        assert_eq!(
            svg.matches("<circle").count(),
            4 + 3,
            "4 operations and 3 legend marks"
        );
        assert!(svg.contains("a &amp; b") && svg.contains("&lt;leader&gt;"));
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn an_empty_history_is_still_a_picture() {
        let svg = latency_svg(&[], &[], "empty");
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
    }
}
