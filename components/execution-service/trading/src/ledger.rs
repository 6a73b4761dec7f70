//! The durable ledger: the [`Book`] lives under one key of a store with
//! compare-and-swap, and every operation is a transaction over it — load,
//! apply, swap; on a lost race, again from the new value. A risk check and
//! the reservation it approves therefore commit together or not at all, on
//! one host or many (Spin's `wasi:keyvalue/atomics` over SQLite locally,
//! over Redis in the cluster).
//!
//! The events of a transaction ([`crate::events`]) commit with the book, in
//! its journal; after the swap they are appended to the ledger's event
//! blocks (`<key>/events/<block>`, 64 events each, a line per event:
//! `<sequence> <json>`), by compare-and-swap and only ever appended — an
//! event already there must be the same bytes, so none is ever rewritten;
//! the next transaction drops the written ones from the journal. Every event ever committed is therefore in its key or in the
//! stored book's journal, and [`Ledger::events`] reads them in order. With
//! an order placed, its client order id is written to `<key>/client/<id>`
//! the same way: the book keeps only those of the orders it holds, so
//! idempotency covers archived orders without the book growing
//! ([`Ledger::client_order`]).

use std::fmt;

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};

use crate::book::{Book, EquityPoint};
use crate::events::Event;

/// A loaded value (`None`: absent) and the token to swap it with.
pub type Snapshot<T> = (Option<Vec<u8>>, T);

/// A key-value store with compare-and-swap.
pub trait CasStore {
    /// What a load remembers for the swap (the value seen, or a handle to it).
    type Token;
    type Error: fmt::Display;

    fn load(&self, key: &str) -> Result<Snapshot<Self::Token>, Self::Error>;

    /// Store `value` if the key still holds what `token` saw; `Ok(false)` if not.
    fn swap(&self, token: Self::Token, value: Vec<u8>) -> Result<bool, Self::Error>;
}

impl<T: CasStore> CasStore for &T {
    type Token = T::Token;
    type Error = T::Error;

    fn load(&self, key: &str) -> Result<Snapshot<Self::Token>, Self::Error> {
        (**self).load(key)
    }

    fn swap(&self, token: Self::Token, value: Vec<u8>) -> Result<bool, Self::Error> {
        (**self).swap(token, value)
    }
}

/// One month of the equity curve: each day's point and the sequence number
/// of the event that recorded it.
type Month = BTreeMap<NaiveDate, (u64, EquityPoint)>;

/// Events as a block stores them: each sequence number and its JSON.
type Lines = Vec<(u64, Vec<u8>)>;

/// Events a block of the ledger's event log holds.
pub const EVENT_BLOCK: u64 = 64;

/// Attempts before a transaction gives up under contention.
pub const MAX_ATTEMPTS: u32 = 200;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger store: {0}")]
    Store(String),
    #[error("the stored book is unreadable: {0}")]
    Corrupt(String),
    #[error("event {0} is stored with other content than the book committed")]
    Rewritten(u64),
    #[error("gave up after {MAX_ATTEMPTS} conflicting attempts")]
    Contention,
}

impl LedgerError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(_) => "ledger-unavailable",
            Self::Corrupt(_) | Self::Rewritten(_) => "ledger-corrupt",
            Self::Contention => "ledger-contention",
        }
    }
}

/// One account's book in a store.
pub struct Ledger<S> {
    store: S,
    key: String,
    /// The book of a new account.
    opening: Book,
}

/// A book as loaded, with the stored bytes and the token to swap them with.
pub struct Loaded<T> {
    pub book: Book,
    bytes: Option<Vec<u8>>,
    token: T,
}

/// What a transaction saw and did.
#[derive(Debug)]
pub struct Committed<T> {
    pub value: T,
    pub book: Book,
    /// Attempts it took (1 without contention).
    pub attempts: u32,
}

impl<S: CasStore> Ledger<S> {
    pub fn new(store: S, key: impl Into<String>, opening: Book) -> Self {
        Self {
            store,
            key: key.into(),
            opening,
        }
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<Book, LedgerError> {
        match bytes {
            None => Ok(self.opening.clone()),
            Some(bytes) => {
                serde_json::from_slice(bytes).map_err(|e| LedgerError::Corrupt(e.to_string()))
            }
        }
    }

    /// The store (for what lives beside the book).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The book as stored (no write).
    pub fn read(&self) -> Result<Book, LedgerError> {
        let (bytes, _) = self
            .store
            .load(&self.key)
            .map_err(|e| LedgerError::Store(e.to_string()))?;
        self.decode(bytes.as_deref())
    }

    /// The book as stored, with what a transaction needs to start from it
    /// ([`Ledger::transact_from`]): one load and one decode serve both a
    /// caller's look at the book and the transaction's first attempt.
    pub fn load(&self) -> Result<Loaded<S::Token>, LedgerError> {
        let (bytes, token) = self
            .store
            .load(&self.key)
            .map_err(|e| LedgerError::Store(e.to_string()))?;
        let book = self.decode(bytes.as_deref())?;
        Ok(Loaded { book, bytes, token })
    }

    /// [`Ledger::transact`], its first attempt on `loaded` (still current if
    /// nothing was committed since; if something was, that attempt loses
    /// its race and the next loads afresh).
    pub fn transact_from<T>(
        &self,
        loaded: Loaded<S::Token>,
        op: impl FnMut(&mut Book) -> T,
    ) -> Result<Committed<T>, LedgerError> {
        self.attempts(Some(loaded), op)
    }

    /// Apply `op` to the current book and store the result atomically; an
    /// unchanged book is not written. `op` may run several times (once per
    /// attempt), each time on a fresh copy of the stored book. The events of
    /// earlier transactions are written to their keys first and leave the
    /// journal with this one; this one's are written after it commits.
    pub fn transact<T>(&self, op: impl FnMut(&mut Book) -> T) -> Result<Committed<T>, LedgerError> {
        self.attempts(None, op)
    }

    fn attempts<T>(
        &self,
        mut first: Option<Loaded<S::Token>>,
        mut op: impl FnMut(&mut Book) -> T,
    ) -> Result<Committed<T>, LedgerError> {
        // Events this transaction has seen written to their keys.
        let mut written = 0;
        for attempt in 1..=MAX_ATTEMPTS {
            let Loaded {
                mut book,
                bytes,
                token,
            } = match first.take() {
                Some(loaded) => loaded,
                None => self.load()?,
            };
            written = written.max(self.write_events(&book.journal)?);
            book.journal.retain(|(sequence, _)| *sequence > written);
            let value = op(&mut book);
            let encoded =
                serde_json::to_vec(&book).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
            let committed = bytes.as_deref() == Some(encoded.as_slice())
                || self
                    .store
                    .swap(token, encoded)
                    .map_err(|e| LedgerError::Store(e.to_string()))?;
            if committed {
                // Committed with the book: if writing them fails now, the
                // next transaction writes them.
                let _ = self.write_events(&book.journal);
                return Ok(Committed {
                    value,
                    book,
                    attempts: attempt,
                });
            }
        }
        Err(LedgerError::Contention)
    }

    /// The key of the block that holds event `sequence`.
    fn block_key(&self, sequence: u64) -> String {
        format!("{}/events/{:08}", self.key, (sequence - 1) / EVENT_BLOCK)
    }

    /// A block's events by sequence number, as stored.
    fn block(&self, key: &str) -> Result<(Lines, S::Token), LedgerError> {
        let (bytes, token) = self
            .store
            .load(key)
            .map_err(|e| LedgerError::Store(e.to_string()))?;
        let mut events = Vec::new();
        for line in bytes.unwrap_or_default().split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let at = line
                .iter()
                .position(|b| *b == b' ')
                .ok_or_else(|| LedgerError::Corrupt(format!("{key}: a line without its number")))?;
            let sequence = std::str::from_utf8(&line[..at])
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| LedgerError::Corrupt(format!("{key}: a bad sequence number")))?;
            events.push((sequence, line[at + 1..].to_vec()));
        }
        Ok((events, token))
    }

    /// Append `new` (consecutive events of one block) to the block: those
    /// already there must be the same bytes; the rest follow its last.
    fn append_block(&self, key: &str, new: &[(u64, Vec<u8>)]) -> Result<(), LedgerError> {
        for _ in 0..MAX_ATTEMPTS {
            let (stored, token) = self.block(key)?;
            let last = stored.last().map_or(0, |(n, _)| *n);
            for (sequence, bytes) in new.iter().filter(|(n, _)| *n <= last) {
                match stored.iter().find(|(n, _)| n == sequence) {
                    Some((_, there)) if there == bytes => {}
                    _ => return Err(LedgerError::Rewritten(*sequence)),
                }
            }
            let fresh: Vec<&(u64, Vec<u8>)> = new.iter().filter(|(n, _)| *n > last).collect();
            let Some((first, _)) = fresh.first() else {
                return Ok(());
            };
            // A block starts at its first number and grows without a gap.
            let expected = if last == 0 {
                (first - 1) / EVENT_BLOCK * EVENT_BLOCK + 1
            } else {
                last + 1
            };
            if *first != expected {
                return Err(LedgerError::Corrupt(format!(
                    "{key}: event {first} would follow {last}"
                )));
            }
            let mut value = Vec::new();
            let lines = stored.iter().chain(fresh);
            for (sequence, bytes) in lines {
                value.extend_from_slice(sequence.to_string().as_bytes());
                value.push(b' ');
                value.extend_from_slice(bytes);
                value.push(b'\n');
            }
            if self
                .store
                .swap(token, value)
                .map_err(|e| LedgerError::Store(e.to_string()))?
            {
                return Ok(());
            }
        }
        Err(LedgerError::Contention)
    }

    fn client_key(&self, client_order_id: &str) -> String {
        format!("{}/client/{client_order_id}", self.key)
    }

    /// The order a client order id went to, if it is in the ledger's keys
    /// (every placed order's is, once its events are written).
    pub fn client_order(&self, client_order_id: &str) -> Result<Option<String>, LedgerError> {
        let (bytes, _) = self
            .store
            .load(&self.client_key(client_order_id))
            .map_err(|e| LedgerError::Store(e.to_string()))?;
        Ok(bytes.and_then(|b| String::from_utf8(b).ok()))
    }

    /// Write committed events to their keys (and placed orders' client
    /// order ids to theirs), each only if absent: one that is there already
    /// must hold the same bytes. The last sequence number written, 0 for none.
    fn write_events(&self, journal: &[(u64, Event)]) -> Result<u64, LedgerError> {
        let mut block: Lines = Vec::new();
        for (sequence, event) in journal {
            if block
                .last()
                .is_some_and(|(n, _)| (n - 1) / EVENT_BLOCK != (sequence - 1) / EVENT_BLOCK)
            {
                self.append_block(&self.block_key(block[0].0), &block)?;
                block.clear();
            }
            let encoded =
                serde_json::to_vec(event).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
            block.push((*sequence, encoded));
        }
        if let Some((first, _)) = block.first() {
            self.append_block(&self.block_key(*first), &block)?;
        }
        let mut last = 0;
        for (sequence, event) in journal {
            match event {
                Event::OrderPlaced { record } => {
                    let key = self.client_key(&record.order.client_order_id);
                    self.write_once(&key, record.order.id.as_bytes(), *sequence)?;
                }
                Event::EquityRecorded { point } => self.record_point(*sequence, point)?,
                _ => {}
            }
            last = *sequence;
        }
        Ok(last)
    }

    fn month_key(&self, date: NaiveDate) -> String {
        format!("{}/equity/{}", self.key, date.format("%Y-%m"))
    }

    /// The equity curve's month of `point`: its point for the day, the
    /// event's if no later event's is there already (events may be written
    /// out of order by concurrent writers).
    fn record_point(&self, sequence: u64, point: &EquityPoint) -> Result<(), LedgerError> {
        let key = self.month_key(point.date);
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, token) = self
                .store
                .load(&key)
                .map_err(|e| LedgerError::Store(e.to_string()))?;
            let mut month: Month = match bytes {
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| LedgerError::Corrupt(format!("{key}: {e}")))?,
                None => Month::new(),
            };
            if month
                .get(&point.date)
                .is_some_and(|(seen, _)| *seen >= sequence)
            {
                return Ok(());
            }
            month.insert(point.date, (sequence, *point));
            let encoded =
                serde_json::to_vec(&month).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
            if self
                .store
                .swap(token, encoded)
                .map_err(|e| LedgerError::Store(e.to_string()))?
            {
                return Ok(());
            }
        }
        Err(LedgerError::Contention)
    }

    /// The whole equity curve, a point a market day, from the ledger's
    /// months and the book's latest points (which are newer than any month
    /// may be while their events are being written).
    pub fn equity_curve(&self, book: &Book) -> Result<Vec<EquityPoint>, LedgerError> {
        let mut curve: BTreeMap<NaiveDate, EquityPoint> = BTreeMap::new();
        if let (Some(first), Some(last)) = (book.equity_since, book.equity_curve.last()) {
            let mut month = first.with_day(1).unwrap_or(first);
            while month <= last.date {
                let (bytes, _) = self
                    .store
                    .load(&self.month_key(month))
                    .map_err(|e| LedgerError::Store(e.to_string()))?;
                if let Some(bytes) = bytes {
                    let points: Month = serde_json::from_slice(&bytes)
                        .map_err(|e| LedgerError::Corrupt(format!("equity {month}: {e}")))?;
                    curve.extend(points.into_iter().map(|(date, (_, point))| (date, point)));
                }
                month = month
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(NaiveDate::MAX);
            }
        }
        curve.extend(book.equity_curve.iter().map(|p| (p.date, *p)));
        Ok(curve.into_values().collect())
    }

    /// Store `value` under `key` unless it is there; other bytes there are
    /// event `sequence` rewritten.
    fn write_once(&self, key: &str, value: &[u8], sequence: u64) -> Result<(), LedgerError> {
        for _ in 0..2 {
            let (current, token) = self
                .store
                .load(key)
                .map_err(|e| LedgerError::Store(e.to_string()))?;
            match current {
                Some(stored) if stored == value => return Ok(()),
                Some(_) => return Err(LedgerError::Rewritten(sequence)),
                None => {
                    if self
                        .store
                        .swap(token, value.to_vec())
                        .map_err(|e| LedgerError::Store(e.to_string()))?
                    {
                        return Ok(());
                    }
                    // Written by another writer meanwhile: compare it.
                }
            }
        }
        Ok(())
    }

    /// Up to `limit` events after sequence number `after`, in order, from
    /// their keys or, for the newest, from the stored book's journal.
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<(u64, Event)>, LedgerError> {
        let book = self.read()?;
        let mut out = Vec::new();
        let mut block: Option<(String, Lines)> = None;
        for sequence in (after + 1..=book.events).take(limit) {
            let key = self.block_key(sequence);
            if block.as_ref().is_none_or(|(k, _)| *k != key) {
                let (stored, _) = self.block(&key)?;
                block = Some((key, stored));
            }
            let stored = block
                .as_ref()
                .map(|(_, s)| s.as_slice())
                .unwrap_or_default();
            let event = match stored.iter().find(|(n, _)| *n == sequence) {
                Some((_, bytes)) => serde_json::from_slice(bytes)
                    .map_err(|e| LedgerError::Corrupt(format!("event {sequence}: {e}")))?,
                None => self.event(&book, sequence)?,
            };
            out.push((sequence, event));
        }
        Ok(out)
    }

    /// Event `sequence` of `book` (as read): from its block or the book's journal.
    pub fn event(&self, book: &Book, sequence: u64) -> Result<Event, LedgerError> {
        let (stored, _) = self.block(&self.block_key(sequence))?;
        match stored.into_iter().find(|(n, _)| *n == sequence) {
            Some((_, bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| LedgerError::Corrupt(format!("event {sequence}: {e}"))),
            None => book
                .journal
                .iter()
                .find(|(s, _)| *s == sequence)
                .map(|(_, event)| event.clone())
                .ok_or_else(|| LedgerError::Corrupt(format!("event {sequence} is missing"))),
        }
    }
}

/// An in-memory [`CasStore`] (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

impl CasStore for MemoryStore {
    type Token = (String, Option<Vec<u8>>);
    type Error = std::convert::Infallible;

    fn load(&self, key: &str) -> Result<Snapshot<Self::Token>, Self::Error> {
        let value = self.values.lock().expect("lock").get(key).cloned();
        Ok((value.clone(), (key.to_string(), value)))
    }

    fn swap(&self, (key, seen): Self::Token, value: Vec<u8>) -> Result<bool, Self::Error> {
        let mut values = self.values.lock().expect("lock");
        if values.get(&key) != seen.as_ref() {
            return Ok(false);
        }
        values.insert(key, value);
        Ok(true)
    }
}
