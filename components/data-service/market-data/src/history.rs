//! The bundled real history, embedded in the component (`data/history.bin`,
//! built by `data/bundle.py`; sources and licences in `data/NOTICE.md`).
//!
//! Format (little-endian): magic `DTBARS1\0`; `u32` version, symbol count,
//! bar count; per symbol `u8` name length, name, `u32` first bar, `u32` bar
//! count, `u8` flags; then fixed 28-byte bars: `i32` days since 1970-01-01,
//! `u32` open, high, low, close in ticks of 0.0001, `u64` volume. Bars are
//! decoded on access, so opening the history costs only the symbol table.

use chrono::NaiveDate;

use crate::bar::Bar;
use crate::error::DataError;
use crate::exchange::Market;
use crate::intraday::Intraday;
use crate::price::Price;

/// The embedded history file.
pub static BUNDLED: &[u8] = include_bytes!("../data/history.bin");

const MAGIC: &[u8; 8] = b"DTBARS1\0";

/// The file's prices are in ticks of 0.0001.
fn price_at(file_ticks: u32) -> Price {
    Price::from_ticks(i64::from(file_ticks) * (Price::SCALE / 10_000))
}
const BAR_SIZE: usize = 28;

/// One symbol's series in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    pub symbol: String,
    first: usize,
    pub bars: usize,
    /// Prices adjusted for splits and dividends (the long-history symbols).
    pub adjusted: bool,
}

/// A read-only view of a history file, with the bundled intraday series.
#[derive(Debug, Clone)]
pub struct History {
    data: &'static [u8],
    series: Vec<SeriesInfo>,
    bars_offset: usize,
    pub intraday: Intraday,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DataError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(DataError::CorruptHistory("truncated"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DataError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DataError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")
}

impl History {
    /// The history embedded in this build.
    pub fn bundled() -> Result<Self, DataError> {
        Self::parse(BUNDLED)
    }

    pub fn parse(data: &'static [u8]) -> Result<Self, DataError> {
        let mut r = Reader { data, pos: 0 };
        if r.take(8)? != MAGIC {
            return Err(DataError::CorruptHistory("bad magic"));
        }
        if r.u32()? != 1 {
            return Err(DataError::CorruptHistory("unsupported version"));
        }
        let symbols = r.u32()? as usize;
        let total = r.u32()? as usize;
        let mut series = Vec::with_capacity(symbols);
        for _ in 0..symbols {
            let len = r.u8()? as usize;
            let name = std::str::from_utf8(r.take(len)?)
                .map_err(|_| DataError::CorruptHistory("symbol is not UTF-8"))?;
            let first = r.u32()? as usize;
            let bars = r.u32()? as usize;
            let flags = r.u8()?;
            if first + bars > total {
                return Err(DataError::CorruptHistory("series out of bounds"));
            }
            series.push(SeriesInfo {
                symbol: name.to_string(),
                first,
                bars,
                adjusted: flags & 2 != 0,
            });
        }
        let bars_offset = r.pos;
        if data.len() != bars_offset + total * BAR_SIZE {
            return Err(DataError::CorruptHistory("bar section has the wrong size"));
        }
        Ok(Self {
            data,
            series,
            bars_offset,
            intraday: Intraday::bundled()?,
        })
    }

    /// Every daily series, sorted by symbol (the intraday ones: [`Self::intraday`]).
    pub fn series(&self) -> &[SeriesInfo] {
        &self.series
    }

    pub fn info(&self, symbol: &str) -> Option<&SeriesInfo> {
        self.series
            .binary_search_by(|s| s.symbol.as_str().cmp(symbol))
            .ok()
            .map(|i| &self.series[i])
    }

    /// A symbol's daily bars dated within `from..=to` (either bound open),
    /// oldest first; an intraday series' are made from its bars.
    pub fn bars(
        &self,
        symbol: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<Bar>, DataError> {
        let Some(info) = self.info(symbol) else {
            let series = self
                .intraday
                .info(symbol)
                .ok_or_else(|| DataError::UnknownSymbol(symbol.to_string()))?;
            let (from, to) = (from.unwrap_or(series.from), to.unwrap_or(series.to));
            return self.intraday.daily(symbol, from, to);
        };
        // A series' bars are in date order: find the range by its dates
        // alone, and decode only the bars in it.
        let day = |date: NaiveDate| (date - epoch()).num_days();
        let start = from.map_or(0, |f| self.first_where(info, |d| d >= day(f)));
        let end = to.map_or(info.bars, |t| self.first_where(info, |d| d > day(t)));
        Ok((start..end.max(start))
            .map(|i| self.bar(info.first + i))
            .collect())
    }

    /// The first bar of `info` whose day `after` holds for (and for every
    /// later one: the days ascend), or its number of bars.
    fn first_where(&self, info: &SeriesInfo, after: impl Fn(i64) -> bool) -> usize {
        let (mut low, mut high) = (0, info.bars);
        while low < high {
            let mid = low + (high - low) / 2;
            if after(self.day(info.first + mid)) {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        low
    }

    /// The date of bar `index`, as days since 1970-01-01.
    fn day(&self, index: usize) -> i64 {
        let start = self.bars_offset + index * BAR_SIZE;
        let b = &self.data[start..start + 4];
        i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bar(&self, index: usize) -> Bar {
        let start = self.bars_offset + index * BAR_SIZE;
        let b = &self.data[start..start + BAR_SIZE];
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let date = epoch() + chrono::Duration::days(self.day(index));
        Bar {
            date,
            // The bundled history is all US listings, each bar a trading day.
            ts: Market::Us.regular_open(date).timestamp(),
            open: price_at(u32_at(4)),
            high: price_at(u32_at(8)),
            low: price_at(u32_at(12)),
            close: price_at(u32_at(16)),
            volume: u64::from_le_bytes([b[20], b[21], b[22], b[23], b[24], b[25], b[26], b[27]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn bundled_history_has_what_the_notice_says() {
        let h = History::bundled().unwrap();
        assert_eq!(h.series().len(), 525);
        let total: usize = h.series().iter().map(|s| s.bars).sum();
        assert_eq!(total, 133_757);
        let aapl = h.info("AAPL").unwrap();
        assert!(aapl.adjusted);
        assert_eq!(aapl.bars, 3270);
        assert!(!h.info("XOM").unwrap().adjusted);
        assert!(h.info("BRK-B").is_some());
    }

    #[test]
    fn bars_are_real_and_well_formed() {
        let h = History::bundled().unwrap();
        let bars = h
            .bars("IBM", Some(d(2010, 1, 4)), Some(d(2010, 1, 8)))
            .unwrap();
        assert_eq!(bars.len(), 5);
        assert_eq!(bars[0].date, d(2010, 1, 4));
        for s in h.series() {
            for b in h.bars(&s.symbol, None, None).unwrap() {
                assert!(
                    b.low <= b.open && b.open <= b.high,
                    "{} {}",
                    s.symbol,
                    b.date
                );
                assert!(
                    b.low <= b.close && b.close <= b.high,
                    "{} {}",
                    s.symbol,
                    b.date
                );
                assert!(b.low.ticks() > 0);
            }
        }
    }

    #[test]
    fn unknown_symbol_is_an_error() {
        let h = History::bundled().unwrap();
        assert_eq!(
            h.bars("ZZZZ", None, None).unwrap_err().code(),
            "unknown-symbol"
        );
    }

    #[test]
    fn nyse_calendar_matches_every_bundled_trading_day() {
        // The holiday rules and the real history must agree day for day.
        let h = History::bundled().unwrap();
        let days: Vec<NaiveDate> = h
            .bars("AAPL", None, None)
            .unwrap()
            .iter()
            .map(|b| b.date)
            .collect();
        let mut expected = Vec::new();
        let mut day = days[0];
        while day <= *days.last().unwrap() {
            if Market::Us.is_trading_day(day) {
                expected.push(day);
            }
            day += chrono::Duration::days(1);
        }
        let missing: Vec<_> = expected
            .iter()
            .filter(|d| !days.contains(d))
            .take(5)
            .collect();
        let extra: Vec<_> = days
            .iter()
            .filter(|d| !expected.contains(d))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "calendar says open but no bar: {missing:?}; bar on a closed day: {extra:?}"
        );
    }
}
