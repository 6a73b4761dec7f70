//! Scores: a weighted sum of four components in [0, 1].
//!
//! | component | weight | measure |
//! |---|---|---|
//! | liquidity | 0.35 | percentile of 20-day average turnover among the survivors |
//! | volatility | 0.25 | closeness of annualised volatility to a day-trading target (35%): 1 − ∣v − t∣ / t, floored at 0 |
//! | volume consistency | 0.20 | 1 − coefficient of variation of the last 20 volumes |
//! | size | 0.20 | percentile of whole-window average turnover (no market caps in the data: turnover is the size proxy) |
//!
//! The weights are the original system's; the measures are ours, documented here.

use serde::{Deserialize, Serialize};

use crate::filters::{FilterChain, Rejection};
use crate::metrics::{Metrics, Series};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreWeights {
    pub liquidity: f64,
    pub volatility: f64,
    pub volume_consistency: f64,
    pub size: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            liquidity: 0.35,
            volatility: 0.25,
            volume_consistency: 0.20,
            size: 0.20,
        }
    }
}

impl ScoreWeights {
    /// Every weight a finite number from 0 to 1, and not all zero (a score
    /// needs something to weigh); `Err` names the first bad field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let fields = [
            ("liquidity", self.liquidity),
            ("volatility", self.volatility),
            ("volume_consistency", self.volume_consistency),
            ("size", self.size),
        ];
        for (name, weight) in fields {
            if !weight.is_finite() || !(0.0..=1.0).contains(&weight) {
                return Err((name, format!("weights.{name} must be 0 to 1, got {weight}")));
            }
        }
        if fields.iter().all(|(_, w)| *w == 0.0) {
            return Err(("liquidity", "at least one weight must be above 0".into()));
        }
        Ok(())
    }
}

/// The annualised volatility a day trader wants most.
pub const TARGET_VOLATILITY: f64 = 0.35;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Components {
    pub liquidity: f64,
    pub volatility: f64,
    pub volume_consistency: f64,
    pub size: f64,
}

/// One recommended symbol, with what it was measured at and why it passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub symbol: String,
    pub score: f64,
    pub components: Components,
    pub metrics: Metrics,
    pub reasons: Vec<String>,
}

/// Percentile rank of each value among `values` (0 for the lowest, 1 for the highest).
fn percentiles(values: &[f64]) -> Vec<f64> {
    let n = values.len();
    values
        .iter()
        .map(|v| {
            if n < 2 {
                return 1.0;
            }
            let below = values.iter().filter(|x| *x < v).count();
            below as f64 / (n - 1) as f64
        })
        .collect()
}

/// Screen `series` through `chain`, score the survivors, best first.
pub fn screen(
    series: &[Series],
    chain: &FilterChain,
    weights: &ScoreWeights,
) -> (Vec<Recommendation>, Vec<Rejection>) {
    let mut rejected = Vec::new();
    let mut passed: Vec<(String, Metrics, Vec<String>)> = Vec::new();
    for s in series {
        let Some(m) = Metrics::of(s) else {
            rejected.push(Rejection {
                symbol: s.symbol.clone(),
                filter: "min_history",
                reason: format!("{} bars are too few to measure", s.close.len()),
            });
            continue;
        };
        match chain.apply(&s.symbol, &m) {
            Ok(reasons) => passed.push((s.symbol.clone(), m, reasons)),
            Err(r) => rejected.push(r),
        }
    }
    let liquidity = percentiles(&passed.iter().map(|p| p.1.avg_turnover).collect::<Vec<_>>());
    let size = percentiles(&passed.iter().map(|p| p.1.long_turnover).collect::<Vec<_>>());
    let mut out: Vec<Recommendation> = passed
        .into_iter()
        .enumerate()
        .map(|(i, (symbol, metrics, reasons))| {
            let components = Components {
                liquidity: liquidity[i],
                volatility: (1.0
                    - (metrics.volatility - TARGET_VOLATILITY).abs() / TARGET_VOLATILITY)
                    .max(0.0),
                volume_consistency: metrics.volume_consistency,
                size: size[i],
            };
            let score = weights.liquidity * components.liquidity
                + weights.volatility * components.volatility
                + weights.volume_consistency * components.volume_consistency
                + weights.size * components.size;
            Recommendation {
                symbol,
                score,
                components,
                metrics,
                reasons,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.symbol.cmp(&b.symbol))
    });
    (out, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series with daily moves of ±`step` and a constant volume.
    fn series(symbol: &str, price: f64, step: f64, volume: f64, bars: usize) -> Series {
        let mut close = vec![price];
        for i in 1..bars {
            let last = close[i - 1];
            close.push(if i % 2 == 0 {
                last * (1.0 + step)
            } else {
                last * (1.0 - step)
            });
        }
        Series::daily(symbol, close, vec![volume; bars])
    }

    #[test]
    fn ranks_liquid_moderately_volatile_names_first() {
        let universe = [
            series("LIQUID", 100.0, 0.02, 5_000_000.0, 120),
            series("THIN", 100.0, 0.02, 600_000.0, 120),
            series("WILD", 100.0, 0.06, 5_000_000.0, 120),
            series("PENNY", 2.0, 0.02, 50_000_000.0, 120),
            series("NEW", 100.0, 0.02, 5_000_000.0, 40),
        ];
        let (recs, rejected) = screen(&universe, &FilterChain::default(), &ScoreWeights::default());
        let order: Vec<&str> = recs.iter().map(|r| r.symbol.as_str()).collect();
        assert_eq!(order, ["LIQUID", "THIN"]);
        let why: Vec<(&str, &str)> = rejected
            .iter()
            .map(|r| (r.symbol.as_str(), r.filter))
            .collect();
        assert_eq!(
            why,
            [
                ("WILD", "volatility"),
                ("PENNY", "min_price"),
                ("NEW", "min_history")
            ]
        );
        assert!(recs[0].score > recs[1].score);
        assert!(
            recs[0]
                .reasons
                .iter()
                .any(|r| r.starts_with("avg turnover"))
        );
        assert!((0.0..=1.0).contains(&recs[0].score));
    }

    #[test]
    fn weights_sum_to_one() {
        let w = ScoreWeights::default();
        assert!((w.liquidity + w.volatility + w.volume_consistency + w.size - 1.0).abs() < 1e-12);
    }
}

#[cfg(test)]
mod weight_tests {
    use super::ScoreWeights;

    #[test]
    fn weights_out_of_range_are_refused_by_name() {
        assert!(ScoreWeights::default().validate().is_ok());
        let negative = ScoreWeights {
            volatility: -0.1,
            ..ScoreWeights::default()
        };
        assert_eq!(negative.validate().unwrap_err().0, "volatility");
        let nan = ScoreWeights {
            size: f64::NAN,
            ..ScoreWeights::default()
        };
        assert_eq!(nan.validate().unwrap_err().0, "size");
        let zero = ScoreWeights {
            liquidity: 0.0,
            volatility: 0.0,
            volume_consistency: 0.0,
            size: 0.0,
        };
        assert!(zero.validate().is_err());
        let unknown = serde_json::from_str::<ScoreWeights>(
            r#"{"liquidity":1,"volatility":0,"volume_consistency":0,"size":0,"momentum":5}"#,
        );
        assert!(unknown.is_err());
    }
}
