//! The exchange table: each market's lot size, currency, time zone, session
//! hours and holidays.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc, Weekday};
use serde::Serialize;

use crate::calendar;

/// The markets the platform trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    /// Tokyo Stock Exchange (`7203.T`).
    Tse,
    /// US listings (NYSE / Nasdaq: `AAPL`, `BRK-B`).
    Us,
}

/// A continuous trading session in exchange-local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Session {
    pub open: NaiveTime,
    pub close: NaiveTime,
}

/// What the platform knows of an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exchange {
    pub market: Market,
    pub name: &'static str,
    pub currency: &'static str,
    pub time_zone: &'static str,
    /// The trading unit: orders are whole multiples of it.
    pub lot_size: u64,
    pub sessions: Vec<Session>,
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("a valid time")
}

impl Market {
    pub fn exchange(self) -> Exchange {
        match self {
            // Morning 09:00–11:30 and afternoon 12:30–15:30 since 2024-11-05
            // (the afternoon closed at 15:00 before).
            Self::Tse => Exchange {
                market: self,
                name: "Tokyo Stock Exchange",
                currency: "JPY",
                time_zone: "Asia/Tokyo",
                lot_size: 100,
                sessions: vec![
                    Session {
                        open: hm(9, 0),
                        close: hm(11, 30),
                    },
                    Session {
                        open: hm(12, 30),
                        close: hm(15, 30),
                    },
                ],
            },
            Self::Us => Exchange {
                market: self,
                name: "New York Stock Exchange / Nasdaq",
                currency: "USD",
                time_zone: "America/New_York",
                lot_size: 1,
                sessions: vec![Session {
                    open: hm(9, 30),
                    close: hm(16, 0),
                }],
            },
        }
    }

    /// Offset of exchange-local time from UTC at `utc`, in seconds.
    pub fn utc_offset(self, utc: DateTime<Utc>) -> i64 {
        match self {
            Self::Tse => 9 * 3600,
            Self::Us => {
                if us_eastern_dst(utc) {
                    -4 * 3600
                } else {
                    -5 * 3600
                }
            }
        }
    }

    /// Is `date` (exchange-local) a full trading day?
    pub fn is_trading_day(self, date: NaiveDate) -> bool {
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return false;
        }
        let holidays = match self {
            Self::Tse => calendar::tse_holidays(date.year()),
            Self::Us => calendar::nyse_holidays(date.year()),
        };
        !holidays.contains(&date)
    }

    /// The first trading day after `date`.
    pub fn next_trading_day(self, date: NaiveDate) -> NaiveDate {
        let mut d = date + Duration::days(1);
        while !self.is_trading_day(d) {
            d += Duration::days(1);
        }
        d
    }

    /// When the first session of `date` (exchange-local) opens, in UTC.
    pub fn session_open(self, date: NaiveDate) -> DateTime<Utc> {
        let open = self.exchange().sessions[0].open;
        // Offsets change at 02:00 local on Sundays: noon UTC of a trading day is safe.
        let noon = date.and_time(hm(12, 0)).and_utc();
        (date.and_time(open) - Duration::seconds(self.utc_offset(noon))).and_utc()
    }

    /// Is the market in a continuous session at `utc`?
    pub fn is_open(self, utc: DateTime<Utc>) -> bool {
        let local = utc.naive_utc() + Duration::seconds(self.utc_offset(utc));
        self.is_trading_day(local.date())
            && self
                .exchange()
                .sessions
                .iter()
                .any(|s| local.time() >= s.open && local.time() < s.close)
    }
}

/// US Eastern daylight saving time: from 2007, second Sunday of March 02:00 to
/// first Sunday of November 02:00 local; before, first Sunday of April to last
/// Sunday of October.
fn us_eastern_dst(utc: DateTime<Utc>) -> bool {
    let y = utc.year();
    let sunday =
        |m, n| NaiveDate::from_weekday_of_month_opt(y, m, Weekday::Sun, n).expect("exists");
    let (start, end) = if y >= 2007 {
        (sunday(3, 2), sunday(11, 1))
    } else {
        let mut last = NaiveDate::from_ymd_opt(y, 10, 31).expect("exists");
        while last.weekday() != Weekday::Sun {
            last -= Duration::days(1);
        }
        (sunday(4, 1), last)
    };
    // 02:00 EST = 07:00 UTC at the start; 02:00 EDT = 06:00 UTC at the end.
    let start = start.and_time(hm(7, 0)).and_utc();
    let end = end.and_time(hm(6, 0)).and_utc();
    utc >= start && utc < end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn tse_sessions_and_lunch_break() {
        let tse = Market::Tse;
        assert_eq!(tse.exchange().lot_size, 100);
        // 2025-11-28 (Fri) JST = UTC+9.
        assert!(!tse.is_open(utc("2025-11-27T23:59:00Z"))); // 08:59
        assert!(tse.is_open(utc("2025-11-28T00:00:00Z"))); // 09:00
        assert!(!tse.is_open(utc("2025-11-28T02:45:00Z"))); // 11:45 lunch
        assert!(tse.is_open(utc("2025-11-28T06:29:00Z"))); // 15:29
        assert!(!tse.is_open(utc("2025-11-28T06:30:00Z"))); // 15:30
        assert!(!tse.is_open(utc("2025-11-24T01:00:00Z"))); // substitute holiday
    }

    #[test]
    fn us_session_follows_daylight_saving() {
        let us = Market::Us;
        // Summer: 09:30 EDT = 13:30 UTC. Winter: 09:30 EST = 14:30 UTC.
        assert!(us.is_open(utc("2025-07-01T13:30:00Z")));
        assert!(!us.is_open(utc("2025-12-01T13:30:00Z")));
        assert!(us.is_open(utc("2025-12-01T14:30:00Z")));
        // Old rules: 2005-04-01 was still winter time, 2005-10-28 still summer.
        assert!(!us.is_open(utc("2005-04-01T13:45:00Z")));
        assert!(us.is_open(utc("2005-10-28T13:45:00Z")));
        assert!(!us.is_open(utc("2025-07-04T15:00:00Z"))); // Independence Day
    }

    #[test]
    fn session_open_in_utc() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(
            Market::Us.session_open(d(2010, 6, 1)),
            utc("2010-06-01T13:30:00Z")
        );
        assert_eq!(
            Market::Us.session_open(d(2010, 12, 1)),
            utc("2010-12-01T14:30:00Z")
        );
        assert_eq!(
            Market::Tse.session_open(d(2025, 11, 28)),
            utc("2025-11-28T00:00:00Z")
        );
    }

    #[test]
    fn next_trading_day_skips_weekends_and_holidays() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(Market::Us.next_trading_day(d(2025, 7, 3)), d(2025, 7, 7));
        assert_eq!(Market::Tse.next_trading_day(d(2025, 12, 30)), d(2026, 1, 5));
    }
}
