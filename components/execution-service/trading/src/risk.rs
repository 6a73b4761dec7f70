//! The risk engine: every order is checked against every limit before it is
//! accepted; a denial is a typed reason with a stable code (served as 422).

use chrono::{DateTime, Utc};
use market_data::{Market, Price, Rounding};
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::order::Side;

/// Limits, from configuration (validated at start). Amounts are in the
/// market's currency; the defaults are the TSE ones (yen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskLimits {
    pub max_position_value: Money,
    pub max_open_positions: usize,
    pub max_daily_loss: Money,
    /// Largest fall from peak equity, in basis points of the peak.
    pub max_drawdown_bps: i64,
    pub max_order_notional: Money,
    pub max_orders_per_minute: u32,
    /// Equity risked per trade when sizing from the stop distance, in bps.
    pub risk_per_trade_bps: i64,
    /// Automatic exits, in bps from the entry price.
    pub stop_loss_bps: i64,
    pub take_profit_bps: i64,
    /// What HALTED does to open positions.
    pub on_halt: HaltPolicy,
    /// Day trading: from each market's cutoff no entries are accepted,
    /// working entries are cancelled and positions are closed by the close.
    /// `false` allows holding overnight (swing trading).
    pub flat_by_close: bool,
    /// Minutes before each market's last close that the cutoff falls.
    pub close_cutoff: CloseCutoff,
}

/// Minutes before the trading day's last close that entries stop and
/// positions are closed, per market: 10 by default (15:20 JST on the TSE,
/// 15:50 ET in the US and 12:50 on its half days, 16:50 New York for FX,
/// 23:50 UTC for crypto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseCutoff {
    pub tse: i64,
    pub us: i64,
    pub fx: i64,
    pub crypto: i64,
}

impl Default for CloseCutoff {
    fn default() -> Self {
        Self {
            tse: 10,
            us: 10,
            fx: 10,
            crypto: 10,
        }
    }
}

impl CloseCutoff {
    pub fn minutes(&self, market: Market) -> i64 {
        match market {
            Market::Tse => self.tse,
            Market::Us => self.us,
            Market::Fx => self.fx,
            Market::Crypto => self.crypto,
        }
    }

    /// `10` for every market, or `tse=10,us=15,...` (markets left out keep 10).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || format!("`{raw}` is minutes, or market=minutes pairs (tse, us, fx, crypto)");
        if let Ok(all) = raw.trim().parse::<i64>() {
            return Ok(Self {
                tse: all,
                us: all,
                fx: all,
                crypto: all,
            });
        }
        let mut cutoff = Self::default();
        for pair in raw.split(',') {
            let (market, minutes) = pair.split_once('=').ok_or_else(bad)?;
            let minutes: i64 = minutes.trim().parse().map_err(|_| bad())?;
            match Market::parse(market.trim()).ok_or_else(bad)? {
                Market::Tse => cutoff.tse = minutes,
                Market::Us => cutoff.us = minutes,
                Market::Fx => cutoff.fx = minutes,
                Market::Crypto => cutoff.crypto = minutes,
            }
        }
        Ok(cutoff)
    }
}

impl RiskLimits {
    /// When entries stop on the trading day closing at `day_close`; `None`
    /// when positions may be held overnight.
    pub fn cutoff(&self, market: Market, day_close: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.flat_by_close
            .then(|| day_close - chrono::Duration::minutes(self.close_cutoff.minutes(market)))
    }
}

/// HALTED always refuses new orders and cancels working entries; with
/// `KeepExits` the positions stay, their protective exits (and working
/// sells) still armed; with `Flatten` every working order is cancelled and
/// every position sold at the next bar's open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaltPolicy {
    #[default]
    KeepExits,
    Flatten,
}

impl HaltPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keep-exits" => Some(Self::KeepExits),
            "flatten" => Some(Self::Flatten),
            _ => None,
        }
    }
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self {
            max_position_value: Money::units(1_000_000),
            max_open_positions: 10,
            max_daily_loss: Money::units(50_000),
            max_drawdown_bps: 1_000,
            max_order_notional: Money::units(1_000_000),
            max_orders_per_minute: 30,
            risk_per_trade_bps: 100,
            stop_loss_bps: 200,
            take_profit_bps: 500,
            on_halt: HaltPolicy::KeepExits,
            flat_by_close: true,
            close_cutoff: CloseCutoff::default(),
        }
    }
}

impl RiskLimits {
    /// Every limit positive and the exits sensible.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_position_value", self.max_position_value.ticks()),
            ("max_daily_loss", self.max_daily_loss.ticks()),
            ("max_order_notional", self.max_order_notional.ticks()),
            ("max_drawdown_bps", self.max_drawdown_bps),
            ("risk_per_trade_bps", self.risk_per_trade_bps),
            ("stop_loss_bps", self.stop_loss_bps),
            ("take_profit_bps", self.take_profit_bps),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(format!("{name} must be positive"));
        }
        if self.max_open_positions == 0 || self.max_orders_per_minute == 0 {
            return Err("max_open_positions and max_orders_per_minute must be positive".into());
        }
        if self.max_drawdown_bps > 10_000 || self.stop_loss_bps >= 10_000 {
            return Err("max_drawdown_bps and stop_loss_bps are below 10000 (100%)".into());
        }
        let c = self.close_cutoff;
        if [c.tse, c.us, c.fx, c.crypto]
            .iter()
            .any(|m| !(0..=120).contains(m))
        {
            return Err("close_cutoff is 0 to 120 minutes before the close".into());
        }
        Ok(())
    }
}

/// What may trade: set by an admin, and by the engine when a loss limit is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradingState {
    Active,
    /// Only orders that reduce an existing position.
    Reducing,
    /// Nothing.
    Halted,
}

/// An order as the risk engine sees it, priced at the reference price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    pub side: Side,
    pub quantity: u64,
    /// The price it is expected to fill near (last price, or the limit).
    pub price: Price,
    pub lot_size: u64,
}

/// The account as it stands, from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposure {
    pub state: TradingState,
    /// Signed shares of this symbol held (negative never happens: no shorting).
    pub position: i64,
    /// Positions with shares, this symbol included if held.
    pub open_positions: usize,
    pub cash: Money,
    /// Realised and unrealised P&L since the session's start, market time zone.
    pub daily_pnl: Money,
    pub equity: Money,
    pub peak_equity: Money,
    /// Orders submitted in the last 60 seconds.
    pub orders_last_minute: u32,
}

/// Why an order was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum Denial {
    #[error("trading is halted")]
    Halted,
    #[error("the market is closed and orders outside the session are refused")]
    MarketClosed,
    #[error("trading is reducing: only orders that shrink a position are accepted")]
    ReduceOnly,
    #[error("a quantity is a positive multiple of the lot size {lot_size}")]
    LotSize { quantity: u64, lot_size: u64 },
    #[error("selling {quantity} shares but {held} are held (no short selling)")]
    ShortSale { quantity: u64, held: i64 },
    #[error("the order's notional {notional} exceeds {limit}")]
    OrderNotional { notional: Money, limit: Money },
    #[error("the position would be worth {value}, over the {limit} limit")]
    PositionValue { value: Money, limit: Money },
    #[error("{open} positions are open, the limit")]
    OpenPositions { open: usize },
    #[error("the daily loss {loss} has reached the {limit} limit")]
    DailyLoss { loss: Money, limit: Money },
    #[error("drawdown of {drawdown_bps} bps from the peak has reached the {limit_bps} bps limit")]
    Drawdown { drawdown_bps: i64, limit_bps: i64 },
    #[error("{count} orders in the last minute, the limit")]
    OrderRate { count: u32 },
    #[error("not enough cash: {needed} needed, {cash} available")]
    Cash { needed: Money, cash: Money },
    #[error("no whole lot fits the risk budget, the cash and the limits")]
    NoSize,
    #[error("the session is past its entry cutoff: positions are being closed for the close")]
    AfterCutoff,
}

impl Denial {
    /// The stable code (also the JSON `code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Halted => "halted",
            Self::MarketClosed => "market-closed",
            Self::ReduceOnly => "reduce-only",
            Self::LotSize { .. } => "lot-size",
            Self::ShortSale { .. } => "short-sale",
            Self::OrderNotional { .. } => "order-notional",
            Self::PositionValue { .. } => "position-value",
            Self::OpenPositions { .. } => "open-positions",
            Self::DailyLoss { .. } => "daily-loss",
            Self::Drawdown { .. } => "drawdown",
            Self::OrderRate { .. } => "order-rate",
            Self::Cash { .. } => "cash",
            Self::NoSize => "no-size",
            Self::AfterCutoff => "after-cutoff",
        }
    }
}

/// Drawdown from the peak in basis points (0 at or above the peak).
pub fn drawdown_bps(equity: Money, peak: Money) -> i64 {
    if peak.ticks() <= 0 || equity >= peak {
        return 0;
    }
    let fall = i128::from((peak - equity).ticks()) * 10_000;
    (fall / i128::from(peak.ticks())) as i64
}

/// Check an order against every limit; the first denial found is returned.
/// Orders that only shrink a position pass the loss, drawdown, position and
/// open-position limits: getting out is always allowed unless halted.
pub fn check(limits: &RiskLimits, intent: &Intent, exposure: &Exposure) -> Result<(), Denial> {
    if exposure.state == TradingState::Halted {
        return Err(Denial::Halted);
    }
    if intent.quantity == 0
        || intent.lot_size == 0
        || !intent.quantity.is_multiple_of(intent.lot_size)
    {
        return Err(Denial::LotSize {
            quantity: intent.quantity,
            lot_size: intent.lot_size,
        });
    }
    if exposure.orders_last_minute >= limits.max_orders_per_minute {
        return Err(Denial::OrderRate {
            count: exposure.orders_last_minute,
        });
    }
    let quantity = i64::try_from(intent.quantity).unwrap_or(i64::MAX);
    let after = exposure
        .position
        .saturating_add(intent.side.sign().saturating_mul(quantity));
    if after < 0 {
        return Err(Denial::ShortSale {
            quantity: intent.quantity,
            held: exposure.position,
        });
    }
    let notional = Money::notional(intent.price, intent.quantity).ok_or(Denial::OrderNotional {
        notional: Money::from_ticks(i64::MAX),
        limit: limits.max_order_notional,
    })?;
    if notional > limits.max_order_notional {
        return Err(Denial::OrderNotional {
            notional,
            limit: limits.max_order_notional,
        });
    }
    let reduces = after.abs() < exposure.position.abs();
    if reduces {
        return Ok(());
    }
    if exposure.state == TradingState::Reducing {
        return Err(Denial::ReduceOnly);
    }
    if exposure.daily_pnl <= -limits.max_daily_loss {
        return Err(Denial::DailyLoss {
            loss: -exposure.daily_pnl,
            limit: limits.max_daily_loss,
        });
    }
    let drawdown = drawdown_bps(exposure.equity, exposure.peak_equity);
    if drawdown >= limits.max_drawdown_bps {
        return Err(Denial::Drawdown {
            drawdown_bps: drawdown,
            limit_bps: limits.max_drawdown_bps,
        });
    }
    if exposure.position == 0 && exposure.open_positions >= limits.max_open_positions {
        return Err(Denial::OpenPositions {
            open: exposure.open_positions,
        });
    }
    let value =
        Money::notional(intent.price, after.unsigned_abs()).unwrap_or(Money::from_ticks(i64::MAX));
    if value > limits.max_position_value {
        return Err(Denial::PositionValue {
            value,
            limit: limits.max_position_value,
        });
    }
    if intent.side == Side::Buy && notional > exposure.cash {
        return Err(Denial::Cash {
            needed: notional,
            cash: exposure.cash,
        });
    }
    Ok(())
}

/// Shares to buy at `price` with a protective stop at `stop`:
/// `min(cash / price, risk% × equity / (price − stop))`, rounded down to lots.
/// Zero when the stop is not below the price or nothing fits.
pub fn position_size(
    limits: &RiskLimits,
    cash: Money,
    equity: Money,
    price: Price,
    stop: Price,
    lot_size: u64,
) -> u64 {
    let per_share_risk = price.ticks() - stop.ticks();
    if price.ticks() <= 0 || per_share_risk <= 0 || lot_size == 0 {
        return 0;
    }
    let affordable = cash.ticks().max(0) / price.ticks();
    let risked = equity.bps(limits.risk_per_trade_bps).ticks().max(0) / per_share_risk;
    let shares = affordable.min(risked).max(0) as u64;
    shares - shares % lot_size
}

/// The automatic exits for a long entry at `entry`: (stop-loss,
/// take-profit), to the nearest of the market's `decimals`.
pub fn exits(limits: &RiskLimits, entry: Price, decimals: u32) -> (Price, Price) {
    let entry_money = Money::from_ticks(entry.ticks());
    let stop = entry_money - entry_money.bps(limits.stop_loss_bps);
    let take = entry_money + entry_money.bps(limits.take_profit_bps);
    let price = |m: Money| Price::from_ticks(m.ticks()).rounded(decimals, Rounding::Nearest);
    (price(stop), price(take))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(s: &str) -> Price {
        s.parse().unwrap()
    }

    fn flat() -> Exposure {
        Exposure {
            state: TradingState::Active,
            position: 0,
            open_positions: 0,
            cash: Money::units(5_000_000),
            daily_pnl: Money::ZERO,
            equity: Money::units(5_000_000),
            peak_equity: Money::units(5_000_000),
            orders_last_minute: 0,
        }
    }

    fn buy(quantity: u64, price: &str) -> Intent {
        Intent {
            side: Side::Buy,
            quantity,
            price: px(price),
            lot_size: 100,
        }
    }

    fn sell(quantity: u64, price: &str) -> Intent {
        Intent {
            side: Side::Sell,
            ..buy(quantity, price)
        }
    }

    /// One row per rule: the exposure, the order, and the denial expected (or none).
    /// The close cutoff per market, ten minutes before each day's last
    /// close: 15:20 JST (15:30 close since 2024-11-05, 15:00 before), 15:50
    /// ET and 12:50 on a NYSE half day, 16:50 New York for FX, 23:50 UTC for
    /// crypto; none when holding overnight.
    #[test]
    fn close_cutoff_case_table() {
        let limits = RiskLimits::default();
        let d = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let cases = [
            (Market::Tse, d(2025, 11, 28), "2025-11-28T06:20:00Z"),
            (Market::Tse, d(2024, 11, 1), "2024-11-01T05:50:00Z"),
            (Market::Us, d(2025, 12, 1), "2025-12-01T20:50:00Z"),
            (Market::Us, d(2025, 11, 28), "2025-11-28T17:50:00Z"),
            (Market::Fx, d(2017, 3, 7), "2017-03-07T21:50:00Z"),
            (Market::Crypto, d(2018, 1, 1), "2018-01-01T23:50:00Z"),
        ];
        for (market, day, cutoff) in cases {
            let close = market.close_of(day).unwrap();
            assert_eq!(
                limits.cutoff(market, close),
                Some(utc(cutoff)),
                "{market:?} {day}"
            );
        }
        let swing = RiskLimits {
            flat_by_close: false,
            ..RiskLimits::default()
        };
        assert_eq!(swing.cutoff(Market::Us, utc("2025-12-01T21:00:00Z")), None);
        assert_eq!(CloseCutoff::parse("us=15").unwrap().minutes(Market::Us), 15);
        assert_eq!(
            CloseCutoff::parse("us=15").unwrap().minutes(Market::Tse),
            10
        );
        assert!(CloseCutoff::parse("lse=5").is_err());
    }

    #[test]
    fn every_rule_case_table() {
        let limits = RiskLimits::default();
        let holding = |shares: i64| Exposure {
            position: shares,
            open_positions: 1,
            ..flat()
        };
        let cases: Vec<(&str, Exposure, Intent, Option<&str>)> = vec![
            ("a plain buy", flat(), buy(100, "2500"), None),
            (
                "halted: nothing",
                Exposure {
                    state: TradingState::Halted,
                    ..holding(300)
                },
                sell(100, "2500"),
                Some("halted"),
            ),
            (
                "reducing: a sell that shrinks",
                Exposure {
                    state: TradingState::Reducing,
                    ..holding(300)
                },
                sell(100, "2500"),
                None,
            ),
            (
                "reducing: a buy",
                Exposure {
                    state: TradingState::Reducing,
                    ..holding(300)
                },
                buy(100, "2500"),
                Some("reduce-only"),
            ),
            ("odd lot", flat(), buy(150, "2500"), Some("lot-size")),
            ("zero shares", flat(), buy(0, "2500"), Some("lot-size")),
            (
                "short sale",
                holding(100),
                sell(200, "2500"),
                Some("short-sale"),
            ),
            (
                "sell with nothing held",
                flat(),
                sell(100, "2500"),
                Some("short-sale"),
            ),
            (
                "order notional over ¥1m",
                flat(),
                buy(500, "2500"),
                Some("order-notional"),
            ),
            (
                "order notional at the limit",
                flat(),
                buy(400, "2500"),
                None,
            ),
            (
                "position value over ¥1m",
                holding(300),
                buy(200, "2500"),
                Some("position-value"),
            ),
            (
                "open positions at 10",
                Exposure {
                    open_positions: 10,
                    ..flat()
                },
                buy(100, "2500"),
                Some("open-positions"),
            ),
            (
                "adding to one of 10 open",
                Exposure {
                    open_positions: 10,
                    ..holding(100)
                },
                buy(100, "2500"),
                None,
            ),
            (
                "daily loss at ¥50k",
                Exposure {
                    daily_pnl: Money::units(-50_000),
                    ..flat()
                },
                buy(100, "2500"),
                Some("daily-loss"),
            ),
            (
                "daily loss: selling out is allowed",
                Exposure {
                    daily_pnl: Money::units(-50_000),
                    ..holding(300)
                },
                sell(300, "2500"),
                None,
            ),
            (
                "drawdown at 10%",
                Exposure {
                    equity: Money::units(4_500_000),
                    ..flat()
                },
                buy(100, "2500"),
                Some("drawdown"),
            ),
            (
                "drawdown under 10%",
                Exposure {
                    equity: Money::units(4_500_001),
                    ..flat()
                },
                buy(100, "2500"),
                None,
            ),
            (
                "30 orders this minute",
                Exposure {
                    orders_last_minute: 30,
                    ..flat()
                },
                buy(100, "2500"),
                Some("order-rate"),
            ),
            (
                "not enough cash",
                Exposure {
                    cash: Money::units(200_000),
                    ..flat()
                },
                buy(100, "2500"),
                Some("cash"),
            ),
        ];
        for (name, exposure, intent, want) in cases {
            let got = check(&limits, &intent, &exposure).err().map(|d| d.code());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn sizing_takes_the_smaller_of_cash_and_risk_in_whole_lots() {
        let limits = RiskLimits::default(); // 1% of equity at risk
        let equity = Money::units(5_000_000);
        // Risk: ¥50,000 / (2500 − 2450) = 1000 shares; cash: ¥5m / 2500 = 2000.
        assert_eq!(
            position_size(&limits, equity, equity, px("2500"), px("2450"), 100),
            1000
        );
        // Cash binds: ¥120,000 / 2500 = 48 shares → 0 lots of 100, 48 of 1.
        let cash = Money::units(120_000);
        assert_eq!(
            position_size(&limits, cash, equity, px("2500"), px("2450"), 100),
            0
        );
        assert_eq!(
            position_size(&limits, cash, equity, px("2500"), px("2450"), 1),
            48
        );
        // Rounded down to the lot: 50,000 / 70 = 714 → 700.
        assert_eq!(
            position_size(&limits, equity, equity, px("2500"), px("2430"), 100),
            700
        );
        assert_eq!(
            position_size(&limits, equity, equity, px("2500"), px("2500"), 100),
            0,
            "no stop distance"
        );
        assert_eq!(exits(&limits, px("2500"), 4), (px("2450"), px("2625")));
        // 2% under 2511.255 is 2461.0299: to the nearest of 4 decimals.
        assert_eq!(exits(&limits, px("2511.255"), 4).0, px("2461.0299"));
        assert_eq!(
            exits(&limits, px("1.05236"), 5),
            (px("1.03131"), px("1.10498"))
        );
    }

    #[test]
    fn limits_are_validated() {
        assert!(RiskLimits::default().validate().is_ok());
        let bad = [
            RiskLimits {
                max_daily_loss: Money::ZERO,
                ..RiskLimits::default()
            },
            RiskLimits {
                max_open_positions: 0,
                ..RiskLimits::default()
            },
            RiskLimits {
                stop_loss_bps: 10_000,
                ..RiskLimits::default()
            },
            RiskLimits {
                max_drawdown_bps: 20_000,
                ..RiskLimits::default()
            },
        ];
        for limits in bad {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
        assert_eq!(drawdown_bps(Money::units(90), Money::units(100)), 1_000);
        assert_eq!(drawdown_bps(Money::units(110), Money::units(100)), 0);
    }
}
