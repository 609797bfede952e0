//! How the tickers pane writes prices, changes, volumes and price history:
//! read at a glance, in as few columns as they need.

use super::fmt::thousands;

/// Blocks from lowest to highest, for a sparkline drawn as text.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Digits of `x` (≥ 0) with `dp` decimals and thousands separators.
fn grouped(x: f64, dp: usize) -> String {
    let fixed = format!("{x:.dp$}");
    let (int, frac) = fixed.split_once('.').map_or((fixed.as_str(), None), |(i, f)| (i, Some(f)));
    // An integer part too long for u64 is not a price anyone reads; keep it as is.
    let mut out = int.parse::<u64>().map_or_else(|_| int.to_string(), thousands);
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A price: `74.62`, `2,345.6`, `67,123`. Large prices lose decimals
/// nobody reads; a price that is not a number is `-`.
pub fn price(p: f64) -> String {
    if !p.is_finite() {
        return "-".to_string();
    }
    let dp = match p.abs() {
        a if a >= 10_000.0 => 0,
        a if a >= 1_000.0 => 1,
        _ => 2,
    };
    let text = grouped(p.abs(), dp);
    // `-0.00` is zero.
    if p < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        format!("-{text}")
    } else {
        text
    }
}

/// A price that may be missing (high, low): `-` when the feed gave none.
pub fn maybe_price(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_string(), price)
}

/// A change with its sign: `+1.20`, `-0.38`, `0.00`.
pub fn signed(c: f64) -> String {
    let text = price(c);
    if c > 0.0 && text.chars().any(|ch| ch.is_ascii_digit() && ch != '0') {
        format!("+{text}")
    } else {
        text
    }
}

/// A change in percent: `+2.15%`, `-0.50%`.
pub fn percent(p: f64) -> String {
    if !p.is_finite() {
        return "-".to_string();
    }
    let text = format!("{p:+.2}%");
    if text == "+0.00%" || text == "-0.00%" {
        "0.00%".to_string()
    } else {
        text
    }
}

/// A volume in at most four digits and a unit: `950`, `12.3k`, `310k`, `1.2M`.
pub fn compact(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "-".to_string();
    }
    const UNITS: [(&str, f64); 5] = [("", 1.0), ("k", 1e3), ("M", 1e6), ("B", 1e9), ("T", 1e12)];
    let mut i = UNITS.iter().rposition(|&(_, size)| v >= size).unwrap_or(0);
    loop {
        let (unit, size) = UNITS[i];
        let x = v / size;
        let one_dp = format!("{x:.1}");
        // 9,960 is `10k`, not `10.0k`: one decimal only below ten.
        let text = if i == 0 || one_dp.len() > 3 { format!("{x:.0}") } else { one_dp };
        // 999,950 rounds to 1000k: that is 1.0M.
        if text.parse::<f64>().is_ok_and(|r| r >= 1000.0) && i + 1 < UNITS.len() {
            i += 1;
            continue;
        }
        return format!("{text}{unit}");
    }
}

/// The last `width` prices as block characters, scaled from the lowest to the
/// highest of those shown. A flat history is a flat line at mid height.
pub fn sparkline<I>(prices: I, width: usize) -> String
where
    I: IntoIterator<Item = f64>,
    I::IntoIter: DoubleEndedIterator,
{
    let mut shown: Vec<f64> = prices.into_iter().rev().filter(|p| p.is_finite()).take(width).collect();
    shown.reverse();
    let lo = shown.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = shown.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    shown
        .iter()
        .map(|&p| {
            if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
                BARS[3]
            } else {
                let level = ((p - lo) / (hi - lo) * (BARS.len() - 1) as f64).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_keep_the_decimals_that_matter() {
        let cases = [
            (74.62, "74.62"),
            (0.5, "0.50"),
            (999.994, "999.99"),
            (1_234.56, "1,234.6"),
            (2_345.0, "2,345.0"),
            (67_123.4, "67,123"),
            (1_234_567.8, "1,234,568"),
            (-37.63, "-37.63"),
            (-0.001, "0.00"),
            (0.0, "0.00"),
        ];
        for (p, want) in cases {
            assert_eq!(price(p), want, "{p}");
        }
        assert_eq!(price(f64::NAN), "-");
        assert_eq!(maybe_price(None), "-");
        assert_eq!(maybe_price(Some(75.1)), "75.10");
    }

    #[test]
    fn changes_carry_a_sign() {
        assert_eq!(signed(1.2), "+1.20");
        assert_eq!(signed(-0.38), "-0.38");
        assert_eq!(signed(0.0), "0.00");
        assert_eq!(signed(0.001), "0.00");
        assert_eq!(signed(1500.0), "+1,500.0");
        assert_eq!(percent(2.149), "+2.15%");
        assert_eq!(percent(-0.5), "-0.50%");
        assert_eq!(percent(-0.001), "0.00%");
        assert_eq!(percent(f64::INFINITY), "-");
    }

    #[test]
    fn volumes_are_compact() {
        let cases = [
            (0.0, "0"),
            (950.0, "950"),
            (1_000.0, "1.0k"),
            (12_345.0, "12k"),
            (9_960.0, "10k"),
            (262_356.0, "262k"),
            (310_000.0, "310k"),
            (999_950.0, "1.0M"),
            (1_200_000.0, "1.2M"),
            (45_600_000_000.0, "46B"),
            (3e15, "3000T"),
        ];
        for (v, want) in cases {
            assert_eq!(compact(v), want, "{v}");
        }
        assert_eq!(compact(-1.0), "-");
    }

    #[test]
    fn sparkline_scales_min_to_max() {
        assert_eq!(sparkline([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 8), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline([8.0, 1.0], 8), "█▁");
        // Only the newest `width` prices, scaled among themselves.
        assert_eq!(sparkline([100.0, 1.0, 2.0], 2), "▁█");
        assert_eq!(sparkline([5.0, 5.0, 5.0], 8), "▄▄▄");
        assert_eq!(sparkline([f64::NAN, 1.0], 8), "▄");
        assert_eq!(sparkline(Vec::<f64>::new(), 8), "");
    }
}
