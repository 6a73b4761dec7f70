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
            Self::CorruptHistory(_) => "corrupt-history",
        }
    }

    /// The HTTP status that fits: the caller's mistake or ours.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidSymbol { .. } | Self::InvalidRange(_) => 400,
            Self::UnknownSymbol(_) => 404,
            Self::CorruptHistory(_) => 500,
        }
    }
}
