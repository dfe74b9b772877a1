//! Charts as inline SVG: a sparkline per flow box and a line chart of a device's
//! readings. Built with maud, so every name is escaped. Pure.

use std::collections::BTreeMap;

use maud::{Markup, html};

/// The x and y of each point scaled into a `w` x `h` box (y grows downwards).
pub fn scale(points: &[(i64, f64)], w: f64, h: f64) -> Vec<(f64, f64)> {
    let Some(&(t0, _)) = points.first() else {
        return Vec::new();
    };
    let t1 = points.last().map_or(t0, |p| p.0);
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let span_t = (t1 - t0).max(1) as f64;
    let span_v = if hi > lo { hi - lo } else { 1.0 };
    points
        .iter()
        .map(|&(t, v)| {
            let x = (t - t0) as f64 / span_t * w;
            let y = h - (v - lo) / span_v * h;
            ((x * 10.0).round() / 10.0, (y * 10.0).round() / 10.0)
        })
        .collect()
}

fn polyline(points: &[(f64, f64)]) -> String {
    points
        .iter()
        .map(|(x, y)| format!("{x},{y}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn sparkline(series: &[(i64, f64)]) -> Markup {
    let (w, h) = (180.0, 36.0);
    let pts = scale(series, w, h - 2.0);
    html! {
        svg.spark width=(w) height=(h) viewBox={"0 -1 " (w) " " (h)} role="img"
            aria-label="the last 15 minutes" {
            @if pts.len() < 2 {
                text x="0" y="22" class="muted" { "collecting…" }
            } @else {
                polyline points=(polyline(&pts)) fill="none" stroke="currentColor" stroke-width="1.5" {}
            }
        }
    }
}

const COLOURS: [&str; 6] = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2",
];

/// One line per reading name (at most six), each scaled to its own range, with a legend.
pub fn readings_chart(readings: &[(i64, BTreeMap<String, f64>)]) -> Markup {
    let (w, h) = (720.0, 180.0);
    let mut names: Vec<&String> = readings.iter().flat_map(|(_, r)| r.keys()).collect();
    names.sort();
    names.dedup();
    names.truncate(COLOURS.len());
    html! {
        figure.chart {
            svg width=(w) height=(h) viewBox={"0 -2 " (w) " " (h + 4.0)} role="img"
                aria-label="the device's last readings" {
                @for (i, name) in names.iter().enumerate() {
                    @let series: Vec<(i64, f64)> = readings
                        .iter()
                        .filter_map(|(t, r)| r.get(*name).map(|v| (*t, *v)))
                        .collect();
                    polyline points=(polyline(&scale(&series, w, h))) fill="none"
                        stroke=(COLOURS[i]) stroke-width="1.5" {}
                }
            }
            figcaption {
                @for (i, name) in names.iter().enumerate() {
                    @let series: Vec<f64> = readings.iter().filter_map(|(_, r)| r.get(*name).copied()).collect();
                    @let lo = series.iter().copied().fold(f64::INFINITY, f64::min);
                    @let hi = series.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    span.legend style={"color:" (COLOURS[i])} {
                        "■ " (name) " (" (format!("{lo:.2}")) " – " (format!("{hi:.2}")) ")"
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_fill_the_box_and_a_flat_line_sits_at_the_bottom() {
        let pts = scale(&[(0, 1.0), (50, 3.0), (100, 2.0)], 100.0, 10.0);
        assert_eq!(pts, vec![(0.0, 10.0), (50.0, 0.0), (100.0, 5.0)]);
        let flat = scale(&[(0, 4.0), (10, 4.0)], 100.0, 10.0);
        assert_eq!(flat, vec![(0.0, 10.0), (100.0, 10.0)]);
        assert!(scale(&[], 1.0, 1.0).is_empty());
    }

    #[test]
    fn reading_names_are_escaped() {
        let r = vec![(0, [("<script>".to_owned(), 1.0)].into())];
        let svg = readings_chart(&r).into_string();
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
