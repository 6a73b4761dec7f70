//! The filter chain, modelled on freqtrade's pairlists: each filter keeps or
//! rejects a symbol and says why.

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// Filters, all optional; `Default` is the chain `recommend` uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterChain {
    /// At least this many daily bars.
    pub min_history: usize,
    /// Last close at least this (quote currency).
    pub min_price: Option<f64>,
    /// 20-day average volume at least this many shares.
    pub min_avg_volume: Option<f64>,
    /// 20-day average turnover at least this (quote currency).
    pub min_avg_turnover: Option<f64>,
    /// Annualised volatility within [min, max].
    pub min_volatility: Option<f64>,
    pub max_volatility: Option<f64>,
    /// 20-day return at least this (e.g. 0.0: not falling).
    pub min_momentum: Option<f64>,
}

impl Default for FilterChain {
    fn default() -> Self {
        Self {
            min_history: 60,
            min_price: Some(5.0),
            min_avg_volume: Some(500_000.0),
            min_avg_turnover: Some(10_000_000.0),
            min_volatility: Some(0.10),
            max_volatility: Some(0.80),
            min_momentum: None,
        }
    }
}

/// Why a symbol was left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub symbol: String,
    pub filter: &'static str,
    pub reason: String,
}

impl FilterChain {
    /// Check the filters' own values: the filter that is out of range and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let non_negative = [
            ("min_price", self.min_price),
            ("min_avg_volume", self.min_avg_volume),
            ("min_avg_turnover", self.min_avg_turnover),
            ("min_volatility", self.min_volatility),
            ("max_volatility", self.max_volatility),
        ];
        for (name, value) in non_negative {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return Err((name, format!("`{name}` must be a non-negative number")));
            }
        }
        if let (Some(lo), Some(hi)) = (self.min_volatility, self.max_volatility)
            && lo > hi
        {
            return Err((
                "min_volatility",
                format!("`min_volatility` {lo} is above `max_volatility` {hi}"),
            ));
        }
        if self.min_momentum.is_some_and(|m| !m.is_finite()) {
            return Err(("min_momentum", "`min_momentum` must be a number".into()));
        }
        if self.min_history > 5000 {
            return Err(("min_history", "`min_history` is at most 5000 bars".into()));
        }
        Ok(())
    }

    /// The reasons `m` passes every filter, or the first filter it fails.
    pub fn apply(&self, symbol: &str, m: &Metrics) -> Result<Vec<String>, Rejection> {
        let reject = |filter, reason: String| Rejection {
            symbol: symbol.to_string(),
            filter,
            reason,
        };
        let mut reasons = Vec::new();
        if m.history < self.min_history {
            return Err(reject(
                "min_history",
                format!("{} bars < {}", m.history, self.min_history),
            ));
        }
        reasons.push(format!("history {} bars ≥ {}", m.history, self.min_history));
        if let Some(min) = self.min_price {
            if m.last_close < min {
                return Err(reject(
                    "min_price",
                    format!("close {:.2} < {min}", m.last_close),
                ));
            }
            reasons.push(format!("close {:.2} ≥ {min}", m.last_close));
        }
        if let Some(min) = self.min_avg_volume {
            if m.avg_volume < min {
                return Err(reject(
                    "min_avg_volume",
                    format!("avg volume {:.0} < {min}", m.avg_volume),
                ));
            }
            reasons.push(format!("avg volume {:.0} ≥ {min}", m.avg_volume));
        }
        if let Some(min) = self.min_avg_turnover {
            if m.avg_turnover < min {
                return Err(reject(
                    "min_avg_turnover",
                    format!("avg turnover {:.0} < {min}", m.avg_turnover),
                ));
            }
            reasons.push(format!("avg turnover {:.0} ≥ {min}", m.avg_turnover));
        }
        let lo = self.min_volatility.unwrap_or(0.0);
        let hi = self.max_volatility.unwrap_or(f64::INFINITY);
        if !(lo..=hi).contains(&m.volatility) {
            return Err(reject(
                "volatility",
                format!("volatility {:.2} outside [{lo}, {hi}]", m.volatility),
            ));
        }
        if self.min_volatility.is_some() || self.max_volatility.is_some() {
            reasons.push(format!(
                "volatility {:.2} within [{lo}, {hi}]",
                m.volatility
            ));
        }
        if let Some(min) = self.min_momentum {
            if m.momentum < min {
                return Err(reject(
                    "min_momentum",
                    format!("20-day return {:.4} < {min}", m.momentum),
                ));
            }
            reasons.push(format!("20-day return {:.4} ≥ {min}", m.momentum));
        }
        Ok(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics {
            history: 120,
            last_close: 50.0,
            avg_volume: 2_000_000.0,
            avg_turnover: 100_000_000.0,
            long_turnover: 90_000_000.0,
            volatility: 0.3,
            volume_consistency: 0.7,
            momentum: 0.02,
        }
    }

    #[test]
    fn each_filter_rejects_with_its_name() {
        let chain = FilterChain {
            min_momentum: Some(0.0),
            ..FilterChain::default()
        };
        assert_eq!(chain.apply("X", &metrics()).unwrap().len(), 6);
        type Change = fn(&mut Metrics);
        let cases: [(&str, Change); 6] = [
            ("min_history", |m| m.history = 30),
            ("min_price", |m| m.last_close = 2.0),
            ("min_avg_volume", |m| m.avg_volume = 10.0),
            ("min_avg_turnover", |m| m.avg_turnover = 1000.0),
            ("volatility", |m| m.volatility = 1.5),
            ("min_momentum", |m| m.momentum = -0.1),
        ];
        for (filter, change) in cases {
            let mut m = metrics();
            change(&mut m);
            assert_eq!(chain.apply("X", &m).unwrap_err().filter, filter);
        }
    }

    #[test]
    fn validates_its_own_values() {
        assert!(FilterChain::default().validate().is_ok());
        let bad = FilterChain {
            min_volatility: Some(0.5),
            max_volatility: Some(0.2),
            ..FilterChain::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "min_volatility");
        let bad = FilterChain {
            min_price: Some(-1.0),
            ..FilterChain::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "min_price");
        assert!(
            serde_json::from_str::<FilterChain>(r#"{"min_prize": 5}"#).is_err(),
            "unknown filters are refused"
        );
    }
}
