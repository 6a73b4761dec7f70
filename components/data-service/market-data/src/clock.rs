//! The market clock: the system's "now".
//!
//! With live providers it is wall time. With the bundled history it is a
//! replay clock standing at the end of a past trading day, moved by the
//! caller (a variable at start, the admin endpoint after), so that every
//! service can run "as of" that day and no query ever sees a later bar.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::exchange::Market;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum MarketClock {
    /// Wall time.
    Live,
    /// After the close of `as_of`: bars dated `as_of` and earlier are visible.
    Replay { as_of: NaiveDate },
}

impl MarketClock {
    /// The last date whose bars may be seen, given the wall time `now`.
    pub fn as_of(&self, now: DateTime<Utc>) -> NaiveDate {
        match self {
            Self::Live => now.date_naive(),
            Self::Replay { as_of } => *as_of,
        }
    }

    /// Move a replay clock to the next trading day of `market`; a live clock stays.
    pub fn advance(self, market: Market) -> Self {
        match self {
            Self::Live => Self::Live,
            Self::Replay { as_of } => Self::Replay {
                as_of: market.next_trading_day(as_of),
            },
        }
    }

    /// The date a query asked for as `field`, or the clock's when it asked
    /// for none; a date the clock has not reached is the caller's mistake,
    /// never quietly moved back to the clock.
    pub fn until(
        &self,
        field: &'static str,
        date: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<NaiveDate, DataError> {
        let clock = self.as_of(now);
        match date {
            Some(date) if date > clock => Err(DataError::AfterClock { field, date, clock }),
            Some(date) => Ok(date),
            None => Ok(clock),
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
    fn replay_clock_never_shows_the_future() {
        let clock = MarketClock::Replay {
            as_of: d(2010, 3, 5),
        };
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(clock.until("to", None, now), Ok(d(2010, 3, 5)));
        assert_eq!(
            clock.until("to", Some(d(2010, 3, 5)), now),
            Ok(d(2010, 3, 5))
        );
        assert_eq!(
            clock.until("to", Some(d(2010, 1, 1)), now),
            Ok(d(2010, 1, 1))
        );
        let after = clock.until("date", Some(d(2010, 3, 8)), now).unwrap_err();
        assert_eq!((after.code(), after.status()), ("invalid-date", 400));
        assert_eq!(
            after.to_string(),
            "`date` 2010-03-08 is after the market clock (2010-03-05)"
        );
    }

    #[test]
    fn advance_moves_to_the_next_trading_day() {
        // 2010-04-02 was Good Friday: Thursday → Monday.
        let clock = MarketClock::Replay {
            as_of: d(2010, 4, 1),
        };
        assert_eq!(
            clock.advance(Market::Us),
            MarketClock::Replay {
                as_of: d(2010, 4, 5)
            }
        );
        assert_eq!(MarketClock::Live.advance(Market::Us), MarketClock::Live);
    }

    #[test]
    fn serialises_with_a_mode_tag() {
        let clock = MarketClock::Replay {
            as_of: d(2010, 3, 5),
        };
        let json = serde_json::to_string(&clock).unwrap();
        assert_eq!(json, r#"{"mode":"replay","as_of":"2010-03-05"}"#);
        assert_eq!(serde_json::from_str::<MarketClock>(&json).unwrap(), clock);
    }
}
