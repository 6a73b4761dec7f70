//! execution-service's settings, read from Spin variables and validated as a
//! whole: a bad limit is refused before any order is looked at.

use crate::book::SessionPolicy;
use crate::broker::FillModel;
use crate::fx::{Currency, FxRates};
use crate::money::Money;
use crate::risk::{CloseCutoff, HaltPolicy, RiskLimits};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// In the base currency (`fx.base`), as every limit is.
    pub starting_cash: Money,
    /// The base currency and the configured exchange rates in it.
    pub fx: FxRates,
    pub limits: RiskLimits,
    pub fill_model: FillModel,
    pub session_policy: SessionPolicy,
    /// Finished orders kept in the book; older ones are archived.
    pub keep_finished_orders: usize,
}

/// The variables read, with their defaults when unset or empty.
pub const VARIABLES: &[(&str, &str)] = &[
    ("starting_cash", "10000000"),
    ("base_currency", "JPY"),
    // A fixed rate near USD/JPY on the default replay day (2010-08-19):
    // the bundled history has no yen pair.
    ("fx_rates", "USDJPY=85.5"),
    ("max_position_value", "1000000"),
    ("max_open_positions", "10"),
    ("max_daily_loss", "50000"),
    ("max_drawdown_bps", "1000"),
    ("max_order_notional", "1000000"),
    ("max_orders_per_minute", "30"),
    ("risk_per_trade_bps", "100"),
    ("stop_loss_bps", "200"),
    ("take_profit_bps", "500"),
    ("slippage_bps", "5"),
    ("commission_bps", "2"),
    ("min_commission", "0"),
    ("participation_bps", "1000"),
    ("session_policy", "queue"),
    ("halt_policy", "keep-exits"),
    ("flat_by_close", "true"),
    ("close_cutoff", "10"),
    ("keep_finished_orders", "25"),
];

impl Config {
    /// Read every setting through `get` (a variable lookup).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let value = |name: &str| -> String {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| {
                    VARIABLES
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, d)| d.to_string())
                        .unwrap_or_default()
                })
        };
        fn parse<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, String> {
            raw.trim()
                .parse()
                .map_err(|_| format!("variable `{name}`: `{raw}` is not valid"))
        }
        let money = |name: &str| parse::<Money>(name, &value(name));
        let int = |name: &str| parse::<i64>(name, &value(name));
        let limits = RiskLimits {
            max_position_value: money("max_position_value")?,
            max_open_positions: parse("max_open_positions", &value("max_open_positions"))?,
            max_daily_loss: money("max_daily_loss")?,
            max_drawdown_bps: int("max_drawdown_bps")?,
            max_order_notional: money("max_order_notional")?,
            max_orders_per_minute: parse("max_orders_per_minute", &value("max_orders_per_minute"))?,
            risk_per_trade_bps: int("risk_per_trade_bps")?,
            stop_loss_bps: int("stop_loss_bps")?,
            take_profit_bps: int("take_profit_bps")?,
            on_halt: HaltPolicy::parse(value("halt_policy").trim()).ok_or_else(|| {
                format!(
                    "variable `halt_policy`: `{}` is neither keep-exits nor flatten",
                    value("halt_policy")
                )
            })?,
            flat_by_close: match value("flat_by_close").trim() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(format!(
                        "variable `flat_by_close`: `{other}` is neither true nor false"
                    ));
                }
            },
            close_cutoff: CloseCutoff::parse(&value("close_cutoff"))
                .map_err(|e| format!("variable `close_cutoff`: {e}"))?,
        };
        limits.validate()?;
        let fill_model = FillModel {
            slippage_bps: int("slippage_bps")?,
            commission_bps: int("commission_bps")?,
            min_commission: money("min_commission")?,
            participation_bps: int("participation_bps")?,
        };
        fill_model.validate()?;
        let session_policy = match value("session_policy").trim() {
            "queue" => SessionPolicy::Queue,
            "reject" => SessionPolicy::Reject,
            other => {
                return Err(format!(
                    "variable `session_policy`: `{other}` is neither queue nor reject"
                ));
            }
        };
        let starting_cash = money("starting_cash")?;
        if starting_cash.ticks() <= 0 {
            return Err("variable `starting_cash` must be positive".into());
        }
        let keep_finished_orders = parse("keep_finished_orders", &value("keep_finished_orders"))?;
        let base = Currency::parse(&value("base_currency"))
            .map_err(|e| format!("variable `base_currency`: {e}"))?;
        let fx = FxRates::parse(base, &value("fx_rates"))
            .map_err(|e| format!("variable `fx_rates`: {e}"))?;
        Ok(Self {
            starting_cash,
            fx,
            limits,
            fill_model,
            session_policy,
            keep_finished_orders,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_documented_limits() {
        let config = with(&[]).unwrap();
        assert_eq!(config.limits, RiskLimits::default());
        assert_eq!(config.fill_model, FillModel::default());
        assert_eq!(config.session_policy, SessionPolicy::Queue);
        assert_eq!(config.starting_cash, Money::units(10_000_000));
        assert_eq!(config.fx.base, Currency::JPY);
        assert_eq!(config.fx.rate(Currency::USD), Some("85.5".parse().unwrap()));
        let dollars = with(&[("base_currency", "USD"), ("fx_rates", "USDJPY=125")]).unwrap();
        assert_eq!(dollars.fx.base, Currency::USD);
        assert_eq!(
            dollars.fx.rate(Currency::JPY),
            Some("0.008".parse().unwrap())
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        let cases = [
            (("max_daily_loss", "lots"), "max_daily_loss"),
            (("max_daily_loss", "-5"), "max_daily_loss must be positive"),
            (("max_open_positions", "0"), "max_open_positions"),
            (("max_drawdown_bps", "20000"), "max_drawdown_bps"),
            (("slippage_bps", "-1"), "slippage_bps"),
            (("session_policy", "maybe"), "session_policy"),
            (("starting_cash", "0"), "starting_cash"),
            (("base_currency", "yen"), "base_currency"),
            (("fx_rates", "USDJPY=-1"), "fx_rates"),
            (("fx_rates", "EURUSD=1.1"), "fx_rates"),
            (("flat_by_close", "yes"), "flat_by_close"),
            (("close_cutoff", "lse=5"), "close_cutoff"),
            (("close_cutoff", "500"), "close_cutoff"),
        ];
        for ((name, raw), expected) in cases {
            let err = with(&[(name, raw)]).unwrap_err();
            assert!(err.contains(expected), "{name}={raw}: {err}");
        }
        let config = with(&[("max_daily_loss", "25000.5"), ("session_policy", "reject")]).unwrap();
        assert_eq!(config.limits.max_daily_loss, "25000.5".parse().unwrap());
        assert_eq!(config.session_policy, SessionPolicy::Reject);
    }
}
