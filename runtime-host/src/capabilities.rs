//! The Spin capabilities a component imports, beside WASI:
//! `fermyon:spin/variables`, `fermyon:spin/key-value`, `fermyon:spin/redis`
//! `fermyon:spin/sqlite`, `fermyon:spin/postgres` and `fermyon:spin/mqtt`
//! (version 2.0.0, what spin-sdk 5.2 components import; SQLite, Postgres and
//! MQTT are implemented in [`crate::sqlite`], [`crate::postgres`] and
//! [`crate::mqtt`]), `spin:postgres` 3.0.0 and 4.0.0 (as in Spin 3.x), and
//! `wasi:keyvalue/store` + `wasi:keyvalue/atomics` (0.2.0-draft2, as in Spin 3)
//! over the same stores, for compare-and-swap. One `bindgen!` site;
//! each interface is implemented on [`HostState`] against the grants of the
//! component the store belongs to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::key_value::{KvBackend, KvError};
use crate::state::HostState;

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "fermyon:spin/spin-host",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": crate::key_value::KvBackend,
            "fermyon:spin/redis.connection": crate::capabilities::RedisConnection,
            "fermyon:spin/sqlite.connection": crate::sqlite::SqliteConnection,
            "fermyon:spin/mqtt.connection": crate::mqtt::MqttConnection,
            "fermyon:spin/postgres.connection": crate::postgres::PgConnection,
            "spin:postgres/postgres@3.0.0.connection": crate::postgres::PgConnection,
            "spin:postgres/postgres@4.0.0.connection": crate::postgres::PgConnection,
            "wasi:keyvalue/store.bucket": crate::key_value::KvBackend,
            "wasi:keyvalue/atomics.cas": crate::capabilities::CasHandle,
        },
    });
}

use generated::fermyon::spin::{key_value, redis, variables};
use generated::wasi::keyvalue::{atomics, store as wasi_kv};

/// A `wasi:keyvalue/atomics` CAS handle: the value of `key` when it was made.
pub struct CasHandle {
    bucket: KvBackend,
    key: String,
    current: Option<Vec<u8>>,
}

/// An open `spin:redis` connection.
#[derive(Clone)]
pub struct RedisConnection {
    conn: ::redis::aio::ConnectionManager,
}

/// Connections to Redis servers, shared by all requests and keyed by address,
/// so a component's `open` per request costs no new TCP connection.
#[derive(Clone, Default)]
pub struct RedisPool {
    conns: Arc<Mutex<HashMap<String, ::redis::aio::ConnectionManager>>>,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool").finish_non_exhaustive()
    }
}

impl RedisPool {
    async fn connect(
        &self,
        address: &str,
    ) -> Result<::redis::aio::ConnectionManager, redis::Error> {
        if let Some(conn) = self.conns.lock().ok().and_then(|c| c.get(address).cloned()) {
            return Ok(conn);
        }
        let client = ::redis::Client::open(address).map_err(|_| redis::Error::InvalidAddress)?;
        let conn = client
            .get_connection_manager()
            .await
            .map_err(|e| redis::Error::Other(format!("failed to connect: {e}")))?;
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(address.to_string(), conn.clone());
        }
        Ok(conn)
    }
}

/// Add the Spin interfaces to a linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    generated::SpinHost::add_to_linker::<_, HasSelf<HostState>>(linker, |state| state)
        .map_err(anyhow::Error::from)
        .context("failed to add the Spin interfaces to the linker")
}

impl variables::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if crate::manifest::check_variable_name(&name).is_err() {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(self
            .component
            .variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(name)))
    }
}

fn kv_error(e: KvError) -> key_value::Error {
    match e {
        KvError::NoSuchStore => key_value::Error::NoSuchStore,
        KvError::AccessDenied => key_value::Error::AccessDenied,
        // A stable prefix the components map to 503 `store-unavailable`.
        e @ KvError::Unavailable(_) => key_value::Error::Other(format!("store-unavailable: {e}")),
        KvError::Other(msg) => key_value::Error::Other(msg),
    }
}

impl key_value::Host for HostState {}

impl key_value::HostStore for HostState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvBackend>, key_value::Error>> {
        let backend = match self.app.kv.open(&label, &self.component.key_value_stores) {
            Ok(backend) => backend,
            Err(e) => return Ok(Err(kv_error(e))),
        };
        Ok(Ok(self.table.push(backend)?))
    }

    async fn get(
        &mut self,
        store: Resource<KvBackend>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = self.table.get(&store)?.clone();
        Ok(store.get(&key).await.map_err(kv_error))
    }

    async fn set(
        &mut self,
        store: Resource<KvBackend>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?.clone();
        Ok(store.set(&key, value).await.map_err(kv_error))
    }

    async fn delete(
        &mut self,
        store: Resource<KvBackend>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?.clone();
        Ok(store.delete(&key).await.map_err(kv_error))
    }

    async fn exists(
        &mut self,
        store: Resource<KvBackend>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let store = self.table.get(&store)?.clone();
        Ok(store.exists(&key).await.map_err(kv_error))
    }

    async fn get_keys(
        &mut self,
        store: Resource<KvBackend>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let store = self.table.get(&store)?.clone();
        Ok(store.get_keys().await.map_err(kv_error))
    }

    async fn drop(&mut self, store: Resource<KvBackend>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

fn wasi_kv_error(e: KvError) -> wasi_kv::Error {
    match e {
        KvError::NoSuchStore => wasi_kv::Error::NoSuchStore,
        KvError::AccessDenied => wasi_kv::Error::AccessDenied,
        e @ KvError::Unavailable(_) => wasi_kv::Error::Other(format!("store-unavailable: {e}")),
        KvError::Other(msg) => wasi_kv::Error::Other(msg),
    }
}

impl wasi_kv::Host for HostState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<KvBackend>, wasi_kv::Error>> {
        match self
            .app
            .kv
            .open(&identifier, &self.component.key_value_stores)
        {
            Ok(backend) => Ok(Ok(self.table.push(backend)?)),
            Err(e) => Ok(Err(wasi_kv_error(e))),
        }
    }
}

impl wasi_kv::HostBucket for HostState {
    async fn get(
        &mut self,
        bucket: Resource<KvBackend>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        let bucket = self.table.get(&bucket)?.clone();
        Ok(bucket.get(&key).await.map_err(wasi_kv_error))
    }

    async fn set(
        &mut self,
        bucket: Resource<KvBackend>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        let bucket = self.table.get(&bucket)?.clone();
        Ok(bucket.set(&key, value).await.map_err(wasi_kv_error))
    }

    async fn delete(
        &mut self,
        bucket: Resource<KvBackend>,
        key: String,
    ) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        let bucket = self.table.get(&bucket)?.clone();
        Ok(bucket.delete(&key).await.map_err(wasi_kv_error))
    }

    async fn exists(
        &mut self,
        bucket: Resource<KvBackend>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wasi_kv::Error>> {
        let bucket = self.table.get(&bucket)?.clone();
        Ok(bucket.exists(&key).await.map_err(wasi_kv_error))
    }

    /// One page of keys and the cursor of the next ([`crate::key_value::KEYS_PAGE`] at most).
    async fn list_keys(
        &mut self,
        bucket: Resource<KvBackend>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<wasi_kv::KeyResponse, wasi_kv::Error>> {
        let bucket = self.table.get(&bucket)?.clone();
        Ok(bucket
            .list_keys(cursor)
            .await
            .map(|(keys, cursor)| wasi_kv::KeyResponse { keys, cursor })
            .map_err(wasi_kv_error))
    }

    async fn drop(&mut self, bucket: Resource<KvBackend>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<KvBackend>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, wasi_kv::Error>> {
        let bucket = self.table.get(&bucket)?.clone();
        Ok(bucket.increment(&key, delta).await.map_err(wasi_kv_error))
    }

    /// Swap if the value is still the one the handle saw; on a lost race, a
    /// fresh handle (with the value now stored) comes back for the retry.
    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let handle = self.table.delete(cas)?;
        match handle
            .bucket
            .compare_and_swap(&handle.key, handle.current, value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => match handle.bucket.get(&handle.key).await {
                Ok(current) => {
                    let fresh = self.table.push(CasHandle {
                        bucket: handle.bucket,
                        key: handle.key,
                        current,
                    })?;
                    Ok(Err(atomics::CasError::CasFailed(fresh)))
                }
                Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_kv_error(e)))),
            },
            Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_kv_error(e)))),
        }
    }
}

impl atomics::HostCas for HostState {
    async fn new(
        &mut self,
        bucket: Resource<KvBackend>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CasHandle>, wasi_kv::Error>> {
        let bucket = self.table.get(&bucket)?.clone();
        let current = match bucket.get(&key).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(wasi_kv_error(e))),
        };
        Ok(Ok(self.table.push(CasHandle {
            bucket,
            key,
            current,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<CasHandle>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl redis::Host for HostState {}

fn redis_error(e: ::redis::RedisError) -> redis::Error {
    if e.kind() == ::redis::ErrorKind::TypeError {
        redis::Error::TypeError
    } else {
        redis::Error::Other(e.to_string())
    }
}

impl HostState {
    fn redis(
        &self,
        conn: &Resource<RedisConnection>,
    ) -> wasmtime::Result<::redis::aio::ConnectionManager> {
        Ok(self.table.get(conn)?.conn.clone())
    }
}

impl redis::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, redis::Error>> {
        let Ok(url) = url::Url::parse(&address) else {
            return Ok(Err(redis::Error::InvalidAddress));
        };
        if !self.component.allowed_hosts.allows_url(&url) {
            self.app
                .metrics
                .outbound_denied(&self.component.id, "redis");
            tracing::warn!(component = %self.component.id, %address, "redis connection denied by allowed_outbound_hosts");
            return Ok(Err(redis::Error::InvalidAddress));
        }
        match self.app.redis.connect(&address).await {
            Ok(conn) => Ok(Ok(self.table.push(RedisConnection { conn })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn publish(
        &mut self,
        conn: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), redis::Error>> {
        let mut conn = self.redis(&conn)?;
        Ok(
            ::redis::AsyncCommands::publish::<_, _, ()>(&mut conn, channel, payload)
                .await
                .map_err(redis_error),
        )
    }

    async fn get(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, redis::Error>> {
        let mut conn = self.redis(&conn)?;
        Ok(::redis::AsyncCommands::get(&mut conn, key)
            .await
            .map_err(redis_error))
    }

    async fn set(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), redis::Error>> {
        let mut conn = self.redis(&conn)?;
        Ok(::redis::AsyncCommands::set(&mut conn, key, value)
            .await
            .map_err(redis_error))
    }

    async fn incr(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, redis::Error>> {
        let mut conn = self.redis(&conn)?;
        Ok(::redis::AsyncCommands::incr(&mut conn, key, 1)
            .await
            .map_err(redis_error))
    }

    async fn del(
        &mut self,
        conn: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, redis::Error>> {
        let mut conn = self.redis(&conn)?;
        Ok(::redis::AsyncCommands::del(&mut conn, keys)
            .await
            .map_err(redis_error))
    }

    async fn sadd(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, redis::Error>> {
        let mut conn = self.redis(&conn)?;
        Ok(::redis::AsyncCommands::sadd(&mut conn, key, values)
            .await
            .map_err(redis_error))
    }

    async fn smembers(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, redis::Error>> {
        let mut conn = self.redis(&conn)?;
        Ok(::redis::AsyncCommands::smembers(&mut conn, key)
            .await
            .map_err(redis_error))
    }

    async fn srem(
        &mut self,
        conn: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, redis::Error>> {
        let mut conn = self.redis(&conn)?;
        Ok(::redis::AsyncCommands::srem(&mut conn, key, values)
            .await
            .map_err(redis_error))
    }

    async fn execute(
        &mut self,
        conn: Resource<RedisConnection>,
        command: String,
        arguments: Vec<redis::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<redis::RedisResult>, redis::Error>> {
        let mut conn = self.redis(&conn)?;
        let mut cmd = ::redis::cmd(&command);
        for arg in arguments {
            match arg {
                redis::RedisParameter::Int64(i) => cmd.arg(i),
                redis::RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value: ::redis::Value = match cmd.query_async(&mut conn).await {
            Ok(value) => value,
            Err(e) => return Ok(Err(redis_error(e))),
        };
        Ok(Ok(flatten_value(value)))
    }

    async fn drop(&mut self, conn: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

/// Spin's projection of a Redis reply: arrays are flattened, scalars mapped one to one.
fn flatten_value(value: ::redis::Value) -> Vec<redis::RedisResult> {
    use ::redis::Value as V;
    match value {
        V::Nil => vec![redis::RedisResult::Nil],
        V::Int(i) => vec![redis::RedisResult::Int64(i)],
        V::BulkString(b) => vec![redis::RedisResult::Binary(b)],
        V::SimpleString(s) => vec![redis::RedisResult::Status(s)],
        V::Okay => vec![redis::RedisResult::Status("OK".into())],
        V::Array(items) | V::Set(items) => items.into_iter().flat_map(flatten_value).collect(),
        V::Boolean(b) => vec![redis::RedisResult::Int64(i64::from(b))],
        V::Double(d) => vec![redis::RedisResult::Binary(d.to_string().into_bytes())],
        V::VerbatimString { text, .. } => vec![redis::RedisResult::Binary(text.into_bytes())],
        other => vec![redis::RedisResult::Binary(
            format!("{other:?}").into_bytes(),
        )],
    }
}
