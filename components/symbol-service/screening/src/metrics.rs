//! What screening measures of a symbol's recent bars: daily ones, or
//! intraday ones measured per trading day (volume, turnover) and per year
//! (volatility) by how many bars the series has a day.

use serde::Serialize;

/// A symbol's closes and volumes, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub symbol: String,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
    /// Bars a trading day: 1 on daily bars.
    pub bars_per_day: f64,
    /// Bars a year, to annualise volatility: [`TRADING_DAYS`] on daily bars.
    pub bars_per_year: f64,
}

impl Series {
    pub fn daily(symbol: impl Into<String>, close: Vec<f64>, volume: Vec<f64>) -> Self {
        Self {
            symbol: symbol.into(),
            close,
            volume,
            bars_per_day: 1.0,
            bars_per_year: TRADING_DAYS,
        }
    }
}

/// Trading days in a year, to annualise daily volatility.
pub const TRADING_DAYS: f64 = 252.0;
/// The recent window most metrics look at.
pub const WINDOW: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Bars available.
    pub history: usize,
    pub last_close: f64,
    /// Mean volume (shares) a day over the last 20 bars.
    pub avg_volume: f64,
    /// Mean turnover (close × volume) a day over the last 20 bars.
    pub avg_turnover: f64,
    /// Mean turnover a day over the whole series: the size proxy (no market caps here).
    pub long_turnover: f64,
    /// Annualised standard deviation of the bars' returns over the last 20 bars.
    pub volatility: f64,
    /// 1 − coefficient of variation of the last 20 volumes, clipped to [0, 1].
    pub volume_consistency: f64,
    /// Return over the last 20 bars.
    pub momentum: f64,
}

impl Metrics {
    /// The measures by name, in name order, as WIT `recommendation.metrics`
    /// lists them.
    pub fn pairs(&self) -> Vec<(String, f64)> {
        [
            ("avg_turnover", self.avg_turnover),
            ("avg_volume", self.avg_volume),
            ("history", self.history as f64),
            ("last_close", self.last_close),
            ("long_turnover", self.long_turnover),
            ("momentum", self.momentum),
            ("volatility", self.volatility),
            ("volume_consistency", self.volume_consistency),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn std(v: &[f64], ddof: usize) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - ddof) as f64).sqrt()
}

impl Metrics {
    /// `None` when the series is shorter than the window plus one.
    pub fn of(series: &Series) -> Option<Self> {
        let n = series.close.len();
        if n <= WINDOW || series.volume.len() != n {
            return None;
        }
        let close = &series.close[n - WINDOW - 1..];
        let volume = &series.volume[n - WINDOW..];
        let returns: Vec<f64> = close.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
        let turnover: Vec<f64> = series
            .close
            .iter()
            .zip(&series.volume)
            .map(|(c, v)| c * v)
            .collect();
        let per_bar_volume = mean(volume);
        let consistency = if per_bar_volume > 0.0 {
            1.0 - std(volume, 0) / per_bar_volume
        } else {
            0.0
        };
        let per_day = series.bars_per_day;
        Some(Self {
            history: n,
            last_close: series.close[n - 1],
            avg_volume: per_bar_volume * per_day,
            avg_turnover: mean(&turnover[n - WINDOW..]) * per_day,
            long_turnover: mean(&turnover) * per_day,
            volatility: std(&returns, 1) * series.bars_per_year.sqrt(),
            volume_consistency: consistency.clamp(0.0, 1.0),
            momentum: series.close[n - 1] / close[0] - 1.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_simple_series() {
        // Alternating +1% / −1% days at a constant volume.
        let mut close = vec![100.0];
        for i in 0..40 {
            let last = *close.last().unwrap();
            close.push(if i % 2 == 0 { last * 1.01 } else { last * 0.99 });
        }
        let series = Series::daily("X", close.clone(), vec![1000.0; close.len()]);
        let m = Metrics::of(&series).unwrap();
        assert_eq!(m.history, 41);
        assert_eq!(m.avg_volume, 1000.0);
        assert_eq!(m.volume_consistency, 1.0);
        assert!(
            (m.volatility - 0.01026 * TRADING_DAYS.sqrt()).abs() < 0.002,
            "{}",
            m.volatility
        );
        assert!(m.momentum < 0.0 && m.momentum > -0.01);
        // The same moves as hourly bars, 7 a day: volume and turnover a
        // day are 7 bars', volatility is annualised over 7 × 252 bars.
        let hourly = Series {
            bars_per_day: 7.0,
            bars_per_year: 7.0 * TRADING_DAYS,
            ..series
        };
        let h = Metrics::of(&hourly).unwrap();
        assert_eq!(h.avg_volume, 7_000.0);
        assert!((h.avg_turnover - 7.0 * m.avg_turnover).abs() < 1e-6);
        assert!((h.volatility - m.volatility * 7f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn too_short_a_series_has_no_metrics() {
        let series = Series::daily("X", vec![1.0; 20], vec![1.0; 20]);
        assert!(Metrics::of(&series).is_none());
    }
}
