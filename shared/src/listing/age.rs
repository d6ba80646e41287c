//! Ages as the listings show them: Nodepool's `DD:HH:MM:SS` (Python's `status.age`) and
//! a short relative form ("3m ago") for the TUI.

use std::fmt::Write as _;

/// Python's `divmod` for floats with a positive divisor: floored quotient and a remainder
/// in `[0, b)`.
fn divmod(a: f64, b: f64) -> (f64, f64) {
    let r = a.rem_euclid(b);
    ((a - r) / b, r)
}

/// Formats an elapsed time of `seconds` as `DD:HH:MM:SS`, exactly like Nodepool's
/// `'%02d:%02d:%02d:%02d' % (d, h, m, s)` over successive `divmod`s: fields are
/// zero-padded to two digits, days grow beyond two digits, and a negative elapsed time
/// (clock skew) gives negative days, e.g. −5 s → `-1:23:59:55`. A non-finite input
/// counts as 0.
pub fn format_age(seconds: f64) -> String {
    let mut out = String::with_capacity(11);
    push_age(seconds, &mut out);
    out
}

/// Appends [`format_age`] of `seconds` to `out`.
pub fn push_age(seconds: f64, out: &mut String) {
    let dt = if seconds.is_finite() { seconds } else { 0.0 };
    let (m, s) = divmod(dt, 60.0);
    let (h, m) = divmod(m, 60.0);
    let (d, h) = divmod(h, 24.0);
    // `%d` of a float truncates; the casts saturate on absurd values instead of failing.
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}:{:02}",
        d as i64, h as i64, m as i64, s as i64
    );
}

/// Clock skew up to this many seconds (a record stamped by a host whose clock is a
/// little ahead) still reads `just now`.
pub const SKEW_SECONDS: f64 = 5.0;

/// A short relative age for the TUI: `just now` (under a second, or up to
/// [`SKEW_SECONDS`] in the future), `12s ago`, `3m ago`, `5h ago`, `2d ago` (whole
/// units, rounded down); further in the future gives `in the future`, a non-finite
/// elapsed time `unknown`.
pub fn format_relative(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "unknown".to_string();
    }
    if seconds < -SKEW_SECONDS {
        return "in the future".to_string();
    }
    if seconds < 1.0 {
        return "just now".to_string();
    }
    let s = seconds as u64;
    if s < 60 {
        format!("{s}s ago")
    } else if s < 3600 {
        format!("{}m ago", s / 60)
    } else if s < 86_400 {
        format!("{}h ago", s / 3600)
    } else {
        format!("{}d ago", s / 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_like_python() {
        assert_eq!(format_age(0.0), "00:00:00:00");
        assert_eq!(format_age(59.9), "00:00:00:59");
        assert_eq!(format_age(61.0), "00:00:01:01");
        assert_eq!(format_age(3_723.5), "00:01:02:03");
        assert_eq!(format_age(90_061.0), "01:01:01:01");
        assert_eq!(format_age(100.0 * 86_400.0), "100:00:00:00");
        assert_eq!(format_age(-5.0), "-1:23:59:55");
        assert_eq!(format_age(-86_400.0 * 20.0), "-20:00:00:00");
        assert_eq!(format_age(f64::NAN), "00:00:00:00");
        assert_eq!(format_age(f64::INFINITY), "00:00:00:00");
        // Absurd values do not panic.
        let _ = format_age(1e300);
        let _ = format_age(-1e300);
    }

    #[test]
    fn relative() {
        assert_eq!(format_relative(0.2), "just now");
        assert_eq!(format_relative(-0.004), "just now");
        assert_eq!(format_relative(-4.9), "just now");
        assert_eq!(format_relative(1.0), "1s ago");
        assert_eq!(format_relative(59.0), "59s ago");
        assert_eq!(format_relative(180.0), "3m ago");
        assert_eq!(format_relative(7_300.0), "2h ago");
        assert_eq!(format_relative(86_400.0 * 3.5), "3d ago");
        assert_eq!(format_relative(-6.0), "in the future");
        assert_eq!(format_relative(f64::NAN), "unknown");
        let _ = format_relative(1e300);
    }
}
