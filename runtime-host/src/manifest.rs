//! The Spin application manifest (`spin.toml`, manifest version 2): the part
//! of it this host runs. Unknown fields are ignored as Spin does for fields
//! of other triggers and tools; fields whose meaning we do not implement are
//! rejected so that nothing is silently dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

/// A parsed `spin.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// An application variable: `{ default = "..." }` or `{ required = true }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpTrigger {
    pub route: RouteDecl,
    pub component: String,
    #[serde(default)]
    pub executor: Option<toml::Value>,
}

/// `route = "/path/..."` or `route = { private = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RouteDecl {
    Path(String),
    Private { private: bool },
}

#[derive(Debug, Clone, Deserialize)]
pub struct ComponentDecl {
    pub source: SourceDecl,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub files: Vec<FilesDecl>,
    #[serde(default)]
    pub build: Option<BuildDecl>,
    /// Whether dependencies that do not say `inherit_configuration` get this
    /// component's capabilities; Spin's default is none of them.
    #[serde(default)]
    pub dependencies_inherit_configuration: Option<bool>,
    /// `[component.x.dependencies]`: imports satisfied by another
    /// component's export, keyed by the import's interface or package name.
    #[serde(default)]
    pub dependencies: BTreeMap<String, DependencyDecl>,
}

impl ComponentDecl {
    /// What it is granted or declares that a component used as another's
    /// dependency may not have, in Spin's names.
    pub fn own_grants(&self) -> Vec<&'static str> {
        [
            (
                "allowed_outbound_hosts",
                !self.allowed_outbound_hosts.is_empty(),
            ),
            ("dependencies", !self.dependencies.is_empty()),
            ("environment", !self.environment.is_empty()),
            ("files", !self.files.is_empty()),
            ("key_value_stores", !self.key_value_stores.is_empty()),
            ("sqlite_databases", !self.sqlite_databases.is_empty()),
            ("variables", !self.variables.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, has)| has.then_some(name))
        .collect()
    }
}

/// One `[component.x.dependencies]` entry, as Spin 3.5 writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DependencyDecl {
    /// `{ component = "data-service" }`: a component of this application.
    App {
        component: String,
        #[serde(flatten)]
        how: DependencyUse,
    },
    /// `{ path = "remote_data.wasm" }`: a Wasm file.
    Local {
        path: PathBuf,
        #[serde(flatten)]
        how: DependencyUse,
    },
    /// A registry package or URL: they need the network.
    Remote(toml::Value),
}

/// How a dependency is used: which of its exports, and what it may do.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DependencyUse {
    /// The dependency's export that satisfies the import (the import's own
    /// name by default).
    #[serde(default)]
    pub export: Option<String>,
    #[serde(default)]
    pub inherit_configuration: Option<InheritDecl>,
}

/// `inherit_configuration = true | false | ["key_value_stores", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum InheritDecl {
    All(bool),
    Some(Vec<String>),
}

/// The capability sets a dependency may inherit (Spin's names).
pub const INHERITABLE: &[&str] = &[
    // No model is served here: inheriting it grants nothing.
    "ai_models",
    "allowed_outbound_hosts",
    "environment",
    "files",
    "key_value_stores",
    "sqlite_databases",
    "variables",
];

/// A component's Wasm: a local path (registry and URL sources need the network).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SourceDecl {
    Path(PathBuf),
    Remote(toml::Table),
}

/// `files = ["assets/**"]` or `files = [{ source = "data", destination = "/data" }]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FilesDecl {
    Pattern(String),
    Mapping {
        source: PathBuf,
        destination: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct BuildDecl {
    pub command: String,
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    #[serde(default)]
    pub watch: Vec<String>,
}

/// A directory a component sees: host path, mounted read-only at the guest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
}

impl Manifest {
    /// Read and check a manifest file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read manifest {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid manifest {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let manifest: Self = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.spin_manifest_version == 2,
            "spin_manifest_version must be 2, found {}",
            self.spin_manifest_version
        );
        for name in self.variables.keys() {
            check_variable_name(name)?;
        }
        for (name, decl) in &self.variables {
            ensure!(
                !(decl.required && decl.default.is_some()),
                "variable `{name}` cannot be both required and have a default"
            );
        }
        for trigger in &self.trigger.http {
            ensure!(
                self.component.contains_key(&trigger.component),
                "trigger route {:?} names unknown component `{}`",
                trigger.route,
                trigger.component
            );
            if let RouteDecl::Path(route) = &trigger.route {
                ensure!(
                    route.starts_with('/'),
                    "route `{route}` must start with `/`"
                );
            }
        }
        for (id, component) in &self.component {
            ensure!(
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "component id `{id}` must be kebab-case"
            );
            if let SourceDecl::Remote(_) = component.source {
                bail!("component `{id}`: only local file sources are supported (no network here)");
            }
            for name in component.variables.keys() {
                check_variable_name(name).with_context(|| format!("component `{id}` variable"))?;
            }
            for (name, dependency) in &component.dependencies {
                let how = match dependency {
                    DependencyDecl::App {
                        component: target,
                        how,
                    } => {
                        let Some(depended) = self.component.get(target) else {
                            bail!(
                                "component `{id}`: dependency `{name}` names unknown component `{target}`"
                            );
                        };
                        // Spin's rule: grants of its own would not apply when
                        // it is composed, which would surprise.
                        let own = depended.own_grants();
                        ensure!(
                            own.is_empty(),
                            "Dependencies may not have their own resources or permissions. \
                             Component {target} cannot be used as a dependency of {id} because \
                             it specifies: {}",
                            own.join(", ")
                        );
                        how
                    }
                    DependencyDecl::Local { how, .. } => how,
                    DependencyDecl::Remote(_) => bail!(
                        "component `{id}`: dependency `{name}` must be a `component` or a \
                         local `path` (registry and URL dependencies need the network)"
                    ),
                };
                if let Some(InheritDecl::Some(keys)) = &how.inherit_configuration
                    && let Some(unknown) = keys.iter().find(|k| !INHERITABLE.contains(&k.as_str()))
                {
                    bail!(
                        "component `{id}`: dependency `{name}` inherits `{unknown}`, which is not \
                         one of {}",
                        INHERITABLE.join(", ")
                    );
                }
            }
        }
        Ok(())
    }

    /// The directories a component mounts, resolved against the manifest's directory.
    pub fn mounts(&self, id: &str, base: &Path) -> anyhow::Result<Vec<Mount>> {
        let component = &self.component[id];
        component
            .files
            .iter()
            .map(|files| match files {
                FilesDecl::Mapping {
                    source,
                    destination,
                } => Ok(Mount {
                    host: base.join(source),
                    guest: destination.clone(),
                }),
                FilesDecl::Pattern(pattern) => {
                    // A directory glob mounts the directory at the same relative path.
                    let dir = pattern
                        .trim_end_matches("/**/*")
                        .trim_end_matches("/**")
                        .trim_end_matches('/');
                    ensure!(
                        !dir.contains('*') && base.join(dir).is_dir(),
                        "component `{id}`: files pattern `{pattern}` must name a directory \
                         (`dir`, `dir/**`), or use {{ source, destination }}"
                    );
                    Ok(Mount {
                        host: base.join(dir),
                        guest: format!("/{dir}"),
                    })
                }
            })
            .collect()
    }
}

/// Spin's rule for variable names: lowercase ASCII letters, digits and `_`,
/// starting with a letter.
pub fn check_variable_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    ensure!(
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "invalid variable name `{name}`: use lowercase letters, digits and `_`"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        spin_manifest_version = 2
        [application]
        name = "app"
        [variables]
        greeting = { default = "hi" }
        token = { required = true, secret = true }
        [[trigger.http]]
        route = "/hello/..."
        component = "hello"
        [[trigger.http]]
        route = { private = true }
        component = "hidden"
        [component.hello]
        source = "hello.wasm"
        allowed_outbound_hosts = ["http://hidden.spin.internal"]
        [component.hello.variables]
        greeting = "{{ greeting }}"
        [component.hidden]
        source = "hidden.wasm"
    "#;

    /// MINIMAL with `[component.hello.dependencies]` holding `entries`.
    fn with_dependencies(entries: &str) -> anyhow::Result<Manifest> {
        Manifest::parse(&format!(
            "{MINIMAL}\n[component.hello.dependencies]\n{entries}"
        ))
    }

    #[test]
    fn dependencies_are_components_or_local_files() {
        let manifest = with_dependencies(
            r#""daytrade:platform/data" = { component = "hidden", inherit_configuration = true }
               "daytrade:platform/ml" = { path = "ml_remote.wasm", export = "daytrade:platform/ml@0.1.0", inherit_configuration = ["variables"] }"#,
        )
        .unwrap();
        let deps = &manifest.component["hello"].dependencies;
        assert!(matches!(
            &deps["daytrade:platform/data"],
            DependencyDecl::App { component, how }
                if component == "hidden" && how.inherit_configuration == Some(InheritDecl::All(true))
        ));
        assert!(matches!(
            &deps["daytrade:platform/ml"],
            DependencyDecl::Local { path, how }
                if path.as_path() == Path::new("ml_remote.wasm")
                    && how.export.as_deref() == Some("daytrade:platform/ml@0.1.0")
                    && how.inherit_configuration == Some(InheritDecl::Some(vec!["variables".into()]))
        ));
    }

    #[test]
    fn a_dependency_must_be_known_local_and_inherit_known_grants() {
        for (entry, says) in [
            (
                r#""a:b/c" = { component = "nowhere" }"#,
                "unknown component `nowhere`",
            ),
            (r#""a:b/c" = { version = "0.1.0" }"#, "need the network"),
            (r#""a:b/c" = "^0.1""#, "need the network"),
            (
                r#""a:b/c" = { component = "hidden", inherit_configuration = ["networking"] }"#,
                "inherits `networking`",
            ),
        ] {
            let error = format!("{:#}", with_dependencies(entry).unwrap_err());
            assert!(error.contains(says), "{entry}: {error}");
        }
    }

    #[test]
    fn parses_routes_private_routes_and_variables() {
        let manifest = Manifest::parse(MINIMAL).unwrap();
        assert_eq!(manifest.trigger.http.len(), 2);
        assert!(matches!(
            manifest.trigger.http[1].route,
            RouteDecl::Private { private: true }
        ));
        assert!(manifest.variables["token"].secret);
        assert_eq!(
            manifest.component["hello"].variables["greeting"],
            "{{ greeting }}"
        );
    }

    #[test]
    fn rejects_trigger_for_unknown_component() {
        let text = MINIMAL.replace("component = \"hidden\"", "component = \"ghost\"");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown component `ghost`"),
            "{err:#}"
        );
    }

    #[test]
    fn rejects_wrong_manifest_version() {
        let text = MINIMAL.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(Manifest::parse(&text).is_err());
    }

    #[test]
    fn rejects_invalid_variable_names() {
        for bad in ["Greeting", "1st", "with-dash", ""] {
            assert!(check_variable_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_variable_name("data_service_url").is_ok());
    }

    #[test]
    fn rejects_remote_sources() {
        let text = MINIMAL.replace(
            "source = \"hidden.wasm\"",
            "source = { url = \"https://example.com/x.wasm\", digest = \"sha256:00\" }",
        );
        let err = Manifest::parse(&text).unwrap_err();
        assert!(format!("{err:#}").contains("local file sources"), "{err:#}");
    }

    #[test]
    fn project_manifest_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
        let manifest = Manifest::load(&path).unwrap();
        assert_eq!(manifest.component.len(), 5);
    }
}
