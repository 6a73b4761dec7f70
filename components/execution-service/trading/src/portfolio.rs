//! The account: cash in each currency, positions with their average price
//! in their instrument's currency, realised and unrealised P&L valued in the
//! account's base currency. Long-only (the risk engine refuses short sales).
//!
//! Cash is held per currency: a buy in another currency than the base
//! draws on that currency's cash first and buys the rest with base cash at
//! the fill's rate (a [`Conversion`], part of the fill); a sale's proceeds
//! stay in the instrument's currency. Nothing converts back by itself.

use std::collections::BTreeMap;

use market_data::Price;
use serde::{Deserialize, Serialize};

use crate::fx::{self, Conversion, Currency, FxRates};
use crate::money::Money;
use crate::order::Side;

/// `part / whole` of `amount`, rounded down to a tick; all of it when `part == whole`.
fn pro_rata(amount: Money, part: u64, whole: u64) -> Money {
    if part == whole {
        return amount;
    }
    let ticks = i128::from(amount.ticks()) * i128::from(part) / i128::from(whole);
    Money::from_ticks(ticks as i64)
}

/// Shares of one symbol and what they cost, in its currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub quantity: u64,
    /// Cost of the shares held (fills plus buy commissions), for the average price.
    pub cost: Money,
    /// What the fills alone paid for the shares held (no commissions): the
    /// entry price the automatic exits are measured from.
    pub entry_cost: Money,
    pub currency: Currency,
}

/// `amount` per share or coin of `quantity` units of `symbol`, rounded
/// down to a tick; `None` for no quantity.
pub fn per_unit(amount: Money, quantity: u64, symbol: &str) -> Option<Price> {
    let units = i128::from(quantity) * i128::from(crate::book::contract_size(symbol).ticks());
    (units > 0).then(|| {
        let ticks = i128::from(amount.ticks()) * i128::from(Price::SCALE) / units;
        Price::from_ticks(i64::try_from(ticks).unwrap_or(i64::MAX))
    })
}

impl Position {
    /// Average cost per share (or coin) of `symbol`, rounded down to a tick.
    pub fn average_price(&self, symbol: &str) -> Option<Price> {
        per_unit(self.cost, self.quantity, symbol)
    }

    /// Average fill price of what is held, rounded down to a tick.
    pub fn entry_price(&self, symbol: &str) -> Option<Price> {
        per_unit(self.entry_cost, self.quantity, symbol)
    }
}

/// A fill applied to the account, in the instrument's `currency` (`rate`:
/// base units per unit of it at the fill), with the base cash converted
/// to pay for it, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub side: Side,
    pub quantity: u64,
    pub price: Price,
    pub commission: Money,
    pub currency: Currency,
    pub rate: Price,
    pub conversion: Option<Conversion>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortfolioError {
    #[error("selling {quantity} {symbol} but {held} are held")]
    Oversold {
        symbol: String,
        quantity: u64,
        held: u64,
    },
    #[error("not enough cash in {0}")]
    Cash(Currency),
    #[error("amount out of range")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portfolio {
    /// The base currency: the starting cash's, the limits', the valuation's.
    pub currency: Currency,
    /// Cash in the base currency.
    pub cash: Money,
    /// Cash in other currencies (what sales and conversions left; never negative).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub balances: BTreeMap<Currency, Money>,
    pub positions: BTreeMap<String, Position>,
    /// Since inception: sell proceeds minus the cost of the shares sold,
    /// after commissions, in the base currency at each sale's rate.
    pub realised_pnl: Money,
    /// In the base currency at each fill's rate.
    pub commissions: Money,
    /// The rate of each other currency's last fill: its value where no
    /// rate is quoted any more.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_rates: BTreeMap<Currency, Price>,
}

impl Portfolio {
    /// An account in the default base currency (JPY).
    pub fn new(cash: Money) -> Self {
        Self::open(cash, Currency::JPY)
    }

    pub fn open(cash: Money, currency: Currency) -> Self {
        Self {
            currency,
            cash,
            balances: BTreeMap::new(),
            positions: BTreeMap::new(),
            realised_pnl: Money::ZERO,
            commissions: Money::ZERO,
            last_rates: BTreeMap::new(),
        }
    }

    pub fn quantity(&self, symbol: &str) -> u64 {
        self.positions.get(symbol).map_or(0, |p| p.quantity)
    }

    pub fn open_positions(&self) -> usize {
        self.positions.values().filter(|p| p.quantity > 0).count()
    }

    /// Cash held in `currency`.
    pub fn cash_in(&self, currency: Currency) -> Money {
        if currency == self.currency {
            self.cash
        } else {
            self.balances.get(&currency).copied().unwrap_or(Money::ZERO)
        }
    }

    fn cash_mut(&mut self, currency: Currency) -> &mut Money {
        if currency == self.currency {
            &mut self.cash
        } else {
            self.balances.entry(currency).or_insert(Money::ZERO)
        }
    }

    /// What `currency` can pay: its cash plus the base cash at `rate`.
    pub fn buying_power(&self, currency: Currency, rate: Price) -> Money {
        if currency == self.currency {
            return self.cash;
        }
        let from_base = fx::from_base(self.cash.max(Money::ZERO), rate).unwrap_or(Money::ZERO);
        self.cash_in(currency)
            .checked_add(from_base)
            .unwrap_or(Money::from_ticks(i64::MAX))
    }

    /// The conversion a buy costing `cost` in `currency` needs at `rate`:
    /// none when the currency's cash covers it (or it is the base).
    pub fn conversion_for(
        &self,
        currency: Currency,
        cost: Money,
        rate: Price,
    ) -> Option<Conversion> {
        if currency == self.currency {
            return None;
        }
        let short = cost.checked_sub(self.cash_in(currency))?;
        (short > Money::ZERO)
            .then(|| Conversion::buying(currency, short, rate))
            .flatten()
    }

    /// Whether [`Portfolio::apply`] would take `fill`.
    pub fn can_apply(&self, symbol: &str, fill: &Fill) -> bool {
        self.clone().apply_in_place(symbol, fill).is_ok()
    }

    /// Apply a fill; on error nothing changes. Buy commissions are part of the
    /// cost; sell commissions reduce the realised P&L.
    pub fn apply(&mut self, symbol: &str, fill: &Fill) -> Result<(), PortfolioError> {
        let mut next = self.clone();
        next.apply_in_place(symbol, fill)?;
        *self = next;
        Ok(())
    }

    fn apply_in_place(&mut self, symbol: &str, fill: &Fill) -> Result<(), PortfolioError> {
        let overflow = || PortfolioError::Overflow;
        let notional =
            crate::book::notional(symbol, fill.price, fill.quantity).ok_or_else(overflow)?;
        let currency = fill.currency;
        if let Some(conversion) = fill.conversion {
            if conversion.currency != currency || conversion.cost > self.cash {
                return Err(PortfolioError::Cash(self.currency));
            }
            self.cash = self
                .cash
                .checked_sub(conversion.cost)
                .ok_or_else(overflow)?;
            let held = self.cash_mut(currency);
            *held = held.checked_add(conversion.amount).ok_or_else(overflow)?;
        }
        if currency != self.currency {
            self.last_rates.insert(currency, fill.rate);
        }
        let in_base = |amount: Money| fx::to_base(amount, fill.rate).ok_or_else(overflow);
        match fill.side {
            Side::Buy => {
                let cost = notional.checked_add(fill.commission).ok_or_else(overflow)?;
                let cash = self.cash_mut(currency);
                *cash = cash
                    .checked_sub(cost)
                    .filter(|left| !left.is_negative())
                    .ok_or(PortfolioError::Cash(currency))?;
                let position = self
                    .positions
                    .entry(symbol.to_string())
                    .or_insert(Position {
                        quantity: 0,
                        cost: Money::ZERO,
                        entry_cost: Money::ZERO,
                        currency,
                    });
                position.quantity += fill.quantity;
                position.cost = position.cost.checked_add(cost).ok_or_else(overflow)?;
                position.entry_cost = position
                    .entry_cost
                    .checked_add(notional)
                    .ok_or_else(overflow)?;
            }
            Side::Sell => {
                let held = self.quantity(symbol);
                if fill.quantity > held {
                    return Err(PortfolioError::Oversold {
                        symbol: symbol.to_string(),
                        quantity: fill.quantity,
                        held,
                    });
                }
                let position = self.positions.get_mut(symbol).ok_or_else(overflow)?;
                // The cost of the shares sold, pro rata (exact when selling everything).
                let sold_cost = pro_rata(position.cost, fill.quantity, position.quantity);
                let sold_entry = pro_rata(position.entry_cost, fill.quantity, position.quantity);
                position.quantity -= fill.quantity;
                position.cost -= sold_cost;
                position.entry_cost -= sold_entry;
                if position.quantity == 0 {
                    self.positions.remove(symbol);
                }
                let proceeds = notional.checked_sub(fill.commission).ok_or_else(overflow)?;
                let realised = in_base(proceeds.checked_sub(sold_cost).ok_or_else(overflow)?)?;
                self.realised_pnl = self
                    .realised_pnl
                    .checked_add(realised)
                    .ok_or_else(overflow)?;
                let cash = self.cash_mut(currency);
                *cash = cash.checked_add(proceeds).ok_or_else(overflow)?;
            }
        }
        self.commissions = self
            .commissions
            .checked_add(in_base(fill.commission)?)
            .ok_or_else(overflow)?;
        Ok(())
    }

    /// `rates` with the last fills' rates where they have none.
    pub fn rates(&self, rates: &FxRates) -> FxRates {
        let mut rates = rates.clone();
        rates.base = self.currency;
        for (currency, rate) in &self.last_rates {
            rates.fallback(*currency, *rate);
        }
        rates
    }

    /// `amount` of `currency` in the base currency.
    fn value(&self, amount: Money, currency: Currency, rates: &FxRates) -> Money {
        let rate = rates
            .rate(currency)
            .or_else(|| self.last_rates.get(&currency).copied())
            .unwrap_or(Price::from_ticks(Price::SCALE));
        fx::to_base(amount, rate).unwrap_or(Money::from_ticks(i64::MAX))
    }

    /// A position's market value in its currency (at cost without a mark).
    fn position_value(&self, symbol: &str, marks: &BTreeMap<String, Price>) -> Money {
        let p = &self.positions[symbol];
        marks
            .get(symbol)
            .and_then(|price| crate::book::notional(symbol, *price, p.quantity))
            .unwrap_or(p.cost)
    }

    /// Market value of the positions at `marks` in the base currency (a
    /// position without a mark is valued at cost).
    pub fn market_value(&self, marks: &BTreeMap<String, Price>, rates: &FxRates) -> Money {
        self.positions
            .iter()
            .map(|(symbol, p)| self.value(self.position_value(symbol, marks), p.currency, rates))
            .fold(Money::ZERO, |a, b| a + b)
    }

    /// All the cash, in the base currency.
    pub fn cash_value(&self, rates: &FxRates) -> Money {
        self.balances
            .iter()
            .map(|(currency, amount)| self.value(*amount, *currency, rates))
            .fold(self.cash, |a, b| a + b)
    }

    /// Cash plus positions at `marks`, in the base currency.
    pub fn equity(&self, marks: &BTreeMap<String, Price>, rates: &FxRates) -> Money {
        self.cash_value(rates) + self.market_value(marks, rates)
    }

    /// Market value minus cost of what is held, in the base currency at
    /// today's rates.
    pub fn unrealised_pnl(&self, marks: &BTreeMap<String, Price>, rates: &FxRates) -> Money {
        self.positions
            .iter()
            .map(|(symbol, p)| {
                self.value(
                    self.position_value(symbol, marks) - p.cost,
                    p.currency,
                    rates,
                )
            })
            .fold(Money::ZERO, |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(s: &str) -> Price {
        s.parse().unwrap()
    }

    fn fill(side: Side, quantity: u64, price: &str, commission: i64) -> Fill {
        Fill {
            side,
            quantity,
            price: px(price),
            commission: Money::units(commission),
            currency: Currency::JPY,
            rate: px("1"),
            conversion: None,
        }
    }

    fn yen() -> FxRates {
        FxRates::new(Currency::JPY)
    }

    #[test]
    fn buys_and_sells_move_cash_cost_and_realised_pnl_exactly() {
        let mut p = Portfolio::new(Money::units(1_000_000));
        p.apply("7203.T", &fill(Side::Buy, 100, "2500", 100))
            .unwrap();
        p.apply("7203.T", &fill(Side::Buy, 200, "2530", 100))
            .unwrap();
        assert_eq!(p.quantity("7203.T"), 300);
        // (250,000 + 100 + 506,000 + 100) / 300 = 2520.666…, down to a tick.
        assert_eq!(
            p.positions["7203.T"].average_price("7203.T"),
            Some(px("2520.66666666"))
        );
        assert_eq!(p.cash, Money::units(1_000_000 - 250_100 - 506_100));

        p.apply("7203.T", &fill(Side::Sell, 100, "2600", 100))
            .unwrap();
        // Sold cost: 756,200 × 100 / 300 = 252,066.66666666; proceeds 260,000 − 100.
        assert_eq!(p.realised_pnl.to_string(), "7833.33333334");
        let marks = BTreeMap::from([("7203.T".to_string(), px("2550"))]);
        assert_eq!(p.market_value(&marks, &yen()), Money::units(510_000));
        assert_eq!(
            p.unrealised_pnl(&marks, &yen()).to_string(),
            "5866.66666666"
        );
        // Equity = cash + value; P&L adds up: realised + unrealised − nothing lost.
        assert_eq!(
            p.equity(&marks, &yen()) - Money::units(1_000_000),
            p.realised_pnl + p.unrealised_pnl(&marks, &yen())
        );

        p.apply("7203.T", &fill(Side::Sell, 200, "2400", 100))
            .unwrap();
        assert_eq!(p.open_positions(), 0);
        assert_eq!(
            p.equity(&marks, &yen()) - Money::units(1_000_000),
            p.realised_pnl
        );
        assert_eq!(p.commissions, Money::units(400));
    }

    #[test]
    fn an_oversell_changes_nothing() {
        let mut p = Portfolio::new(Money::units(1_000_000));
        p.apply("AAPL", &fill(Side::Buy, 10, "150", 1)).unwrap();
        let before = p.clone();
        let e = p
            .apply("AAPL", &fill(Side::Sell, 11, "150", 1))
            .unwrap_err();
        assert!(matches!(e, PortfolioError::Oversold { held: 10, .. }));
        assert_eq!(p, before);
    }

    #[test]
    fn a_dollar_buy_converts_yen_and_its_proceeds_stay_in_dollars() {
        let mut p = Portfolio::new(Money::units(10_000_000));
        let rates = FxRates::parse(Currency::JPY, "USDJPY=110").unwrap();
        let usd = Currency::USD;
        let rate = rates.rate(usd).unwrap();
        // ¥10M buys $90,909.09 of shares at most, not $10M.
        assert_eq!(p.buying_power(usd, rate).to_string(), "90909.09090909");
        let cost = Money::units(15_000) + Money::units(3);
        let conversion = p.conversion_for(usd, cost, rate).unwrap();
        assert_eq!(conversion.cost, Money::units(1_650_330));
        let buy = Fill {
            side: Side::Buy,
            quantity: 1_000,
            price: px("15"),
            commission: Money::units(3),
            currency: usd,
            rate,
            conversion: Some(conversion),
        };
        p.apply("F", &buy).unwrap();
        assert_eq!(p.cash, Money::units(10_000_000 - 1_650_330));
        assert_eq!(p.cash_in(usd), Money::ZERO);
        assert_eq!(p.positions["F"].currency, usd);
        assert_eq!(p.commissions, Money::units(330), "$3 at 110");
        let marks = BTreeMap::from([("F".to_string(), px("16"))]);
        // $16,000 at 110, and the yen left.
        assert_eq!(
            p.equity(&marks, &rates),
            Money::units(10_000_000 - 1_650_330 + 1_760_000)
        );
        assert_eq!(p.unrealised_pnl(&marks, &rates), Money::units(109_670));

        let sell = Fill {
            side: Side::Sell,
            quantity: 1_000,
            price: px("16"),
            commission: Money::units(3),
            conversion: None,
            ..buy
        };
        p.apply("F", &sell).unwrap();
        assert_eq!(
            p.cash_in(usd),
            Money::units(15_997),
            "proceeds stay in dollars"
        );
        assert_eq!(p.realised_pnl, Money::units(994 * 110));
        // At a new rate the dollars are worth more yen; the next dollar buy
        // uses them before any yen.
        let dearer = FxRates::parse(Currency::JPY, "USDJPY=120").unwrap();
        assert_eq!(
            p.equity(&marks, &dearer),
            Money::units(10_000_000 - 1_650_330 + 15_997 * 120)
        );
        assert_eq!(p.conversion_for(usd, Money::units(15_000), rate), None);
        // Not enough of anything: refused, nothing changed.
        let before = p.clone();
        let too_big = Fill {
            quantity: 1_000_000,
            ..buy
        };
        assert_eq!(p.apply("F", &too_big), Err(PortfolioError::Cash(usd)));
        assert_eq!(p, before);
        // Without a quoted rate the last fill's values the dollars.
        assert_eq!(p.cash_value(&yen()), p.cash + Money::units(15_997 * 110));
    }
}
