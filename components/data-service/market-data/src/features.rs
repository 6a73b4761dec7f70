//! The feature vector the ML model consumes, one row per bar. Training
//! (`training/`, Python) computes the same columns with the same
//! definitions; a test there compares both on the same bars.

use serde::Serialize;

use crate::bar::Bar;
use crate::indicators::{self, Columns};

/// Feature names, in model input order.
pub const FEATURE_NAMES: [&str; 10] = [
    "ret_1",
    "ret_5",
    "ret_20",
    "rsi_14",
    "macd_hist_rel",
    "bb_percent_b",
    "atr_14_rel",
    "volatility_20",
    "volume_z_20",
    "close_sma_20_rel",
];

/// Bars a vector needs before every feature is out of warm-up (MACD signal: 34).
pub const WARM_UP_BARS: usize = 34;

/// The features of one bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureVector {
    pub date: chrono::NaiveDate,
    /// The open time of the bar it is computed at (Unix seconds, UTC).
    pub ts: i64,
    pub names: Vec<&'static str>,
    pub values: Vec<f64>,
}

/// One row per bar, `None` while any feature is warming up.
pub fn feature_rows(bars: &[Bar]) -> Vec<Option<Vec<f64>>> {
    let c = Columns::of(bars);
    let ret1 = indicators::returns(&c.close, 1);
    let ret5 = indicators::returns(&c.close, 5);
    let ret20 = indicators::returns(&c.close, 20);
    let rsi = indicators::rsi(&c.close, 14);
    let macd = indicators::macd(&c.close, 12, 26, 9);
    let bb = indicators::bollinger(&c.close, 20, 2.0);
    let atr = indicators::atr(&c.high, &c.low, &c.close, 14);
    let vol = indicators::volatility(&c.close, 20);
    let volz = indicators::volume_zscore(&c.volume, 20);
    let sma = indicators::sma(&c.close, 20);
    (0..bars.len())
        .map(|i| {
            let close = c.close[i];
            Some(vec![
                ret1[i]?,
                ret5[i]?,
                ret20[i]?,
                rsi[i]? / 100.0,
                macd.histogram[i]? / close,
                bb.percent_b[i]?,
                atr[i]? / close,
                vol[i]?,
                volz[i]?,
                close / sma[i]? - 1.0,
            ])
        })
        .collect()
}

/// The features of the last bar, if it is out of warm-up.
pub fn latest(bars: &[Bar]) -> Option<FeatureVector> {
    let last = bars.last()?;
    let values = feature_rows(bars).pop()??;
    Some(FeatureVector {
        date: last.date,
        ts: last.ts,
        names: FEATURE_NAMES.to_vec(),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::History;

    #[test]
    fn features_appear_after_warm_up_and_are_finite() {
        let bars = History::bundled()
            .unwrap()
            .bars("MSFT", None, None)
            .unwrap();
        let rows = feature_rows(&bars[..200]);
        assert!(rows[..WARM_UP_BARS - 1].iter().all(Option::is_none));
        for row in rows[WARM_UP_BARS..].iter() {
            let row = row.as_ref().expect("out of warm-up");
            assert_eq!(row.len(), FEATURE_NAMES.len());
            assert!(row.iter().all(|v| v.is_finite()));
        }
        let vector = latest(&bars[..200]).unwrap();
        assert_eq!(vector.date, bars[199].date);
        assert!(latest(&bars[..20]).is_none());
    }
}
