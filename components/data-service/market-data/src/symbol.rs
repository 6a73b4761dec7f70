//! Ticker symbols: `7203.T` (Tokyo), `AAPL`, `BRK-B` (US listings),
//! `EURUSD=X` (a currency pair), `BTC-USD` (a crypto-currency pair).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DataError;
use crate::exchange::Market;

/// The quote currencies of crypto pairs (`BTC-USD`).
const CRYPTO_QUOTES: &[&str] = &["USD", "USDT", "USDC", "EUR", "JPY", "BTC", "ETH"];

/// A checked, normalised ticker: upper case, with its market.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    text: String,
    market: Market,
}

impl Symbol {
    pub fn parse(input: &str) -> Result<Self, DataError> {
        let invalid = |reason| DataError::InvalidSymbol {
            symbol: input.chars().take(32).collect(),
            reason,
        };
        let text = input.trim().to_ascii_uppercase();
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.len() > 12 {
            return Err(invalid("longer than 12 characters"));
        }
        if let Some(code) = text.strip_suffix(".T") {
            // TSE securities codes: four characters, digits (and, since 2024, letters
            // in the 2nd and 4th places: `130A`).
            let b = code.as_bytes();
            let ok = b.len() == 4
                && b[0].is_ascii_digit()
                && b[2].is_ascii_digit()
                && (b[1].is_ascii_digit() || b[1].is_ascii_uppercase())
                && (b[3].is_ascii_digit() || b[3].is_ascii_uppercase());
            return if ok {
                Ok(Self {
                    text,
                    market: Market::Tse,
                })
            } else {
                Err(invalid("a Tokyo code is four characters, e.g. 7203.T"))
            };
        }
        // Currency pairs: two ISO 4217 codes and `=X`, as Yahoo names them.
        if let Some(pair) = text.strip_suffix("=X") {
            return if pair.len() == 6 && pair.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(Self {
                    text,
                    market: Market::Fx,
                })
            } else {
                Err(invalid(
                    "a currency pair is two currency codes and =X, e.g. EURUSD=X",
                ))
            };
        }
        // Crypto-currency pairs: an asset and a quote currency (three or more
        // letters after the dash, which no US share class has).
        if let Some((asset, quote)) = text.split_once('-')
            && CRYPTO_QUOTES.contains(&quote)
        {
            return if (2..=6).contains(&asset.len())
                && asset
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                Ok(Self {
                    text,
                    market: Market::Crypto,
                })
            } else {
                Err(invalid(
                    "a crypto pair is an asset and a quote currency, e.g. BTC-USD",
                ))
            };
        }
        // US tickers: letters, with an optional class suffix (`BRK-B`; `BRK.B` is accepted as that).
        let text = text.replace('.', "-");
        let mut parts = text.split('-');
        let root = parts.next().unwrap_or_default();
        let class = parts.next();
        let ok = (1..=5).contains(&root.len())
            && root.bytes().all(|b| b.is_ascii_uppercase())
            && class.is_none_or(|c| {
                (1..=2).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_uppercase())
            })
            && parts.next().is_none();
        if ok {
            Ok(Self {
                text,
                market: Market::Us,
            })
        } else {
            Err(invalid("expected a ticker such as AAPL, BRK-B or 7203.T"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn market(&self) -> Market {
        self.market
    }

    /// The currency it is priced, bought and sold in: the quote currency
    /// of a pair (`USD` for `EURUSD=X` and `BTC-USD`), the market's
    /// otherwise (`JPY` on the TSE, `USD` for US listings).
    pub fn currency(&self) -> &str {
        match self.market {
            Market::Fx => &self.text[3..6],
            Market::Crypto => self.text.split_once('-').map_or("USD", |(_, quote)| quote),
            Market::Tse | Market::Us => self.market.exchange().currency,
        }
    }

    /// A currency pair's two currencies (`EURUSD=X` → `EUR`, `USD`): its
    /// price is the second's units per unit of the first.
    pub fn currency_pair(&self) -> Option<(&str, &str)> {
        (self.market == Market::Fx).then(|| (&self.text[0..3], &self.text[3..6]))
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Symbol {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_tickers() {
        let cases = [
            ("7203.T", "7203.T", Market::Tse),
            ("7203.t", "7203.T", Market::Tse),
            ("130A.T", "130A.T", Market::Tse),
            ("AAPL", "AAPL", Market::Us),
            (" msft ", "MSFT", Market::Us),
            ("BRK-B", "BRK-B", Market::Us),
            ("BRK.B", "BRK-B", Market::Us),
            ("EURUSD=X", "EURUSD=X", Market::Fx),
            ("usdjpy=x", "USDJPY=X", Market::Fx),
            ("BTC-USD", "BTC-USD", Market::Crypto),
            ("eth-usdt", "ETH-USDT", Market::Crypto),
        ];
        for (input, text, market) in cases {
            let symbol = Symbol::parse(input).unwrap();
            assert_eq!(
                (symbol.as_str(), symbol.market()),
                (text, market),
                "{input}"
            );
        }
    }

    #[test]
    fn every_symbol_has_the_currency_it_trades_in() {
        for (symbol, currency, pair) in [
            ("7203.T", "JPY", None),
            ("AAPL", "USD", None),
            ("EURUSD=X", "USD", Some(("EUR", "USD"))),
            ("USDJPY=X", "JPY", Some(("USD", "JPY"))),
            ("BTC-USD", "USD", None),
            ("ETH-USDT", "USDT", None),
            ("ETH-JPY", "JPY", None),
        ] {
            let symbol = Symbol::parse(symbol).unwrap();
            assert_eq!(symbol.currency(), currency, "{symbol}");
            assert_eq!(symbol.currency_pair(), pair, "{symbol}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            "",
            "   ",
            "72O3.T",
            "7203.TT",
            "AB12",
            "TOOLONGTICKER",
            "A-B-C",
            "BRK-",
            "<script>",
            "1234",
            "A1.T",
            "EURUS=X",
            "EUR1SD=X",
            "B-USD",
            "BTC.USD.X",
        ] {
            let err = Symbol::parse(bad).unwrap_err();
            assert_eq!(err.code(), "invalid-symbol", "{bad}");
            assert_eq!(err.status(), 400);
        }
    }
}
