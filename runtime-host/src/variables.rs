//! Application variables and the `{{ name }}` templates that use them.
//!
//! A variable's value comes from, highest first: `--variable name=value`,
//! the environment (`SPIN_VARIABLE_NAME`), the runtime config's
//! `[variables]` table, and the manifest default. A required variable with no
//! value is a startup error, as in Spin. Components see only the variables
//! their `[component.x.variables]` table declares, rendered from templates.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};

use crate::manifest::{Manifest, check_variable_name};

/// Resolved application variables.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: HashMap<String, String>,
    secrets: Vec<String>,
}

/// Where a value came from, for the layers above the manifest default.
#[derive(Debug, Clone, Default)]
pub struct VariableSources {
    /// `--variable name=value`.
    pub cli: BTreeMap<String, String>,
    /// The process environment, read as `SPIN_VARIABLE_<NAME>`.
    pub env: HashMap<String, String>,
    /// `[variables]` of the runtime config.
    pub runtime_config: BTreeMap<String, String>,
}

impl VariableSources {
    pub fn from_env() -> Self {
        Self {
            env: std::env::vars().collect(),
            ..Self::default()
        }
    }
}

impl Variables {
    pub fn resolve(manifest: &Manifest, sources: &VariableSources) -> anyhow::Result<Self> {
        for name in sources.cli.keys() {
            check_variable_name(name)?;
            if !manifest.variables.contains_key(name) {
                bail!("--variable `{name}` is not declared in the manifest");
            }
        }
        let mut values = HashMap::new();
        let mut secrets = Vec::new();
        for (name, decl) in &manifest.variables {
            let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            let value = sources
                .cli
                .get(name)
                .or_else(|| sources.env.get(&env_name))
                .or_else(|| sources.runtime_config.get(name))
                .or(decl.default.as_ref());
            match value {
                Some(value) => {
                    values.insert(name.clone(), value.clone());
                }
                None if decl.required => {
                    bail!("required variable `{name}` has no value (set {env_name} or --variable)")
                }
                None => {}
            }
            if decl.secret {
                secrets.push(name.clone());
            }
        }
        Ok(Self { values, secrets })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn is_secret(&self, name: &str) -> bool {
        self.secrets.iter().any(|s| s == name)
    }

    /// Render a template such as `"https://{{ host }}:{{ port }}"`.
    pub fn render(&self, template: &str) -> anyhow::Result<String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("unclosed `{{{{` in template `{template}`"))?;
            let name = after[..end].trim();
            check_variable_name(name).with_context(|| format!("in template `{template}`"))?;
            let value = self.get(name).with_context(|| {
                format!("template `{template}` uses undefined variable `{name}`")
            })?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A component's variables, rendered: what `spin:variables/get` returns.
    pub fn for_component(
        &self,
        templates: &BTreeMap<String, String>,
    ) -> anyhow::Result<HashMap<String, String>> {
        templates
            .iter()
            .map(|(name, template)| Ok((name.clone(), self.render(template)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
            spin_manifest_version = 2
            [application]
            name = "app"
            [variables]
            host = { default = "example.com" }
            port = { default = "80" }
            token = { required = true, secret = true }
            "#,
        )
        .unwrap()
    }

    fn sources(pairs: &[(&str, &str)]) -> VariableSources {
        VariableSources {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..VariableSources::default()
        }
    }

    #[test]
    fn required_variable_without_value_is_an_error() {
        let err = Variables::resolve(&manifest(), &sources(&[])).unwrap_err();
        assert!(err.to_string().contains("SPIN_VARIABLE_TOKEN"), "{err}");
    }

    #[test]
    fn precedence_is_cli_then_env_then_runtime_config_then_default() {
        let mut src = sources(&[
            ("SPIN_VARIABLE_TOKEN", "env"),
            ("SPIN_VARIABLE_PORT", "8080"),
        ]);
        src.runtime_config.insert("port".into(), "9090".into());
        src.runtime_config
            .insert("host".into(), "rc.example".into());
        src.cli.insert("host".into(), "cli.example".into());
        let vars = Variables::resolve(&manifest(), &src).unwrap();
        assert_eq!(vars.get("token"), Some("env"));
        assert_eq!(vars.get("port"), Some("8080"));
        assert_eq!(vars.get("host"), Some("cli.example"));
        assert!(vars.is_secret("token"));
        assert!(!vars.is_secret("host"));
    }

    #[test]
    fn undeclared_cli_variable_is_an_error() {
        let mut src = sources(&[("SPIN_VARIABLE_TOKEN", "t")]);
        src.cli.insert("nope".into(), "x".into());
        assert!(Variables::resolve(&manifest(), &src).is_err());
    }

    #[test]
    fn renders_templates() {
        let vars =
            Variables::resolve(&manifest(), &sources(&[("SPIN_VARIABLE_TOKEN", "t")])).unwrap();
        assert_eq!(
            vars.render("http://{{ host }}:{{port}}/x").unwrap(),
            "http://example.com:80/x"
        );
        assert_eq!(vars.render("plain").unwrap(), "plain");
        assert!(vars.render("{{ missing }}").is_err());
        assert!(vars.render("{{ host").is_err());
    }
}
