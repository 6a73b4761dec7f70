//! The exchange table: each market's lot size, currency, time zone, and its
//! calendar — which days it trades and the sessions of each day as instants.
//!
//! Sessions by market (exchange-local time):
//! - TSE: 09:00–11:30 and 12:30–15:30 with the closing auction 15:25–15:30,
//!   since 2024-11-05; the afternoon closed at 15:00 before (the close an
//!   itayose at 15:00, no separate auction period), and the morning at
//!   11:00 before 2011-11-21.
//! - US (NYSE / Nasdaq): 09:30–16:00 ET, 13:00 on the NYSE's half days (the
//!   day before Independence Day, the day after Thanksgiving, Christmas Eve).
//! - FX: 24×5, from Sunday 17:00 to Friday 17:00 New York time; the trading
//!   day dated D runs from 17:00 New York on the day before D to 17:00 on D.
//!   Holidays are not modelled (the interbank market stays open on them).
//! - Crypto: 24×7, the trading day is the UTC calendar day.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::calendar;
use crate::interval::Interval;
use crate::price::Price;

/// The markets the platform trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    /// Tokyo Stock Exchange (`7203.T`).
    Tse,
    /// US listings (NYSE / Nasdaq: `AAPL`, `BRK-B`).
    Us,
    /// Spot currency pairs (`EURUSD=X`).
    Fx,
    /// Crypto-currency pairs (`BTC-USD`).
    Crypto,
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
    /// What one unit of an order's quantity is, in the instrument: a share,
    /// a unit of a pair's base currency, or a contract of 0.0001 coin
    /// (`BTC-USD` quantity 150 is 0.015 BTC). Prices are per share or coin.
    pub contract_size: Price,
    /// A regular day's sessions (half days and older rules: [`Market::sessions`]).
    pub sessions: Vec<Session>,
}

/// A bar's place in its market's calendar (see [`Market::bar_times`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarTimes {
    /// Its trading day.
    pub date: NaiveDate,
    pub close: DateTime<Utc>,
    /// It opens the trading day: the opening auction's bar.
    pub opens_day: bool,
    /// It ends the trading day: the closing auction's bar.
    pub ends_day: bool,
    /// When the trading day's last session closes.
    pub day_close: DateTime<Utc>,
}

/// One session of a trading day, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionTimes {
    /// The trading day it belongs to (exchange-local).
    pub date: NaiveDate,
    pub open: DateTime<Utc>,
    pub close: DateTime<Utc>,
    /// When the closing auction's order period starts (TSE since
    /// 2024-11-05: 15:25); `None` where the close is a single auction at
    /// `close` or there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closing_auction: Option<DateTime<Utc>>,
}

impl SessionTimes {
    /// Is `at` inside the session (open ≤ at < close)?
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.open <= at && at < self.close
    }
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("a valid time")
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid date")
}

/// The TSE's afternoon has closed at 15:30 since this day.
pub const TSE_CLOSE_EXTENDED: NaiveDate = NaiveDate::from_ymd_opt(2024, 11, 5).expect("a date");
/// The TSE's morning has closed at 11:30 since this day.
const TSE_LUNCH_SHORTENED: NaiveDate = NaiveDate::from_ymd_opt(2011, 11, 21).expect("a date");

impl Market {
    pub const ALL: [Self; 4] = [Self::Tse, Self::Us, Self::Fx, Self::Crypto];

    /// Its name in paths and bodies: `tse`, `us`, `fx`, `crypto`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Tse => "tse",
            Self::Us => "us",
            Self::Fx => "fx",
            Self::Crypto => "crypto",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    pub fn exchange(self) -> Exchange {
        let (name, currency, time_zone, lot_size, sessions) = match self {
            Self::Tse => (
                "Tokyo Stock Exchange",
                "JPY",
                "Asia/Tokyo",
                100,
                vec![(hm(9, 0), hm(11, 30)), (hm(12, 30), hm(15, 30))],
            ),
            Self::Us => (
                "New York Stock Exchange / Nasdaq",
                "USD",
                "America/New_York",
                1,
                vec![(hm(9, 30), hm(16, 0))],
            ),
            // One session from 17:00 to 17:00 (the next day's) New York time.
            Self::Fx => (
                "Spot FX (interbank)",
                "USD",
                "America/New_York",
                1,
                vec![(hm(17, 0), hm(17, 0))],
            ),
            Self::Crypto => (
                "Crypto-currency exchanges",
                "USD",
                "UTC",
                1,
                vec![(hm(0, 0), hm(0, 0))],
            ),
        };
        Exchange {
            market: self,
            name,
            currency,
            time_zone,
            lot_size,
            contract_size: self.contract_size(),
            sessions: sessions
                .into_iter()
                .map(|(open, close)| Session { open, close })
                .collect(),
        }
    }

    /// What one unit of quantity is (see [`Exchange::contract_size`]).
    pub fn contract_size(self) -> Price {
        match self {
            Self::Crypto => Price::from_ticks(Price::SCALE / 10_000),
            Self::Tse | Self::Us | Self::Fx => Price::from_ticks(Price::SCALE),
        }
    }

    /// The decimals its prices are quoted and filled in: shares 4 (sub-penny,
    /// as the platform always had), currency pairs 5, crypto-currencies 8.
    pub fn price_decimals(self) -> u32 {
        match self {
            Self::Tse | Self::Us => 4,
            Self::Fx => 5,
            Self::Crypto => 8,
        }
    }

    /// Offset of exchange-local time from UTC at `utc`, in seconds.
    pub fn utc_offset(self, utc: DateTime<Utc>) -> i64 {
        match self {
            Self::Tse => 9 * 3600,
            Self::Us | Self::Fx => {
                if us_eastern_dst(utc) {
                    -4 * 3600
                } else {
                    -5 * 3600
                }
            }
            Self::Crypto => 0,
        }
    }

    /// `utc` in the exchange's zone.
    pub fn local(self, utc: DateTime<Utc>) -> DateTime<FixedOffset> {
        let offset = i32::try_from(self.utc_offset(utc)).expect("an offset within a day");
        utc.with_timezone(&FixedOffset::east_opt(offset).expect("an offset within a day"))
    }

    /// Is `date` (exchange-local) a trading day?
    pub fn is_trading_day(self, date: NaiveDate) -> bool {
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        match self {
            Self::Crypto => true,
            Self::Fx => !weekend,
            Self::Tse => !weekend && !calendar::tse_holidays(date.year()).contains(&date),
            Self::Us => !weekend && !calendar::nyse_holidays(date.year()).contains(&date),
        }
    }

    /// The first trading day after `date`.
    pub fn next_trading_day(self, date: NaiveDate) -> NaiveDate {
        let mut d = date + Duration::days(1);
        while !self.is_trading_day(d) {
            d += Duration::days(1);
        }
        d
    }

    /// The last trading day before `date`.
    pub fn previous_trading_day(self, date: NaiveDate) -> NaiveDate {
        let mut d = date - Duration::days(1);
        while !self.is_trading_day(d) {
            d -= Duration::days(1);
        }
        d
    }

    /// Opens and closes its days with auctions (at-open and at-close orders).
    pub fn has_auctions(self) -> bool {
        matches!(self, Self::Tse | Self::Us)
    }

    /// A local wall time of `date` as an instant.
    fn instant(self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        // Offsets change at 02:00 local on Sundays, never during a session:
        // the offset at noon UTC of the day is the session's.
        let noon = date.and_time(hm(12, 0)).and_utc();
        (date.and_time(time) - Duration::seconds(self.utc_offset(noon))).and_utc()
    }

    /// The sessions of `date`, oldest first; none on a day it does not trade.
    pub fn sessions(self, date: NaiveDate) -> Vec<SessionTimes> {
        if !self.is_trading_day(date) {
            return Vec::new();
        }
        let session = |open: DateTime<Utc>, close: DateTime<Utc>| SessionTimes {
            date,
            open,
            close,
            closing_auction: None,
        };
        match self {
            Self::Tse => {
                let extended = date >= TSE_CLOSE_EXTENDED;
                let morning_close = if date >= TSE_LUNCH_SHORTENED {
                    hm(11, 30)
                } else {
                    hm(11, 0)
                };
                let close = if extended { hm(15, 30) } else { hm(15, 0) };
                let mut afternoon =
                    session(self.instant(date, hm(12, 30)), self.instant(date, close));
                if extended {
                    afternoon.closing_auction = Some(self.instant(date, hm(15, 25)));
                }
                vec![
                    session(
                        self.instant(date, hm(9, 0)),
                        self.instant(date, morning_close),
                    ),
                    afternoon,
                ]
            }
            Self::Us => {
                let close = if is_nyse_half_day(date) {
                    hm(13, 0)
                } else {
                    hm(16, 0)
                };
                vec![session(
                    self.instant(date, hm(9, 30)),
                    self.instant(date, close),
                )]
            }
            Self::Fx => {
                let day_before = date - Duration::days(1);
                vec![session(
                    self.instant(day_before, hm(17, 0)),
                    self.instant(date, hm(17, 0)),
                )]
            }
            Self::Crypto => {
                let open = date.and_time(hm(0, 0)).and_utc();
                vec![session(open, open + Duration::days(1))]
            }
        }
    }

    /// When the first session of `date` (exchange-local) opens, in UTC.
    pub fn session_open(self, date: NaiveDate) -> DateTime<Utc> {
        match self.sessions(date).first() {
            Some(s) => s.open,
            // Not a trading day: where a regular day's session would open.
            None => self.regular_open(date),
        }
    }

    /// Where a regular day's first session opens on `date`, without asking
    /// the calendar whether it trades (a half day shortens the close only).
    pub fn regular_open(self, date: NaiveDate) -> DateTime<Utc> {
        self.instant(date, self.exchange().sessions[0].open)
    }

    /// When `date`'s last session closes (its daily bar is complete); `None`
    /// if it does not trade that day.
    pub fn close_of(self, date: NaiveDate) -> Option<DateTime<Utc>> {
        self.sessions(date).last().map(|s| s.close)
    }

    /// The trading day `utc` falls in or, between days, the next one.
    pub fn trading_day_at(self, utc: DateTime<Utc>) -> NaiveDate {
        let mut date = self.local(utc).date_naive() - Duration::days(1);
        loop {
            if let Some(close) = self.close_of(date)
                && utc < close
            {
                return date;
            }
            date += Duration::days(1);
        }
    }

    /// The session `utc` is in (open ≤ utc < close), if any.
    pub fn session_at(self, utc: DateTime<Utc>) -> Option<SessionTimes> {
        self.sessions(self.trading_day_at(utc))
            .into_iter()
            .find(|s| s.contains(utc))
    }

    /// The first session opening after `utc` (strictly).
    pub fn next_session(self, utc: DateTime<Utc>) -> SessionTimes {
        self.first_session_from(utc, |s| s.open > utc)
    }

    /// The first session closing after `utc` (strictly): the one `utc` is
    /// in or, between sessions, the next.
    pub fn session_ending_after(self, utc: DateTime<Utc>) -> SessionTimes {
        self.first_session_from(utc, |s| s.close > utc)
    }

    /// The first session, from the trading day of `utc` on, that is `wanted`
    /// (which must hold for some later session).
    fn first_session_from(
        self,
        utc: DateTime<Utc>,
        wanted: impl Fn(&SessionTimes) -> bool,
    ) -> SessionTimes {
        let mut date = self.trading_day_at(utc);
        loop {
            if let Some(s) = self.sessions(date).into_iter().find(&wanted) {
                return s;
            }
            date = self.next_trading_day(date);
        }
    }

    /// The latest trading day whose daily bar is complete at `utc` (its
    /// last session closed at or before `utc`).
    pub fn last_closed_day(self, utc: DateTime<Utc>) -> NaiveDate {
        // The day `utc` is in (or the next) closes after it by definition.
        self.previous_trading_day(self.trading_day_at(utc))
    }

    /// When a bar of `interval` opening at `open` closes, and where it
    /// stands in its trading day: a daily bar closes with its day's last
    /// session, an intraday bar after its length or with its session if that
    /// is sooner (the TSE's 15:00 hourly bar ends at 15:30).
    pub fn bar_times(self, open: DateTime<Utc>, interval: Interval) -> BarTimes {
        let date = self.trading_day_at(open);
        let sessions = self.sessions(date);
        let day_close = sessions.last().map_or(open, |s| s.close);
        let close = if interval == Interval::OneDay {
            day_close
        } else {
            let session_close = sessions
                .iter()
                .find(|s| s.close > open)
                .map_or(day_close, |s| s.close);
            (open + interval.length()).min(session_close)
        };
        BarTimes {
            date,
            close,
            opens_day: sessions.first().is_some_and(|s| s.open == open),
            ends_day: close >= day_close,
            day_close,
        }
    }

    /// Is the market in a continuous session at `utc`?
    pub fn is_open(self, utc: DateTime<Utc>) -> bool {
        self.session_at(utc).is_some()
    }
}

/// The NYSE's early closes (13:00 ET): the day before Independence Day when
/// that is Monday to Thursday, the day after Thanksgiving, and Christmas Eve
/// from Monday to Thursday (on a Friday it is the observed holiday).
pub fn is_nyse_half_day(date: NaiveDate) -> bool {
    let y = date.year();
    let thanksgiving =
        NaiveDate::from_weekday_of_month_opt(y, 11, Weekday::Thu, 4).expect("exists");
    let mon_to_thu = date.weekday().num_days_from_monday() < 4;
    (date == ymd(y, 7, 3) && mon_to_thu)
        || date == thanksgiving + Duration::days(1)
        || (date == ymd(y, 12, 24) && mon_to_thu)
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

    /// Bars end with their length or their session, and know the day's
    /// auctions: (open, interval) → (close, opens the day, ends the day).
    #[test]
    fn bar_close_and_place_case_table() {
        let cases = [
            // TSE 2025-11-28: 09:00 bar, 11:00 bar cut at lunch, 15:00 bar at 15:30.
            (
                Market::Tse,
                "2025-11-28T00:00:00Z",
                Interval::OneHour,
                "2025-11-28T01:00:00Z",
                true,
                false,
            ),
            (
                Market::Tse,
                "2025-11-28T02:00:00Z",
                Interval::OneHour,
                "2025-11-28T02:30:00Z",
                false,
                false,
            ),
            (
                Market::Tse,
                "2025-11-28T03:30:00Z",
                Interval::OneHour,
                "2025-11-28T04:30:00Z",
                false,
                false,
            ),
            (
                Market::Tse,
                "2025-11-28T06:00:00Z",
                Interval::OneHour,
                "2025-11-28T06:30:00Z",
                false,
                true,
            ),
            // Before 2024-11-05 the TSE closed at 15:00.
            (
                Market::Tse,
                "2024-11-01T05:00:00Z",
                Interval::FifteenMinutes,
                "2024-11-01T05:15:00Z",
                false,
                false,
            ),
            (
                Market::Tse,
                "2024-11-01T05:45:00Z",
                Interval::FifteenMinutes,
                "2024-11-01T06:00:00Z",
                false,
                true,
            ),
            // A US daily bar ends at 16:00 ET, at 13:00 on a half day.
            (
                Market::Us,
                "2025-12-01T14:30:00Z",
                Interval::OneDay,
                "2025-12-01T21:00:00Z",
                true,
                true,
            ),
            (
                Market::Us,
                "2025-11-28T14:30:00Z",
                Interval::OneDay,
                "2025-11-28T18:00:00Z",
                true,
                true,
            ),
            // FX: the day dated 2017-03-07 opens 17:00 New York on the 6th.
            (
                Market::Fx,
                "2017-03-06T22:00:00Z",
                Interval::OneHour,
                "2017-03-06T23:00:00Z",
                true,
                false,
            ),
            (
                Market::Fx,
                "2017-03-07T21:00:00Z",
                Interval::OneHour,
                "2017-03-07T22:00:00Z",
                false,
                true,
            ),
            (
                Market::Crypto,
                "2018-01-01T23:00:00Z",
                Interval::OneHour,
                "2018-01-02T00:00:00Z",
                false,
                true,
            ),
        ];
        for (market, open, interval, close, opens, ends) in cases {
            let got = market.bar_times(utc(open), interval);
            assert_eq!(got.close, utc(close), "{market:?} {open} {interval:?}");
            assert_eq!(
                (got.opens_day, got.ends_day),
                (opens, ends),
                "{market:?} {open}"
            );
            assert_eq!(got.day_close, market.close_of(got.date).unwrap());
        }
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

    /// (market, date) → its sessions as (open, close, closing auction) in UTC.
    #[test]
    fn sessions_per_market_and_rule() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        // A session as (open, close, closing auction).
        type Expected<'a> = &'a [(&'a str, &'a str, Option<&'a str>)];
        let cases: &[(Market, NaiveDate, Expected)] = &[
            // TSE after 2024-11-05: lunch, 15:30 close, auction from 15:25.
            (
                Market::Tse,
                d(2024, 11, 5),
                &[
                    ("2024-11-05T00:00:00Z", "2024-11-05T02:30:00Z", None),
                    (
                        "2024-11-05T03:30:00Z",
                        "2024-11-05T06:30:00Z",
                        Some("2024-11-05T06:25:00Z"),
                    ),
                ],
            ),
            // The day before: a 15:00 close, no auction period.
            (
                Market::Tse,
                d(2024, 11, 1),
                &[
                    ("2024-11-01T00:00:00Z", "2024-11-01T02:30:00Z", None),
                    ("2024-11-01T03:30:00Z", "2024-11-01T06:00:00Z", None),
                ],
            ),
            // Before 2011-11-21 the morning closed at 11:00.
            (
                Market::Tse,
                d(2011, 11, 18),
                &[
                    ("2011-11-18T00:00:00Z", "2011-11-18T02:00:00Z", None),
                    ("2011-11-18T03:30:00Z", "2011-11-18T06:00:00Z", None),
                ],
            ),
            (Market::Tse, d(2025, 11, 24), &[]), // substitute holiday
            // NYSE: a regular summer day, the half days, a winter day.
            (
                Market::Us,
                d(2025, 7, 2),
                &[("2025-07-02T13:30:00Z", "2025-07-02T20:00:00Z", None)],
            ),
            (
                Market::Us,
                d(2025, 7, 3),
                &[("2025-07-03T13:30:00Z", "2025-07-03T17:00:00Z", None)],
            ),
            (
                Market::Us,
                d(2025, 11, 28),
                &[("2025-11-28T14:30:00Z", "2025-11-28T18:00:00Z", None)],
            ),
            (
                Market::Us,
                d(2024, 12, 24),
                &[("2024-12-24T14:30:00Z", "2024-12-24T18:00:00Z", None)],
            ),
            // July 3rd on a Friday is the observed holiday; Christmas Eve on a
            // Friday (2021) too.
            (Market::Us, d(2020, 7, 3), &[]),
            (Market::Us, d(2021, 12, 24), &[]),
            (
                Market::Us,
                d(2010, 12, 1),
                &[("2010-12-01T14:30:00Z", "2010-12-01T21:00:00Z", None)],
            ),
            // FX: Monday's day opens Sunday 17:00 New York (EST: 22:00 UTC).
            (
                Market::Fx,
                d(2017, 1, 2),
                &[("2017-01-01T22:00:00Z", "2017-01-02T22:00:00Z", None)],
            ),
            // Summer time: 21:00 UTC.
            (
                Market::Fx,
                d(2017, 7, 7),
                &[("2017-07-06T21:00:00Z", "2017-07-07T21:00:00Z", None)],
            ),
            (Market::Fx, d(2017, 7, 8), &[]),
            (
                Market::Crypto,
                d(2018, 3, 4),
                &[("2018-03-04T00:00:00Z", "2018-03-05T00:00:00Z", None)],
            ),
        ];
        for (market, date, expected) in cases {
            let got: Vec<_> = market
                .sessions(*date)
                .into_iter()
                .map(|s| (s.open, s.close, s.closing_auction))
                .collect();
            let expected: Vec<_> = expected
                .iter()
                .map(|(o, c, a)| (utc(o), utc(c), a.map(utc)))
                .collect();
            assert_eq!(got, expected, "{market:?} {date}");
        }
    }

    #[test]
    fn nyse_half_days_by_rule() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        for half in [
            d(2019, 7, 3),
            d(2023, 7, 3),
            d(2010, 11, 26),
            d(2009, 12, 24),
        ] {
            assert!(is_nyse_half_day(half), "{half}");
        }
        for full in [
            d(2015, 7, 2),
            d(2010, 7, 2),
            d(2010, 12, 23),
            d(2025, 11, 26),
        ] {
            assert!(!is_nyse_half_day(full), "{full}");
        }
    }

    #[test]
    fn where_an_instant_falls() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let tse = Market::Tse;
        // 12:00 JST, lunch: no session; the next is the 12:30 afternoon.
        let lunch = utc("2025-11-28T03:00:00Z");
        assert_eq!(tse.session_at(lunch), None);
        assert_eq!(tse.trading_day_at(lunch), d(2025, 11, 28));
        assert_eq!(tse.next_session(lunch).open, utc("2025-11-28T03:30:00Z"));
        assert_eq!(
            tse.session_ending_after(lunch).close,
            utc("2025-11-28T06:30:00Z")
        );
        // Friday's close to Monday's open; the last complete day at each.
        let close = utc("2025-11-28T06:30:00Z");
        assert_eq!(tse.last_closed_day(close), d(2025, 11, 28));
        assert_eq!(
            tse.last_closed_day(close - Duration::seconds(1)),
            d(2025, 11, 27)
        );
        assert_eq!(tse.trading_day_at(close), d(2025, 12, 1));
        assert_eq!(tse.next_session(close).open, utc("2025-12-01T00:00:00Z"));
        // At a session's open it is in the session; at its close, not.
        let us = Market::Us;
        let open = utc("2010-08-20T13:30:00Z");
        assert_eq!(us.session_at(open).map(|s| s.date), Some(d(2010, 8, 20)));
        assert_eq!(us.session_at(utc("2010-08-20T20:00:00Z")), None);
        assert_eq!(us.last_closed_day(open), d(2010, 8, 19));
        // FX on a Saturday: closed; Monday's day opens on Sunday.
        let saturday = utc("2017-07-08T12:00:00Z");
        assert!(!Market::Fx.is_open(saturday));
        assert_eq!(Market::Fx.trading_day_at(saturday), d(2017, 7, 10));
        assert_eq!(Market::Fx.last_closed_day(saturday), d(2017, 7, 7));
        assert_eq!(
            Market::Fx.next_session(saturday).open,
            utc("2017-07-09T21:00:00Z")
        );
        assert!(Market::Crypto.is_open(saturday));
        assert_eq!(
            Market::Fx.local(saturday).to_rfc3339(),
            "2017-07-08T08:00:00-04:00"
        );
    }
}
