//! Inline SVG charts, drawn by hand so the report needs no script and no network: vertical
//! stacked bars, lines (solid or dashed), and horizontal stacked bars. Every mark carries a
//! `<title>`, so hovering shows the exact value.

use std::fmt::Write;

/// What the numbers on an axis are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Count,
    Usd,
}

/// Escape text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A value for people, in the unit of the axis.
pub fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => crate::explain::human_bytes(v.max(0.0).round() as u64),
        Unit::Count => fmt_count(v),
        Unit::Usd => crate::cost::money(v),
    }
}

/// `950`, `12.5k`, `3.2M`.
pub fn fmt_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn tick_label(v: f64, unit: Unit, base: f64, base_name: &str) -> String {
    match unit {
        Unit::Bytes => {
            let x = v / base;
            if (x - x.round()).abs() < 1e-9 {
                format!("{x:.0} {base_name}")
            } else {
                format!("{x:.1} {base_name}")
            }
        }
        Unit::Count => fmt_count(v),
        Unit::Usd => {
            if v >= 1000.0 {
                format!("${}k", fmt_count(v / 1000.0))
            } else if v >= 1.0 || v == 0.0 {
                format!("${v:.0}")
            } else {
                format!("${v:.2}")
            }
        }
    }
}

/// Ticks from 0 to at least `max`: nice steps (1, 2, 2.5, 5 × 10^k, in powers of 1024 for
/// bytes). Returns the tick values and their labels.
pub fn ticks(max: f64, unit: Unit) -> (Vec<f64>, Vec<String>) {
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    let (base, name) = if unit == Unit::Bytes {
        const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut i = 0;
        let mut b = 1.0;
        while max / b >= 1024.0 && i < U.len() - 1 {
            b *= 1024.0;
            i += 1;
        }
        (b, U[i])
    } else {
        (1.0, "")
    };
    let m = max / base;
    let raw = m / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    // 2.5 only where fractions read well (money, and bytes in a larger unit).
    let steps: &[f64] = if unit == Unit::Count {
        &[1.0, 2.0, 5.0, 10.0]
    } else {
        &[1.0, 2.0, 2.5, 5.0, 10.0]
    };
    let mut step = steps
        .iter()
        .map(|s| s * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    if unit != Unit::Usd && step < 1.0 && base == 1.0 {
        // Counts and bytes are whole numbers.
        step = 1.0;
    }
    let n = (m / step).ceil().max(1.0) as usize;
    let vals: Vec<f64> = (0..=n).map(|i| i as f64 * step * base).collect();
    let labels = vals
        .iter()
        .map(|v| tick_label(*v, unit, base, name))
        .collect();
    (vals, labels)
}

/// One data series.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: String,
    /// One value per x position (`None`: no point there).
    pub values: Vec<Option<f64>>,
    pub dashed: bool,
}

/// Size and labels of a chart.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: String,
    pub title: String,
    pub y_label: String,
    pub x_label: String,
    pub unit: Unit,
    pub width: f64,
    pub height: f64,
}

const FONT: &str = "font-family=\"DejaVu Sans, Liberation Sans, Helvetica, Arial, sans-serif\"";
const AXIS: &str = "#475569";
const GRID: &str = "#e2e8f0";

struct Plot {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
    ymax: f64,
}

impl Plot {
    fn y(&self, v: f64) -> f64 {
        self.top + self.h - (v / self.ymax) * self.h
    }
}

fn open(o: &mut String, f: &Frame) {
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{}\" class=\"chart\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\" {FONT}>",
        esc(&f.id),
        f.width,
        f.height,
        f.width,
        f.height,
        esc(&f.title)
    );
    let _ = write!(o, "<title>{}</title>", esc(&f.title));
    let _ = write!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
        f.width, f.height
    );
    let _ = write!(
        o,
        "<text x=\"16\" y=\"24\" font-size=\"15\" font-weight=\"bold\" fill=\"#0f172a\">{}</text>",
        esc(&f.title)
    );
}

fn legend_width(name: &str) -> f64 {
    34.0 + name.chars().count() as f64 * 7.0
}

fn legend(o: &mut String, series: &[(String, String, bool)], x0: f64, y: f64, max_x: f64) {
    let mut x = x0;
    let mut y = y;
    for (name, color, dashed) in series {
        let w = legend_width(name);
        if x + w > max_x && x > x0 {
            x = x0;
            y += 16.0;
        }
        if *dashed {
            let _ = write!(
                o,
                "<line x1=\"{x}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2.5\" stroke-dasharray=\"5 3\"/>",
                y - 4.0,
                x + 14.0,
                y - 4.0
            );
        } else {
            let _ = write!(
                o,
                "<rect x=\"{x}\" y=\"{}\" width=\"11\" height=\"11\" rx=\"2\" fill=\"{color}\"/>",
                y - 10.0
            );
        }
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{y}\" font-size=\"11.5\" fill=\"#334155\">{}</text>",
            x + 17.0,
            esc(name)
        );
        x += w;
    }
}

/// Draw the y axis with grid lines and the x axis line; returns the plot area.
fn axes(o: &mut String, f: &Frame, ymax: f64, top: f64) -> Plot {
    let (vals, labels) = ticks(ymax, f.unit);
    let top_val = *vals.last().unwrap_or(&1.0);
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f64 * 6.8;
    let left = 30.0 + label_w;
    let p = Plot {
        left,
        top,
        w: f.width - left - 20.0,
        h: f.height - top - 58.0,
        ymax: if top_val > 0.0 { top_val } else { 1.0 },
    };
    for (v, l) in vals.iter().zip(&labels) {
        let y = p.y(*v);
        let _ = write!(
            o,
            "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"{GRID}\"/>",
            p.left,
            p.left + p.w
        );
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"{AXIS}\" text-anchor=\"end\">{}</text>",
            p.left - 6.0,
            y + 4.0,
            esc(l)
        );
    }
    let _ = write!(
        o,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{AXIS}\"/>",
        p.left,
        p.top + p.h,
        p.left + p.w,
        p.top + p.h
    );
    let _ = write!(
        o,
        "<text transform=\"translate(14 {:.1}) rotate(-90)\" font-size=\"11.5\" fill=\"{AXIS}\" text-anchor=\"middle\">{}</text>",
        p.top + p.h / 2.0,
        esc(&f.y_label)
    );
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11.5\" fill=\"{AXIS}\" text-anchor=\"middle\">{}</text>",
        p.left + p.w / 2.0,
        f.height - 8.0,
        esc(&f.x_label)
    );
    p
}

fn x_labels(o: &mut String, p: &Plot, labels: &[String], x_of: impl Fn(usize) -> f64) {
    let n = labels.len().max(1);
    let max_len = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f64;
    let room = (max_len * 6.6 + 10.0).max(20.0);
    let every = ((room * n as f64 / p.w).ceil() as usize).max(1);
    for (i, l) in labels.iter().enumerate() {
        if !i.is_multiple_of(every) {
            continue;
        }
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{AXIS}\" text-anchor=\"middle\">{}</text>",
            x_of(i),
            p.top + p.h + 16.0,
            esc(l)
        );
    }
}

/// A vertical marker at x position `x` (in data positions, may be fractional).
#[derive(Debug, Clone)]
pub struct Marker {
    pub at: f64,
    pub label: String,
    pub color: String,
}

/// Vertical bars, stacked by series, one per label.
pub fn stacked_bars(
    f: &Frame,
    labels: &[String],
    series: &[Series],
    marker: Option<&Marker>,
) -> String {
    let mut o = String::new();
    open(&mut o, f);
    let leg: Vec<_> = series
        .iter()
        .map(|s| (s.name.clone(), s.color.clone(), false))
        .collect();
    let legend_rows = if series.len() > 1 {
        legend(&mut o, &leg, 16.0, 46.0, f.width - 16.0);
        1.0 + (leg.iter().map(|l| legend_width(&l.0)).sum::<f64>() / (f.width - 32.0)).floor()
    } else {
        0.0
    };
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().flatten().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let ymax = totals.iter().copied().fold(0.0, f64::max);
    let p = axes(&mut o, f, ymax, 44.0 + legend_rows * 16.0 + 8.0);
    let n = labels.len().max(1);
    let slot = p.w / n as f64;
    let bw = (slot * 0.72).clamp(1.0, 56.0);
    let x_of = |i: usize| p.left + slot * (i as f64 + 0.5);
    for (i, label) in labels.iter().enumerate() {
        let mut acc = 0.0;
        let x = x_of(i) - bw / 2.0;
        for s in series {
            let v = s.values.get(i).copied().flatten().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let y1 = p.y(acc);
            let y2 = p.y(acc + v);
            let _ = write!(
                o,
                "<rect x=\"{x:.1}\" y=\"{y2:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}: {}</title></rect>",
                (y1 - y2).max(0.5),
                s.color,
                esc(label),
                esc(&s.name),
                esc(&fmt_value(v, f.unit))
            );
            acc += v;
        }
    }
    if let Some(m) = marker {
        let x = p.left + slot * m.at;
        let _ = write!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"6 3\"/>",
            p.top,
            p.top + p.h,
            m.color
        );
        // The label goes right of the line, or left of it when it would not fit.
        let room = m.label.chars().count() as f64 * 6.9;
        let (lx, anchor) = if x + 5.0 + room <= p.left + p.w {
            (x + 5.0, "start")
        } else {
            (x - 5.0, "end")
        };
        let _ = write!(
            o,
            "<text x=\"{lx:.1}\" y=\"{:.1}\" font-size=\"11.5\" font-weight=\"bold\" fill=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            p.top + 12.0,
            m.color,
            esc(&m.label)
        );
    }
    x_labels(&mut o, &p, labels, x_of);
    o.push_str("</svg>");
    o
}

/// Lines over labelled x positions; `marker` draws a vertical line (e.g. "today").
pub fn lines(f: &Frame, labels: &[String], series: &[Series], marker: Option<&Marker>) -> String {
    let mut o = String::new();
    open(&mut o, f);
    let leg: Vec<_> = series
        .iter()
        .map(|s| (s.name.clone(), s.color.clone(), s.dashed))
        .collect();
    legend(&mut o, &leg, 16.0, 46.0, f.width - 16.0);
    let ymax = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .fold(0.0, f64::max);
    let p = axes(&mut o, f, ymax, 60.0);
    // One point sits in the middle; more span the width.
    let single = labels.len() <= 1;
    let step = if single {
        0.0
    } else {
        p.w / (labels.len() - 1) as f64
    };
    let x_of = |i: usize| {
        if single {
            p.left + p.w / 2.0
        } else {
            p.left + step * i as f64
        }
    };
    if let Some(m) = marker {
        let x = if single {
            p.left + p.w / 2.0
        } else {
            p.left + step * m.at
        };
        let _ = write!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{}\" stroke-dasharray=\"3 3\"/>",
            p.top,
            p.top + p.h,
            m.color
        );
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{}\" text-anchor=\"end\">{}</text>",
            x - 4.0,
            p.top + 12.0,
            m.color,
            esc(&m.label)
        );
    }
    for s in series {
        let mut d = String::new();
        let mut pen = false;
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen { "L" } else { "M" },
                        x_of(i),
                        p.y(*v)
                    );
                    pen = true;
                }
                None => pen = false,
            }
        }
        let dash = if s.dashed {
            " stroke-dasharray=\"7 4\""
        } else {
            ""
        };
        let _ = write!(
            o,
            "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\" stroke-linejoin=\"round\"{dash}/>",
            d.trim_end(),
            s.color
        );
        let points = s.values.iter().filter(|v| v.is_some()).count();
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                let r = if points <= 40 { 3.0 } else { 1.6 };
                let _ = write!(
                    o,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{}\"><title>{}: {}: {}</title></circle>",
                    x_of(i),
                    p.y(*v),
                    s.color,
                    esc(&labels[i]),
                    esc(&s.name),
                    esc(&fmt_value(*v, f.unit))
                );
            }
        }
    }
    x_labels(&mut o, &p, labels, x_of);
    o.push_str("</svg>");
    o
}

/// One row of a horizontal bar chart: a label and stacked parts (value, color, name).
#[derive(Debug, Clone)]
pub struct HRow {
    pub label: String,
    pub parts: Vec<(f64, String, String)>,
    /// Text after the bar (default: the total).
    pub note: Option<String>,
}

/// Horizontal bars, one row per label, parts stacked left to right.
pub fn hbars(f: &Frame, rows: &[HRow], legend_items: &[(String, String)]) -> String {
    let row_h = 24.0;
    let top = if legend_items.is_empty() { 40.0 } else { 60.0 };
    let height = top + rows.len() as f64 * row_h + 40.0;
    let f = Frame {
        height,
        ..f.clone()
    };
    let mut o = String::new();
    open(&mut o, &f);
    if !legend_items.is_empty() {
        let leg: Vec<_> = legend_items
            .iter()
            .map(|(n, c)| (n.clone(), c.clone(), false))
            .collect();
        legend(&mut o, &leg, 16.0, 46.0, f.width - 16.0);
    }
    let label_w = rows
        .iter()
        .map(|r| r.label.chars().count().min(40))
        .max()
        .unwrap_or(1) as f64
        * 6.9
        + 24.0;
    let note_w = rows
        .iter()
        .map(|r| r.note.as_ref().map_or(12, |n| n.chars().count()))
        .max()
        .unwrap_or(12) as f64
        * 6.7
        + 16.0;
    let left = label_w;
    let w = f.width - left - note_w;
    let max = rows
        .iter()
        .map(|r| r.parts.iter().map(|p| p.0).sum::<f64>())
        .fold(0.0, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let mut label: String = r.label.chars().take(40).collect();
        if r.label.chars().count() > 40 {
            label.push('…');
        }
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#1e293b\" text-anchor=\"end\">{}<title>{}</title></text>",
            left - 8.0,
            y + 15.0,
            esc(&label),
            esc(&r.label)
        );
        let mut x = left;
        let mut total = 0.0;
        for (v, color, name) in &r.parts {
            let bw = v / max * w;
            if bw > 0.0 {
                let _ = write!(
                    o,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {}: {}</title></rect>",
                    y + 3.0,
                    bw.max(1.0),
                    row_h - 7.0,
                    esc(&r.label),
                    esc(name),
                    esc(&fmt_value(*v, f.unit))
                );
            }
            x += bw;
            total += v;
        }
        let note = r.note.clone().unwrap_or_else(|| fmt_value(total, f.unit));
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11.5\" fill=\"#334155\">{}</text>",
            x + 6.0,
            y + 15.0,
            esc(&note)
        );
    }
    let _ = write!(
        o,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"{AXIS}\"/>",
        top,
        top + rows.len() as f64 * row_h
    );
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11.5\" fill=\"{AXIS}\" text-anchor=\"middle\">{}</text>",
        left + w / 2.0,
        height - 12.0,
        esc(&f.x_label)
    );
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks() {
        let (v, l) = ticks(3.7 * (1u64 << 30) as f64, Unit::Bytes);
        assert_eq!(l.first().unwrap(), "0 GiB");
        assert_eq!(l.last().unwrap(), "4 GiB");
        assert!(v.len() >= 3 && v.len() <= 9, "{l:?}");
        let (_, l) = ticks(87.0, Unit::Count);
        assert_eq!(l.last().unwrap(), "100");
        let (_, l) = ticks(3.0, Unit::Count);
        assert_eq!(l, vec!["0", "1", "2", "3"]);
        let (_, l) = ticks(0.37, Unit::Usd);
        assert_eq!(l.last().unwrap(), "$0.40");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
