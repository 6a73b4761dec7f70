//! The runtime config file (`--runtime-config-file`), in Spin's format:
//!
//! ```toml
//! [key_value_store.default]
//! type = "redis"                    # or "spin" (SQLite; `path`, else in memory)
//! url = "redis://127.0.0.1:6379"
//!
//! [[config_provider]]               # variables from a dotenv file and/or the environment
//! type = "env"
//! prefix = "SPIN_VARIABLE"          # the default
//! dotenv_path = ".env"
//! ```
//!
//! Relative paths are resolved against the file's directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::key_value::KvStoreConfig;
use crate::sqlite::SqliteConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawKvStore>,
    #[serde(default, alias = "variables_provider")]
    config_provider: Vec<RawProvider>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawSqliteDatabase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSqliteDatabase {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKvStore {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    dotenv_path: Option<PathBuf>,
}

/// A checked runtime config.
#[derive(Debug, Default, Clone)]
pub struct RuntimeConfig {
    pub key_value_stores: HashMap<String, KvStoreConfig>,
    /// `[sqlite_database.<label>]`: databases beside the default one.
    pub sqlite_databases: HashMap<String, SqliteConfig>,
    /// Variables from `env` providers with a non-default prefix or a dotenv file,
    /// keyed by variable name.
    pub variables: BTreeMap<String, String>,
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read runtime config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &std::env::vars().collect())
            .with_context(|| format!("invalid runtime config {}", path.display()))
    }

    pub fn parse(text: &str, base: &Path, env: &HashMap<String, String>) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text)?;
        let mut key_value_stores = HashMap::new();
        for (label, store) in raw.key_value_store {
            let config = match (store.kind.as_str(), store.url, store.path) {
                ("redis", Some(url), None) => KvStoreConfig::Redis(url),
                ("redis", _, _) => {
                    bail!("key_value_store.{label}: redis needs `url` (and no `path`)")
                }
                ("spin", None, path) => KvStoreConfig::Sqlite(path.map(|p| base.join(p))),
                ("spin", Some(_), _) => {
                    bail!("key_value_store.{label}: `spin` takes `path`, not `url`")
                }
                (other, _, _) => bail!(
                    "key_value_store.{label}: unsupported type `{other}` (use `spin` or `redis`)"
                ),
            };
            key_value_stores.insert(label, config);
        }
        let mut sqlite_databases = HashMap::new();
        for (label, database) in raw.sqlite_database {
            let config = match (database.kind.as_str(), database.path) {
                ("spin", Some(path)) => SqliteConfig::File(base.join(path)),
                ("spin", None) => SqliteConfig::Memory,
                (other, _) => bail!(
                    "sqlite_database.{label}: unsupported type `{other}` (use `spin`; libsql needs a remote server)"
                ),
            };
            sqlite_databases.insert(label, config);
        }
        let mut variables = BTreeMap::new();
        for provider in raw.config_provider {
            if provider.kind != "env" {
                bail!(
                    "config_provider type `{}` is not supported here (use `env`)",
                    provider.kind
                );
            }
            let prefix = format!(
                "{}_",
                provider
                    .prefix
                    .as_deref()
                    .unwrap_or("SPIN_VARIABLE")
                    .trim_end_matches('_')
            );
            let mut pairs: Vec<(String, String)> = Vec::new();
            if let Some(dotenv) = provider.dotenv_path {
                let path = base.join(dotenv);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("failed to read dotenv file {}", path.display()))?;
                pairs.extend(parse_dotenv(&text));
            }
            // The environment overrides the dotenv file.
            pairs.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
            for (key, value) in pairs {
                if let Some(name) = key.strip_prefix(&prefix) {
                    variables.insert(name.to_ascii_lowercase(), value);
                }
            }
        }
        Ok(Self {
            key_value_stores,
            sqlite_databases,
            variables,
        })
    }
}

fn parse_dotenv(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((key.trim().to_string(), value.to_string()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stores_and_env_providers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "# comment\nAPP_TOKEN=\"from-file\"\nAPP_HOST=h\n",
        )
        .unwrap();
        let env = HashMap::from([("APP_HOST".to_string(), "from-env".to_string())]);
        let config = RuntimeConfig::parse(
            r#"
            [key_value_store.default]
            type = "redis"
            url = "redis://127.0.0.1:6379"
            [key_value_store.cache]
            type = "spin"
            path = "cache.db"
            [key_value_store.scratch]
            type = "spin"
            [[config_provider]]
            type = "env"
            prefix = "APP"
            dotenv_path = ".env"
            "#,
            dir.path(),
            &env,
        )
        .unwrap();
        assert_eq!(
            config.key_value_stores["default"],
            KvStoreConfig::Redis("redis://127.0.0.1:6379".into())
        );
        assert_eq!(
            config.key_value_stores["cache"],
            KvStoreConfig::Sqlite(Some(dir.path().join("cache.db")))
        );
        assert_eq!(
            config.key_value_stores["scratch"],
            KvStoreConfig::Sqlite(None)
        );
        assert_eq!(config.variables["token"], "from-file");
        assert_eq!(config.variables["host"], "from-env");
    }

    #[test]
    fn rejects_unknown_store_types_and_fields() {
        let base = Path::new(".");
        let env = HashMap::new();
        assert!(
            RuntimeConfig::parse("[key_value_store.x]\ntype = \"dynamo\"", base, &env).is_err()
        );
        assert!(RuntimeConfig::parse("[key_value_store.x]\ntype = \"redis\"", base, &env).is_err());
        assert!(RuntimeConfig::parse("[bogus]\nx = 1", base, &env).is_err());
    }
}
