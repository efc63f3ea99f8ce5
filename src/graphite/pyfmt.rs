//! Python's number formatting, as graphite-web puts numbers into series names: `%g`
//! (`scale(x,0.5)`, `removeBelowValue(x, 1e+06)`) and `str()` of a float or an int
//! (`asPercent(x,50)`). Names must match graphite-web's byte for byte, so these follow CPython.

/// `'%g' % value`: six significant digits, trailing zeros dropped, exponent form (two digits
/// at least) when the exponent is below -4 or at least 6.
pub fn percent_g(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let scientific = format!("{value:.5e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is a number");
    if (-4..6).contains(&exponent) {
        let decimals = (5 - exponent).max(0) as usize;
        strip_zeros(format!("{value:.decimals$}"))
    } else {
        let mantissa = strip_zeros(mantissa.to_string());
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

fn strip_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// `str(value)` of a Python float (`repr`): the shortest text that reads back the same,
/// with `.0` on whole numbers and exponent form from 1e16 and below 1e-4.
pub fn float_str(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').expect("{:e} has an exponent");
        let exponent: i32 = exponent.parse().expect("{:e} exponent is a number");
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let text = format!("{value}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_g_matches_cpython() {
        for (value, python) in [
            (0.5, "0.5"),
            (2.0, "2"),
            (-3.25, "-3.25"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0 / 3.0, "0.333333"),
            (100.0, "100"),
            (0.0, "0"),
            (-1e-7, "-1e-07"),
        ] {
            assert_eq!(percent_g(value), python, "{value}");
        }
    }

    #[test]
    fn float_str_matches_cpython() {
        for (value, python) in [
            (50.0, "50.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (123.456, "123.456"),
            (-2.0, "-2.0"),
        ] {
            assert_eq!(float_str(value), python, "{value}");
        }
    }
}
