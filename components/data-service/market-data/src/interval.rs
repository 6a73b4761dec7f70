//! Bar intervals and how long a fetched series of each stays fresh.

use chrono::Duration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Interval {
    #[serde(rename = "1m")]
    OneMinute,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "15m")]
    FifteenMinutes,
    #[serde(rename = "1h")]
    OneHour,
    #[serde(rename = "1d")]
    OneDay,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "1m" => Self::OneMinute,
            "5m" => Self::FiveMinutes,
            "15m" => Self::FifteenMinutes,
            "1h" | "60m" => Self::OneHour,
            "1d" => Self::OneDay,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneMinute => "1m",
            Self::FiveMinutes => "5m",
            Self::FifteenMinutes => "15m",
            Self::OneHour => "1h",
            Self::OneDay => "1d",
        }
    }

    pub fn length(self) -> Duration {
        match self {
            Self::OneMinute => Duration::minutes(1),
            Self::FiveMinutes => Duration::minutes(5),
            Self::FifteenMinutes => Duration::minutes(15),
            Self::OneHour => Duration::hours(1),
            Self::OneDay => Duration::days(1),
        }
    }

    pub fn is_intraday(self) -> bool {
        self != Self::OneDay
    }

    /// How long a fetched series stays fresh: `daily` (configured) for daily
    /// bars; half a bar, and at least 30 s, for intraday ones, so a new bar
    /// is seen within half its length.
    pub fn ttl(self, daily: Duration) -> Duration {
        if self.is_intraday() {
            (self.length() / 2).max(Duration::seconds(30))
        } else {
            daily
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_follows_the_interval() {
        let daily = Duration::seconds(900);
        let cases = [
            (Interval::OneMinute, 30),
            (Interval::FiveMinutes, 150),
            (Interval::FifteenMinutes, 450),
            (Interval::OneHour, 1800),
            (Interval::OneDay, 900),
        ];
        for (interval, secs) in cases {
            assert_eq!(interval.ttl(daily).num_seconds(), secs, "{interval:?}");
            assert_eq!(Interval::parse(interval.as_str()), Some(interval));
        }
        assert_eq!(Interval::parse("2h"), None);
    }
}
