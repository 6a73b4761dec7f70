//! The market clock: the system's "now".
//!
//! With live providers it is wall time. With the bundled history it is a
//! replay clock standing at an instant of the past, moved by the caller (a
//! variable at start, the admin endpoints after) bar by bar, session by
//! session or day by day through the calendar of its market, so that every
//! service can run "as of" that instant and no query ever sees a bar that
//! closes after it.
//!
//! The clock also carries the bar interval the trading loop steps in and the
//! market whose calendar it follows.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DataError;
use crate::exchange::{Market, SessionTimes};
use crate::interval::Interval;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketClock {
    /// `None`: live (wall time); otherwise the replay instant.
    pub replay: Option<DateTime<Utc>>,
    /// The calendar it steps through (and whose day [`Self::date`] names).
    pub market: Market,
    /// The bar interval of the trading loop.
    pub interval: Interval,
}

/// How far `POST /clock/advance` moves a replay clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// To the end of the next bar of the clock's interval.
    Bar,
    /// To the close of the session it is in, or of the next one.
    Session,
    /// To the close of the trading day it is in, or of the next one.
    Day,
}

impl Step {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "bar" => Self::Bar,
            "session" => Self::Session,
            "day" => Self::Day,
            _ => return None,
        })
    }
}

impl MarketClock {
    /// Wall time, on `market`'s calendar, trading daily bars.
    pub fn live(market: Market) -> Self {
        Self {
            replay: None,
            market,
            interval: Interval::OneDay,
        }
    }

    /// A replay clock after the close of `date` on `market`'s calendar.
    pub fn after_close(market: Market, date: NaiveDate) -> Result<Self, DataError> {
        let at = market
            .close_of(date)
            .ok_or_else(|| DataError::ClockOutsideSession {
                at: date.to_string(),
                market,
            })?;
        Ok(Self {
            replay: Some(at),
            market,
            interval: Interval::OneDay,
        })
    }

    /// A replay clock at `at`, which must be in a session of `market` (its
    /// open and its close included: after the close is where a day ends).
    pub fn at(market: Market, interval: Interval, at: DateTime<Utc>) -> Result<Self, DataError> {
        let session = market.session_ending_after(at - Duration::nanoseconds(1));
        if session.open > at {
            return Err(DataError::ClockOutsideSession {
                at: at.to_rfc3339(),
                market,
            });
        }
        Ok(Self {
            replay: Some(at),
            market,
            interval,
        })
    }

    pub fn is_live(&self) -> bool {
        self.replay.is_none()
    }

    /// `live` or `replay`, as stored and shown.
    pub fn mode(&self) -> &'static str {
        if self.is_live() { "live" } else { "replay" }
    }

    /// The clock's instant given the wall time `now`.
    pub fn instant(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.replay.unwrap_or(now)
    }

    /// The last date of `market` whose daily bars may be seen: replay, the
    /// last trading day closed at the clock; live, today (a live provider's
    /// bar of today is still forming).
    pub fn visible_day(&self, market: Market, now: DateTime<Utc>) -> NaiveDate {
        match self.replay {
            Some(at) => market.last_closed_day(at),
            None => now.date_naive(),
        }
    }

    /// The trading day of `market` the clock is in (between days, the next
    /// one): the last day whose intraday bars may be seen, those that have
    /// closed (live: today).
    pub fn current_day(&self, market: Market, now: DateTime<Utc>) -> NaiveDate {
        match self.replay {
            Some(at) => market.trading_day_at(at),
            None => now.date_naive(),
        }
    }

    /// The clock's date on its own market (see [`Self::visible_day`]).
    pub fn date(&self, now: DateTime<Utc>) -> NaiveDate {
        self.visible_day(self.market, now)
    }

    /// The session the clock is in (open ≤ instant < close), if any.
    pub fn session(&self, now: DateTime<Utc>) -> Option<SessionTimes> {
        self.market.session_at(self.instant(now))
    }

    /// Move a replay clock by `step` on `market`'s calendar; a live clock stays.
    pub fn advance(self, step: Step, market: Market) -> Self {
        let Some(at) = self.replay else {
            return self;
        };
        let next = match (step, self.interval) {
            (Step::Day, _) | (Step::Bar, Interval::OneDay) => market
                .close_of(market.trading_day_at(at))
                .expect("a trading day closes"),
            (Step::Session, _) => market.session_ending_after(at).close,
            (Step::Bar, interval) => {
                let session = market.session_ending_after(at);
                let length = interval.length();
                let bars_done = if at < session.open {
                    0
                } else {
                    (at - session.open).num_seconds() / length.num_seconds()
                };
                (session.open + length * (bars_done + 1) as i32).min(session.close)
            }
        };
        Self {
            replay: Some(next),
            ..self
        }
    }

    /// The last trading day of `market` whose `interval` bars may be seen:
    /// for daily bars the last complete day, for intraday ones the day the
    /// clock is in (those of its bars that have closed).
    pub fn last_day(&self, market: Market, interval: Interval, now: DateTime<Utc>) -> NaiveDate {
        if interval.is_intraday() {
            self.current_day(market, now)
        } else {
            self.visible_day(market, now)
        }
    }

    /// The date a query of `market`'s `interval` bars asked for as `field`,
    /// or the clock's [`Self::last_day`] when it asked for none; a date the
    /// clock has not reached is the caller's mistake, never quietly moved
    /// back to the clock.
    pub fn until(
        &self,
        market: Market,
        interval: Interval,
        field: &'static str,
        date: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<NaiveDate, DataError> {
        let clock = self.last_day(market, interval, now);
        match date {
            Some(date) if date > clock => Err(DataError::AfterClock { field, date, clock }),
            Some(date) => Ok(date),
            None => Ok(clock),
        }
    }
}

/// The clock as `GET /clock` shows it (WIT `market-clock`): the instant in
/// UTC and in its market's zone, the market and interval, the market's last
/// complete trading day (`date`), the session it is in (`None` between
/// sessions) and the next one to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockView {
    pub mode: &'static str,
    pub as_of: DateTime<Utc>,
    pub local: String,
    pub market: Market,
    pub interval: Interval,
    pub date: NaiveDate,
    pub session: Option<SessionTimes>,
    pub next_session: SessionTimes,
}

impl MarketClock {
    pub fn view(&self, now: DateTime<Utc>) -> ClockView {
        let at = self.instant(now);
        ClockView {
            mode: self.mode(),
            as_of: at,
            local: self.market.local(at).to_rfc3339(),
            market: self.market,
            interval: self.interval,
            date: self.date(now),
            session: self.session(now),
            next_session: self.market.next_session(at),
        }
    }
}

/// The clock as stored: `{"mode":"replay","at":...,"market":"us","interval":"1d"}`
/// or `{"mode":"live",...}`; a clock stored before it had a time
/// (`{"mode":"replay","as_of":"2010-03-05"}`) reads as the close of that day
/// on the US calendar.
#[derive(Serialize, Deserialize)]
struct Stored {
    mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing)]
    as_of: Option<NaiveDate>,
    #[serde(default = "us")]
    market: Market,
    #[serde(default = "one_day")]
    interval: Interval,
}

fn us() -> Market {
    Market::Us
}

fn one_day() -> Interval {
    Interval::OneDay
}

impl Serialize for MarketClock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Stored {
            mode: self.mode().into(),
            at: self.replay,
            as_of: None,
            market: self.market,
            interval: self.interval,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MarketClock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let stored = Stored::deserialize(deserializer)?;
        let replay = match (stored.mode.as_str(), stored.at, stored.as_of) {
            ("live", _, _) => None,
            ("replay", Some(at), _) => Some(at),
            ("replay", None, Some(date)) => Some(
                stored
                    .market
                    .close_of(
                        stored.market.last_closed_day(
                            (date + Duration::days(1))
                                .and_hms_opt(0, 0, 0)
                                .expect("midnight")
                                .and_utc(),
                        ),
                    )
                    .expect("a trading day closes"),
            ),
            _ => return Err(D::Error::custom("a clock is live, or replay with `at`")),
        };
        Ok(Self {
            replay,
            market: stored.market,
            interval: stored.interval,
        })
    }
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

    #[test]
    fn replay_clock_never_shows_the_future() {
        let clock = MarketClock::after_close(Market::Us, d(2010, 3, 5)).unwrap();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let us = Market::Us;
        assert_eq!(
            clock.until(us, Interval::OneDay, "to", None, now),
            Ok(d(2010, 3, 5))
        );
        assert_eq!(
            clock.until(us, Interval::OneDay, "to", Some(d(2010, 3, 5)), now),
            Ok(d(2010, 3, 5))
        );
        assert_eq!(
            clock.until(us, Interval::OneDay, "to", Some(d(2010, 1, 1)), now),
            Ok(d(2010, 1, 1))
        );
        let after = clock
            .until(us, Interval::OneDay, "date", Some(d(2010, 3, 8)), now)
            .unwrap_err();
        assert_eq!((after.code(), after.status()), ("invalid-date", 400));
        assert_eq!(
            after.to_string(),
            "`date` 2010-03-08 is after the market clock (2010-03-05)"
        );
    }

    #[test]
    fn mid_session_the_day_is_not_complete() {
        // 2010-03-05 12:00 ET: the US bar of the 5th is forming, Tokyo's closed.
        let clock =
            MarketClock::at(Market::Us, Interval::OneHour, utc("2010-03-05T17:00:00Z")).unwrap();
        let now = utc("2026-01-01T00:00:00Z");
        assert_eq!(clock.date(now), d(2010, 3, 4));
        assert_eq!(clock.visible_day(Market::Tse, now), d(2010, 3, 5));
        assert_eq!(clock.session(now).map(|s| s.date), Some(d(2010, 3, 5)));
    }

    #[test]
    fn instants_outside_every_session_are_refused() {
        let at = |s| MarketClock::at(Market::Tse, Interval::OneHour, utc(s));
        // 12:00 JST (lunch), 08:00 JST, a Saturday.
        for outside in [
            "2025-11-28T03:00:00Z",
            "2025-11-27T23:00:00Z",
            "2025-11-29T01:00:00Z",
        ] {
            let e = at(outside).unwrap_err();
            assert_eq!((e.code(), e.status()), ("clock-outside-session", 400));
        }
        // Opens and closes are inside: 09:00, 11:30, 15:30 JST.
        for inside in [
            "2025-11-28T00:00:00Z",
            "2025-11-28T02:30:00Z",
            "2025-11-28T06:30:00Z",
        ] {
            assert!(at(inside).is_ok(), "{inside}");
        }
        let e = MarketClock::after_close(Market::Us, d(2010, 3, 6)).unwrap_err();
        assert_eq!(e.code(), "clock-outside-session");
    }

    /// Stepping a TSE hourly clock through a day: bars end on the hour from
    /// the open, the morning's last bar at 11:30, the lunch break skipped.
    #[test]
    fn advance_by_bar_session_and_day() {
        let tse = Market::Tse;
        let mut clock =
            MarketClock::at(tse, Interval::OneHour, utc("2025-11-27T06:30:00Z")).unwrap();
        let mut ends = Vec::new();
        for _ in 0..7 {
            clock = clock.advance(Step::Bar, tse);
            ends.push(
                tse.local(clock.replay.unwrap())
                    .format("%d %H:%M")
                    .to_string(),
            );
        }
        assert_eq!(
            ends,
            [
                "28 10:00", "28 11:00", "28 11:30", "28 13:30", "28 14:30", "28 15:30", "01 10:00"
            ]
        );
        // Mid-bar, a step ends the bar in progress.
        let mid = MarketClock::at(tse, Interval::FifteenMinutes, utc("2025-11-28T00:07:00Z"))
            .unwrap()
            .advance(Step::Bar, tse);
        assert_eq!(mid.replay, Some(utc("2025-11-28T00:15:00Z")));
        // By session: the morning's close, then the afternoon's.
        let morning = MarketClock::at(tse, Interval::OneHour, utc("2025-11-28T00:00:00Z")).unwrap();
        let s1 = morning.advance(Step::Session, tse);
        assert_eq!(s1.replay, Some(utc("2025-11-28T02:30:00Z")));
        assert_eq!(
            s1.advance(Step::Session, tse).replay,
            Some(utc("2025-11-28T06:30:00Z"))
        );
        // By day from mid-session: today's close; from a close: the next day's.
        assert_eq!(
            morning.advance(Step::Day, tse).replay,
            Some(utc("2025-11-28T06:30:00Z"))
        );
        // 2010-04-02 was Good Friday: Thursday's close → Monday's.
        let daily = MarketClock::after_close(Market::Us, d(2010, 4, 1)).unwrap();
        let monday = daily.advance(Step::Bar, Market::Us);
        assert_eq!(monday.replay, Some(utc("2010-04-05T20:00:00Z")));
        assert_eq!(monday.date(utc("2026-01-01T00:00:00Z")), d(2010, 4, 5));
        let live = MarketClock::live(Market::Us);
        assert_eq!(live.advance(Step::Day, Market::Us), live);
    }

    #[test]
    fn stores_with_a_mode_tag_and_reads_dated_clocks() {
        let clock = MarketClock::after_close(Market::Us, d(2010, 3, 5)).unwrap();
        let json = serde_json::to_string(&clock).unwrap();
        assert_eq!(
            json,
            r#"{"mode":"replay","at":"2010-03-05T21:00:00Z","market":"us","interval":"1d"}"#
        );
        assert_eq!(serde_json::from_str::<MarketClock>(&json).unwrap(), clock);
        let dated: MarketClock =
            serde_json::from_str(r#"{"mode":"replay","as_of":"2010-03-05"}"#).unwrap();
        assert_eq!(dated, clock);
        // A dated clock on a Saturday stood after Friday's close.
        let saturday: MarketClock =
            serde_json::from_str(r#"{"mode":"replay","as_of":"2010-03-06"}"#).unwrap();
        assert_eq!(saturday, clock);
        let live: MarketClock = serde_json::from_str(r#"{"mode":"live"}"#).unwrap();
        assert_eq!(live, MarketClock::live(Market::Us));
    }
}
