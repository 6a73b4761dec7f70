use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::price::Price;

/// One OHLCV bar: `ts` is its open time (Unix seconds, UTC), `date` its
/// trading day in the exchange's local calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub date: NaiveDate,
    pub ts: i64,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    pub volume: u64,
}
