//! The bundled intraday history (`data/intraday.bin`, built by
//! `data/bundle.py`; sources and licences in `data/NOTICE.md`): EUR/USD
//! hourly 2017 (`EURUSD=X`, market `fx`) and BTC/USD hourly 2017–2019
//! (`BTC-USD`, market `crypto`).
//!
//! Format (little-endian): magic `DTBARS2\0`; `u32` version, series count,
//! bar count; per series `u8` name length, name, `u8` market (2 fx,
//! 3 crypto), `u32` bar length in seconds, `u8` price decimals, `u32` first
//! bar, `u32` bar count; then fixed 32-byte bars: `i64` open time (Unix
//! seconds, UTC), `u32` open, high, low, close in units of 10^-decimals,
//! `u64` volume. Bars are decoded on access.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::bar::Bar;
use crate::error::DataError;
use crate::exchange::Market;
use crate::interval::Interval;
use crate::price::Price;

/// The embedded intraday file.
pub static BUNDLED: &[u8] = include_bytes!("../data/intraday.bin");

const MAGIC: &[u8; 8] = b"DTBARS2\0";
const BAR_SIZE: usize = 32;

/// One intraday series: its symbol, market, bar interval and extent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntradaySeries {
    pub symbol: String,
    pub market: Market,
    pub interval: Interval,
    pub bars: usize,
    /// The first and last bar's trading day.
    pub from: NaiveDate,
    pub to: NaiveDate,
    #[serde(skip)]
    first: usize,
    #[serde(skip)]
    decimals: u32,
}

/// A read-only view of an intraday history file.
#[derive(Debug, Clone)]
pub struct Intraday {
    data: &'static [u8],
    series: Vec<IntradaySeries>,
    bars_offset: usize,
}

fn le<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N], DataError> {
    data.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or(DataError::CorruptHistory("intraday: truncated"))
}

impl Intraday {
    /// The intraday history embedded in this build.
    pub fn bundled() -> Result<Self, DataError> {
        Self::parse(BUNDLED)
    }

    pub fn parse(data: &'static [u8]) -> Result<Self, DataError> {
        let corrupt = DataError::CorruptHistory;
        if data.get(..8) != Some(MAGIC.as_slice()) {
            return Err(corrupt("intraday: bad magic"));
        }
        let u32_at = |at| le::<4>(data, at).map(u32::from_le_bytes);
        if u32_at(8)? != 1 {
            return Err(corrupt("intraday: unsupported version"));
        }
        let (count, total) = (u32_at(12)? as usize, u32_at(16)? as usize);
        let mut pos = 20;
        let mut series = Vec::with_capacity(count);
        for _ in 0..count {
            let len = le::<1>(data, pos)?[0] as usize;
            let name = data
                .get(pos + 1..pos + 1 + len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or(corrupt("intraday: bad symbol"))?;
            pos += 1 + len;
            let market = match le::<1>(data, pos)?[0] {
                2 => Market::Fx,
                3 => Market::Crypto,
                _ => return Err(corrupt("intraday: unknown market")),
            };
            let interval = match u32_at(pos + 1)? {
                3600 => Interval::OneHour,
                _ => return Err(corrupt("intraday: unsupported bar length")),
            };
            let decimals = u32::from(le::<1>(data, pos + 5)?[0]);
            let (first, bars) = (u32_at(pos + 6)? as usize, u32_at(pos + 10)? as usize);
            pos += 14;
            if first + bars > total || bars == 0 || decimals > Price::DECIMALS {
                return Err(corrupt("intraday: series out of bounds"));
            }
            series.push(IntradaySeries {
                symbol: name.to_string(),
                market,
                interval,
                bars,
                from: NaiveDate::MIN,
                to: NaiveDate::MIN,
                first,
                decimals,
            });
        }
        if data.len() != pos + total * BAR_SIZE {
            return Err(corrupt("intraday: bar section has the wrong size"));
        }
        let mut intraday = Self {
            data,
            series,
            bars_offset: pos,
        };
        for i in 0..intraday.series.len() {
            let s = &intraday.series[i];
            let records = intraday.records(s);
            let (first, last) = (records[0], records[s.bars - 1]);
            let (from, to) = (
                Self::day_of(s, open_time(&first)),
                Self::day_of(s, open_time(&last)),
            );
            intraday.series[i].from = from;
            intraday.series[i].to = to;
        }
        intraday.series.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        Ok(intraday)
    }

    pub fn series(&self) -> &[IntradaySeries] {
        &self.series
    }

    pub fn info(&self, symbol: &str) -> Option<&IntradaySeries> {
        self.series.iter().find(|s| s.symbol == symbol)
    }

    /// The series' bars as fixed-size records.
    fn records(&self, series: &IntradaySeries) -> &'static [[u8; BAR_SIZE]] {
        let (records, _) = self.data[self.bars_offset..].as_chunks::<BAR_SIZE>();
        &records[series.first..series.first + series.bars]
    }

    /// Decode one record; `date` is its trading day.
    fn bar(series: &IntradaySeries, b: &[u8; BAR_SIZE], date: NaiveDate) -> Bar {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let step = 10i64.pow(Price::DECIMALS - series.decimals);
        let price = |o| Price::from_ticks(i64::from(u32_at(o)) * step);
        Bar {
            date,
            ts: open_time(b),
            open: price(8),
            high: price(12),
            low: price(16),
            close: price(20),
            volume: u64::from_le_bytes(b[24..32].try_into().expect("eight bytes")),
        }
    }

    /// The trading day of the bar opening at `ts`.
    fn day_of(series: &IntradaySeries, ts: i64) -> NaiveDate {
        series
            .market
            .trading_day_at(DateTime::from_timestamp(ts, 0).unwrap_or_default())
    }

    /// `symbol`'s bars whose trading day is within `from..=to` and which
    /// have closed by `until` (open time + bar length ≤ `until`), oldest first.
    pub fn bars(
        &self,
        symbol: &str,
        from: NaiveDate,
        to: NaiveDate,
        until: DateTime<Utc>,
    ) -> Result<Vec<Bar>, DataError> {
        let series = self
            .info(symbol)
            .ok_or_else(|| DataError::UnknownSymbol(symbol.to_string()))?;
        let last_open = until.timestamp() - series.interval.length().num_seconds();
        // Records are in time order: the window by binary search, from a
        // day before `from`'s session (its bars may open the day before).
        let records = self.records(series);
        let day_start = (series.market.session_open(from) - Duration::days(1)).timestamp();
        let lo = records.partition_point(|b| open_time(b) < day_start);
        let hi = records
            .partition_point(|b| open_time(b) <= last_open)
            .max(lo);
        // A day's bars share its date: the calendar is asked once a day.
        let mut day: Option<(NaiveDate, i64)> = None;
        let mut bars = Vec::new();
        for b in &records[lo..hi] {
            let ts = open_time(b);
            let date = match day {
                Some((date, close)) if ts < close => date,
                _ => {
                    let date = Self::day_of(series, ts);
                    let close = series
                        .market
                        .close_of(date)
                        .map_or(i64::MAX, |c| c.timestamp());
                    day = Some((date, close));
                    date
                }
            };
            if date > to {
                break;
            }
            if date >= from {
                bars.push(Self::bar(series, b, date));
            }
        }
        Ok(bars)
    }

    /// `symbol`'s daily bars within `from..=to`, made from its intraday bars
    /// by the market's trading day (open of the first, high and low of all,
    /// close of the last, volumes summed). Only complete days are asked for:
    /// `to` is the caller's last closed day.
    pub fn daily(
        &self,
        symbol: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Bar>, DataError> {
        let series = self
            .info(symbol)
            .ok_or_else(|| DataError::UnknownSymbol(symbol.to_string()))?;
        // Every bar of a day up to `to` has closed: the dates bound them.
        let bars = self.bars(symbol, from, to, DateTime::<Utc>::MAX_UTC)?;
        Ok(crate::import::daily(series.market, bars))
    }
}

/// A record's open time (Unix seconds, UTC).
fn open_time(b: &[u8; BAR_SIZE]) -> i64 {
    i64::from_le_bytes(b[0..8].try_into().expect("eight bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn px(s: &str) -> Price {
        s.parse().unwrap()
    }

    #[test]
    fn bundled_series_are_what_the_notice_says() {
        let h = Intraday::bundled().unwrap();
        let summary: Vec<_> = h
            .series()
            .iter()
            .map(|s| (s.symbol.as_str(), s.market, s.bars, s.from, s.to))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "BTC-USD",
                    Market::Crypto,
                    17_583,
                    d(2017, 7, 1),
                    d(2019, 7, 4)
                ),
                (
                    "EURUSD=X",
                    Market::Fx,
                    6_225,
                    d(2017, 1, 2),
                    d(2017, 12, 29)
                ),
            ]
        );
        // The source's first rows, exactly: 01.01.2017 22:00 UTC (Sunday
        // 17:00 New York opens Monday's FX day) 1.05236 1.05253 1.05221 1.05227.
        let first = &h
            .bars(
                "EURUSD=X",
                d(2017, 1, 2),
                d(2017, 1, 2),
                utc("2017-01-01T23:00:00Z"),
            )
            .unwrap()[0];
        assert_eq!(first.ts, utc("2017-01-01T22:00:00Z").timestamp());
        assert_eq!(first.date, d(2017, 1, 2));
        assert_eq!(
            (first.open, first.high, first.low, first.close, first.volume),
            (
                px("1.05236"),
                px("1.05253"),
                px("1.05221"),
                px("1.05227"),
                143_539_993
            )
        );
    }

    /// Every bundled bar lies inside a session of its market, and bars are
    /// in time order without repeats.
    #[test]
    fn bars_fall_in_their_markets_sessions() {
        let h = Intraday::bundled().unwrap();
        for s in h.series() {
            let bars = h
                .bars(&s.symbol, s.from, s.to, utc("2030-01-01T00:00:00Z"))
                .unwrap();
            assert_eq!(bars.len(), s.bars, "{}", s.symbol);
            for pair in bars.windows(2) {
                assert!(pair[0].ts < pair[1].ts, "{} {}", s.symbol, pair[1].ts);
            }
            for b in &bars {
                let at = DateTime::from_timestamp(b.ts, 0).unwrap();
                assert!(s.market.is_open(at), "{} {at}", s.symbol);
                assert!(b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close));
            }
        }
    }

    #[test]
    fn a_bar_is_seen_once_it_has_closed() {
        let h = Intraday::bundled().unwrap();
        let day = d(2017, 3, 15);
        let hours = |until| h.bars("EURUSD=X", day, day, utc(until)).unwrap().len();
        // Wednesday's FX day opened Tuesday 17:00 EDT (21:00 UTC).
        assert_eq!(hours("2017-03-14T21:59:59Z"), 0);
        assert_eq!(hours("2017-03-14T22:00:00Z"), 1);
        assert_eq!(hours("2017-03-15T21:00:00Z"), 24);
    }

    #[test]
    fn daily_bars_are_made_from_the_days_hours() {
        let h = Intraday::bundled().unwrap();
        let day = d(2017, 3, 15);
        let hours = h
            .bars("EURUSD=X", day, day, utc("2017-03-16T00:00:00Z"))
            .unwrap();
        let daily = h.daily("EURUSD=X", d(2017, 3, 13), day).unwrap();
        assert_eq!(daily.len(), 3);
        let last = daily.last().unwrap();
        assert_eq!(last.date, day);
        assert_eq!(last.open, hours[0].open);
        assert_eq!(last.close, hours.last().unwrap().close);
        assert_eq!(last.high, hours.iter().map(|b| b.high).max().unwrap());
        assert_eq!(last.low, hours.iter().map(|b| b.low).min().unwrap());
        assert_eq!(last.volume, hours.iter().map(|b| b.volume).sum::<u64>());
        assert_eq!(last.ts, utc("2017-03-14T21:00:00Z").timestamp());
        // Crypto days are UTC days of 24 bars.
        let btc = h.daily("BTC-USD", d(2018, 1, 1), d(2018, 1, 1)).unwrap();
        assert_eq!(btc.len(), 1);
        assert_eq!(btc[0].ts, utc("2018-01-01T00:00:00Z").timestamp());
    }
}
