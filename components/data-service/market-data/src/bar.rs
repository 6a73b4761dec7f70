use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::price::Price;

/// One daily OHLCV bar, dated in the exchange's local calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub date: NaiveDate,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    pub volume: u64,
}
