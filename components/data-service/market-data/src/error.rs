use thiserror::Error;

/// Everything that can go wrong in market data, each with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DataError {
    #[error("invalid symbol `{symbol}`: {reason}")]
    InvalidSymbol {
        symbol: String,
        reason: &'static str,
    },
    #[error("unknown symbol `{0}`")]
    UnknownSymbol(String),
    #[error("invalid range: {0}")]
    InvalidRange(String),
    #[error("`{field}` {date} is after the market clock ({clock})")]
    AfterClock {
        field: &'static str,
        date: chrono::NaiveDate,
        clock: chrono::NaiveDate,
    },
    /// A replay clock set where its market does not trade.
    #[error(
        "{at} is outside every session of {market:?} (a clock stands in a session, its close included)"
    )]
    ClockOutsideSession {
        at: String,
        market: crate::exchange::Market,
    },
    #[error("bundled history is corrupt: {0}")]
    CorruptHistory(&'static str),
}

impl DataError {
    /// The stable, machine-readable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidSymbol { .. } => "invalid-symbol",
            Self::UnknownSymbol(_) => "unknown-symbol",
            Self::InvalidRange(_) => "invalid-range",
            Self::AfterClock { field, .. } => field_code(field),
            Self::ClockOutsideSession { .. } => "clock-outside-session",
            Self::CorruptHistory(_) => "corrupt-history",
        }
    }

    /// The HTTP status that fits: the caller's mistake or ours.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidSymbol { .. }
            | Self::InvalidRange(_)
            | Self::AfterClock { .. }
            | Self::ClockOutsideSession { .. } => 400,
            Self::UnknownSymbol(_) => 404,
            Self::CorruptHistory(_) => 500,
        }
    }
}

/// The code of a bad query or body field: `invalid-<field>`.
pub fn field_code(field: &str) -> &'static str {
    match field {
        "from" => "invalid-from",
        "to" => "invalid-to",
        "date" => "invalid-date",
        "as_of" => "invalid-as_of",
        _ => "invalid-field",
    }
}
