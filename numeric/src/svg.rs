//! The plot (`plot.svg`): a small hand-written SVG renderer for line, marker and area series on a
//! linear or logarithmic y axis.

use std::fmt::Write as _;

/// Most points drawn per series; longer series are thinned evenly (keeping the last point).
pub const MAX_DRAWN_POINTS: usize = 2_000;
/// Most series named in the legend.
const MAX_LEGEND_ENTRIES: usize = 10;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 450.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithmic; points with y ≤ 0 are not drawn.
    Log,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Line,
    LineWithMarkers,
    Markers,
    /// The region between the curve and y = 0, shaded.
    Area,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, style: Style, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            style,
            points,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub y_scale: Scale,
    pub series: Vec<Series>,
}

/// An axis: the data interval it shows (in log10 units on a log axis) and its ticks.
struct Axis {
    low: f64,
    high: f64,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    fn linear(low: f64, high: f64) -> Axis {
        let (low, high) = if high > low {
            (low, high)
        } else {
            let pad = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
            (low - pad, high + pad)
        };
        let rough = (high - low) / 6.0;
        let magnitude = 10f64.powf(rough.log10().floor());
        let step = magnitude
            * match rough / magnitude {
                r if r < 1.5 => 1.0,
                r if r < 3.0 => 2.0,
                r if r < 7.0 => 5.0,
                _ => 10.0,
            };
        let first = (low / step).floor();
        let last = (high / step).ceil();
        let decimals = (-step.log10().floor()).clamp(0.0, 12.0) as usize;
        let use_exponent = step < 1e-4 || high.abs().max(low.abs()) >= 1e6;
        let ticks = (0..=((last - first) as usize))
            .map(|i| {
                let value = (first + i as f64) * step;
                let label = if value == 0.0 {
                    "0".to_string()
                } else if use_exponent {
                    format!("{value:.2e}")
                } else {
                    format!("{value:.decimals$}")
                };
                (value, label)
            })
            .collect();
        Axis {
            low: first * step,
            high: last * step,
            ticks,
        }
    }

    /// A log axis over decades; `low` and `high` are log10 of the data range.
    fn log(low: f64, high: f64) -> Axis {
        let first = low.floor();
        let last = if high.ceil() > first {
            high.ceil()
        } else {
            first + 1.0
        };
        let decades = (last - first) as usize;
        let every = decades.div_ceil(10).max(1);
        let ticks = (0..=decades)
            .step_by(every)
            .map(|i| {
                let exponent = first + i as f64;
                (exponent, format!("1e{exponent}"))
            })
            .collect();
        Axis {
            low: first,
            high: last,
            ticks,
        }
    }

    fn fraction(&self, value: f64) -> f64 {
        (value - self.low) / (self.high - self.low)
    }
}

/// Appends a coordinate with one decimal (a tenth of a pixel), without float formatting.
fn push_coordinate(out: &mut String, value: f64) {
    let tenths = (value * 10.0).round() as i64;
    if tenths < 0 {
        out.push('-');
    }
    let tenths = tenths.unsigned_abs();
    let _ = write!(out, "{}.{}", tenths / 10, tenths % 10);
}

/// Escapes text for SVG content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c if c.is_control() => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Evenly thins `points` to at most `max` entries, always keeping the last one.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let stride = points.len().div_ceil(max - 1);
    let mut thinned: Vec<_> = points.iter().copied().step_by(stride).collect();
    if thinned.last() != points.last() {
        thinned.extend(points.last());
    }
    thinned
}

impl Plot {
    fn y_value(&self, y: f64) -> Option<f64> {
        match self.y_scale {
            Scale::Linear => y.is_finite().then_some(y),
            Scale::Log => (y.is_finite() && y > 0.0).then(|| y.log10()),
        }
    }

    /// The data range over all drawable points, in axis units.
    fn bounds(&self) -> Option<(f64, f64, f64, f64)> {
        let mut bounds: Option<(f64, f64, f64, f64)> = None;
        let mut include = |x: f64, y: f64| {
            let b = bounds.get_or_insert((x, x, y, y));
            *b = (b.0.min(x), b.1.max(x), b.2.min(y), b.3.max(y));
        };
        for series in &self.series {
            for &(x, y) in &series.points {
                if let (true, Some(y)) = (x.is_finite(), self.y_value(y)) {
                    include(x, y);
                    if series.style == Style::Area && self.y_scale == Scale::Linear {
                        include(x, 0.0);
                    }
                }
            }
        }
        bounds
    }

    /// Renders the plot as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let bounds = self.bounds();
        let frame = self.frame(bounds);
        let mut svg = String::with_capacity(16 * 1024);
        self.write_header(&mut svg);
        frame.write_grid(&mut svg);
        self.write_box_and_labels(&mut svg);
        if bounds.is_none() {
            write_no_data(&mut svg);
        }
        for (index, series) in self.series.iter().enumerate() {
            self.write_series(&mut svg, &frame, series, COLORS[index % COLORS.len()]);
        }
        self.write_legend(&mut svg);
        svg.push_str("</svg>\n");
        svg
    }

    /// The axes for the data range `bounds` (a unit square when nothing is drawable).
    fn frame(&self, bounds: Option<(f64, f64, f64, f64)>) -> Frame {
        let (x_low, x_high, y_low, y_high) = bounds.unwrap_or((0.0, 1.0, 0.0, 1.0));
        Frame {
            x: Axis::linear(x_low, x_high),
            y: match self.y_scale {
                Scale::Linear => Axis::linear(y_low, y_high),
                Scale::Log => Axis::log(y_low, y_high),
            },
        }
    }

    /// The XML declaration, the `<svg>` element, its white background and the title.
    fn write_header(&self, svg: &mut String) {
        let _ = write!(
            svg,
            r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>
<text x="{cx}" y="24" text-anchor="middle" font-size="15">{title}</text>
"##,
            cx = WIDTH / 2.0,
            title = escape(&self.title),
        );
    }

    /// The frame around the plotting area and the axis labels.
    fn write_box_and_labels(&self, svg: &mut String) {
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" fill="none" stroke="#333"/>
<text x="{cx}" y="{xl_y}" text-anchor="middle">{x_label}</text>
<text x="18" y="{cy}" text-anchor="middle" transform="rotate(-90 18 {cy})">{y_label}</text>"##,
            cx = LEFT + PLOT_WIDTH / 2.0,
            xl_y = HEIGHT - 14.0,
            cy = TOP + PLOT_HEIGHT / 2.0,
            x_label = escape(&self.x_label),
            y_label = escape(&self.y_label),
        );
    }

    /// One series in `color`, as runs of drawable points (a NaN, an infinity or y <= 0 on a log
    /// axis breaks a line).
    fn write_series(&self, svg: &mut String, frame: &Frame, series: &Series, color: &str) {
        for run in self.runs(frame, series) {
            match series.style {
                Style::Area => write_area(svg, &run, frame.py(frame.zero_y()), color),
                Style::Line | Style::LineWithMarkers => write_line(svg, &run, color),
                Style::Markers => {}
            }
            if matches!(series.style, Style::Markers | Style::LineWithMarkers) {
                write_markers(svg, &run, color);
            }
        }
    }

    /// The series' points (thinned) on the canvas, split where a point cannot be drawn; no run
    /// is empty.
    fn runs(&self, frame: &Frame, series: &Series) -> Vec<Vec<(f64, f64)>> {
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (x, y) in thin(&series.points, MAX_DRAWN_POINTS) {
            match (x.is_finite(), self.y_value(y)) {
                (true, Some(y)) => runs
                    .last_mut()
                    .expect("runs is never empty")
                    .push((frame.px(x), frame.py(y))),
                _ if !runs.last().expect("runs is never empty").is_empty() => runs.push(Vec::new()),
                _ => {}
            }
        }
        runs.retain(|run| !run.is_empty());
        runs
    }

    /// The legend: the named series (at most [`MAX_LEGEND_ENTRIES`], then how many more), in a
    /// box at the top right of the plotting area.
    fn write_legend(&self, svg: &mut String) {
        let named: Vec<(usize, &Series)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.name.is_empty())
            .collect();
        if named.is_empty() {
            return;
        }
        let shown = named.len().min(MAX_LEGEND_ENTRIES);
        let more = named.len() - shown;
        let lines = shown + usize::from(more > 0);
        let box_width = 180.0;
        let box_x = LEFT + PLOT_WIDTH - box_width - 8.0;
        let _ = writeln!(
            svg,
            r##"<rect x="{box_x}" y="{y}" width="{box_width}" height="{h}" fill="white" fill-opacity="0.85" stroke="#bbb"/>"##,
            y = TOP + 8.0,
            h = 8.0 + 16.0 * lines as f64,
        );
        for (line, (index, series)) in named.iter().take(shown).enumerate() {
            let y = TOP + 24.0 + 16.0 * line as f64;
            let _ = writeln!(
                svg,
                r##"<rect x="{x}" y="{ry}" width="14" height="4" fill="{color}"/><text x="{tx}" y="{y}">{name}</text>"##,
                x = box_x + 8.0,
                ry = y - 6.0,
                color = COLORS[index % COLORS.len()],
                tx = box_x + 28.0,
                name = escape(&series.name),
            );
        }
        if more > 0 {
            let _ = writeln!(
                svg,
                r##"<text x="{x}" y="{y}">and {more} more</text>"##,
                x = box_x + 28.0,
                y = TOP + 24.0 + 16.0 * shown as f64,
            );
        }
    }
}

/// Width and height of the plotting area, inside the margins.
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;
const PLOT_HEIGHT: f64 = HEIGHT - TOP - BOTTOM;

/// The two axes of a plot, which place data on the canvas.
struct Frame {
    x: Axis,
    y: Axis,
}

impl Frame {
    /// The canvas x of data `x`.
    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.fraction(x) * PLOT_WIDTH
    }

    /// The canvas y of data `y` (in axis units).
    fn py(&self, y: f64) -> f64 {
        TOP + PLOT_HEIGHT - self.y.fraction(y) * PLOT_HEIGHT
    }

    /// Where an area is shaded down (or up) to: y = 0, or the axis' edge nearest to it.
    fn zero_y(&self) -> f64 {
        0f64.clamp(self.y.low, self.y.high)
    }

    /// The grid lines with their tick labels, vertical then horizontal.
    fn write_grid(&self, svg: &mut String) {
        for (value, label) in &self.x.ticks {
            let x = self.px(*value);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.2}" y1="{TOP}" x2="{x:.2}" y2="{bottom}" stroke="#e5e5e5"/><text x="{x:.2}" y="{label_y}" text-anchor="middle">{label}</text>"##,
                bottom = TOP + PLOT_HEIGHT,
                label_y = TOP + PLOT_HEIGHT + 18.0,
                label = escape(label),
            );
        }
        for (value, label) in &self.y.ticks {
            let y = self.py(*value);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.2}" x2="{right}" y2="{y:.2}" stroke="#e5e5e5"/><text x="{label_x}" y="{text_y:.2}" text-anchor="end">{label}</text>"##,
                right = LEFT + PLOT_WIDTH,
                label_x = LEFT - 8.0,
                text_y = y + 4.0,
                label = escape(label),
            );
        }
    }
}

/// The note shown in place of data when nothing can be drawn.
fn write_no_data(svg: &mut String) {
    let _ = writeln!(
        svg,
        r##"<text x="{cx}" y="{cy}" text-anchor="middle" fill="#888">no finite values to plot</text>"##,
        cx = LEFT + PLOT_WIDTH / 2.0,
        cy = TOP + PLOT_HEIGHT / 2.0,
    );
}

/// A run's canvas points as `x,y ` pairs.
fn coordinates(run: &[(f64, f64)]) -> String {
    run.iter()
        .fold(String::with_capacity(run.len() * 14), |mut s, (x, y)| {
            push_coordinate(&mut s, *x);
            s.push(',');
            push_coordinate(&mut s, *y);
            s.push(' ');
            s
        })
}

/// A run shaded down to the canvas y `base`.
fn write_area(svg: &mut String, run: &[(f64, f64)], base: f64, color: &str) {
    let _ = writeln!(
        svg,
        r##"<polygon points="{first:.1},{base:.1} {points}{last:.1},{base:.1}" fill="{color}" fill-opacity="0.25" stroke="none"/>"##,
        first = run[0].0,
        last = run[run.len() - 1].0,
        points = coordinates(run),
    );
}

/// A run as a line.
fn write_line(svg: &mut String, run: &[(f64, f64)], color: &str) {
    let _ = writeln!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.8"/>"##,
        coordinates(run).trim_end(),
    );
}

/// A marker on each point of a run.
fn write_markers(svg: &mut String, run: &[(f64, f64)], color: &str) {
    for (x, y) in run {
        svg.push_str("<circle cx=\"");
        push_coordinate(svg, *x);
        svg.push_str("\" cy=\"");
        push_coordinate(svg, *y);
        let _ = writeln!(svg, r##"" r="3.2" fill="{color}"/>"##);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_have_one_decimal() {
        let mut out = String::new();
        for value in [12.345, -0.54, 0.04, -7.0, 699.96] {
            push_coordinate(&mut out, value);
            out.push(' ');
        }
        assert_eq!(out, "12.3 -0.5 0.0 -7.0 700.0 ");
    }

    #[test]
    fn thinning_keeps_first_and_last() {
        let points: Vec<_> = (0..10_001).map(|i| (i as f64, 1.0)).collect();
        let thinned = thin(&points, 1000);
        assert!(thinned.len() <= 1000);
        assert_eq!(thinned[0].0, 0.0);
        assert_eq!(thinned.last().unwrap().0, 10_000.0);
    }

    #[test]
    fn log_axis_skips_non_positive_values_and_escapes_text() {
        let plot = Plot {
            title: "a < b & c".into(),
            x_label: "iteration".into(),
            y_label: "error".into(),
            y_scale: Scale::Log,
            series: vec![Series::new(
                "error",
                Style::LineWithMarkers,
                vec![
                    (1.0, 0.5),
                    (2.0, 1e-3),
                    (3.0, 0.0),
                    (4.0, f64::NAN),
                    (5.0, 1e-12),
                ],
            )],
        };
        let svg = plot.to_svg();
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains(">1e-12<") && svg.contains(">1e0<"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(
            svg.matches("<polyline").count(),
            2,
            "the line breaks at the undrawable points"
        );
    }

    #[test]
    fn empty_plot_says_so() {
        let plot = Plot {
            title: String::new(),
            x_label: "x".into(),
            y_label: "y".into(),
            y_scale: Scale::Linear,
            series: vec![Series::new("", Style::Line, vec![(0.0, f64::NAN)])],
        };
        assert!(plot.to_svg().contains("no finite values to plot"));
    }
}
