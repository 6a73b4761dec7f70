//! Fixed-point prices: never a binary float on the way in or out.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A price in ticks of 10⁻⁸ of the quote currency: the 5 decimals of a
/// currency pair (1.05236) and the 8 of a crypto-currency fit, and an i64
/// still holds ±92 billion units. Each market rounds to its own decimals
/// ([`crate::Market::price_decimals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(i64);

/// Which way [`Price::rounded`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    Up,
    Down,
    /// Half away from zero.
    Nearest,
}

impl Price {
    pub const DECIMALS: u32 = 8;
    pub const SCALE: i64 = 100_000_000;

    pub const fn from_ticks(ticks: i64) -> Self {
        Self(ticks)
    }

    pub const fn ticks(self) -> i64 {
        self.0
    }

    /// From a provider's float, rounded to the nearest multiple of
    /// 10^-`decimals` (a market's precision: provider floats carry
    /// binary noise beyond it); `None` if not finite or out of range.
    pub fn from_f64(value: f64, decimals: u32) -> Option<Self> {
        let decimals = decimals.min(Self::DECIMALS);
        let units = (value * 10f64.powi(decimals as i32)).round();
        let step = 10i64.pow(Self::DECIMALS - decimals);
        if !units.is_finite() || units.abs() >= (i64::MAX / step) as f64 {
            return None;
        }
        Some(Self(units as i64 * step))
    }

    /// To a multiple of 10^-`decimals`, `Up` (towards +∞) or `Down`.
    pub fn rounded(self, decimals: u32, rounding: Rounding) -> Self {
        let step = 10i64.pow(Self::DECIMALS - decimals.min(Self::DECIMALS));
        let down = self.0.div_euclid(step) * step;
        let up = || down.checked_add(step).expect("price overflow");
        Self(match rounding {
            _ if down == self.0 => down,
            Rounding::Down => down,
            Rounding::Up => up(),
            Rounding::Nearest => {
                let rest = self.0 - down;
                // Half a step rounds away from zero: up if positive, down if negative.
                if rest * 2 > step || (rest * 2 == step && self.0 > 0) {
                    up()
                } else {
                    down
                }
            }
        })
    }

    /// For statistics (indicators); never for money arithmetic.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / Self::SCALE as f64
    }
}

/// At least four decimals (`2501.5000`), more only where the price has them
/// (`1.05236`).
impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = Self::SCALE as u64;
        let frac = format!("{:08}", abs % scale);
        let frac = frac.trim_end_matches('0');
        write!(f, "{sign}{}.{frac:0<4}", abs / scale)
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
            || frac.len() > Self::DECIMALS as usize
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err("expected a decimal with at most 8 places");
        }
        let int: i64 = int.parse().map_err(|_| "price too large")?;
        let frac: i64 = format!("{frac:0<8}").parse().map_err(|_| "bad fraction")?;
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
            ("2501.5000", 250_150_000_000),
            ("0.0001", 10_000),
            ("-3.2500", -325_000_000),
            ("1.05236", 105_236_000),
            ("0.00000001", 1),
        ] {
            assert_eq!(Price::from_ticks(ticks).to_string(), text);
            assert_eq!(text.parse::<Price>().unwrap().ticks(), ticks);
        }
        assert_eq!("12".parse::<Price>().unwrap(), "12.0000".parse().unwrap());
        assert_eq!("12.5".parse::<Price>().unwrap().ticks(), 1_250_000_000);
    }

    #[test]
    fn rejects_malformed_prices() {
        for bad in [
            "",
            "1.234567891",
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
        assert_eq!(
            Price::from_f64(2501.49995, 4).unwrap(),
            "2501.5000".parse().unwrap()
        );
        // A float32-made value from a provider, at a share's 4 decimals.
        assert_eq!(
            Price::from_f64(141.27999877929688, 4).unwrap(),
            "141.28".parse().unwrap()
        );
        assert_eq!(
            Price::from_f64(1.052355, 5).unwrap(),
            "1.05236".parse().unwrap()
        );
        assert!(Price::from_f64(f64::NAN, 4).is_none());
        assert!(Price::from_f64(1e300, 4).is_none());
    }

    #[test]
    fn rounds_to_a_markets_decimals() {
        let p: Price = "32.09824110".parse().unwrap();
        assert_eq!(p.rounded(4, Rounding::Up).to_string(), "32.0983");
        assert_eq!(p.rounded(4, Rounding::Down).to_string(), "32.0982");
        let neg: Price = "-1.00005".parse().unwrap();
        assert_eq!(neg.rounded(4, Rounding::Down).to_string(), "-1.0001");
        let half = |s: &str| {
            s.parse::<Price>()
                .unwrap()
                .rounded(4, Rounding::Nearest)
                .to_string()
        };
        assert_eq!(half("2.00005"), "2.0001");
        assert_eq!(half("2.000049"), "2.0000");
        assert_eq!(half("-2.00005"), "-2.0001");
        assert_eq!(half("-2.000051"), "-2.0001");
        assert_eq!(half("-2.000049"), "-2.0000");
        let exact: Price = "32.0900".parse().unwrap();
        assert_eq!(exact.rounded(4, Rounding::Up), exact);
    }
}
