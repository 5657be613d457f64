//! Inline SVG for the status page, drawn on the server (no script needed): line
//! charts over time, the gateway's timeline and sparklines. Each line is one `<path>`
//! with `data-series` naming what it draws, its points at the sample times.

use std::fmt::Write;

use super::history::{Kind, TierView};

/// The chart's drawing area, in SVG user units.
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 100.0;
/// Room under the drawing area for the time labels.
const LABELS: f64 = 14.0;

/// One line of a chart: its values (one per time, None: a gap), the factor that turns
/// a value into what the axis shows, its CSS class and what it is.
pub struct Line<'a> {
    pub values: &'a [Option<u64>],
    pub factor: f64,
    pub class: &'a str,
    pub series: String,
}

/// x of time `t` in a chart that spans `from..=to`.
fn x(t: u64, from: u64, to: u64, width: f64) -> f64 {
    let span = to.saturating_sub(from).max(1) as f64;
    (t.saturating_sub(from) as f64 / span * width).clamp(0.0, width)
}

/// The path of `values` at `times` (each the end of a `step` it covers, drawn as a
/// level across it); a gap (None) breaks the line.
fn path(
    times: &[u64],
    step: u64,
    values: &[Option<u64>],
    factor: f64,
    top: f64,
    span: (u64, u64),
    size: (f64, f64),
) -> String {
    let (width, height) = size;
    let mut d = String::new();
    let mut pen_down = false;
    for (t, v) in times.iter().zip(values) {
        match v {
            Some(v) => {
                let y = height - (*v as f64 * factor / top * height).clamp(0.0, height);
                let _ = write!(
                    d,
                    "{}{:.1},{y:.1} L{:.1},{y:.1} ",
                    if pen_down { "L" } else { "M" },
                    x(t.saturating_sub(step), span.0, span.1, width),
                    x(*t, span.0, span.1, width),
                );
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d.trim_end().to_string()
}

/// The highest value any line reaches (in axis units), at least `floor`.
fn top(lines: &[Line], floor: f64) -> f64 {
    lines
        .iter()
        .flat_map(|l| l.values.iter().flatten().map(move |v| *v as f64 * l.factor))
        .fold(floor, f64::max)
}

/// A line chart of `lines` over the `span` (Unix times) of the tier; `label` writes an
/// axis value; `floor`: the least the axis goes up to.
pub fn chart(tier: &TierView, span: (u64, u64), lines: &[Line], floor: f64, label: impl Fn(f64) -> String) -> String {
    let top = top(lines, floor);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {}\" width=\"{WIDTH}\" height=\"{}\" role=\"img\">\
         <rect class=\"area\" x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\"/>\
         <line class=\"grid\" x1=\"0\" y1=\"{h2}\" x2=\"{WIDTH}\" y2=\"{h2}\"/>",
        HEIGHT + LABELS,
        HEIGHT + LABELS,
        h2 = HEIGHT / 2.0
    );
    for l in lines {
        let d = path(&tier.times, tier.step, l.values, l.factor, top, span, (WIDTH, HEIGHT));
        let _ = write!(
            svg,
            "<path class=\"{}\" data-series=\"{}\" d=\"{d}\"/>",
            l.class,
            super::page::esc(&l.series)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"2\" y=\"11\">{}</text><text x=\"0\" y=\"{y}\">-{}</text>\
         <text x=\"{WIDTH}\" y=\"{y}\" text-anchor=\"end\">now</text></svg>",
        label(top),
        super::page::duration(span.1.saturating_sub(span.0)),
        y = HEIGHT + LABELS - 2.0
    );
    svg
}

/// The gateway's checks over the tier: a bar per point, green when every check of it
/// found the gateway answering, red when one did not, grey without a check.
pub fn gateway_timeline(tier: &TierView, span: (u64, u64)) -> String {
    let ok = tier.get(Kind::GatewayOk, "");
    let checked = tier.get(Kind::GatewayChecked, "");
    let height = 16.0;
    let mut svg = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\">\
         <rect class=\"area\" x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\"/>"
    );
    let bar = (tier.step as f64 / span.1.saturating_sub(span.0).max(1) as f64 * WIDTH).max(1.0);
    for (i, t) in tier.times.iter().enumerate() {
        let at = |s: Option<&super::history::SeriesView>| s.and_then(|s| s.values.get(i).copied().flatten());
        let class = match (at(ok), at(checked)) {
            (Some(ok), Some(checked)) if checked > 0 && ok < checked => "down",
            (Some(_), Some(checked)) if checked > 0 => "up",
            _ => continue,
        };
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"0\" width=\"{bar:.1}\" height=\"{height}\"/>",
            x(t.saturating_sub(tier.step), span.0, span.1, WIDTH)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A small chart of one series, no labels.
pub fn sparkline(tier: &TierView, span: (u64, u64), values: &[Option<u64>], series: &str) -> String {
    let (width, height) = (120.0, 20.0);
    let top = values.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\">\
         <path class=\"rx\" data-series=\"{}\" d=\"{}\"/></svg>",
        super::page::esc(series),
        path(&tier.times, tier.step, values, 1.0, top, span, (width, height))
    )
}

/// Bits per second, the way network people read them.
pub fn rate(bits: f64) -> String {
    const UNITS: [&str; 5] = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
    let mut v = bits;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[0])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::super::history::SeriesView;
    use super::*;

    fn tier(values: Vec<Option<u64>>) -> TierView {
        TierView {
            step: 10,
            times: (0..values.len() as u64).map(|i| 1000 + i * 10).collect(),
            series: vec![SeriesView {
                kind: Kind::RxBytes,
                label: "wan".into(),
                values,
            }],
        }
    }

    #[test]
    fn a_line_rises_with_its_values_and_breaks_at_gaps() {
        let t = tier(vec![Some(0), Some(50), None, Some(100)]);
        let values = &t.series[0].values;
        let svg = chart(
            &t,
            (1000, 1030),
            &[Line {
                values,
                factor: 1.0,
                class: "rx",
                series: "rx_bytes wan".into(),
            }],
            1.0,
            |v| format!("{v}"),
        );
        assert!(
            svg.contains("<path class=\"rx\" data-series=\"rx_bytes wan\" d=\"M0.0,100.0 L0.0,100.0 L0.0,50.0 L200.0,50.0 M400.0,0.0 L600.0,0.0\"/>"),
            "{svg}"
        );
        assert!(
            svg.contains(">100</text>"),
            "the axis goes up to the highest value: {svg}"
        );
    }

    #[test]
    fn the_timeline_marks_failed_checks() {
        let mut t = tier(vec![]);
        t.times = vec![1000, 1010, 1020];
        t.series = vec![
            SeriesView {
                kind: Kind::GatewayOk,
                label: String::new(),
                values: vec![Some(1), Some(0), None],
            },
            SeriesView {
                kind: Kind::GatewayChecked,
                label: String::new(),
                values: vec![Some(1), Some(1), None],
            },
        ];
        let svg = gateway_timeline(&t, (990, 1020));
        assert_eq!(svg.matches("class=\"up\"").count(), 1);
        assert_eq!(svg.matches("class=\"down\"").count(), 1);
    }

    #[test]
    fn rates_read_naturally() {
        assert_eq!(rate(800.0), "800 bit/s");
        assert_eq!(rate(1_500_000.0), "1.5 Mbit/s");
    }
}
