//! Money: fixed-point amounts in the same 10⁻⁸ ticks as [`Price`], so a
//! notional is exact. Never a binary float, and never a wrapped sum: the
//! `checked_*` operations return `None` on overflow, and the operators
//! (`+`, `-`, ...) stop with a panic there (a trap of the component: the
//! request fails and nothing is stored) instead of wrapping, as release
//! builds of plain integers would. Orders are bounded far below that
//! (quantities, prices and notionals are checked), so it takes a bug.

use std::fmt;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

use market_data::Price;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of the quote currency in ticks of 10⁻⁸ (±92 billion units at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Self = Self(0);

    pub const fn from_ticks(ticks: i64) -> Self {
        Self(ticks)
    }

    /// Whole currency units (¥1,000,000 is `Money::units(1_000_000)`).
    pub const fn units(units: i64) -> Self {
        Self(units * Price::SCALE)
    }

    pub const fn ticks(self) -> i64 {
        self.0
    }

    /// `price × quantity`; `None` on overflow (a notional beyond ±9.2e10 units).
    pub fn notional(price: Price, quantity: u64) -> Option<Self> {
        i64::try_from(quantity)
            .ok()
            .and_then(|q| price.ticks().checked_mul(q))
            .map(Self)
    }

    /// `price × quantity` units of `contract` (a share: 1; a crypto
    /// contract: 0.0001 coin), rounded half away from zero to a tick;
    /// `None` on overflow. Exact for a contract of 1.
    pub fn notional_of(price: Price, quantity: u64, contract: Price) -> Option<Self> {
        let product =
            i128::from(price.ticks()) * i128::from(quantity) * i128::from(contract.ticks());
        let scale = i128::from(Price::SCALE);
        let rounded = (product + product.signum() * (scale / 2)) / scale;
        i64::try_from(rounded).ok().map(Self)
    }

    /// `self × bps / 10,000`, rounded half away from zero to a tick.
    pub fn bps(self, bps: i64) -> Self {
        let scaled = i128::from(self.0) * i128::from(bps);
        let rounded = (scaled + scaled.signum() * 5_000) / 10_000;
        Self(i64::try_from(rounded).expect(OVERFLOW))
    }

    pub fn abs(self) -> Self {
        Self(self.0.checked_abs().expect(OVERFLOW))
    }

    pub fn checked_add(self, rhs: Self) -> Option<Self> {
        self.0.checked_add(rhs.0).map(Self)
    }

    pub fn checked_sub(self, rhs: Self) -> Option<Self> {
        self.0.checked_sub(rhs.0).map(Self)
    }

    /// The sum of `amounts`, `None` if any partial sum overflows.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Self>) -> Option<Self> {
        amounts
            .into_iter()
            .try_fold(Self::ZERO, |sum, amount| sum.checked_add(amount))
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

const OVERFLOW: &str = "money overflow: an amount beyond ±92,233,720,368 units";

impl Add for Money {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        self.checked_add(rhs).expect(OVERFLOW)
    }
}

impl Sub for Money {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        self.checked_sub(rhs).expect(OVERFLOW)
    }
}

impl Neg for Money {
    type Output = Self;
    fn neg(self) -> Self {
        Self(self.0.checked_neg().expect(OVERFLOW))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Price::from_ticks(self.0).fmt(f)
    }
}

impl std::str::FromStr for Money {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<Price>().map(|p| Self(p.ticks()))
    }
}

/// On the wire exactly as a [`Price`]: a decimal string with four places.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Price::from_ticks(self.0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Price::deserialize(deserializer).map(|p| Self(p.ticks()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notionals_and_basis_points_are_exact() {
        let price: Price = "2731.5".parse().unwrap();
        assert_eq!(
            Money::notional(price, 300).unwrap().to_string(),
            "819450.0000"
        );
        assert_eq!(Money::notional(Price::from_ticks(i64::MAX), 2), None);
        let amount = Money::units(1_000_000);
        assert_eq!(amount.bps(5).to_string(), "500.0000");
        assert_eq!(
            Money::from_ticks(3).bps(5_000),
            Money::from_ticks(2),
            "1.5 ticks rounds up"
        );
        assert_eq!(Money::from_ticks(-3).bps(5_000), Money::from_ticks(-2));
        assert_eq!(
            "-12.5".parse::<Money>().unwrap(),
            -Money::from_ticks(1_250_000_000)
        );
        assert_eq!(
            serde_json::to_string(&Money::units(50_000)).unwrap(),
            "\"50000.0000\""
        );
    }

    #[test]
    fn overflow_is_never_a_wrapped_amount() {
        let max = Money::from_ticks(i64::MAX);
        let one = Money::from_ticks(1);
        assert_eq!(max.checked_add(one), None);
        assert_eq!((-max).checked_sub(one.checked_add(one).unwrap()), None);
        assert_eq!(Money::checked_sum([max, -one, one, one]), None);
        assert_eq!(
            Money::checked_sum([Money::units(2), Money::units(3)]),
            Some(Money::units(5))
        );
        for overflowing in [
            std::panic::catch_unwind(|| max + one),
            std::panic::catch_unwind(|| Money::from_ticks(i64::MIN) - one),
            std::panic::catch_unwind(|| -Money::from_ticks(i64::MIN)),
            std::panic::catch_unwind(|| max.bps(20_000)),
            std::panic::catch_unwind(|| {
                let mut sum = max;
                sum += one;
                sum
            }),
        ] {
            let message = overflowing.expect_err("an overflow stops");
            assert!(
                message
                    .downcast_ref::<String>()
                    .is_some_and(|m| m.contains("money overflow"))
                    || message
                        .downcast_ref::<&str>()
                        .is_some_and(|m| m.contains("money overflow"))
            );
        }
    }
}
