//! Text from the outside, made safe to show.

/// At most `max` characters of text from the outside, control characters replaced.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
