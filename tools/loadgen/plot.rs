//! Latency-percentile plot as a standalone SVG: x is the percentile on the usual
//! "number of nines" scale (50%, 90%, 99%, … 99.999%), y is latency on a log scale. Each run
//! (this one and any `--overlay` JSON results) is one line.

use std::fmt::Write as _;

const W: f64 = 900.0;
const H: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];
/// The x axis runs from p0 to p99.999 (5 nines).
const MAX_NINES: f64 = 5.0;

/// Percentile -> x position (number of nines).
fn nines(p: f64) -> f64 {
    let rest = (1.0 - p / 100.0).max(10f64.powf(-MAX_NINES));
    (-rest.log10()).clamp(0.0, MAX_NINES)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Points (percentile, latency µs) of one JSON result.
fn points(run: &serde_json::Value) -> Vec<(f64, f64)> {
    run.get("curve")
        .and_then(|c| c.as_array())
        .map(|c| {
            c.iter()
                .filter_map(|pt| Some((pt.get(0)?.as_f64()?, pt.get(1)?.as_f64()?.max(1.0))))
                .collect()
        })
        .unwrap_or_default()
}

pub fn svg(runs: &[serde_json::Value]) -> String {
    let all: Vec<Vec<(f64, f64)>> = runs.iter().map(points).collect();
    let max_us = all.iter().flatten().map(|p| p.1).fold(10.0_f64, f64::max);
    let min_us = all
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(max_us, f64::min)
        .max(1.0);
    let (lo, hi) = (
        min_us.log10().floor(),
        max_us.log10().ceil().max(min_us.log10().floor() + 1.0),
    );
    let x = |p: f64| LEFT + nines(p) / MAX_NINES * (W - LEFT - RIGHT);
    let y = |us: f64| TOP + (hi - us.max(1.0).log10()) / (hi - lo) * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">Latency by percentile</text>"#
    );
    for n in 0..=MAX_NINES as usize {
        let p = 100.0 * (1.0 - 10f64.powi(-(n as i32)));
        let label = match n {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            _ => format!("{}%", 100.0 - 100.0 * 10f64.powi(-(n as i32))),
        };
        let xv = x(p.min(99.9999));
        let _ = write!(
            s,
            r##"<line x1="{xv:.1}" y1="{TOP}" x2="{xv:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xv:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0
        );
    }
    let mut e = lo;
    while e <= hi {
        let us = 10f64.powf(e);
        let yv = y(us);
        let label = if us >= 1000.0 {
            format!("{} ms", us / 1000.0)
        } else {
            format!("{us} µs")
        };
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{yv:.1}" x2="{:.1}" y2="{yv:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yv + 4.0
        );
        e += 1.0;
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0
    );
    for (i, (run, pts)) in runs.iter().zip(&all).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(p, us)| format!("{:.1},{:.1}", x(*p), y(*us)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let label = run.get("label").and_then(|l| l.as_str()).unwrap_or("run");
        let rate = run.get("rate").and_then(|r| r.as_f64()).unwrap_or(0.0);
        let ly = TOP + 20.0 * i as f64 + 10.0;
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{color}"/><text x="{:.1}" y="{:.1}">{} ({rate:.0} req/s)</text>"#,
            W - RIGHT + 14.0,
            ly - 4.0,
            W - RIGHT + 34.0,
            ly + 1.0,
            escape(label)
        );
    }
    s.push_str("</svg>\n");
    s
}
