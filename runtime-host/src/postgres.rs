//! Postgres as `spin up` offers it: `spin:postgres/postgres@4.0.0` (the full
//! set of types), `@3.0.0` and `fermyon:spin/postgres@2.0.0` (subsets of it,
//! converted to and from 4.0.0 here).
//!
//! A connection is granted by the component's `allowed_outbound_hosts`
//! (scheme `postgres`, every host of the connection string must be allowed);
//! Unix sockets are refused. Each `open` is one connection, closed when the
//! guest drops it or the request ends. Connecting and every statement are
//! bounded by the request's deadline. TLS as `sslmode` asks (see [`open`]),
//! verified against the host's roots ([`crate::tls`]).

// The error is the interface's own `error` variant, handed to the guest as
// it is; boxing it would only move the allocation.
#![allow(clippy::result_large_err)]

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use postgres_protocol::types as proto;
use rust_decimal::Decimal;
use tokio_postgres::Socket;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use wasmtime::component::Resource;

use crate::capabilities::generated::fermyon::spin::{postgres as v2, rdbms_types as v2t};
use crate::capabilities::generated::spin::postgres3_0_0::postgres as v3;
use crate::capabilities::generated::spin::postgres4_0_0::postgres as v4;
use crate::outbound::AllowedHosts;
use crate::state::HostState;
use crate::tls::TlsClient;

type BoxError = Box<dyn StdError + Sync + Send>;

/// How long `open` may take when the connection string sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open connection: the client, and the task driving its socket.
pub struct PgConnection {
    client: Arc<tokio_postgres::Client>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Every host of `config` must be granted as `postgres://host:port`.
fn check_allowed(config: &tokio_postgres::Config, allowed: &AllowedHosts) -> Result<(), v4::Error> {
    let ports = config.get_ports();
    if config.get_hosts().is_empty() {
        return Err(v4::Error::ConnectionFailed(
            "the connection string names no host".into(),
        ));
    }
    for (i, host) in config.get_hosts().iter().enumerate() {
        let Host::Tcp(name) = host else {
            return Err(v4::Error::ConnectionFailed(
                "Unix sockets are not supported on WebAssembly".into(),
            ));
        };
        // The port at the host's index, or the only port given for all hosts.
        let port = ports
            .get(i)
            .or_else(|| (ports.len() == 1).then(|| &ports[0]))
            .copied();
        if !allowed.allows("postgres", name, port) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            return Err(v4::Error::ConnectionFailed(format!(
                "address postgres://{name}{port} is not permitted"
            )));
        }
    }
    Ok(())
}

async fn open(
    address: &str,
    allowed: &AllowedHosts,
    tls: &TlsClient,
    deadline: Instant,
) -> Result<PgConnection, v4::Error> {
    let mut config: tokio_postgres::Config = address
        .parse()
        .map_err(|e| v4::Error::ConnectionFailed(format!("invalid connection string: {e}")))?;
    check_allowed(&config, allowed)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // As tokio-postgres (and so Spin) reads `sslmode`: `disable` is in the
    // clear, `prefer` (the default) is TLS when the server offers it,
    // `require` is TLS or nothing. A certificate is always verified.
    let tls = match (config.get_ssl_mode(), tls.config()) {
        (SslMode::Disable, _) => None,
        (_, Ok(tls)) => Some(tls),
        (SslMode::Require, Err(e)) => return Err(v4::Error::ConnectionFailed(e)),
        (_, Err(e)) => {
            tracing::debug!("postgres: sslmode=prefer without TLS: {e}");
            None
        }
    };
    match tls {
        None => connect(&config, tokio_postgres::NoTls, deadline).await,
        Some(tls) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
            connect(&config, tls, deadline).await
        }
    }
}

async fn connect<T>(
    config: &tokio_postgres::Config,
    tls: T,
    deadline: Instant,
) -> Result<PgConnection, v4::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = tokio::time::timeout_at(deadline.into(), config.connect(tls))
        .await
        .map_err(|_| v4::Error::ConnectionFailed("timed out connecting".into()))?
        .map_err(|e| v4::Error::ConnectionFailed(connect_error(&e)))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection ended: {e}");
        }
    });
    Ok(PgConnection {
        client: Arc::new(client),
        driver,
    })
}

/// A connection error with its cause (tokio-postgres's own message for a
/// TLS failure is only "error performing TLS handshake").
fn connect_error(e: &tokio_postgres::Error) -> String {
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

// ---------------------------------------------------------------- parameters

/// A guest's parameter, bound to whatever type the statement gives its slot.
#[derive(Debug)]
struct Param(v4::ParameterValue);

fn date(&(year, month, day): &(i32, u8, u8)) -> Result<NaiveDate, BoxError> {
    NaiveDate::from_ymd_opt(year, month.into(), day.into())
        .ok_or_else(|| format!("invalid date {year}-{month}-{day}").into())
}

fn time(&(hour, minute, second, nano): &(u8, u8, u8, u32)) -> Result<NaiveTime, BoxError> {
    NaiveTime::from_hms_nano_opt(hour.into(), minute.into(), second.into(), nano)
        .ok_or_else(|| format!("invalid time {hour}:{minute}:{second}.{nano}").into())
}

fn datetime(
    &(y, mo, d, h, mi, s, ns): &(i32, u8, u8, u8, u8, u8, u32),
) -> Result<NaiveDateTime, BoxError> {
    Ok(date(&(y, mo, d))?.and_time(time(&(h, mi, s, ns))?))
}

fn decimal(text: &str) -> Result<Decimal, BoxError> {
    Decimal::from_str_exact(text).map_err(|e| format!("invalid decimal {text:?}: {e}").into())
}

fn decimals(values: &[Option<String>]) -> Result<Vec<Option<Decimal>>, BoxError> {
    values
        .iter()
        .map(|v| v.as_deref().map(decimal).transpose())
        .collect()
}

type Bound<T> = Option<(T, v4::RangeBoundKind)>;

fn range_to_sql<T: ToSql>(
    ty: &Type,
    lower: &Bound<T>,
    upper: &Bound<T>,
    out: &mut BytesMut,
) -> Result<IsNull, BoxError> {
    let Kind::Range(element) = ty.kind() else {
        return Err(format!("a range cannot be sent as {ty}").into());
    };
    let bound = |bound: &Bound<T>, buf: &mut BytesMut| -> Result<_, BoxError> {
        let Some((value, kind)) = bound else {
            return Ok(proto::RangeBound::Unbounded);
        };
        let is_null = match value.to_sql_checked(element, buf)? {
            IsNull::Yes => postgres_protocol::IsNull::Yes,
            IsNull::No => postgres_protocol::IsNull::No,
        };
        Ok(match kind {
            v4::RangeBoundKind::Inclusive => proto::RangeBound::Inclusive(is_null),
            v4::RangeBoundKind::Exclusive => proto::RangeBound::Exclusive(is_null),
        })
    };
    proto::range_to_sql(|buf| bound(lower, buf), |buf| bound(upper, buf), out)?;
    Ok(IsNull::No)
}

fn parse_bound(bound: &Bound<String>) -> Result<Bound<Decimal>, BoxError> {
    bound
        .as_ref()
        .map(|(text, kind)| Ok((decimal(text)?, *kind)))
        .transpose()
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        use v4::ParameterValue as P;
        match &self.0 {
            P::Boolean(v) => v.to_sql_checked(ty, out),
            P::Int8(v) => v.to_sql_checked(ty, out),
            P::Int16(v) => v.to_sql_checked(ty, out),
            P::Int32(v) => v.to_sql_checked(ty, out),
            P::Int64(v) => v.to_sql_checked(ty, out),
            P::Floating32(v) => v.to_sql_checked(ty, out),
            P::Floating64(v) => v.to_sql_checked(ty, out),
            P::Str(v) => v.to_sql_checked(ty, out),
            P::Binary(v) => v.as_slice().to_sql_checked(ty, out),
            P::Date(v) => date(v)?.to_sql_checked(ty, out),
            P::Time(v) => time(v)?.to_sql_checked(ty, out),
            P::Datetime(v) if *ty == Type::TIMESTAMPTZ => {
                datetime(v)?.and_utc().to_sql_checked(ty, out)
            }
            P::Datetime(v) => datetime(v)?.to_sql_checked(ty, out),
            P::Timestamp(seconds) => {
                let at = DateTime::<Utc>::from_timestamp(*seconds, 0)
                    .ok_or_else(|| format!("timestamp {seconds} is out of range"))?;
                if *ty == Type::TIMESTAMP {
                    at.naive_utc().to_sql_checked(ty, out)
                } else {
                    at.to_sql_checked(ty, out)
                }
            }
            P::Uuid(v) => uuid::Uuid::parse_str(v)?.to_sql_checked(ty, out),
            P::Jsonb(v) => serde_json::from_slice::<serde_json::Value>(v)?.to_sql_checked(ty, out),
            P::Decimal(v) => decimal(v)?.to_sql_checked(ty, out),
            P::RangeInt32((lower, upper)) => range_to_sql(ty, lower, upper, out),
            P::RangeInt64((lower, upper)) => range_to_sql(ty, lower, upper, out),
            P::RangeDecimal((lower, upper)) => {
                range_to_sql(ty, &parse_bound(lower)?, &parse_bound(upper)?, out)
            }
            P::ArrayInt32(v) => v.to_sql_checked(ty, out),
            P::ArrayInt64(v) => v.to_sql_checked(ty, out),
            P::ArrayDecimal(v) => decimals(v)?.to_sql_checked(ty, out),
            P::ArrayStr(v) => v.to_sql_checked(ty, out),
            P::Interval(interval) => {
                if *ty != Type::INTERVAL {
                    return Err(format!("an interval cannot be sent as {ty}").into());
                }
                out.put_i64(interval.micros);
                out.put_i32(interval.days);
                out.put_i32(interval.months);
                Ok(IsNull::No)
            }
            P::DbNull => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each value checks its slot's type itself, in `to_sql`.
        true
    }

    to_sql_checked!();
}

// -------------------------------------------------------------------- values

/// What a column holds, as this module decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Floating32,
    Floating64,
    Str,
    Binary,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Decimal,
    RangeInt32,
    RangeInt64,
    RangeDecimal,
    ArrayInt32,
    ArrayInt64,
    ArrayDecimal,
    ArrayStr,
    Interval,
    Other,
}

const COLUMNS: &[(Type, Column)] = &[
    (Type::BOOL, Column::Boolean),
    (Type::CHAR, Column::Int8),
    (Type::INT2, Column::Int16),
    (Type::INT4, Column::Int32),
    (Type::INT8, Column::Int64),
    (Type::FLOAT4, Column::Floating32),
    (Type::FLOAT8, Column::Floating64),
    (Type::TEXT, Column::Str),
    (Type::VARCHAR, Column::Str),
    (Type::BPCHAR, Column::Str),
    (Type::NAME, Column::Str),
    (Type::BYTEA, Column::Binary),
    (Type::DATE, Column::Date),
    (Type::TIME, Column::Time),
    (Type::TIMESTAMP, Column::Timestamp),
    (Type::TIMESTAMPTZ, Column::TimestampTz),
    (Type::UUID, Column::Uuid),
    (Type::JSON, Column::Json),
    (Type::JSONB, Column::Json),
    (Type::NUMERIC, Column::Decimal),
    (Type::INT4_RANGE, Column::RangeInt32),
    (Type::INT8_RANGE, Column::RangeInt64),
    (Type::NUM_RANGE, Column::RangeDecimal),
    (Type::INT4_ARRAY, Column::ArrayInt32),
    (Type::INT8_ARRAY, Column::ArrayInt64),
    (Type::NUMERIC_ARRAY, Column::ArrayDecimal),
    (Type::TEXT_ARRAY, Column::ArrayStr),
    (Type::VARCHAR_ARRAY, Column::ArrayStr),
    (Type::BPCHAR_ARRAY, Column::ArrayStr),
    (Type::INTERVAL, Column::Interval),
];

fn column_of(ty: &Type) -> Column {
    COLUMNS
        .iter()
        .find(|(t, _)| t == ty)
        .map_or(Column::Other, |(_, c)| *c)
}

fn data_type(ty: &Type) -> v4::DbDataType {
    use v4::DbDataType as D;
    match column_of(ty) {
        Column::Boolean => D::Boolean,
        Column::Int8 => D::Int8,
        Column::Int16 => D::Int16,
        Column::Int32 => D::Int32,
        Column::Int64 => D::Int64,
        Column::Floating32 => D::Floating32,
        Column::Floating64 => D::Floating64,
        Column::Str => D::Str,
        Column::Binary => D::Binary,
        Column::Date => D::Date,
        Column::Time => D::Time,
        Column::Timestamp | Column::TimestampTz => D::Datetime,
        Column::Uuid => D::Uuid,
        Column::Json => D::Jsonb,
        Column::Decimal => D::Decimal,
        Column::RangeInt32 => D::RangeInt32,
        Column::RangeInt64 => D::RangeInt64,
        Column::RangeDecimal => D::RangeDecimal,
        Column::ArrayInt32 => D::ArrayInt32,
        Column::ArrayInt64 => D::ArrayInt64,
        Column::ArrayDecimal => D::ArrayDecimal,
        Column::ArrayStr => D::ArrayStr,
        Column::Interval => D::Interval,
        Column::Other => D::Other(ty.name().to_string()),
    }
}

/// A value's wire bytes, for the types decoded by hand (ranges, intervals,
/// anything unsupported).
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn datetime_tuple(at: NaiveDateTime) -> (i32, u8, u8, u8, u8, u8, u32) {
    // chrono's fields are in range for u8 (month ≤ 12, day ≤ 31, hour < 24 ...).
    (
        at.year(),
        at.month() as u8,
        at.day() as u8,
        at.hour() as u8,
        at.minute() as u8,
        at.second() as u8,
        at.nanosecond(),
    )
}

fn range_from_sql<T>(
    raw: &[u8],
    element: &Type,
    decode: impl Fn(&Type, &[u8]) -> Result<T, BoxError>,
) -> Result<(Bound<T>, Bound<T>), BoxError> {
    let bound = |bound: proto::RangeBound<Option<&[u8]>>| -> Result<Bound<T>, BoxError> {
        Ok(match bound {
            proto::RangeBound::Inclusive(Some(b)) => {
                Some((decode(element, b)?, v4::RangeBoundKind::Inclusive))
            }
            proto::RangeBound::Exclusive(Some(b)) => {
                Some((decode(element, b)?, v4::RangeBoundKind::Exclusive))
            }
            _ => None,
        })
    };
    match proto::range_from_sql(raw)? {
        proto::Range::Nonempty(lower, upper) => Ok((bound(lower)?, bound(upper)?)),
        // The interface has no empty range; `[x, x)` is the conventional one.
        proto::Range::Empty => Err("empty ranges cannot be represented".into()),
    }
}

fn interval_from_sql(raw: &[u8]) -> Result<v4::Interval, BoxError> {
    let raw: [u8; 16] = raw.try_into().map_err(|_| "an interval is 16 bytes")?;
    let (micros, rest) = raw.split_at(8);
    let (days, months) = rest.split_at(4);
    Ok(v4::Interval {
        micros: i64::from_be_bytes(micros.try_into()?),
        days: i32::from_be_bytes(days.try_into()?),
        months: i32::from_be_bytes(months.try_into()?),
    })
}

fn value(row: &tokio_postgres::Row, i: usize, ty: &Type) -> Result<v4::DbValue, BoxError> {
    use v4::DbValue as V;
    fn get<'a, T: FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
    ) -> Result<Option<T>, BoxError> {
        Ok(row.try_get::<_, Option<T>>(i)?)
    }
    let value = match column_of(ty) {
        Column::Boolean => get(row, i)?.map(V::Boolean),
        Column::Int8 => get(row, i)?.map(V::Int8),
        Column::Int16 => get(row, i)?.map(V::Int16),
        Column::Int32 => get(row, i)?.map(V::Int32),
        Column::Int64 => get(row, i)?.map(V::Int64),
        Column::Floating32 => get(row, i)?.map(V::Floating32),
        Column::Floating64 => get(row, i)?.map(V::Floating64),
        Column::Str => get(row, i)?.map(V::Str),
        Column::Binary => get(row, i)?.map(V::Binary),
        Column::Date => {
            get::<NaiveDate>(row, i)?.map(|d| V::Date((d.year(), d.month() as u8, d.day() as u8)))
        }
        Column::Time => get::<NaiveTime>(row, i)?.map(|t| {
            V::Time((
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                t.nanosecond(),
            ))
        }),
        Column::Timestamp => get::<NaiveDateTime>(row, i)?.map(|t| V::Datetime(datetime_tuple(t))),
        Column::TimestampTz => {
            get::<DateTime<Utc>>(row, i)?.map(|t| V::Datetime(datetime_tuple(t.naive_utc())))
        }
        Column::Uuid => get::<uuid::Uuid>(row, i)?.map(|u| V::Uuid(u.to_string())),
        Column::Json => get::<serde_json::Value>(row, i)?
            .map(|j| serde_json::to_vec(&j).map(V::Jsonb))
            .transpose()?,
        Column::Decimal => get::<Decimal>(row, i)?.map(|d| V::Decimal(d.to_string())),
        Column::RangeInt32 => get::<Raw>(row, i)?
            .map(|r| {
                range_from_sql(&r.0, &Type::INT4, |t, b| i32::from_sql(t, b)).map(V::RangeInt32)
            })
            .transpose()?,
        Column::RangeInt64 => get::<Raw>(row, i)?
            .map(|r| {
                range_from_sql(&r.0, &Type::INT8, |t, b| i64::from_sql(t, b)).map(V::RangeInt64)
            })
            .transpose()?,
        Column::RangeDecimal => get::<Raw>(row, i)?
            .map(|r| {
                range_from_sql(&r.0, &Type::NUMERIC, |t, b| {
                    Ok(Decimal::from_sql(t, b)?.to_string())
                })
                .map(V::RangeDecimal)
            })
            .transpose()?,
        Column::ArrayInt32 => get(row, i)?.map(V::ArrayInt32),
        Column::ArrayInt64 => get(row, i)?.map(V::ArrayInt64),
        Column::ArrayDecimal => get::<Vec<Option<Decimal>>>(row, i)?
            .map(|v| V::ArrayDecimal(v.into_iter().map(|d| d.map(|d| d.to_string())).collect())),
        Column::ArrayStr => get(row, i)?.map(V::ArrayStr),
        Column::Interval => get::<Raw>(row, i)?
            .map(|r| interval_from_sql(&r.0).map(V::Interval))
            .transpose()?,
        Column::Other => get::<Raw>(row, i)?.map(|r| V::Unsupported(r.0)),
    };
    Ok(value.unwrap_or(V::DbNull))
}

fn query_error(e: tokio_postgres::Error) -> v4::Error {
    let Some(db) = e.as_db_error() else {
        return v4::Error::QueryFailed(v4::QueryError::Text(e.to_string()));
    };
    let mut extras = Vec::new();
    let mut extra = |name: &str, value: Option<&str>| {
        if let Some(value) = value {
            extras.push((name.to_string(), value.to_string()));
        }
    };
    extra("hint", db.hint());
    extra("schema", db.schema());
    extra("table", db.table());
    extra("column", db.column());
    extra("constraint", db.constraint());
    extra("where", db.where_());
    v4::Error::QueryFailed(v4::QueryError::DbError(v4::DbError {
        as_text: e.to_string(),
        severity: db.severity().to_string(),
        code: db.code().code().to_string(),
        message: db.message().to_string(),
        detail: db.detail().map(str::to_string),
        extras,
    }))
}

/// The guest's parameters for `statement`, each checked against the type
/// of its slot, so that a wrong one is `bad-parameter` naming it.
fn bind(
    statement: &tokio_postgres::Statement,
    parameters: Vec<v4::ParameterValue>,
) -> Result<Vec<Param>, v4::Error> {
    let slots = statement.params();
    if parameters.len() != slots.len() {
        return Err(v4::Error::BadParameter(format!(
            "the statement takes {} parameters, {} were given",
            slots.len(),
            parameters.len()
        )));
    }
    let parameters: Vec<Param> = parameters.into_iter().map(Param).collect();
    let mut scratch = BytesMut::new();
    for (i, (parameter, ty)) in parameters.iter().zip(slots).enumerate() {
        scratch.clear();
        parameter
            .to_sql(ty, &mut scratch)
            .map_err(|e| v4::Error::BadParameter(format!("parameter ${} ({ty}): {e}", i + 1)))?;
    }
    Ok(parameters)
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// Run `work` within the request's deadline.
async fn within<T>(
    deadline: Instant,
    work: impl Future<Output = Result<T, v4::Error>>,
) -> Result<T, v4::Error> {
    tokio::time::timeout_at(deadline.into(), work)
        .await
        .unwrap_or_else(|_| {
            Err(v4::Error::QueryFailed(v4::QueryError::Text(
                "the statement did not finish before the request's deadline".into(),
            )))
        })
}

async fn query(
    client: &tokio_postgres::Client,
    statement: &str,
    parameters: Vec<v4::ParameterValue>,
    deadline: Instant,
) -> Result<v4::RowSet, v4::Error> {
    let (prepared, rows) = within(deadline, async {
        let prepared = client.prepare(statement).await.map_err(query_error)?;
        let parameters = bind(&prepared, parameters)?;
        let rows = client
            .query(&prepared, &refs(&parameters))
            .await
            .map_err(query_error)?;
        Ok((prepared, rows))
    })
    .await?;
    let columns: Vec<v4::Column> = prepared
        .columns()
        .iter()
        .map(|c| v4::Column {
            name: c.name().to_string(),
            data_type: data_type(c.type_()),
        })
        .collect();
    let rows = rows
        .iter()
        .map(|row| {
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| value(row, i, c.type_()))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| v4::Error::ValueConversionFailed(e.to_string()))?;
    Ok(v4::RowSet { columns, rows })
}

async fn execute(
    client: &tokio_postgres::Client,
    statement: &str,
    parameters: Vec<v4::ParameterValue>,
    deadline: Instant,
) -> Result<u64, v4::Error> {
    within(deadline, async {
        let prepared = client.prepare(statement).await.map_err(query_error)?;
        let parameters = bind(&prepared, parameters)?;
        client
            .execute(&prepared, &refs(&parameters))
            .await
            .map_err(query_error)
    })
    .await
}

// ------------------------------------------------------ the three interfaces

impl HostState {
    async fn pg_open(
        &mut self,
        address: &str,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4::Error>> {
        let (allowed, tls) = (&self.component.allowed_hosts, &self.app.tls);
        match open(address, allowed, tls, self.deadline).await {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn pg_client(
        &self,
        connection: &Resource<PgConnection>,
    ) -> wasmtime::Result<Arc<tokio_postgres::Client>> {
        Ok(self.table.get(connection)?.client.clone())
    }

    fn pg_drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl v4::Host for HostState {}

impl v4::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4::Error>> {
        self.pg_open(&address).await
    }

    async fn query(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        parameters: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<v4::RowSet, v4::Error>> {
        let client = self.pg_client(&connection)?;
        Ok(query(&client, &statement, parameters, self.deadline).await)
    }

    async fn execute(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        parameters: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4::Error>> {
        let client = self.pg_client(&connection)?;
        Ok(execute(&client, &statement, parameters, self.deadline).await)
    }

    async fn drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.pg_drop(connection)
    }
}

/// The older interfaces, each a subset of 4.0.0: `$types` holds its values
/// and errors, `$parameter`, `$rows` and `$error` convert to and from 4.0.0.
macro_rules! older_interface {
    ($interface:ident, $types:ident, $parameter:ident, $rows:ident, $error:ident) => {
        impl $interface::HostConnection for HostState {
            async fn open(
                &mut self,
                address: String,
            ) -> wasmtime::Result<Result<Resource<PgConnection>, $types::Error>> {
                Ok(self.pg_open(&address).await?.map_err($error))
            }

            async fn query(
                &mut self,
                connection: Resource<PgConnection>,
                statement: String,
                parameters: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<Result<$types::RowSet, $types::Error>> {
                let client = self.pg_client(&connection)?;
                let parameters = match parameters.into_iter().map($parameter).collect() {
                    Ok(parameters) => parameters,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(query(&client, &statement, parameters, self.deadline)
                    .await
                    .map($rows)
                    .map_err($error))
            }

            async fn execute(
                &mut self,
                connection: Resource<PgConnection>,
                statement: String,
                parameters: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<Result<u64, $types::Error>> {
                let client = self.pg_client(&connection)?;
                let parameters = match parameters.into_iter().map($parameter).collect() {
                    Ok(parameters) => parameters,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(execute(&client, &statement, parameters, self.deadline)
                    .await
                    .map_err($error))
            }

            async fn drop(&mut self, connection: Resource<PgConnection>) -> wasmtime::Result<()> {
                self.pg_drop(connection)
            }
        }
    };
}

impl v3::Host for HostState {}
older_interface!(v3, v3, v3_parameter, v3_rows, v3_error);

impl v2::Host for HostState {}
impl v2t::Host for HostState {}
older_interface!(v2, v2t, v2_parameter, v2_rows, v2_error);

// ------------------------------------------- 3.0.0 and 2.0.0 as 4.0.0 subsets

fn query_error_text(e: v4::QueryError) -> String {
    match e {
        v4::QueryError::Text(text) => text,
        v4::QueryError::DbError(db) => db.as_text,
    }
}

fn v3_error(e: v4::Error) -> v3::Error {
    match e {
        v4::Error::ConnectionFailed(m) => v3::Error::ConnectionFailed(m),
        v4::Error::BadParameter(m) => v3::Error::BadParameter(m),
        v4::Error::QueryFailed(q) => v3::Error::QueryFailed(query_error_text(q)),
        v4::Error::ValueConversionFailed(m) => v3::Error::ValueConversionFailed(m),
        v4::Error::Other(m) => v3::Error::Other(m),
    }
}

fn v2_error(e: v4::Error) -> v2t::Error {
    match e {
        v4::Error::ConnectionFailed(m) => v2t::Error::ConnectionFailed(m),
        v4::Error::BadParameter(m) => v2t::Error::BadParameter(m),
        v4::Error::QueryFailed(q) => v2t::Error::QueryFailed(query_error_text(q)),
        v4::Error::ValueConversionFailed(m) => v2t::Error::ValueConversionFailed(m),
        v4::Error::Other(m) => v2t::Error::Other(m),
    }
}

fn v3_parameter(p: v3::ParameterValue) -> Result<v4::ParameterValue, v3::Error> {
    use v3::ParameterValue as P3;
    use v4::ParameterValue as P;
    Ok(match p {
        P3::Boolean(v) => P::Boolean(v),
        P3::Int8(v) => P::Int8(v),
        P3::Int16(v) => P::Int16(v),
        P3::Int32(v) => P::Int32(v),
        P3::Int64(v) => P::Int64(v),
        P3::Floating32(v) => P::Floating32(v),
        P3::Floating64(v) => P::Floating64(v),
        P3::Str(v) => P::Str(v),
        P3::Binary(v) => P::Binary(v),
        P3::Date(v) => P::Date(v),
        P3::Time(v) => P::Time(v),
        P3::Datetime(v) => P::Datetime(v),
        P3::Timestamp(v) => P::Timestamp(v),
        P3::DbNull => P::DbNull,
    })
}

fn v3_rows(rows: v4::RowSet) -> v3::RowSet {
    use v3::DbDataType as D3;
    use v4::DbDataType as D;
    let columns = rows
        .columns
        .into_iter()
        .map(|c| v3::Column {
            name: c.name,
            data_type: match c.data_type {
                D::Boolean => D3::Boolean,
                D::Int8 => D3::Int8,
                D::Int16 => D3::Int16,
                D::Int32 => D3::Int32,
                D::Int64 => D3::Int64,
                D::Floating32 => D3::Floating32,
                D::Floating64 => D3::Floating64,
                D::Str => D3::Str,
                D::Binary => D3::Binary,
                D::Date => D3::Date,
                D::Time => D3::Time,
                D::Datetime => D3::Datetime,
                D::Timestamp => D3::Timestamp,
                _ => D3::Other,
            },
        })
        .collect();
    let rows = rows
        .rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|value| {
                    use v3::DbValue as V3;
                    use v4::DbValue as V;
                    match value {
                        V::Boolean(v) => V3::Boolean(v),
                        V::Int8(v) => V3::Int8(v),
                        V::Int16(v) => V3::Int16(v),
                        V::Int32(v) => V3::Int32(v),
                        V::Int64(v) => V3::Int64(v),
                        V::Floating32(v) => V3::Floating32(v),
                        V::Floating64(v) => V3::Floating64(v),
                        V::Str(v) => V3::Str(v),
                        V::Binary(v) => V3::Binary(v),
                        V::Date(v) => V3::Date(v),
                        V::Time(v) => V3::Time(v),
                        V::Datetime(v) => V3::Datetime(v),
                        V::Timestamp(v) => V3::Timestamp(v),
                        V::DbNull => V3::DbNull,
                        _ => V3::Unsupported,
                    }
                })
                .collect()
        })
        .collect();
    v3::RowSet { columns, rows }
}

fn v2_parameter(p: v2t::ParameterValue) -> Result<v4::ParameterValue, v2t::Error> {
    use v2t::ParameterValue as P2;
    use v4::ParameterValue as P;
    Ok(match p {
        P2::Boolean(v) => P::Boolean(v),
        P2::Int8(v) => P::Int8(v),
        P2::Int16(v) => P::Int16(v),
        P2::Int32(v) => P::Int32(v),
        P2::Int64(v) => P::Int64(v),
        P2::Floating32(v) => P::Floating32(v),
        P2::Floating64(v) => P::Floating64(v),
        P2::Str(v) => P::Str(v),
        P2::Binary(v) => P::Binary(v),
        P2::DbNull => P::DbNull,
        P2::Uint8(_) | P2::Uint16(_) | P2::Uint32(_) | P2::Uint64(_) => {
            return Err(v2t::Error::BadParameter(
                "Postgres does not support unsigned integers".into(),
            ));
        }
    })
}

fn v2_rows(rows: v4::RowSet) -> v2t::RowSet {
    use v2t::DbDataType as D2;
    use v4::DbDataType as D;
    let columns = rows
        .columns
        .into_iter()
        .map(|c| v2t::Column {
            name: c.name,
            data_type: match c.data_type {
                D::Boolean => D2::Boolean,
                D::Int8 => D2::Int8,
                D::Int16 => D2::Int16,
                D::Int32 => D2::Int32,
                D::Int64 => D2::Int64,
                D::Floating32 => D2::Floating32,
                D::Floating64 => D2::Floating64,
                D::Str => D2::Str,
                D::Binary => D2::Binary,
                _ => D2::Other,
            },
        })
        .collect();
    let rows = rows
        .rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|value| {
                    use v2t::DbValue as V2;
                    use v4::DbValue as V;
                    match value {
                        V::Boolean(v) => V2::Boolean(v),
                        V::Int8(v) => V2::Int8(v),
                        V::Int16(v) => V2::Int16(v),
                        V::Int32(v) => V2::Int32(v),
                        V::Int64(v) => V2::Int64(v),
                        V::Floating32(v) => V2::Floating32(v),
                        V::Floating64(v) => V2::Floating64(v),
                        V::Str(v) => V2::Str(v),
                        V::Binary(v) => V2::Binary(v),
                        V::DbNull => V2::DbNull,
                        _ => V2::Unsupported,
                    }
                })
                .collect()
        })
        .collect();
    v2t::RowSet { columns, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries.iter().copied()).unwrap()
    }

    #[test]
    fn every_host_of_the_connection_string_must_be_granted() {
        let config = |s: &str| s.parse::<tokio_postgres::Config>().unwrap();
        let grants = allowed(&["postgres://db.internal:5432"]);
        assert!(check_allowed(&config("host=db.internal port=5432 user=u"), &grants).is_ok());
        assert!(check_allowed(&config("postgres://u@db.internal/trades"), &grants).is_ok());
        let denied = check_allowed(&config("host=db.internal,other port=5432 user=u"), &grants);
        assert!(
            matches!(denied, Err(v4::Error::ConnectionFailed(m)) if m.contains("postgres://other:5432"))
        );
        assert!(check_allowed(&config("host=db.internal port=6543 user=u"), &grants).is_err());
        assert!(check_allowed(&config("host=/var/run/postgresql user=u"), &grants).is_err());
        assert!(check_allowed(&config("host=db.internal user=u"), &allowed(&[])).is_err());
    }

    #[test]
    fn intervals_decode_from_their_wire_form() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(-1_500_000i64).to_be_bytes());
        raw.extend_from_slice(&3i32.to_be_bytes());
        raw.extend_from_slice(&14i32.to_be_bytes());
        let interval = interval_from_sql(&raw).unwrap();
        assert_eq!(
            (interval.micros, interval.days, interval.months),
            (-1_500_000, 3, 14)
        );
        assert!(interval_from_sql(&raw[..15]).is_err());
    }

    #[test]
    fn unsigned_integers_are_refused_for_postgres() {
        assert!(matches!(
            v2_parameter(v2t::ParameterValue::Uint32(7)),
            Err(v2t::Error::BadParameter(_))
        ));
        assert!(matches!(
            v2_parameter(v2t::ParameterValue::Int32(7)),
            Ok(v4::ParameterValue::Int32(7))
        ));
    }
}
