//! `fermyon:spin/sqlite` (2.0.0): the SQLite databases a component lists in
//! its manifest's `sqlite_databases`, as `spin up` serves them.
//!
//! `default` is the file `sqlite_db.db` in the state directory (`.spin/`
//! beside the manifest); the runtime config binds other labels
//! (`[sqlite_database.<label>] type = "spin"`, `path = "..."`, in memory
//! without a path). A label the component was not granted is `access-denied`;
//! a granted label the runtime config does not define stops the host at start.
//!
//! Each database is one connection, opened on first use and shared by every
//! request (so an in-memory database is one database), in WAL mode with a
//! busy timeout; statements run on tokio's blocking pool, never on the
//! threads that run components.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::types::ValueRef;
use wasmtime::component::Resource;

use crate::capabilities::generated::fermyon::spin::sqlite;
use crate::state::HostState;

/// Where a database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteConfig {
    File(PathBuf),
    Memory,
}

/// The file name of the default database, as Spin names it.
pub const DEFAULT_DATABASE_FILE: &str = "sqlite_db.db";

type Shared = Arc<Mutex<rusqlite::Connection>>;

/// The application's SQLite databases, by label.
#[derive(Debug, Default)]
pub struct SqliteDatabases {
    databases: HashMap<String, (SqliteConfig, Mutex<Option<Shared>>)>,
}

/// An open `spin:sqlite` connection: a handle on the database's connection.
pub struct SqliteConnection {
    db: Shared,
}

impl SqliteDatabases {
    /// The configured labels, plus `default` in `state_dir` unless configured.
    pub fn new(configured: &HashMap<String, SqliteConfig>, state_dir: &Path) -> Self {
        let mut databases: HashMap<_, _> = configured
            .iter()
            .map(|(label, config)| (label.clone(), (config.clone(), Mutex::new(None))))
            .collect();
        databases.entry("default".to_string()).or_insert_with(|| {
            (
                SqliteConfig::File(state_dir.join(DEFAULT_DATABASE_FILE)),
                Mutex::new(None),
            )
        });
        Self { databases }
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.databases.keys().map(String::as_str)
    }

    fn open(&self, label: &str, granted: &[String]) -> Result<Shared, sqlite::Error> {
        if !granted.iter().any(|g| g == label) {
            return Err(sqlite::Error::AccessDenied);
        }
        let (config, slot) = self
            .databases
            .get(label)
            .ok_or(sqlite::Error::NoSuchDatabase)?;
        let mut slot = slot
            .lock()
            .map_err(|_| sqlite::Error::Io("database lock poisoned".into()))?;
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let conn = connect(config).map_err(|e| {
            tracing::error!(label, "failed to open sqlite database: {e:#}");
            sqlite::Error::Io(format!("failed to open database `{label}`"))
        })?;
        let db = Arc::new(Mutex::new(conn));
        *slot = Some(db.clone());
        Ok(db)
    }
}

fn connect(config: &SqliteConfig) -> anyhow::Result<rusqlite::Connection> {
    let conn = match config {
        SqliteConfig::Memory => rusqlite::Connection::open_in_memory()?,
        SqliteConfig::File(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("failed to create {}", dir.display()))?;
            }
            let conn = rusqlite::Connection::open(path)
                .with_context(|| format!("failed to open {}", path.display()))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn
        }
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn to_sql(value: sqlite::Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match value {
        sqlite::Value::Integer(i) => Sql::Integer(i),
        sqlite::Value::Real(f) => Sql::Real(f),
        sqlite::Value::Text(t) => Sql::Text(t),
        sqlite::Value::Blob(b) => Sql::Blob(b),
        sqlite::Value::Null => Sql::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> sqlite::Value {
    match value {
        ValueRef::Null => sqlite::Value::Null,
        ValueRef::Integer(i) => sqlite::Value::Integer(i),
        ValueRef::Real(f) => sqlite::Value::Real(f),
        ValueRef::Text(t) => sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => sqlite::Value::Blob(b.to_vec()),
    }
}

/// Run one statement with its parameters and collect what it returns.
fn execute(
    conn: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<sqlite::Value>,
) -> rusqlite::Result<sqlite::QueryResult> {
    let mut prepared = conn.prepare(statement)?;
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let parameters = rusqlite::params_from_iter(parameters.into_iter().map(to_sql));
    let mut rows = prepared.query(parameters)?;
    let mut results = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns.len())
            .map(|i| row.get_ref(i).map(from_sql))
            .collect::<rusqlite::Result<_>>()?;
        results.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult {
        columns,
        rows: results,
    })
}

impl sqlite::Host for HostState {}

impl sqlite::HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, sqlite::Error>> {
        match self
            .app
            .sqlite
            .open(&database, &self.component.sqlite_databases)
        {
            Ok(db) => Ok(Ok(self.table.push(SqliteConnection { db })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let db = self.table.get(&connection)?.db.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let conn = db
                .lock()
                .map_err(|_| sqlite::Error::Io("database lock poisoned".into()))?;
            execute(&conn, &statement, parameters).map_err(|e| sqlite::Error::Io(e.to_string()))
        })
        .await;
        Ok(ran.unwrap_or_else(|e| Err(sqlite::Error::Io(format!("statement failed: {e}")))))
    }

    async fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_round_trip_every_value_type() {
        let conn = connect(&SqliteConfig::Memory).unwrap();
        execute(
            &conn,
            "CREATE TABLE t(i INTEGER, r REAL, s TEXT, b BLOB, n)",
            vec![],
        )
        .unwrap();
        execute(
            &conn,
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            vec![
                sqlite::Value::Integer(-7),
                sqlite::Value::Real(0.5),
                sqlite::Value::Text("7203.T".into()),
                sqlite::Value::Blob(vec![0, 255]),
                sqlite::Value::Null,
            ],
        )
        .unwrap();
        let result = execute(&conn, "SELECT * FROM t", vec![]).unwrap();
        assert_eq!(result.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(result.rows.len(), 1);
        let values = &result.rows[0].values;
        assert!(matches!(values[0], sqlite::Value::Integer(-7)));
        assert!(matches!(values[1], sqlite::Value::Real(r) if r == 0.5));
        assert!(matches!(&values[2], sqlite::Value::Text(t) if t == "7203.T"));
        assert!(matches!(&values[3], sqlite::Value::Blob(b) if b == &[0, 255]));
        assert!(matches!(values[4], sqlite::Value::Null));
        assert!(execute(&conn, "SELEC nonsense", vec![]).is_err());
    }

    #[test]
    fn only_granted_labels_open() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqliteDatabases::new(&HashMap::new(), dir.path());
        let granted = vec!["default".to_string()];
        assert!(matches!(
            dbs.open("forbidden", &granted),
            Err(sqlite::Error::AccessDenied)
        ));
        let other = vec!["other".to_string()];
        assert!(matches!(
            dbs.open("other", &other),
            Err(sqlite::Error::NoSuchDatabase)
        ));
        let db = dbs.open("default", &granted).unwrap();
        execute(&db.lock().unwrap(), "CREATE TABLE x(a)", vec![]).unwrap();
        assert!(dir.path().join(DEFAULT_DATABASE_FILE).exists());
    }
}
