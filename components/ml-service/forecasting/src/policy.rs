//! From a probability to a trading signal.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

pub use daytrade_contract::Action;

/// Buy at or above `buy_at`, sell at or below `sell_at`, hold between.
///
/// The direction is `up` from 0.5: the rule the offline accuracy is scored with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Policy {
    pub buy_at: f64,
    pub sell_at: f64,
}

impl Default for Policy {
    /// The shipped models' probabilities sit within a few points of 0.5 (see
    /// their calibration tables), so the defaults act only on the tails.
    fn default() -> Self {
        Self {
            buy_at: 0.53,
            sell_at: 0.47,
        }
    }
}

/// A forecast turned into a signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Signal {
    pub direction: Direction,
    pub action: Action,
    /// Distance from a coin flip, 0 (p = 0.5) to 1 (p = 0 or 1): `|2p - 1|`.
    pub confidence: f64,
}

impl Policy {
    /// Thresholds with `0 <= sell_at < 0.5 < buy_at <= 1`.
    pub fn new(buy_at: f64, sell_at: f64) -> Result<Self, String> {
        if !(buy_at > 0.5 && buy_at <= 1.0) {
            return Err(format!("buy threshold {buy_at} is not in (0.5, 1]"));
        }
        if !(0.0..0.5).contains(&sell_at) {
            return Err(format!("sell threshold {sell_at} is not in [0, 0.5)"));
        }
        Ok(Self { buy_at, sell_at })
    }

    pub fn signal(&self, probability_up: f64) -> Signal {
        let action = if probability_up >= self.buy_at {
            Action::Buy
        } else if probability_up <= self.sell_at {
            Action::Sell
        } else {
            Action::Hold
        };
        Signal {
            direction: if probability_up >= 0.5 {
                Direction::Up
            } else {
                Direction::Down
            },
            action,
            confidence: (2.0 * probability_up - 1.0).abs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_follow_the_thresholds() {
        let policy = Policy::new(0.6, 0.4).unwrap();
        let cases = [
            (0.0, Direction::Down, Action::Sell, 1.0),
            (0.4, Direction::Down, Action::Sell, 0.2),
            (0.45, Direction::Down, Action::Hold, 0.1),
            (0.5, Direction::Up, Action::Hold, 0.0),
            (0.6, Direction::Up, Action::Buy, 0.2),
            (1.0, Direction::Up, Action::Buy, 1.0),
        ];
        for (p, direction, action, confidence) in cases {
            let s = policy.signal(p);
            assert_eq!((s.direction, s.action), (direction, action), "p = {p}");
            assert!((s.confidence - confidence).abs() < 1e-12, "p = {p}");
        }
    }

    #[test]
    fn thresholds_must_straddle_a_coin_flip() {
        assert!(Policy::new(0.5, 0.4).is_err());
        assert!(Policy::new(0.6, 0.5).is_err());
        assert!(Policy::new(1.1, 0.4).is_err());
        assert!(Policy::new(0.6, -0.1).is_err());
        assert!(Policy::new(f64::NAN, 0.4).is_err());
        assert_eq!(
            Policy::new(1.0, 0.0).unwrap().signal(0.99).action,
            Action::Hold
        );
    }
}
