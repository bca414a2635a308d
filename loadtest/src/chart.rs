//! `chart`: read several JSON results and draw, against the offered load,
//! the deliveries/s achieved and the p99 latency, as one hand-written SVG.

use crate::report::Report;
use std::collections::BTreeMap;
use std::fmt::Write;

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 260.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_T: f64 = 50.0;
const GAP: f64 = 90.0;
const COLORS: [&str; 6] = ["#1f6feb", "#d1495b", "#2a9d8f", "#e9a23b", "#6d597a", "#555555"];

/// One point: offered load, achieved deliveries/s, p99 in ms.
type Point = (f64, f64, f64);

/// The x value of a result: offered deliveries/s, or connections when nothing was sent.
fn load(r: &Report) -> f64 {
    if r.offered_deliveries_per_s > 0.0 { r.offered_deliveries_per_s } else { r.connections as f64 }
}

pub fn svg(reports: &[Report], title: &str) -> String {
    let mut series: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for r in reports {
        series.entry(r.scenario.clone()).or_default().push((load(r), r.deliveries_per_s, r.latency.p99_ms));
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let max_x = nice(reports.iter().map(load).fold(1.0, f64::max));
    let max_d = nice(reports.iter().map(|r| r.deliveries_per_s.max(r.offered_deliveries_per_s)).fold(1.0, f64::max));
    let max_p = nice(reports.iter().map(|r| r.latency.p99_ms).fold(1.0, f64::max));
    let width = MARGIN_L * 2.0 + PANEL_W * 2.0 + GAP;
    let height = MARGIN_T + PANEL_H + 90.0;

    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"##,
        width / 2.0,
        escape(title)
    );
    let panels = [("deliveries/s achieved", max_d, 1usize), ("p99 latency (ms)", max_p, 2usize)];
    for (i, (name, max_y, which)) in panels.into_iter().enumerate() {
        let x0 = MARGIN_L + i as f64 * (PANEL_W + GAP);
        let y0 = MARGIN_T;
        let px = |x: f64| x0 + x / max_x * PANEL_W;
        let py = |y: f64| y0 + PANEL_H - y / max_y * PANEL_H;
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>
<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{name}</text>
<text x="{}" y="{}" text-anchor="middle">offered load (deliveries/s, or connections)</text>"##,
            x0 + PANEL_W / 2.0,
            y0 - 8.0,
            x0 + PANEL_W / 2.0,
            y0 + PANEL_H + 36.0
        );
        for t in 0..=4 {
            let fx = max_x * t as f64 / 4.0;
            let fy = max_y * t as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#eee"/><text x="{0}" y="{3}" text-anchor="middle">{4}</text>
<line x1="{5}" y1="{6}" x2="{7}" y2="{6}" stroke="#eee"/><text x="{8}" y="{9}" text-anchor="end">{10}</text>"##,
                px(fx),
                y0,
                y0 + PANEL_H,
                y0 + PANEL_H + 16.0,
                short(fx),
                x0,
                py(fy),
                x0 + PANEL_W,
                x0 - 6.0,
                py(fy) + 4.0,
                short(fy)
            );
        }
        if which == 1 {
            // Ideal: every offered delivery arrives.
            let m = max_x.min(max_d);
            let _ = writeln!(s, r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#bbb" stroke-dasharray="4 4"/>"##, px(0.0), py(0.0), px(m), py(m));
        }
        for (n, (scenario, points)) in series.iter().enumerate() {
            let color = COLORS[n % COLORS.len()];
            let y = |p: &Point| if which == 1 { p.1 } else { p.2 };
            let path: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(y(p)))).collect();
            let _ = writeln!(s, r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"##, path.join(" "));
            for p in points {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{}: load {:.0}, {:.0} deliveries/s, p99 {:.2} ms</title></circle>"##,
                    px(p.0),
                    py(y(p)),
                    escape(scenario),
                    p.0,
                    p.1,
                    p.2
                );
            }
            if i == 0 {
                let lx = MARGIN_L + n as f64 * 140.0;
                let ly = y0 + PANEL_H + 62.0;
                let _ = writeln!(
                    s,
                    r##"<rect x="{lx}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{ly}">{}</text>"##,
                    ly - 10.0,
                    lx + 18.0,
                    escape(scenario)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Round an axis maximum up to 1, 2 or 5 times a power of ten.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|&c| c >= v).unwrap_or(v)
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_point_per_result() {
        let mut a = Report { scenario: "fanout".into(), offered_deliveries_per_s: 100_000.0, deliveries_per_s: 99_000.0, ..Report::default() };
        a.latency.p99_ms = 12.0;
        let b = Report { offered_deliveries_per_s: 300_000.0, deliveries_per_s: 250_000.0, ..a.clone() };
        let svg = svg(&[a, b], "fanout <test>");
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("fanout &lt;test&gt;"));
        assert_eq!(nice(260_000.0), 500_000.0);
        assert_eq!(nice(12.0), 20.0);
    }
}
