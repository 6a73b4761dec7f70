//! Fixed-point prices: never a binary float on the way in or out.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A price in ticks of 0.0001 of the quote currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(i64);

impl Price {
    pub const SCALE: i64 = 10_000;

    pub const fn from_ticks(ticks: i64) -> Self {
        Self(ticks)
    }

    pub const fn ticks(self) -> i64 {
        self.0
    }

    /// From a provider's float, rounded to the nearest tick; `None` if not finite.
    pub fn from_f64(value: f64) -> Option<Self> {
        let ticks = (value * Self::SCALE as f64).round();
        (ticks.is_finite() && ticks.abs() < i64::MAX as f64).then_some(Self(ticks as i64))
    }

    /// For statistics (indicators); never for money arithmetic.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / Self::SCALE as f64
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = Self::SCALE as u64;
        write!(f, "{sign}{}.{:04}", abs / scale, abs % scale)
    }
}

impl FromStr for Price {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty()
            || frac.len() > 4
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err("expected a decimal with at most 4 places");
        }
        let int: i64 = int.parse().map_err(|_| "price too large")?;
        let frac: i64 = format!("{frac:0<4}").parse().map_err(|_| "bad fraction")?;
        let ticks = int
            .checked_mul(Self::SCALE)
            .and_then(|t| t.checked_add(frac))
            .ok_or("price too large")?;
        Ok(Self(if neg { -ticks } else { ticks }))
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_exactly() {
        for (text, ticks) in [
            ("2501.5000", 25_015_000),
            ("0.0001", 1),
            ("-3.2500", -32_500),
        ] {
            assert_eq!(Price::from_ticks(ticks).to_string(), text);
            assert_eq!(text.parse::<Price>().unwrap().ticks(), ticks);
        }
        assert_eq!("12".parse::<Price>().unwrap().ticks(), 120_000);
        assert_eq!("12.5".parse::<Price>().unwrap().ticks(), 125_000);
    }

    #[test]
    fn rejects_malformed_prices() {
        for bad in [
            "",
            "1.23456",
            "abc",
            "1.2.3",
            "--1",
            ".5",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Price>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn rounds_provider_floats_to_ticks() {
        assert_eq!(Price::from_f64(2501.49995).unwrap().ticks(), 25_015_000);
        assert!(Price::from_f64(f64::NAN).is_none());
    }
}
