//! The account: cash, positions with their average price, realised and
//! unrealised P&L. Long-only (the risk engine refuses short sales).

use std::collections::BTreeMap;

use market_data::Price;
use serde::{Deserialize, Serialize};

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

/// Shares of one symbol and what they cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub quantity: u64,
    /// Cost of the shares held (fills plus buy commissions), for the average price.
    pub cost: Money,
    /// What the fills alone paid for the shares held (no commissions): the
    /// entry price the automatic exits are measured from.
    pub entry_cost: Money,
}

impl Position {
    /// Average cost per share, rounded down to a tick.
    pub fn average_price(&self) -> Option<Price> {
        let q = i64::try_from(self.quantity).ok().filter(|q| *q > 0)?;
        Some(Price::from_ticks(self.cost.ticks() / q))
    }

    /// Average fill price of the shares held, rounded down to a tick.
    pub fn entry_price(&self) -> Option<Price> {
        let q = i64::try_from(self.quantity).ok().filter(|q| *q > 0)?;
        Some(Price::from_ticks(self.entry_cost.ticks() / q))
    }
}

/// A fill applied to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub side: Side,
    pub quantity: u64,
    pub price: Price,
    pub commission: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortfolioError {
    #[error("selling {quantity} {symbol} but {held} are held")]
    Oversold {
        symbol: String,
        quantity: u64,
        held: u64,
    },
    #[error("amount out of range")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portfolio {
    pub cash: Money,
    pub positions: BTreeMap<String, Position>,
    /// Since inception: sell proceeds minus the cost of the shares sold, after commissions.
    pub realised_pnl: Money,
    pub commissions: Money,
}

impl Portfolio {
    pub fn new(cash: Money) -> Self {
        Self {
            cash,
            positions: BTreeMap::new(),
            realised_pnl: Money::ZERO,
            commissions: Money::ZERO,
        }
    }

    pub fn quantity(&self, symbol: &str) -> u64 {
        self.positions.get(symbol).map_or(0, |p| p.quantity)
    }

    pub fn open_positions(&self) -> usize {
        self.positions.values().filter(|p| p.quantity > 0).count()
    }

    /// Whether [`Portfolio::apply`] would take `fill`.
    pub fn can_apply(&self, symbol: &str, fill: &Fill) -> bool {
        let Some(notional) = Money::notional(fill.price, fill.quantity) else {
            return false;
        };
        match fill.side {
            Side::Buy => notional
                .checked_add(fill.commission)
                .and_then(|cost| self.cash.checked_sub(cost))
                .is_some(),
            Side::Sell => fill.quantity <= self.quantity(symbol),
        }
    }

    /// Apply a fill; on error nothing changes. Buy commissions are part of the
    /// cost; sell commissions reduce the realised P&L.
    pub fn apply(&mut self, symbol: &str, fill: &Fill) -> Result<(), PortfolioError> {
        let notional =
            Money::notional(fill.price, fill.quantity).ok_or(PortfolioError::Overflow)?;
        match fill.side {
            Side::Buy => {
                let position = self
                    .positions
                    .entry(symbol.to_string())
                    .or_insert(Position {
                        quantity: 0,
                        cost: Money::ZERO,
                        entry_cost: Money::ZERO,
                    });
                position.quantity += fill.quantity;
                position.cost += notional + fill.commission;
                position.entry_cost += notional;
                self.cash -= notional + fill.commission;
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
                let position = self
                    .positions
                    .get_mut(symbol)
                    .ok_or(PortfolioError::Overflow)?;
                // The cost of the shares sold, pro rata (exact when selling everything).
                let sold_cost = pro_rata(position.cost, fill.quantity, position.quantity);
                let sold_entry = pro_rata(position.entry_cost, fill.quantity, position.quantity);
                position.quantity -= fill.quantity;
                position.cost -= sold_cost;
                position.entry_cost -= sold_entry;
                if position.quantity == 0 {
                    self.positions.remove(symbol);
                }
                self.realised_pnl += notional - fill.commission - sold_cost;
                self.cash += notional - fill.commission;
            }
        }
        self.commissions += fill.commission;
        Ok(())
    }

    /// Market value of the positions at `marks` (a position without a mark is valued at cost).
    pub fn market_value(&self, marks: &BTreeMap<String, Price>) -> Money {
        self.positions
            .iter()
            .map(|(symbol, p)| match marks.get(symbol) {
                Some(price) => Money::notional(*price, p.quantity).unwrap_or(p.cost),
                None => p.cost,
            })
            .fold(Money::ZERO, |a, b| a + b)
    }

    /// Cash plus positions at `marks`.
    pub fn equity(&self, marks: &BTreeMap<String, Price>) -> Money {
        self.cash + self.market_value(marks)
    }

    /// Market value minus cost of what is held.
    pub fn unrealised_pnl(&self, marks: &BTreeMap<String, Price>) -> Money {
        let cost = self.positions.values().fold(Money::ZERO, |a, p| a + p.cost);
        self.market_value(marks) - cost
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
        }
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
            p.positions["7203.T"].average_price(),
            Some(px("2520.66666666"))
        );
        assert_eq!(p.cash, Money::units(1_000_000 - 250_100 - 506_100));

        p.apply("7203.T", &fill(Side::Sell, 100, "2600", 100))
            .unwrap();
        // Sold cost: 756,200 × 100 / 300 = 252,066.66666666; proceeds 260,000 − 100.
        assert_eq!(p.realised_pnl.to_string(), "7833.33333334");
        let marks = BTreeMap::from([("7203.T".to_string(), px("2550"))]);
        assert_eq!(p.market_value(&marks), Money::units(510_000));
        assert_eq!(p.unrealised_pnl(&marks).to_string(), "5866.66666666");
        // Equity = cash + value; P&L adds up: realised + unrealised − nothing lost.
        assert_eq!(
            p.equity(&marks) - Money::units(1_000_000),
            p.realised_pnl + p.unrealised_pnl(&marks)
        );

        p.apply("7203.T", &fill(Side::Sell, 200, "2400", 100))
            .unwrap();
        assert_eq!(p.open_positions(), 0);
        assert_eq!(p.equity(&marks) - Money::units(1_000_000), p.realised_pnl);
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
}
