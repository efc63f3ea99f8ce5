//! The number rule of the reading: `[+-]? (digits ([.,] digits*)? | [.,] digits) ([eE] [+-]? digits)?`.
//!
//! A `,` is a decimal separator, so `1,5` is 1.5. [`scan`] finds the longest prefix of a field
//! that matches the rule and converts it to the nearest `f64` (correctly rounded, as
//! `str::parse::<f64>` would for the same digits with a `.`).
//!
//! Why not `str::parse` alone, or a crate: neither takes `,` as the decimal point nor reports how
//! long the matching prefix is under this grammar (they accept `inf`, `nan`, reject `1,5`), and
//! the reader calls this for up to five fields per metric, so the scan and the common-case
//! conversion are done in one pass here. Values with at most 19 digits whose
//! mantissa fits in 53 bits and whose decimal exponent lies in `-22..=22` are converted exactly
//! with one IEEE multiplication or division (Clinger's fast path: both operands are exact, so the
//! one rounding is the correct one); every other number goes to `str::parse`, which is correctly
//! rounded for all inputs.

/// Powers of ten that are exact in an `f64`.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Largest mantissa that an `f64` holds exactly.
const MAX_EXACT_MANTISSA: u64 = 1 << 53;

/// Scans the longest prefix of `field` that is a number of the reading.
///
/// Returns the value and the number of bytes it spans, or `None` when `field` does not start
/// with a number. The value is infinite when the number overflows `f64` (the caller decides
/// what that means); it is never NaN.
#[inline]
pub fn scan(field: &[u8]) -> Option<(f64, usize)> {
    let mut pos = 0;
    let negative = match field.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        _ => false,
    };

    let mut mantissa: u64 = 0;
    // Digits that went into `mantissa`; past 19 it may have overflowed and the slow path decides.
    let mut digit_count = 0usize;
    let mut decimal_exponent: i64 = 0;

    let integer_start = pos;
    pos = digits(field, pos, &mut mantissa);
    let integer_digits = pos - integer_start;
    digit_count += integer_digits;

    if let Some(b'.' | b',') = field.get(pos) {
        let fraction_start = pos + 1;
        let end = digits(field, fraction_start, &mut mantissa);
        let fraction_digits = end - fraction_start;
        digit_count += fraction_digits;
        if integer_digits == 0 && fraction_digits == 0 {
            return None; // a lone separator is no number
        }
        decimal_exponent -= fraction_digits as i64;
        pos = end;
    } else if integer_digits == 0 {
        return None;
    }

    // An exponent counts only when at least one digit follows `e` and its sign.
    if let Some(b'e' | b'E') = field.get(pos) {
        let mut end = pos + 1;
        let exponent_negative = match field.get(end) {
            Some(b'-') => {
                end += 1;
                true
            }
            Some(b'+') => {
                end += 1;
                false
            }
            _ => false,
        };
        let digits_start = end;
        let mut exponent: i64 = 0;
        while let Some(&digit @ b'0'..=b'9') = field.get(end) {
            // Saturate: any exponent this large already means zero or infinity.
            exponent = (exponent * 10 + i64::from(digit - b'0')).min(1_000_000);
            end += 1;
        }
        if end > digits_start {
            decimal_exponent += if exponent_negative {
                -exponent
            } else {
                exponent
            };
            pos = end;
        }
    }

    // Leading zeros count as digits here: that only sends rare inputs to the exact slow path.
    let value = if digit_count <= 19
        && mantissa <= MAX_EXACT_MANTISSA
        && (-22..=22).contains(&decimal_exponent)
    {
        let mantissa = mantissa as f64;
        if decimal_exponent < 0 {
            mantissa / EXACT_POWERS_OF_TEN[(-decimal_exponent) as usize]
        } else {
            mantissa * EXACT_POWERS_OF_TEN[decimal_exponent as usize]
        }
    } else {
        return Some((parse_slow(&field[..pos]), pos));
    };
    Some((if negative { -value } else { value }, pos))
}

/// Scans `field` as a number that must fill it entirely and be finite (the rule for `min`,
/// `max` and range bounds).
#[inline]
pub fn parse_whole(field: &[u8]) -> Option<f64> {
    match scan(field) {
        Some((value, len)) if len == field.len() && value.is_finite() => Some(value),
        _ => None,
    }
}

/// Reads the decimal digits of `field` from `pos` into `mantissa` (wrapping; the caller
/// counts digits to know whether it overflowed) and returns where they end. (Eight digits at a
/// time with SWAR was tried and measured slower: most fields here are shorter than a word.)
#[inline(always)]
fn digits(field: &[u8], mut pos: usize, mantissa: &mut u64) -> usize {
    while pos < field.len() {
        let digit = field[pos].wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(digit));
        pos += 1;
    }
    pos
}

/// Converts a prefix already validated by [`scan`] through the standard library's correctly
/// rounded parser, after turning a decimal `,` into `.`.
#[cold]
fn parse_slow(number: &[u8]) -> f64 {
    let text: String = number
        .iter()
        .map(|&b| if b == b',' { '.' } else { char::from(b) })
        .collect();
    // The grammar accepted here is a subset of what `f64::from_str` accepts.
    text.parse()
        .expect("a prefix matched by the number rule is a valid Rust float literal")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(s: &str) -> Option<(f64, usize)> {
        scan(s.as_bytes())
    }

    #[test]
    fn prefixes_follow_the_rule() {
        assert_eq!(scanned("1,5"), Some((1.5, 3)));
        assert_eq!(scanned("1,000.5"), Some((1.0, 5)));
        assert_eq!(scanned("1.2.3"), Some((1.2, 3)));
        assert_eq!(scanned("23."), Some((23.0, 3)));
        assert_eq!(scanned(".42"), Some((0.42, 3)));
        assert_eq!(scanned("1.0e"), Some((1.0, 3)));
        assert_eq!(scanned("1e+"), Some((1.0, 1)));
        assert_eq!(scanned("+1.5E-15EB"), Some((1.5e-15, 8)));
        assert_eq!(scanned("0x10"), Some((0.0, 1)));
        assert_eq!(scanned("-0"), Some((-0.0, 2)));
        assert!(scanned("-0").unwrap().0.is_sign_negative());
    }

    #[test]
    fn non_numbers_are_refused() {
        for text in [
            "", "-", "+", ".", ",", "-.", "e5", "inf", "NaN", "-kW", "\u{a0}1", "U",
        ] {
            assert_eq!(scanned(text), None, "{text:?}");
        }
    }

    #[test]
    fn overflow_is_infinite_and_underflow_is_zero() {
        assert_eq!(scanned("1e309"), Some((f64::INFINITY, 5)));
        assert_eq!(scanned("-1e309"), Some((f64::NEG_INFINITY, 6)));
        assert_eq!(scanned("1e-400"), Some((0.0, 6)));
        assert_eq!(scanned("1e99999999999999999999"), Some((f64::INFINITY, 22)));
    }

    #[test]
    fn conversion_matches_std_on_hard_values() {
        for text in [
            "0.1",
            "0.298000",
            "123456789123456789123456789123456789",
            "9007199254740993",
            "2.2250738585072011e-308",
            "1.7976931348623157e308",
            "4.9e-324",
            "0.000000000000000000000000000001",
            "12345678901234567890123",
            "1480074205.197363",
            "00000000000000000000000000000.5",
            "1e22",
            "1e23",
        ] {
            let expected: f64 = text.parse().unwrap();
            assert_eq!(scanned(text), Some((expected, text.len())), "{text}");
        }
    }

    #[test]
    fn whole_fields_must_be_finite_and_complete() {
        assert_eq!(parse_whole(b"2,0"), Some(2.0));
        assert_eq!(parse_whole(b"4afvdv23"), None);
        assert_eq!(parse_whole(b""), None);
        assert_eq!(parse_whole(b"1e999"), None);
    }
}
