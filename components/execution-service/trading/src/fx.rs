//! Currencies and exchange rates. The account has a base currency (JPY by
//! default); cash and positions are held in their instrument's currency
//! and valued in the base currency at the rate of the market clock: the
//! last close of a currency pair the account has seen (`EURUSD=X`), else
//! a configured rate (`fx_rates`), else the rate its last conversion used.
//!
//! A rate is the base currency's units per unit of the other (`USD` =
//! 110 on a yen account), in the 10⁻⁸ ticks of [`Price`]; conversions
//! round half away from zero to a tick, and never wrap.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use market_data::{Price, Symbol};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::money::Money;

/// A currency code: three to five capital letters (`JPY`, `USD`, `USDT`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 5]);

impl Currency {
    pub const JPY: Self = Self(*b"JPY\0\0");
    pub const USD: Self = Self(*b"USD\0\0");

    pub fn parse(code: &str) -> Result<Self, String> {
        let code = code.trim();
        if !(3..=5).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "`{}` is not a currency code (three to five capital letters, e.g. JPY)",
                code.chars().take(16).collect::<String>()
            ));
        }
        let mut bytes = [0; 5];
        bytes[..code.len()].copy_from_slice(code.as_bytes());
        Ok(Self(bytes))
    }

    /// The currency `symbol` trades in (`USD` for a symbol that does not parse).
    pub fn of(symbol: &str) -> Self {
        Symbol::parse(symbol)
            .ok()
            .and_then(|s| Self::parse(s.currency()).ok())
            .unwrap_or(Self::USD)
    }

    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|b| *b == 0).unwrap_or(5);
        std::str::from_utf8(&self.0[..len]).expect("currency codes are ASCII")
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self::JPY
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `a × b / scale`, rounded half away from zero; `None` beyond an i64.
fn mul_div(a: i64, b: i64, scale: i64) -> Option<i64> {
    let product = i128::from(a) * i128::from(b);
    let half = i128::from(scale) / 2 * product.signum();
    i64::try_from((product + half) / i128::from(scale)).ok()
}

/// `amount` of a currency at `rate` (base units per unit): base units.
pub fn to_base(amount: Money, rate: Price) -> Option<Money> {
    mul_div(amount.ticks(), rate.ticks(), Price::SCALE).map(Money::from_ticks)
}

/// A price in a currency at `rate`: the same price in base units.
pub fn price_to_base(price: Price, rate: Price) -> Option<Price> {
    mul_div(price.ticks(), rate.ticks(), Price::SCALE).map(Price::from_ticks)
}

/// `base` units in a currency at `rate`, rounded half away from zero.
pub fn from_base(base: Money, rate: Price) -> Option<Money> {
    if rate.ticks() <= 0 {
        return None;
    }
    mul_div(base.ticks(), Price::SCALE, rate.ticks()).map(Money::from_ticks)
}

/// Base currency bought for a fill in another: `amount` of `currency`
/// for `cost` base units at `rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    pub currency: Currency,
    pub amount: Money,
    pub cost: Money,
    pub rate: Price,
}

impl Conversion {
    /// `amount` of `currency` bought at `rate`, its cost rounded up to a
    /// tick (the account never gets a fraction of a tick for free).
    pub fn buying(currency: Currency, amount: Money, rate: Price) -> Option<Self> {
        let product = i128::from(amount.ticks()) * i128::from(rate.ticks());
        let scale = i128::from(Price::SCALE);
        let cost = i64::try_from((product + scale - 1).div_euclid(scale)).ok()?;
        Some(Self {
            currency,
            amount,
            cost: Money::from_ticks(cost),
            rate,
        })
    }
}

/// The rates an account values its currencies at, in its base currency.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FxRates {
    pub base: Currency,
    rates: BTreeMap<Currency, Price>,
}

impl FxRates {
    pub fn new(base: Currency) -> Self {
        Self {
            base,
            rates: BTreeMap::new(),
        }
    }

    /// `USDJPY=110,EURUSD=1.08`: pairs as the market quotes them (the
    /// second currency's units per unit of the first), each involving the
    /// base currency or one already rated (a cross). Empty: none.
    pub fn parse(base: Currency, raw: &str) -> Result<Self, String> {
        let mut rates = Self::new(base);
        let mut pairs = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || format!("`{item}` is a pair and a rate, e.g. USDJPY=110.5");
            let (pair, rate) = item.split_once('=').ok_or_else(bad)?;
            let pair = pair.trim().trim_end_matches("=X");
            if pair.len() != 6 {
                return Err(bad());
            }
            let first = Currency::parse(&pair[..3])?;
            let second = Currency::parse(&pair[3..])?;
            let rate: Price = rate.trim().parse().map_err(|_| bad())?;
            if rate.ticks() <= 0 || first == second {
                return Err(bad());
            }
            pairs.push((first, second, rate));
        }
        // Direct pairs first, then crosses through them, until none is new;
        // a currency is rated once.
        pairs.sort_by_key(|&(first, second, _)| first != base && second != base);
        while !pairs.is_empty() {
            let before = pairs.len();
            let mut twice = None;
            pairs.retain(|&(first, second, rate)| {
                if rates.rate(first).is_some() && rates.rate(second).is_some() {
                    twice = Some(format!("{first}{second}"));
                }
                !rates.quote(first, second, rate)
            });
            if let Some(pair) = twice {
                return Err(format!("the pair {pair} rates a currency already rated"));
            }
            if pairs.len() == before {
                let (first, second, _) = pairs[0];
                return Err(format!(
                    "the pair {first}{second} neither involves the base currency {base} nor a currency rated against it"
                ));
            }
        }
        Ok(rates)
    }

    /// Take a quote of pair `first``second` at `rate`: whether it rated a
    /// currency. A pair with the base currency rates the other; a cross
    /// rates its first currency from its second (`EURUSD` on a yen account
    /// rates EUR from USD's rate), else its second from its first.
    pub fn quote(&mut self, first: Currency, second: Currency, rate: Price) -> bool {
        let one = Price::SCALE;
        let rated = if first == second || rate.ticks() <= 0 {
            None
        } else if second == self.base {
            Some((first, rate))
        } else if first == self.base {
            mul_div(one, one, rate.ticks()).map(|r| (second, Price::from_ticks(r)))
        } else if let Some(second_rate) = self.rate(second) {
            price_to_base(rate, second_rate).map(|r| (first, r))
        } else if let Some(first_rate) = self.rate(first) {
            mul_div(first_rate.ticks(), one, rate.ticks()).map(|r| (second, Price::from_ticks(r)))
        } else {
            None
        };
        match rated {
            Some((currency, rate)) if rate.ticks() > 0 => {
                self.rates.insert(currency, rate);
                true
            }
            _ => false,
        }
    }

    /// A rate to use where nothing newer has one.
    pub fn fallback(&mut self, currency: Currency, rate: Price) {
        if currency != self.base {
            self.rates.entry(currency).or_insert(rate);
        }
    }

    /// Base units per unit of `currency` (1 for the base currency).
    pub fn rate(&self, currency: Currency) -> Option<Price> {
        if currency == self.base {
            return Some(Price::from_ticks(Price::SCALE));
        }
        self.rates.get(&currency).copied()
    }

    /// The rated currencies (not the base) and their rates.
    pub fn rates(&self) -> impl Iterator<Item = (Currency, Price)> + '_ {
        self.rates.iter().map(|(c, r)| (*c, *r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(s: &str) -> Price {
        s.parse().unwrap()
    }

    #[test]
    fn currency_codes_are_checked_and_copy() {
        assert_eq!(Currency::parse("USDT").unwrap().as_str(), "USDT");
        assert_eq!(Currency::of("7203.T"), Currency::JPY);
        assert_eq!(Currency::of("F"), Currency::USD);
        assert_eq!(Currency::of("EURUSD=X"), Currency::USD);
        assert_eq!(Currency::of("ETH-USDT").as_str(), "USDT");
        for bad in ["", "us", "usd", "DOLLARS", "U$D"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&Currency::JPY).unwrap(),
            "\"JPY\"",
            "a code on the wire, no padding"
        );
        assert!(serde_json::from_str::<Currency>("\"yen\"").is_err());
    }

    #[test]
    fn configured_pairs_rate_currencies_directly_inverted_and_crossed() {
        let rates = FxRates::parse(Currency::JPY, "EURUSD=1.25, USDJPY=110").unwrap();
        assert_eq!(rates.rate(Currency::JPY), Some(px("1")));
        assert_eq!(rates.rate(Currency::USD), Some(px("110")));
        assert_eq!(rates.rate("EUR".parse().unwrap()), Some(px("137.5")));

        let usd = FxRates::parse(Currency::USD, "USDJPY=125").unwrap();
        assert_eq!(usd.rate(Currency::JPY), Some(px("0.008")));
        assert_eq!(
            FxRates::parse(Currency::JPY, "")
                .unwrap()
                .rate(Currency::USD),
            None
        );

        for bad in [
            "USDJPY",
            "USDJPY=0",
            "USDJPY=-1",
            "USDJPY=abc",
            "USJPY=110",
            "JPYJPY=1",
            "EURUSD=1.1",
            "USDJPY=110,JPYUSD=0.009",
            "USDJPY=110,EURJPY=130,EURUSD=1.1",
        ] {
            assert!(FxRates::parse(Currency::JPY, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_market_quote_re_rates_the_other_currency() {
        let mut rates = FxRates::parse(Currency::JPY, "USDJPY=110,EURUSD=1.1").unwrap();
        assert_eq!(rates.rate("EUR".parse().unwrap()), Some(px("121")));
        // The clock's EUR/USD close moves EUR, not the configured USD.
        assert!(rates.quote("EUR".parse().unwrap(), Currency::USD, px("1.2")));
        assert_eq!(rates.rate("EUR".parse().unwrap()), Some(px("132")));
        assert_eq!(rates.rate(Currency::USD), Some(px("110")));
        // A pair with nothing rated tells nothing.
        assert!(!rates.quote("GBP".parse().unwrap(), "CHF".parse().unwrap(), px("1.1")));
        rates.fallback(Currency::USD, px("90"));
        assert_eq!(
            rates.rate(Currency::USD),
            Some(px("110")),
            "only a fallback"
        );
    }

    #[test]
    fn conversions_round_against_the_account_and_never_wrap() {
        let rate = px("109.87654321");
        let usd = Money::units(1_000);
        assert_eq!(to_base(usd, rate).unwrap().to_string(), "109876.54321");
        let bought = Conversion::buying(Currency::USD, Money::from_ticks(1), rate).unwrap();
        assert_eq!(
            bought.cost,
            Money::from_ticks(110),
            "109.87… ticks rounds up"
        );
        assert_eq!(
            from_base(Money::units(110), px("110")),
            Some(Money::units(1))
        );
        assert_eq!(to_base(Money::from_ticks(i64::MAX), px("2")), None);
        assert_eq!(from_base(Money::units(1), Price::from_ticks(0)), None);
        assert_eq!(price_to_base(px("10.5"), px("110")), Some(px("1155")));
    }
}
