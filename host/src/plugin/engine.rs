//! The wasmtime [`Engine`], its epoch ticker, and compilation through the on-disk cache of
//! precompiled components.
//!
//! Why wasmtime's own cache and not `Component::deserialize_file` on files of our own: loading
//! precompiled code is `unsafe` in wasmtime, and the workspace forbids `unsafe_code` (a
//! `forbid` cannot be lifted locally). wasmtime's cache is the safe way to the same result: it
//! keys each entry by a SHA-256 of the component bytes *and* of everything in the engine that
//! affects code generation (wasmtime version, settings, target), writes entries atomically,
//! and checks them on load. It lives in `cache_dir`. On top of it, every version is identified
//! by the blake3 hash of its bytes (see `PluginHost`'s in-memory cache of recent versions).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};
use wasmtime::component::Component;
use wasmtime::{Cache, CacheConfig, Config, Engine};

use super::compiler;

/// How often the epoch ticker advances every engine's epoch: the resolution of call deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Where a version's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeSource {
    /// Compiled by Cranelift now (and written to the disk cache).
    Compiler,
    /// Read from the disk cache in `cache_dir`.
    DiskCache,
    /// Reused from a version this gateway compiled earlier (swapping back and forth).
    Memory,
}

impl CodeSource {
    /// The name shown by `GET /api/plugins` and used as a metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CodeSource::Compiler => "compiler",
            CodeSource::DiskCache => "disk-cache",
            CodeSource::Memory => "memory",
        }
    }
}

/// An engine with its disk cache. A process normally has exactly one (one gateway, one
/// `cache_dir`); tests that run several gateways with different cache folders get one each,
/// since the cache folder is part of an engine's configuration.
pub(crate) struct Runtime {
    /// The engine every plugin of this gateway is compiled and run with.
    pub engine: Engine,
    /// A handle on the engine's cache, for its hit counter.
    cache: Cache,
    /// The engine's configuration, for the throwaway engines that compile (see `compile`).
    config: Config,
    /// The disk cache's folder (canonical), for compiler processes.
    dir: PathBuf,
    /// Compilations take turns, so the cache-hit counter tells exactly whether *this*
    /// compilation hit (each one already uses every core through parallel compilation).
    compile_lock: Mutex<()>,
}

/// Engines by canonical cache folder.
static RUNTIMES: Mutex<Vec<(PathBuf, Arc<Runtime>)>> = Mutex::new(Vec::new());
/// The engines the ticker thread advances.
static TICKED: Mutex<Vec<Engine>> = Mutex::new(Vec::new());
/// Started once per process.
static TICKER: OnceLock<Result<(), String>> = OnceLock::new();
/// Guest calls in flight in this process. The ticker only runs while there is one: an idle
/// gateway must not wake up 200 times a second to advance epochs nobody waits on.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Whether the ticker is parked (or about to park) waiting for a call.
static PARKED: AtomicBool = AtomicBool::new(false);
/// The ticker parks on these.
static PARK: Mutex<()> = Mutex::new(());
static WAKE: Condvar = Condvar::new();

/// Held while a guest call runs, so that the epoch advances and its deadline can fire.
/// Deadlines are set relative to the current epoch, so the ticks while parked are not missed.
pub(crate) struct Ticking(());

/// Mark a guest call in flight until the returned guard is dropped. Costs two atomic
/// operations; only the first call after the ticker parked (≥ one tick of idleness) wakes it.
pub(crate) fn ticking() -> Ticking {
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    // Pairs with the ticker's store of PARKED then load of ACTIVE (both SeqCst): either it
    // sees this call, or this sees it parked and wakes it under the lock it waits with.
    if PARKED.load(Ordering::SeqCst) {
        let _guard = PARK.lock();
        WAKE.notify_one();
    }
    Ticking(())
}

impl Drop for Ticking {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The runtime whose disk cache is `cache_dir` (created if needed), with the ticker running.
pub(crate) fn runtime(cache_dir: &Path) -> Result<Arc<Runtime>, String> {
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| format!("cache folder {}: {e}", cache_dir.display()))?;
    let dir = std::fs::canonicalize(cache_dir)
        .map_err(|e| format!("cache folder {}: {e}", cache_dir.display()))?;
    let mut runtimes = RUNTIMES.lock();
    if let Some((_, rt)) = runtimes.iter().find(|(d, _)| *d == dir) {
        return Ok(rt.clone());
    }
    let (config, cache) = engine_config(&dir)?;
    let engine = Engine::new(&config).map_err(|e| format!("wasmtime engine: {e:#}"))?;
    start_ticker()?;
    TICKED.lock().push(engine.clone());
    let rt = Arc::new(Runtime {
        engine,
        cache,
        config,
        dir: dir.clone(),
        compile_lock: Mutex::new(()),
    });
    runtimes.push((dir, rt.clone()));
    Ok(rt)
}

/// The engine settings of every engine that compiles or runs plugins, with the disk cache in
/// `dir`. One function, because the cache key hashes these settings: a compiler process that
/// used other settings would write entries the gateway never finds.
pub(super) fn engine_config(dir: &Path) -> Result<(Config, Cache), String> {
    let mut cache_config = CacheConfig::new();
    cache_config.with_directory(dir);
    let cache = Cache::new(cache_config).map_err(|e| format!("compile cache: {e:#}"))?;
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cache(Some(cache.clone()));
    Ok((config, cache))
}

fn start_ticker() -> Result<(), String> {
    TICKER
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("wasmgate-epoch".into())
                .spawn(|| {
                    loop {
                        {
                            let mut guard = PARK.lock();
                            PARKED.store(true, Ordering::SeqCst);
                            while ACTIVE.load(Ordering::SeqCst) == 0 {
                                WAKE.wait(&mut guard);
                            }
                            PARKED.store(false, Ordering::SeqCst);
                        }
                        std::thread::sleep(EPOCH_TICK);
                        for engine in TICKED.lock().iter() {
                            engine.increment_epoch();
                        }
                    }
                })
                .map(|_| ())
                .map_err(|e| format!("epoch ticker thread: {e}"))
        })
        .clone()
}

/// Epoch ticks for a deadline of `timeout`: never earlier than `timeout` (one tick of slack,
/// since the current tick is already partly over), at most one tick later.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = timeout.as_nanos().div_ceil(tick) + 1;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The blake3 hash of a component's bytes, hex: its version.
pub(crate) fn version_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

impl Runtime {
    /// Compile `bytes` through the disk cache. Blocking and CPU-heavy: run it on a blocking
    /// thread, off the runtime's workers (where guest calls run).
    ///
    /// Why a throwaway engine compiles and the serving engine then loads from the disk cache
    /// (memory, issue 11): wasmtime's Cranelift compiler keeps its per-thread compilation
    /// contexts (function bodies, register allocator and code buffers, sized by the largest
    /// function it ever compiled) inside the `Engine` for reuse, and an engine lives as long as
    /// the gateway. After a cold compile of the Python chat (18.5 MB component) that was 81 MB
    /// of live heap (glibc `malloc_stats`: 84 MB in use after a cold compile, 2.8 MB after a
    /// cache hit, same plugin, same instance). Compiling with an engine of the same settings and
    /// the same cache, then dropping it, frees all of it; the serving engine then finds the
    /// entry just written (the cache key hashes the settings, which are identical). A cache hit
    /// costs one extra load of the cached code (Python chat: ~0.3 s, 35 MB loaded and dropped).
    /// If the entry cannot be written (full disk), the serving engine compiles it itself:
    /// correct, only without the saving.
    ///
    /// Why a child process when the `wasmgate` binary runs (`compiler.rs`, set up by
    /// [`super::compile_in_child_processes`]):
    /// even with the throwaway engine, compiling left the gateway holding what the compiler
    /// touched: Cranelift's machine code paged in from the binary and pages the allocator
    /// kept. Measured with `scripts/plugin-memory.sh` (RSS over the bare gateway, Rust chat):
    /// +15.7 MB after a cold compile in process (+7.7 MB of them the binary's compiler code),
    /// +5.0 MB when the code came from the disk cache. A child compiles into the cache and
    /// exits, and the gateway loads the entry like any cache hit; a compiler crash or a
    /// component that makes it run out of memory takes down the child, not the gateway.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<(Component, CodeSource), String> {
        let _turn = self.compile_lock.lock();
        let by_child = match compiler::executable() {
            Some(exe) => compiler::compile_in_child(exe, &self.dir, bytes)?,
            None => None,
        };
        let source = match by_child {
            Some(source) => source,
            None => compile_into_cache(&self.config, &self.cache, bytes)?,
        };
        let hits = self.cache.cache_hits();
        let component =
            Component::new(&self.engine, bytes).map_err(|e| format!("compile: {e:#}"))?;
        if self.cache.cache_hits() == hits {
            // The entry was not written (a full disk) or not found: this engine compiled it,
            // which is correct, only without the memory saving.
            tracing::warn!(
                cache_dir = %self.dir.display(),
                "the compiled code was not found in the disk cache: compiled by the gateway itself"
            );
        }
        if by_child.is_some() {
            compiler::prune_cache(&self.dir, compiler::CACHE_MAX_BYTES);
        }
        Ok((component, source))
    }
}

/// Compile `bytes` with a throwaway engine of `config`, whose disk cache is `cache`, so that
/// the entry is written and the compiler's memory goes with the engine; where the code came
/// from. The child process (`compiler.rs`) and the in-process path share it.
pub(super) fn compile_into_cache(
    config: &Config,
    cache: &Cache,
    bytes: &[u8],
) -> Result<CodeSource, String> {
    let hits = cache.cache_hits();
    let engine = Engine::new(config).map_err(|e| format!("compile: wasmtime engine: {e:#}"))?;
    Component::new(&engine, bytes).map_err(|e| format!("compile: {e:#}"))?;
    Ok(if cache.cache_hits() > hits {
        CodeSource::DiskCache
    } else {
        CodeSource::Compiler
    })
}

/// Bytes of a component's compiled image (machine code, metadata and the linear-memory images
/// of its core modules), as `GET /api/plugins` shows it in `codeBytes`. This image is held in
/// anonymous memory, once per version however many instances run it.
pub(crate) fn code_bytes(component: &Component) -> usize {
    let range = component.image_range();
    range.end.addr().saturating_sub(range.start.addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: `(component)` in binary form.
    const EMPTY_COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    #[test]
    fn deadlines_round_up_with_one_tick_of_slack() {
        assert_eq!(deadline_ticks(Duration::from_millis(100)), 21);
        assert_eq!(deadline_ticks(Duration::from_millis(101)), 22);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
    }

    #[test]
    fn garbage_does_not_compile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = runtime(dir.path()).expect("runtime");
        let err = rt.compile(b"not wasm at all").err();
        assert!(err.is_some_and(|e| e.starts_with("compile:")), "an error");
    }

    #[test]
    fn one_engine_per_cache_folder_and_the_second_compile_hits_the_disk_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = runtime(dir.path()).expect("runtime");
        let again = runtime(dir.path()).expect("runtime");
        assert!(Arc::ptr_eq(&rt, &again));
        let (_, first) = rt.compile(&EMPTY_COMPONENT).expect("compiles");
        assert_eq!(first, CodeSource::Compiler);
        let (_, second) = rt.compile(&EMPTY_COMPONENT).expect("compiles");
        assert_eq!(second, CodeSource::DiskCache);
    }

    #[test]
    fn a_cold_compile_is_served_from_the_disk_cache_entry_it_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = runtime(dir.path()).expect("runtime");
        let (component, source) = rt.compile(&EMPTY_COMPONENT).expect("compiles");
        assert_eq!(source, CodeSource::Compiler);
        // A throwaway engine compiled; the serving engine loaded its entry, so the serving
        // engine's compiler (and the memory it would keep) was never used.
        assert_eq!(rt.cache.cache_hits(), 1, "the serving engine hit the cache");
        assert!(Engine::same(component.engine(), &rt.engine));
        assert!(code_bytes(&component) > 0);
    }

    /// Wait until `f` holds, at most 5 s.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    #[test]
    fn the_ticker_runs_only_while_a_guest_call_is_in_flight() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _rt = runtime(dir.path()).expect("runtime");
        // Idle: the ticker parks (it used to wake every 5 ms forever).
        assert!(
            eventually(|| PARKED.load(Ordering::SeqCst)),
            "parks when idle"
        );
        let call = ticking();
        assert!(
            eventually(|| !PARKED.load(Ordering::SeqCst)),
            "runs during a call"
        );
        drop(call);
        assert!(eventually(|| PARKED.load(Ordering::SeqCst)), "parks again");
    }
}
