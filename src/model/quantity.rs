//! Kubernetes resource quantities (`500m`, `0.5`, `128Mi`, `1G`, `1e3`).
//!
//! A [`Quantity`] keeps the text the user wrote (for display and for writing the manifest
//! back) and its exact value in nano-units, so that `"1"`, `1` and `1000m` compare equal.
//! Pure: no I/O.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One unit in nano-units.
const NANO: i128 = 1_000_000_000;

/// A parsed Kubernetes quantity.
#[derive(Clone, Debug)]
pub struct Quantity {
    text: String,
    nanos: i128,
}

impl Quantity {
    /// Parses the Kubernetes quantity syntax:
    /// `<sign><digits>[.<digits>][<suffix>]` where suffix is a binary SI suffix
    /// (`Ki Mi Gi Ti Pi Ei`), a decimal SI suffix (`n u m "" k M G T P E`) or a decimal
    /// exponent (`e3`, `E-2`). Values are rounded up to the nano-unit, as Kubernetes does.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let nanos = parse_nanos(text)?;
        Ok(Quantity {
            text: text.to_string(),
            nanos,
        })
    }

    /// Builds a quantity from a whole number of units (e.g. bytes).
    pub fn from_units(units: i64) -> Quantity {
        Quantity {
            text: units.to_string(),
            nanos: units as i128 * NANO,
        }
    }

    /// The value in thousandths of a unit, rounded up (cpu: millicores).
    pub fn milli(&self) -> i128 {
        div_ceil(self.nanos, NANO / 1000)
    }

    /// The value in whole units, rounded up (memory: bytes).
    pub fn units(&self) -> i128 {
        div_ceil(self.nanos, NANO)
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 { q + 1 } else { q }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}
impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a quantity did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Syntax,
    #[error("quantity is too large")]
    TooLarge,
}

/// Largest value we accept: 2^63-1 units, Kubernetes' own bound for an int64 value.
const MAX_NANOS: i128 = i64::MAX as i128 * NANO;

fn parse_nanos(text: &str) -> Result<i128, QuantityError> {
    let s = text;
    if s.is_empty() || s.len() > 64 {
        return Err(QuantityError::Syntax);
    }
    let (neg, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Number part: digits with at most one dot, at least one digit.
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(QuantityError::Syntax);
    }
    // value = digits * 10^(exp10) * 2^(exp2)
    let mut digits: i128 = 0;
    let mut exp10: i32 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        if digits > i128::MAX / 100 {
            // Keep precision bounded: further digits only shift the exponent.
            exp10 += 1;
            continue;
        }
        digits = digits * 10 + (c - b'0') as i128;
    }
    // Digits beyond the bound of the integer part were counted in exp10; fraction digits shift down.
    exp10 -= frac_part.len() as i32;
    let (s10, s2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let exp = suffix
                .strip_prefix(['e', 'E'])
                .filter(|e| {
                    let d = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or(QuantityError::Syntax)?;
            (exp.parse::<i32>().map_err(|_| QuantityError::Syntax)?, 0)
        }
    };
    exp10 += s10 + 9; // to nano-units
    let mut value = digits;
    for _ in 0..s2 {
        value = value.checked_mul(2).ok_or(QuantityError::TooLarge)?;
    }
    if exp10 >= 0 {
        for _ in 0..exp10 {
            if value == 0 {
                break;
            }
            value = value.checked_mul(10).ok_or(QuantityError::TooLarge)?;
        }
    } else {
        let mut rounded_up = false;
        for _ in 0..(-exp10) {
            if value == 0 {
                break;
            }
            if value % 10 != 0 {
                rounded_up = true;
            }
            value /= 10;
        }
        if rounded_up {
            value += 1;
        }
    }
    if value > MAX_NANOS {
        return Err(QuantityError::TooLarge);
    }
    Ok(if neg { -value } else { value })
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m, 0.5, 128Mi or 1G")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(|e| E::custom(format!("invalid quantity {v:?}: {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity::from_units(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                if !v.is_finite() {
                    return Err(E::custom(format!("invalid quantity {v}")));
                }
                self.visit_str(&format!("{v}"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_kubernetes_forms() {
        let table: &[(&str, i128)] = &[
            ("0", 0),
            ("1", NANO),
            ("500m", NANO / 2),
            ("0.5", NANO / 2),
            (".5", NANO / 2),
            ("1000m", NANO),
            ("128Mi", 128 * 1024 * 1024 * NANO),
            ("1Ki", 1024 * NANO),
            ("1G", 1_000_000_000 * NANO),
            ("1e3", 1000 * NANO),
            ("1E3", 1000 * NANO),
            ("1e-3", NANO / 1000),
            ("1.5Gi", 3 * 512 * 1024 * 1024 * NANO),
            ("+2", 2 * NANO),
            ("-1", -NANO),
            ("100n", 100),
            ("1u", 1000),
            ("12k", 12_000 * NANO),
        ];
        for (text, nanos) in table {
            assert_eq!(q(text).nanos(), *nanos, "{text}");
        }
    }

    #[test]
    fn equal_values_compare_equal() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("0.1"), q("100m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_ne!(q("1k"), q("1Ki"));
        assert!(q("250m") < q("0.5"));
    }

    #[test]
    fn rounds_up_below_nano_units() {
        assert_eq!(q("0.0000000001").nanos(), 1);
        assert_eq!(q("1500u").milli(), 2);
        assert_eq!(q("0.5").units(), 1);
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "", "abc", "1.2.3", "1Mb", "1 Mi", "Mi", "1e", "1e1000", ".", "--1", "1ki", "0x10",
            "1e+",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn rejects_huge_values() {
        assert_eq!(Quantity::parse("100000Ei"), Err(QuantityError::TooLarge));
        assert_eq!(Quantity::parse("1e30"), Err(QuantityError::TooLarge));
    }
}
