//! `spin:key-value` stores.
//!
//! A store is a label (`default`, `cache`, ...) bound to a backend by the
//! runtime config. With no runtime config, `default` is a SQLite file under
//! the state directory, as in Spin, so data survives restarts. Backends:
//! SQLite (file or in-memory) and Redis. A component may open only the
//! labels its manifest lists in `key_value_stores`.
//!
//! Redis keys are stored as Spin stores them (unprefixed), so two labels on
//! one Redis database would share keys: the host refuses that at start and
//! asks for a database each (`redis://host/1`). A Redis that stops answering
//! costs a request at most [`REDIS_COMMAND_TIMEOUT`] and then
//! [`KvError::Unavailable`]; the connection is rebuilt on the next request
//! (at most one attempt per [`REDIS_RECONNECT_BACKOFF`]), so the host serves
//! again by itself once Redis is back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The longest one Redis command (or connection attempt) may take.
pub const REDIS_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection attempt, requests fail at once for this long
/// instead of each waiting for its own attempt.
pub const REDIS_RECONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// Keys a `list-keys` page holds at most.
pub const KEYS_PAGE: usize = 1000;

/// Why a key-value operation failed; mapped to the WIT `error` variant.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("no such store")]
    NoSuchStore,
    #[error("access denied")]
    AccessDenied,
    /// The backend did not answer in time or is not reachable; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

impl KvError {
    fn other(e: impl std::fmt::Display) -> Self {
        Self::Other(e.to_string())
    }
}

/// A store backend, shared by every request of every component that opens it.
#[derive(Clone)]
pub enum KvBackend {
    Sqlite(SqliteStore),
    Redis(RedisStore),
}

impl std::fmt::Debug for KvBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(s) => write!(f, "Sqlite({})", s.label),
            Self::Redis(r) => write!(f, "Redis({})", r.url),
        }
    }
}

impl KvBackend {
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            Self::Sqlite(s) => {
                let (s, key) = (s.clone(), key.to_string());
                s.blocking(move |conn, label| {
                    conn.query_row(
                        "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                        (label, key),
                        |row| row.get::<_, Vec<u8>>(0),
                    )
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
                })
                .await
            }
            Self::Redis(r) => r.run(|mut c| async move { c.get(key).await }).await,
        }
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        match self {
            Self::Sqlite(s) => {
                let (s, key) = (s.clone(), key.to_string());
                s.blocking(move |conn, label| {
                    conn.execute(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
                        (label, key, value),
                    )
                    .map(|_| ())
                })
                .await
            }
            Self::Redis(r) => r.run(|mut c| async move { c.set(key, value).await }).await,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        match self {
            Self::Sqlite(s) => {
                let (s, key) = (s.clone(), key.to_string());
                s.blocking(move |conn, label| {
                    conn.execute(
                        "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                        (label, key),
                    )
                    .map(|_| ())
                })
                .await
            }
            Self::Redis(r) => r.run(|mut c| async move { c.del(key).await }).await,
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        match self {
            Self::Sqlite(_) => Ok(self.get(key).await?.is_some()),
            Self::Redis(r) => r.run(|mut c| async move { c.exists(key).await }).await,
        }
    }

    /// Set `key` to `value` only if it still holds `expected` (`None`: absent).
    /// `Ok(false)` when another writer got there first. Atomic on both
    /// backends, across processes too: one SQL statement, one Lua script.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, KvError> {
        match self {
            Self::Sqlite(s) => {
                let (s, key) = (s.clone(), key.to_string());
                s.blocking(move |conn, label| {
                    let changed = match expected {
                        Some(expected) => conn.execute(
                            "UPDATE spin_key_value SET value = ?4
                             WHERE store = ?1 AND key = ?2 AND value = ?3",
                            (label, key, expected, value),
                        )?,
                        None => conn.execute(
                            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                             ON CONFLICT(store, key) DO NOTHING",
                            (label, key, value),
                        )?,
                    };
                    Ok(changed == 1)
                })
                .await
            }
            Self::Redis(r) => {
                let script = redis::Script::new(CAS_SCRIPT);
                let mut invocation = script.prepare_invoke();
                invocation.key(key);
                match expected {
                    Some(expected) => invocation.arg(1).arg(expected),
                    None => invocation.arg(0).arg(Vec::<u8>::new()),
                };
                invocation.arg(value);
                r.run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
                    .await
                    .map(|swapped| swapped == 1)
            }
        }
    }

    /// Add `delta` to the integer (decimal text) at `key`, absent counting as 0.
    /// On SQLite the counter is kept as Spin's SQLite store keeps it (eight
    /// little-endian bytes, what `get` then returns); on Redis as Redis does
    /// (`INCRBY`, decimal text), as in Spin.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        match self {
            Self::Sqlite(s) => {
                let (s, key) = (s.clone(), key.to_string());
                s.blocking(move |conn, label| {
                    let tx =
                        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    let current: Option<Vec<u8>> = tx
                        .query_row(
                            "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                            (label, &key),
                            |row| row.get(0),
                        )
                        .map(Some)
                        .or_else(|e| match e {
                            rusqlite::Error::QueryReturnedNoRows => Ok(None),
                            e => Err(e),
                        })?;
                    let current = match current {
                        None => 0,
                        Some(bytes) => sqlite_counter(&bytes).ok_or_else(|| {
                            rusqlite::Error::InvalidParameterName(format!(
                                "the value at `{key}` is not an integer"
                            ))
                        })?,
                    };
                    let next = current.checked_add(delta).ok_or_else(|| {
                        rusqlite::Error::InvalidParameterName("increment overflows".into())
                    })?;
                    tx.execute(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
                        (label, &key, next.to_le_bytes().to_vec()),
                    )?;
                    tx.commit()?;
                    Ok(next)
                })
                .await
            }
            Self::Redis(r) => r.run(|mut c| async move { c.incr(key, delta).await }).await,
        }
    }

    pub async fn get_keys(&self) -> Result<Vec<String>, KvError> {
        match self {
            Self::Sqlite(s) => {
                s.clone()
                    .blocking(|conn, label| {
                        let mut stmt =
                            conn.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
                        let keys = stmt.query_map([label], |row| row.get::<_, String>(0))?;
                        keys.collect()
                    })
                    .await
            }
            Self::Redis(_) => {
                let mut keys = Vec::new();
                let mut cursor = None;
                loop {
                    let (page, next) = self.list_keys(cursor).await?;
                    keys.extend(page);
                    match next {
                        Some(next) => cursor = Some(next),
                        None => return Ok(keys),
                    }
                }
            }
        }
    }

    /// One page of keys (at most [`KEYS_PAGE`], in no promised order) and the
    /// cursor of the next page, `None` after the last: SQLite pages by key,
    /// Redis by its `SCAN` cursor, so no call walks the whole store.
    pub async fn list_keys(
        &self,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        match self {
            Self::Sqlite(s) => {
                s.clone()
                    .blocking(move |conn, label| {
                        let mut stmt = conn.prepare_cached(
                            "SELECT key FROM spin_key_value WHERE store = ?1 AND key > ?2
                             ORDER BY key LIMIT ?3",
                        )?;
                        let after = cursor.unwrap_or_default();
                        let keys: Vec<String> = stmt
                            .query_map((label, after, KEYS_PAGE as i64), |row| row.get(0))?
                            .collect::<rusqlite::Result<_>>()?;
                        let next = (keys.len() == KEYS_PAGE).then(|| keys[KEYS_PAGE - 1].clone());
                        Ok((keys, next))
                    })
                    .await
            }
            Self::Redis(r) => {
                let at: u64 = match cursor.as_deref() {
                    None => 0,
                    Some(c) => c
                        .parse()
                        .map_err(|_| KvError::other(format!("`{c}` is not a key cursor")))?,
                };
                let (next, keys): (u64, Vec<String>) = r
                    .run(|mut c| async move {
                        redis::cmd("SCAN")
                            .arg(at)
                            .arg("COUNT")
                            .arg(KEYS_PAGE)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                Ok((keys, (next != 0).then(|| next.to_string())))
            }
        }
    }
}

/// Compare-and-swap on Redis: `ARGV[1]` 1 if a value is expected (`ARGV[2]`), 0 if
/// the key must be absent; `ARGV[3]` the new value. Returns 1 if swapped.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
    if current ~= ARGV[2] then return 0 end
elseif current then
    return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

/// A counter's value in a SQLite store: Spin's eight little-endian bytes, or
/// the decimal text this host wrote before it kept them as Spin does (eight
/// bytes that are all digits are text: as bytes they would exceed 3.4e18).
fn sqlite_counter(bytes: &[u8]) -> Option<i64> {
    if let Ok(le) = <[u8; 8]>::try_from(bytes)
        && !bytes.iter().all(u8::is_ascii_digit)
    {
        return Some(i64::from_le_bytes(le));
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// A label's rows in a SQLite database (Spin's schema: one table, keyed by store and key).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<rusqlite::Connection>>,
    label: String,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, or in memory with `None`.
    pub fn open(path: Option<&Path>, label: &str) -> anyhow::Result<Self> {
        let conn = match path {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("failed to create {}", dir.display()))?;
                }
                rusqlite::Connection::open(path)
                    .with_context(|| format!("failed to open {}", path.display()))?
            }
            None => rusqlite::Connection::open_in_memory()?,
        };
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
             );",
        )
        .context("failed to prepare the key-value table")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            label: label.to_string(),
        })
    }

    async fn blocking<T: Send + 'static>(
        self,
        op: impl FnOnce(&mut rusqlite::Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, KvError> {
        tokio::task::spawn_blocking(move || {
            let mut conn = self
                .conn
                .lock()
                .map_err(|_| KvError::other("store lock poisoned"))?;
            op(&mut conn, &self.label).map_err(KvError::other)
        })
        .await
        .map_err(KvError::other)?
    }
}

/// A Redis database used as a key-value store.
#[derive(Clone)]
pub struct RedisStore {
    url: String,
    client: redis::Client,
    link: Arc<tokio::sync::Mutex<RedisLink>>,
}

/// The shared connection, or when the last attempt to make one failed.
#[derive(Default)]
struct RedisLink {
    conn: Option<ConnectionManager>,
    failed_at: Option<Instant>,
}

impl RedisStore {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).with_context(|| format!("invalid redis url `{url}`"))?;
        Ok(Self {
            url: url.to_string(),
            client,
            link: Arc::default(),
        })
    }

    /// The server and database this store lives in (`host:port/db`), to
    /// tell whether two labels would share keys.
    fn database(&self) -> String {
        let info = self.client.get_connection_info();
        format!("{}/{}", info.addr, info.redis.db)
    }

    /// The shared connection, made on first use and again after a failure,
    /// with bounded waits throughout.
    async fn conn(&self) -> Result<ConnectionManager, KvError> {
        let mut link = self.link.lock().await;
        if let Some(conn) = &link.conn {
            return Ok(conn.clone());
        }
        if link
            .failed_at
            .is_some_and(|at| at.elapsed() < REDIS_RECONNECT_BACKOFF)
        {
            return Err(KvError::Unavailable("redis is not reachable".into()));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_COMMAND_TIMEOUT)
            .set_response_timeout(REDIS_COMMAND_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(REDIS_RECONNECT_BACKOFF.as_millis() as u64);
        let made = tokio::time::timeout(
            REDIS_COMMAND_TIMEOUT,
            self.client.get_connection_manager_with_config(config),
        )
        .await;
        match made {
            Ok(Ok(conn)) => {
                tracing::info!(url = %self.url, "connected to redis");
                link.failed_at = None;
                link.conn = Some(conn.clone());
                Ok(conn)
            }
            Ok(Err(e)) => {
                link.failed_at = Some(Instant::now());
                tracing::warn!(url = %self.url, "failed to connect to redis: {e}");
                Err(KvError::Unavailable("redis is not reachable".into()))
            }
            Err(_) => {
                link.failed_at = Some(Instant::now());
                tracing::warn!(url = %self.url, "connecting to redis timed out");
                Err(KvError::Unavailable("redis did not answer".into()))
            }
        }
    }

    /// Run one command on the shared connection within [`REDIS_COMMAND_TIMEOUT`].
    /// A command that fails for want of a connection drops it, so the next
    /// request builds a fresh one rather than waiting on a dead one.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        match tokio::time::timeout(REDIS_COMMAND_TIMEOUT, op(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e))
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout() =>
            {
                self.drop_connection(&format!("{e}")).await;
                Err(KvError::Unavailable("redis connection lost".into()))
            }
            Ok(Err(e)) => Err(KvError::other(e)),
            Err(_) => {
                self.drop_connection("command timed out").await;
                Err(KvError::Unavailable("redis did not answer".into()))
            }
        }
    }

    async fn drop_connection(&self, why: &str) {
        let mut link = self.link.lock().await;
        if link.conn.take().is_some() {
            tracing::warn!(url = %self.url, "dropping the redis connection: {why}");
        }
    }

    /// Whether Redis answers a `PING` now (for readiness).
    pub async fn ping(&self) -> Result<(), KvError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}

/// Every store the application can open, by label.
#[derive(Debug, Clone, Default)]
pub struct KvStores {
    stores: HashMap<String, KvBackend>,
}

/// How a label is backed, as read from the runtime config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvStoreConfig {
    /// SQLite at a path; `None` keeps it in memory.
    Sqlite(Option<PathBuf>),
    Redis(String),
}

impl KvStores {
    /// Build the stores: configured labels, plus `default` as SQLite under `state_dir`.
    pub fn new(
        configured: &HashMap<String, KvStoreConfig>,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut stores = HashMap::new();
        let mut sqlite_files: HashMap<PathBuf, SqliteStore> = HashMap::new();
        let mut redis_databases: Vec<(String, String)> = Vec::new();
        let default_path = state_dir.join("sqlite_key_value.db");
        let mut entries: Vec<(String, KvStoreConfig)> = configured
            .iter()
            .map(|(label, config)| (label.clone(), config.clone()))
            .collect();
        if !configured.contains_key("default") {
            entries.push(("default".into(), KvStoreConfig::Sqlite(Some(default_path))));
        }
        for (label, config) in entries {
            let backend = match config {
                KvStoreConfig::Sqlite(Some(path)) => {
                    // Labels in one file share its connection (and its lock).
                    let store = match sqlite_files.get(&path) {
                        Some(shared) => SqliteStore {
                            conn: shared.conn.clone(),
                            label: label.clone(),
                        },
                        None => {
                            let store = SqliteStore::open(Some(&path), &label)?;
                            sqlite_files.insert(path, store.clone());
                            store
                        }
                    };
                    KvBackend::Sqlite(store)
                }
                KvStoreConfig::Sqlite(None) => KvBackend::Sqlite(SqliteStore::open(None, &label)?),
                KvStoreConfig::Redis(url) => {
                    let store = RedisStore::new(&url)?;
                    let database = store.database();
                    if let Some((other, _)) = redis_databases.iter().find(|(_, db)| *db == database)
                    {
                        bail!(
                            "key-value stores `{other}` and `{label}` are the same Redis database \
                             ({database}) and would share keys; give each its own database \
                             (e.g. redis://host:6379/1)"
                        );
                    }
                    redis_databases.push((label.clone(), database));
                    KvBackend::Redis(store)
                }
            };
            stores.insert(label, backend);
        }
        Ok(Self { stores })
    }

    /// Open `label` for a component allowed the labels in `granted`.
    pub fn open(&self, label: &str, granted: &[String]) -> Result<KvBackend, KvError> {
        if !granted.iter().any(|g| g == label) {
            return Err(KvError::AccessDenied);
        }
        self.stores.get(label).cloned().ok_or(KvError::NoSuchStore)
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(String::as_str)
    }

    /// Each Redis-backed label and whether its Redis answers now.
    pub async fn redis_health(&self) -> Vec<(String, Result<(), KvError>)> {
        let mut health = Vec::new();
        for (label, backend) in &self.stores {
            if let KvBackend::Redis(store) = backend {
                health.push((label.clone(), store.ping().await));
            }
        }
        health.sort_by(|a, b| a.0.cmp(&b.0));
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_store_round_trips_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let stores = KvStores::new(&HashMap::new(), dir.path()).unwrap();
        let granted = vec!["default".to_string()];
        let store = stores.open("default", &granted).unwrap();
        assert_eq!(store.get("k").await.unwrap(), None);
        store.set("k", b"v1".to_vec()).await.unwrap();
        store.set("k", b"v2".to_vec()).await.unwrap();
        store.set("other", b"x".to_vec()).await.unwrap();
        assert!(store.exists("k").await.unwrap());
        let mut keys = store.get_keys().await.unwrap();
        keys.sort();
        assert_eq!(keys, ["k", "other"]);
        store.delete("other").await.unwrap();
        drop(stores);

        let reopened = KvStores::new(&HashMap::new(), dir.path()).unwrap();
        let store = reopened.open("default", &granted).unwrap();
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
        assert!(!store.exists("other").await.unwrap());
    }

    #[tokio::test]
    async fn sqlite_compare_and_swap_and_increment() {
        let dir = tempfile::tempdir().unwrap();
        let stores = KvStores::new(&HashMap::new(), dir.path()).unwrap();
        let store = stores.open("default", &["default".to_string()]).unwrap();
        assert!(
            store
                .compare_and_swap("k", None, b"1".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !store
                .compare_and_swap("k", None, b"2".to_vec())
                .await
                .unwrap(),
            "the key exists now"
        );
        assert!(
            !store
                .compare_and_swap("k", Some(b"0".to_vec()), b"2".to_vec())
                .await
                .unwrap(),
            "a stale expectation loses"
        );
        assert!(
            store
                .compare_and_swap("k", Some(b"1".to_vec()), b"2".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"2"[..]));
        // A counter written as text (by this host before) counts on...
        assert_eq!(store.increment("k", 40).await.unwrap(), 42);
        assert_eq!(store.increment("n", -3).await.unwrap(), -3);
        // ...and is kept as Spin's SQLite store keeps it: `get` sees the bytes.
        assert_eq!(
            store.get("k").await.unwrap(),
            Some(42i64.to_le_bytes().to_vec())
        );
        assert_eq!(store.increment("k", 1).await.unwrap(), 43);
        store.set("digits", b"12345678".to_vec()).await.unwrap();
        assert_eq!(store.increment("digits", 1).await.unwrap(), 12_345_679);
        store.set("text", b"abc".to_vec()).await.unwrap();
        assert!(store.increment("text", 1).await.is_err());
    }

    #[tokio::test]
    async fn labels_sharing_a_file_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let config = HashMap::from([
            ("a".to_string(), KvStoreConfig::Sqlite(Some(path.clone()))),
            ("b".to_string(), KvStoreConfig::Sqlite(Some(path))),
        ]);
        let stores = KvStores::new(&config, dir.path()).unwrap();
        let granted = vec!["a".to_string(), "b".to_string()];
        stores
            .open("a", &granted)
            .unwrap()
            .set("k", b"a".to_vec())
            .await
            .unwrap();
        assert_eq!(
            stores.open("b", &granted).unwrap().get("k").await.unwrap(),
            None
        );
    }

    #[test]
    fn access_is_checked_before_existence() {
        let dir = tempfile::tempdir().unwrap();
        let stores = KvStores::new(&HashMap::new(), dir.path()).unwrap();
        assert!(matches!(
            stores.open("default", &[]),
            Err(KvError::AccessDenied)
        ));
        let granted = vec!["ghost".to_string()];
        assert!(matches!(
            stores.open("ghost", &granted),
            Err(KvError::NoSuchStore)
        ));
    }
}
