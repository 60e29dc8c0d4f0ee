//! Hand-written SVG charts (no JavaScript): geometry computed here, drawn by askama templates,
//! themed by CSS classes, with native tooltips through `<title>`.

/// One bar of a bar chart, in SVG user units.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: u64,
    pub class: &'static str,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

pub const WIDTH: f64 = 400.0;
pub const HEIGHT: f64 = 160.0;
/// Room under the bars for labels.
const AXIS: f64 = 20.0;

/// Vertical bars side by side, scaled to the largest value.
pub fn bars(data: &[(&str, u64, &'static str)]) -> Vec<Bar> {
    let max = data.iter().map(|d| d.1).max().unwrap_or(0).max(1) as f64;
    let n = data.len().max(1) as f64;
    let slot = WIDTH / n;
    let plot = HEIGHT - AXIS - 14.0;
    data.iter()
        .enumerate()
        .map(|(i, (label, value, class))| {
            let height = (*value as f64 / max * plot).round();
            Bar {
                label: (*label).to_owned(),
                value: *value,
                class,
                x: (i as f64 * slot + slot * 0.15).round(),
                y: HEIGHT - AXIS - height,
                width: (slot * 0.7).round(),
                height,
            }
        })
        .collect()
}

/// A polyline through `values` (oldest first), scaled to fit; empty for fewer than two points.
pub fn line(values: &[u64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    polyline(values.iter().map(|v| *v as f64 / max))
}

/// Polylines through several series (oldest first) on one scale, the largest value of any of
/// them, so that the lines compare (a burn-down's decisions); each empty for fewer than two
/// points.
pub fn lines_on_one_scale(series: &[Vec<u64>]) -> Vec<String> {
    let max = series
        .iter()
        .flat_map(|s| s.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    series
        .iter()
        .map(|s| polyline(s.iter().map(|v| *v as f64 / max)))
        .collect()
}

/// A polyline through percentages (oldest first) on a fixed 0–100 scale, so that a score's trend
/// is never exaggerated by zooming; empty for fewer than two points.
pub fn percent_line(values: &[f64]) -> String {
    polyline(values.iter().map(|v| v.clamp(0.0, 100.0) / 100.0))
}

/// A polyline through points given as fractions of the plot's height (oldest first), spread over
/// the width; empty for fewer than two points.
fn polyline(heights: impl ExactSizeIterator<Item = f64>) -> String {
    if heights.len() < 2 {
        return String::new();
    }
    let step = WIDTH / (heights.len() - 1) as f64;
    let plot = HEIGHT - AXIS;
    heights
        .enumerate()
        .map(|(i, h)| format!("{:.1},{:.1}", i as f64 * step, plot - h * (plot - 10.0)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The y coordinate of a percentage on [`percent_line`]'s scale (for grid lines and labels).
pub fn percent_y(v: f64) -> f64 {
    let plot = HEIGHT - AXIS;
    plot - (v.clamp(0.0, 100.0) / 100.0) * (plot - 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let b = bars(&[("critical", 10, "sev-critical"), ("low", 5, "sev-low")]);
        assert_eq!(b.len(), 2);
        assert!(b[0].height > b[1].height);
        assert_eq!(b[0].y + b[0].height, HEIGHT - AXIS);
        assert!(bars(&[("none", 0, "x")])[0].height == 0.0);
    }

    #[test]
    fn line_needs_two_points() {
        assert_eq!(line(&[3]), "");
        assert_eq!(line(&[0, 10]), "0.0,140.0 400.0,10.0");
    }

    #[test]
    fn lines_share_one_scale() {
        let l = lines_on_one_scale(&[vec![0, 10], vec![5, 5]]);
        assert_eq!(l[0], "0.0,140.0 400.0,10.0");
        assert_eq!(l[1], "0.0,75.0 400.0,75.0");
    }

    #[test]
    fn percent_lines_keep_a_fixed_scale() {
        assert_eq!(percent_line(&[50.0]), "");
        assert_eq!(percent_line(&[0.0, 100.0]), "0.0,140.0 400.0,10.0");
        // Out-of-range values are drawn at the edge, not off the chart.
        assert_eq!(percent_line(&[-5.0, 120.0]), "0.0,140.0 400.0,10.0");
        assert_eq!(percent_y(50.0), 75.0);
    }
}
