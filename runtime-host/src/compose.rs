//! Component dependencies (`[component.x.dependencies]`, Spin 3.5): an
//! import of one component satisfied by another component's export, so that
//! a call between them is a typed function call, with no JSON and no HTTP.
//!
//! Spin composes the two into one component with `wac`; this host links
//! their instances instead. The dependency is instantiated in the importer's
//! `Store` on its first call (and kept with it when the instance is reused),
//! and every function of the imported interface is a host function that
//! forwards its arguments to the dependency's export.
//!
//! Capabilities follow Spin's rules: a dependency may use what its importer
//! was granted only as far as it inherits it, per dependency
//! (`inherit_configuration = true | false | ["key_value_stores", ...]`) or
//! for all of a component's dependencies (`dependencies_inherit_configuration`),
//! and nothing by default. While a dependency runs, the store's grants (and
//! its WASI context: environment, mounts, sockets) are the dependency's own.
//! Spin's manifest rules hold too: a `{ component = "..." }` dependency may
//! have no grants and no dependencies of its own (`Manifest::validate`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail, ensure};
use tracing::Instrument;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, Instance, InstancePre, Linker, Val};
use wasmtime::{Engine, StoreContextMut};
use wasmtime_wasi::WasiCtx;

use crate::manifest::{DependencyDecl, InheritDecl, Manifest, SourceDecl};
use crate::state::{ComponentConfig, HostState};

/// A dependency as loaded: how to instantiate it, and what it may use.
pub struct Linked {
    /// Its key in a store's [`HostState::linked`].
    slot: usize,
    /// The importer's id and the dependency's label, for metrics.
    importer: String,
    label: String,
    pre: InstancePre<HostState>,
    /// Its own grants; `None` when it inherits all of its importer's, so
    /// that nothing changes when it runs.
    grants: Option<Arc<ComponentConfig>>,
}

/// A dependency's instance in one store, and its WASI context while the
/// importer's is in use.
pub struct LinkedInstance {
    instance: Option<Instance>,
    wasi: Option<WasiCtx>,
}

/// The importer's grants, kept aside while a dependency runs.
struct Saved {
    wasi: WasiCtx,
    component: Arc<ComponentConfig>,
}

static SLOTS: AtomicUsize = AtomicUsize::new(0);

impl Linked {
    /// The dependency's instance in this store, made on first use.
    async fn instance(
        &self,
        store: &mut StoreContextMut<'_, HostState>,
    ) -> wasmtime::Result<Instance> {
        if let Some(instance) = store.data().linked.get(&self.slot).and_then(|l| l.instance) {
            return Ok(instance);
        }
        let wasi = match &self.grants {
            Some(grants) => Some(
                store
                    .data()
                    .app
                    .wasi_ctx(grants)
                    .map_err(wasmtime::Error::from_anyhow)?,
            ),
            None => None,
        };
        store.data_mut().linked.insert(
            self.slot,
            LinkedInstance {
                instance: None,
                wasi,
            },
        );
        let saved = self.enter(store.data_mut());
        let instance = self.pre.instantiate_async(&mut *store).await;
        self.leave(store.data_mut(), saved);
        let instance = instance?;
        if let Some(linked) = store.data_mut().linked.get_mut(&self.slot) {
            linked.instance = Some(instance);
        }
        Ok(instance)
    }

    /// Give the store the dependency's grants; what it had is returned.
    fn enter(&self, state: &mut HostState) -> Option<Saved> {
        let grants = self.grants.clone()?;
        let wasi = state.linked.get_mut(&self.slot)?.wasi.take()?;
        state.outbound.component = grants.clone();
        Some(Saved {
            wasi: std::mem::replace(&mut state.wasi, wasi),
            component: std::mem::replace(&mut state.component, grants),
        })
    }

    /// Give the importer back its grants.
    fn leave(&self, state: &mut HostState, saved: Option<Saved>) {
        let Some(saved) = saved else { return };
        let own = std::mem::replace(&mut state.wasi, saved.wasi);
        if let Some(linked) = state.linked.get_mut(&self.slot) {
            linked.wasi = Some(own);
        }
        state.outbound.component = saved.component.clone();
        state.component = saved.component;
    }

    /// Call the dependency's function `func` with the importer's arguments.
    async fn call(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        (func, name): (ComponentExportIndex, &str),
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let started = std::time::Instant::now();
        // A span of the request's trace, as a chained request has one.
        let short = name.rsplit('#').next().unwrap_or(name);
        let span = tracing::info_span!(
            "linked call",
            otel.name = %format!("{} {short}", self.label),
            otel.kind = "internal",
            component = %self.importer,
            dependency = %self.label,
            function = %name,
        );
        let outcome = self
            .forward(&mut store, func, params, results)
            .instrument(span)
            .await;
        store
            .data()
            .app
            .metrics
            .linked_call(&self.importer, &self.label, name, started.elapsed());
        outcome
    }

    async fn forward(
        &self,
        store: &mut StoreContextMut<'_, HostState>,
        func: ComponentExportIndex,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let instance = self.instance(store).await?;
        let Some(func) = instance.get_func(&mut *store, func) else {
            wasmtime::bail!("the dependency has no such function");
        };
        let saved = self.enter(store.data_mut());
        let outcome = func.call_async(&mut *store, params, results).await;
        self.leave(store.data_mut(), saved);
        outcome
    }
}

/// What a dependency inherits of its importer's grants, under the identity `id`.
fn inherited(parent: &ComponentConfig, inherit: &InheritDecl, id: String) -> ComponentConfig {
    let has = |key: &str| match inherit {
        InheritDecl::All(all) => *all,
        InheritDecl::Some(keys) => keys.iter().any(|k| k == key),
    };
    ComponentConfig {
        id,
        variables: kept(has("variables"), &parent.variables),
        allowed_hosts: kept(has("allowed_outbound_hosts"), &parent.allowed_hosts),
        key_value_stores: kept(has("key_value_stores"), &parent.key_value_stores),
        sqlite_databases: kept(has("sqlite_databases"), &parent.sqlite_databases),
        environment: kept(has("environment"), &parent.environment),
        mounts: kept(has("files"), &parent.mounts),
    }
}

/// The importer's grant if the dependency inherits it, none otherwise.
fn kept<T: Clone + Default>(inherits: bool, grant: &T) -> T {
    if inherits {
        grant.clone()
    } else {
        T::default()
    }
}

/// Whether the import `import` (`daytrade:platform/data@0.1.0`) is what a
/// dependency key names: that interface with or without its version, or
/// its package (`daytrade:platform`, all of its interfaces).
fn names(key: &str, import: &str) -> bool {
    let unversioned = import.split('@').next().unwrap_or(import);
    if key == import || key == unversioned {
        return true;
    }
    let (package, _) = unversioned.split_once('/').unwrap_or((unversioned, ""));
    let import_version = import.split_once('@').map(|(_, v)| v);
    match key.split_once('@') {
        Some((pkg, version)) => pkg == package && import_version == Some(version),
        None => key == package,
    }
}

/// Builds each component's linker: the host's interfaces, plus its dependencies.
pub struct Composer<'a> {
    pub engine: &'a Engine,
    pub base: &'a Linker<HostState>,
    pub manifest: &'a Manifest,
    pub dir: &'a Path,
    pub cache_dir: Option<&'a Path>,
    compiled: HashMap<PathBuf, Component>,
}

impl<'a> Composer<'a> {
    pub fn new(
        engine: &'a Engine,
        base: &'a Linker<HostState>,
        manifest: &'a Manifest,
        dir: &'a Path,
        cache_dir: Option<&'a Path>,
    ) -> Self {
        Self {
            engine,
            base,
            manifest,
            dir,
            cache_dir,
            compiled: HashMap::new(),
        }
    }

    /// The compiled component at `source` (relative to the manifest), once
    /// per load; whether it came from the cache.
    pub fn compile(&mut self, source: &Path) -> anyhow::Result<(Component, bool)> {
        let path = self.dir.join(source);
        if let Some(component) = self.compiled.get(&path) {
            return Ok((component.clone(), true));
        }
        let compiled = crate::engine::load_component(self.engine, &path, self.cache_dir)?;
        self.compiled.insert(path, compiled.component.clone());
        Ok((compiled.component, compiled.cache_hit))
    }

    /// The linker for manifest component `id`, compiled as `component` and
    /// running with `grants`: the host's interfaces and its dependencies'.
    pub fn linker(
        &mut self,
        id: &str,
        component: &Component,
        grants: &Arc<ComponentConfig>,
    ) -> anyhow::Result<Linker<HostState>> {
        let manifest = self.manifest;
        let decl = &manifest.component[id];
        let mut linker = self.base.clone();
        if decl.dependencies.is_empty() {
            return Ok(linker);
        }
        let engine = self.engine;
        let ty = component.component_type();
        let imports: Vec<(String, ComponentItem)> = ty
            .imports(engine)
            .map(|(name, e)| (name.to_string(), e.ty))
            .collect();
        for (key, dependency) in &decl.dependencies {
            let matched: Vec<&(String, ComponentItem)> = imports
                .iter()
                .filter(|(name, item)| {
                    names(key, name) && matches!(item, ComponentItem::ComponentInstance(_))
                })
                .collect();
            ensure!(
                !matched.is_empty(),
                "component `{id}`: dependency `{key}` names no interface it imports"
            );
            let (source, app, how) = match dependency {
                DependencyDecl::App {
                    component: target,
                    how,
                } => {
                    let SourceDecl::Path(source) = &manifest.component[target].source else {
                        bail!("component `{target}`: only local file sources are supported");
                    };
                    (source.clone(), Some(target.as_str()), how)
                }
                DependencyDecl::Local { path, how } => (path.clone(), None, how),
                DependencyDecl::Remote(_) => bail!("component `{id}`: `{key}` is not local"),
            };
            // Named as the application's component whose Wasm it is, if any.
            let label = app
                .map(str::to_string)
                .or_else(|| {
                    manifest
                        .component
                        .iter()
                        .find(|(_, c)| matches!(&c.source, SourceDecl::Path(p) if *p == source))
                        .map(|(cid, _)| cid.clone())
                })
                .unwrap_or_else(|| {
                    source
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_else(|| key.clone())
                });
            let inherit = how
                .inherit_configuration
                .clone()
                .unwrap_or(InheritDecl::All(
                    decl.dependencies_inherit_configuration.unwrap_or(false),
                ));
            let own = match inherit {
                InheritDecl::All(true) => None,
                ref some => Some(Arc::new(inherited(grants, some, format!("{id}>{label}")))),
            };
            let (dep, _) = self
                .compile(&source)
                .with_context(|| format!("component `{id}`: dependency `{key}`"))?;
            // As in Spin, a dependency's own imports are the host's: it has
            // no dependencies of its own.
            let pre = self
                .base
                .instantiate_pre(&dep)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!(
                        "component `{id}`: dependency `{key}` imports something this host lacks"
                    )
                })?;
            let linked = Arc::new(Linked {
                slot: SLOTS.fetch_add(1, Ordering::Relaxed),
                importer: grants.id.clone(),
                label: label.clone(),
                pre,
                grants: own,
            });
            let dep_ty = dep.component_type();
            for (import, item) in matched {
                let ComponentItem::ComponentInstance(wanted) = item else {
                    continue;
                };
                let export = match &how.export {
                    Some(export) => export.clone(),
                    None => dep_ty
                        .exports(engine)
                        .map(|(name, _)| name)
                        .find(|name| *name == import || names(name, import))
                        .with_context(|| {
                            format!("component `{id}`: `{label}` does not export `{import}`")
                        })?
                        .to_string(),
                };
                let Some(ComponentItem::ComponentInstance(given)) =
                    dep_ty.get_export(engine, &export).map(|e| e.ty)
                else {
                    bail!("component `{id}`: `{label}` does not export the interface `{export}`");
                };
                let instance_index = dep
                    .get_export_index(None, &export)
                    .with_context(|| format!("`{label}` has no export `{export}`"))?;
                let mut defined = linker.instance(import)?;
                for (name, item) in wanted.exports(engine) {
                    match item.ty {
                        ComponentItem::ComponentFunc(want) => {
                            let Some(ComponentItem::ComponentFunc(have)) =
                                given.get_export(engine, name).map(|e| e.ty)
                            else {
                                bail!("component `{id}`: `{label}`'s `{export}` has no `{name}`");
                            };
                            ensure!(
                                want.params()
                                    .map(|(_, t)| t)
                                    .eq(have.params().map(|(_, t)| t))
                                    && want.results().eq(have.results()),
                                "component `{id}`: `{name}` of `{export}` has another type in `{label}`"
                            );
                            let func = dep
                                .get_export_index(Some(&instance_index), name)
                                .with_context(|| format!("`{label}` has no `{export}#{name}`"))?;
                            let linked = linked.clone();
                            let function: Arc<str> = format!("{export}#{name}").into();
                            defined.func_new_async(name, move |store, _ty, params, results| {
                                let (linked, function) = (linked.clone(), function.clone());
                                Box::new(async move {
                                    linked.call(store, (func, &function), params, results).await
                                })
                            })?;
                        }
                        ComponentItem::Type(_) => {}
                        _ => bail!(
                            "component `{id}`: `{import}#{name}` is not a function: only \
                             functions and plain types are linked across components"
                        ),
                    }
                }
            }
        }
        Ok(linker)
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn a_dependency_key_names_an_interface_or_its_package() {
        let import = "daytrade:platform/data@0.1.0";
        for key in [
            "daytrade:platform/data@0.1.0",
            "daytrade:platform/data",
            "daytrade:platform",
            "daytrade:platform@0.1.0",
        ] {
            assert!(names(key, import), "{key}");
        }
        for key in [
            "daytrade:platform/ml",
            "daytrade:platform/data@0.2.0",
            "daytrade:platform@0.2.0",
            "daytrade:other",
            "wasi:http/outgoing-handler",
        ] {
            assert!(!names(key, import), "{key}");
        }
    }
}
