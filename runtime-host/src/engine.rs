//! The Wasmtime engine and the compiled-component cache.
//!
//! Compiling a component with Cranelift takes from a fraction of a second to
//! tens of seconds (ml-service embeds tract); a restart should not pay that
//! again. Compiled code is cached as `.cwasm` keyed by the Wasm's SHA-256
//! and the engine's compatibility hash, so a new host version or different
//! settings never load stale code.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Engine settings that matter to how instances are created.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Pre-reserve instance slots (fast instantiation); on-demand allocation otherwise.
    pub pooling: bool,
    /// How many instances may be alive at once with pooling.
    pub max_instances: u32,
    /// The most linear memory one instance may use.
    pub max_instance_memory: usize,
}

/// How often the epoch advances; the granularity of request timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

pub fn build_engine(settings: &EngineSettings) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if settings.pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(settings.max_instances)
            .total_core_instances(settings.max_instances * 4)
            .total_memories(settings.max_instances * 2)
            .total_tables(settings.max_instances * 4)
            .total_stacks(settings.max_instances)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_core_instances_per_component(32)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .table_elements(100_000)
            .max_memory_size(settings.max_instance_memory);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("failed to create the wasmtime engine")
}

/// A compiled component and whether it came from the cache.
#[derive(Debug)]
pub struct Compiled {
    pub component: Component,
    pub cache_hit: bool,
}

/// Compile `wasm_path`, or load it from `cache_dir` if it was compiled before.
pub fn load_component(
    engine: &Engine,
    wasm_path: &Path,
    cache_dir: Option<&Path>,
) -> anyhow::Result<Compiled> {
    let wasm = std::fs::read(wasm_path)
        .with_context(|| format!("failed to read component {}", wasm_path.display()))?;
    let Some(cache_dir) = cache_dir else {
        let component = Component::new(engine, &wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to compile {}", wasm_path.display()))?;
        return Ok(Compiled {
            component,
            cache_hit: false,
        });
    };
    let cached = cache_path(engine, &wasm, cache_dir);
    // Apps started side by side in one process (components sharing a source,
    // hosts in tests) compile each source once: the others wait, then load.
    let entry_lock = compiling(&cached);
    let _compiling = entry_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if cached.exists() {
        match deserialize(engine, &cached) {
            Ok(component) => {
                return Ok(Compiled {
                    component,
                    cache_hit: true,
                });
            }
            Err(e) => {
                tracing::warn!(path = %cached.display(), "ignoring unusable cache entry: {e:#}")
            }
        }
    }
    tracing::info!(
        path = %wasm_path.display(),
        mib = wasm.len() >> 20,
        "compiling to native code (once: cached for later starts; ml-service takes ~30 s on 2 cores)"
    );
    let component = Component::new(engine, &wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("failed to compile {}", wasm_path.display()))?;
    if let Err(e) = store(&component, &cached) {
        // A read-only cache directory costs start-up time, not correctness.
        tracing::warn!(path = %cached.display(), "failed to cache compiled component: {e:#}");
    }
    Ok(Compiled {
        component,
        cache_hit: false,
    })
}

/// The lock of one cache entry, shared by everything in this process that loads it.
fn compiling(entry: &Path) -> Arc<Mutex<()>> {
    static ENTRIES: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut entries = ENTRIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    entries.entry(entry.to_path_buf()).or_default().clone()
}

fn cache_path(engine: &Engine, wasm: &[u8], cache_dir: &Path) -> PathBuf {
    let mut engine_hash = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = hex::encode(Sha256::digest(wasm));
    cache_dir.join(format!("{digest}-{:016x}.cwasm", engine_hash.finish()))
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: wasmtime requires that the file was produced by `Component::serialize`
    // of a compatible engine and not tampered with. The file name binds it to this
    // engine's compatibility hash and the source's SHA-256, and the cache directory
    // belongs to the host (in the image it is written at build time, read-only after).
    unsafe { Component::deserialize_file(engine, path) }
        .map_err(anyhow::Error::from)
        .with_context(|| format!("failed to load {}", path.display()))
}

fn store(component: &Component, path: &Path) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    let dir = path.parent().context("cache path has a directory")?;
    std::fs::create_dir_all(dir)?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
