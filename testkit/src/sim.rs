//! [`Sim`]: one plugin instance and the simulated gateway around it.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

use crate::KitError;
use crate::bindings::wasmgate::plugin::types::{CloseReason, ConnectContext, Message, Timer};
use crate::bindings::{Plugin, PluginPre};
use crate::state::{ClientState, Followup, Frame, LogLine, SimState, World};

/// Fuel of one event (about a few hundred million wasm instructions): the simulation's stand-in
/// for the gateway's 100 ms deadline, deterministic, so an endless loop fails the test instead
/// of hanging it.
pub const DEFAULT_FUEL: u64 = 2_000_000_000;

/// Where the virtual clock starts (ms since the Unix epoch: 2025-01-01T00:00:00Z).
pub const DEFAULT_START_MS: u64 = 1_735_689_600_000;

/// The engine of every simulation in the process.
fn engine() -> Result<&'static Engine, KitError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_component_model(true);
            config.consume_fuel(true);
            Engine::new(&config).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| KitError::Load(e.clone()))
}

/// Compiled components by content, so a test file with many simulations of one plugin
/// compiles it once.
fn compile(bytes: &[u8]) -> Result<Component, KitError> {
    static COMPILED: Mutex<Option<HashMap<u64, Component>>> = Mutex::new(None);
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    let key = h.finish();
    if let Some(c) = COMPILED
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&key).cloned()))
    {
        return Ok(c);
    }
    let component =
        Component::new(engine()?, bytes).map_err(|e| KitError::Load(format!("{e:#}")))?;
    if let Ok(mut m) = COMPILED.lock() {
        m.get_or_insert_with(HashMap::new)
            .insert(key, component.clone());
    }
    Ok(component)
}

/// How to start a [`Sim`].
#[derive(Debug, Clone)]
pub struct SimBuilder {
    source: Source,
    system: String,
    config: String,
    start_ms: u64,
    fuel: u64,
    gateway: wasmgate::Config,
}

#[derive(Debug, Clone)]
enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl SimBuilder {
    /// The system the plugin serves (`system-id`); default `test`.
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = system.into();
        self
    }

    /// The config string `init` gets; default empty.
    pub fn config(mut self, config: impl Into<String>) -> Self {
        self.config = config.into();
        self
    }

    /// Where the virtual clock starts, in ms since the Unix epoch.
    pub fn start_ms(mut self, ms: u64) -> Self {
        self.start_ms = ms;
        self
    }

    /// Fuel of one event (see [`DEFAULT_FUEL`]).
    pub fn fuel_per_event(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// The gateway configuration whose limits the simulation enforces (`limits.*`,
    /// `max_queue_messages` for the send budget, `plugin.max_memory_bytes`); default: the
    /// gateway's defaults, so a plugin meets the limits a default gateway enforces.
    pub fn gateway_config(mut self, config: wasmgate::Config) -> Self {
        self.gateway = config;
        self
    }

    /// Load, link and instantiate the plugin, and run its `init`.
    pub fn build(self) -> Result<Sim, KitError> {
        let bytes = match &self.source {
            Source::Path(p) => {
                std::fs::read(p).map_err(|e| KitError::Load(format!("{}: {e}", p.display())))?
            }
            Source::Bytes(b) => b.clone(),
        };
        let engine = engine()?;
        let component = compile(&bytes)?;
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| KitError::Load(format!("WASI: {e:#}")))?;
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| KitError::Load(format!("host: {e:#}")))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            KitError::Load(format!(
                "link (is it a wasmgate:plugin@0.2.0 component?): {e:#}"
            ))
        })?;
        let pre = PluginPre::new(pre)
            .map_err(|e| KitError::Load(format!("exports of wasmgate:plugin@0.2.0: {e:#}")))?;
        let world = World {
            config: self.gateway,
            system: self.system,
            now_ms: self.start_ms,
            ..World::default()
        };
        let mut sim = Sim {
            store: Store::new(engine, SimState::new(world)),
            pre,
            instance: None,
            config: self.config,
            fuel: self.fuel,
            traps: Vec::new(),
            next_client: 0,
        };
        sim.instantiate().map_err(|e| match e {
            KitError::Trap { cause, .. } => KitError::Init(cause),
            other => other,
        })?;
        Ok(sim)
    }
}

/// A plugin running against a simulated gateway: see the crate docs.
pub struct Sim {
    store: Store<SimState>,
    pre: PluginPre<SimState>,
    /// `None` after a trap, until the next event instantiates again.
    instance: Option<Plugin>,
    config: String,
    fuel: u64,
    traps: Vec<String>,
    next_client: u64,
}

/// An empty connect context (no query, no headers, peer `127.0.0.1:1`, no token).
pub fn empty_context() -> ConnectContext {
    ConnectContext {
        query: Vec::new(),
        headers: Vec::new(),
        peer: "127.0.0.1:1".into(),
        uid: None,
        claims: None,
    }
}

impl Sim {
    /// A simulation of the component at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SimBuilder {
        Self::builder_from(Source::Path(path.as_ref().to_path_buf()))
    }

    /// A simulation of the component `bytes`.
    pub fn builder_bytes(bytes: Vec<u8>) -> SimBuilder {
        Self::builder_from(Source::Bytes(bytes))
    }

    fn builder_from(source: Source) -> SimBuilder {
        SimBuilder {
            source,
            system: "test".into(),
            config: String::new(),
            start_ms: DEFAULT_START_MS,
            fuel: DEFAULT_FUEL,
            gateway: wasmgate::Config::default(),
        }
    }

    /// A fresh instance with `init` run (the gateway does the same after every trap).
    fn instantiate(&mut self) -> Result<(), KitError> {
        // A trapped instance's store may be poisoned: start a new one with the same world.
        let world = std::mem::take(&mut self.store.data_mut().world);
        let engine = self.store.engine().clone();
        self.store = Store::new(&engine, SimState::new(world));
        self.store.limiter(|s| &mut s.limits);
        self.set_fuel()?;
        self.store.data_mut().world.start_event();
        let plugin = self
            .pre
            .instantiate(&mut self.store)
            .map_err(|e| KitError::Init(format!("instantiate: {e:#}")))?;
        let init = plugin.call_init(&mut self.store, &self.config);
        self.store.data_mut().collect_stdio();
        match init {
            Ok(Ok(())) => {
                self.instance = Some(plugin);
                Ok(())
            }
            Ok(Err(msg)) => Err(KitError::Init(msg)),
            Err(e) => Err(KitError::Init(format!("trapped: {e:#}"))),
        }
    }

    fn set_fuel(&mut self) -> Result<(), KitError> {
        self.store
            .set_fuel(self.fuel)
            .map_err(|e| KitError::Load(format!("fuel: {e:#}")))
    }

    /// Run one event on the instance (instantiating first after a trap), then what it caused.
    fn call<T>(
        &mut self,
        event: &'static str,
        f: impl FnOnce(&Plugin, &mut Store<SimState>) -> wasmtime::Result<T>,
    ) -> Result<T, KitError> {
        if self.instance.is_none() {
            self.instantiate()?;
        }
        self.set_fuel()?;
        self.store.data_mut().world.start_event();
        let Some(plugin) = &self.instance else {
            return Err(KitError::Init("no instance".into()));
        };
        let result = f(plugin, &mut self.store);
        self.store.data_mut().collect_stdio();
        match result {
            Ok(v) => {
                self.followups()?;
                Ok(v)
            }
            Err(e) => {
                let cause = format!("{e:#}");
                self.traps.push(format!("{event}: {cause}"));
                self.instance = None;
                Err(KitError::Trap { event, cause })
            }
        }
    }

    /// Deliver what the last event caused: closes it requested become `on-close`s.
    fn followups(&mut self) -> Result<(), KitError> {
        loop {
            let next = self.store.data_mut().world.followups.pop();
            let Some(Followup::Close(client, code, reason)) = next else {
                return Ok(());
            };
            if self.store.data_mut().world.client(&client).is_none() {
                continue;
            }
            self.leave(&client, code, &reason)?;
        }
    }

    /// `client` leaves with `code`: out of the registry (notices, bound timers), then `on-close`.
    fn leave(&mut self, client: &str, code: u16, reason: &str) -> Result<(), KitError> {
        let world = &mut self.store.data_mut().world;
        if let Some(c) = world.clients.get_mut(client) {
            c.closed = Some((code, reason.to_owned()));
        }
        world.remove(client);
        let reason = CloseReason {
            code,
            reason: reason.to_owned(),
        };
        let client = client.to_owned();
        self.call("on-close", |p, s| p.call_on_close(s, &client, &reason))
    }

    /// Connect a client with an empty context; its id. `Err(Rejected)` if `on-connect` refused.
    pub fn connect(&mut self) -> Result<String, KitError> {
        self.connect_with(empty_context())
    }

    /// Connect a client whose URL had these query parameters.
    pub fn connect_with_query(&mut self, query: &[(&str, &str)]) -> Result<String, KitError> {
        let mut ctx = empty_context();
        ctx.query = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.connect_with(ctx)
    }

    /// Connect a client with `ctx` (its `uid` is bound, as a token's `sub` would be). A trap in
    /// `on-connect` accepts the client, as in the gateway (the trap is in [`Sim::traps`]).
    pub fn connect_with(&mut self, ctx: ConnectContext) -> Result<String, KitError> {
        self.next_client += 1;
        let id = format!("client-{}", self.next_client);
        let state = ClientState {
            connected: true,
            uid: ctx.uid.clone(),
            ..ClientState::default()
        };
        self.store
            .data_mut()
            .world
            .clients
            .insert(id.clone(), state);
        match self.call("on-connect", |p, s| p.call_on_connect(s, &id, &ctx)) {
            Ok(Ok(())) | Err(KitError::Trap { .. }) => Ok(id),
            Ok(Err(reject)) => {
                // As the gateway: an invalid code becomes 4000, the reason is cut to what a
                // close frame holds.
                let code = wasmgate::plugin::rules::reject_code(reject.code);
                let reason = wasmgate::domain::close::CloseReason::truncated(&reject.reason)
                    .as_str()
                    .to_owned();
                self.leave(&id, code, &reason)?;
                Err(KitError::Rejected { code, reason })
            }
            Err(e) => Err(e),
        }
    }

    fn connected(&mut self, client: &str) -> Result<(), KitError> {
        match self.store.data_mut().world.client(client) {
            Some(_) => Ok(()),
            None => Err(KitError::UnknownClient(client.to_owned())),
        }
    }

    /// `client` sends a text frame.
    pub fn send_text(&mut self, client: &str, text: &str) -> Result<(), KitError> {
        self.send(client, Message::Text(text.to_owned()))
    }

    /// `client` sends a binary frame.
    pub fn send_binary(&mut self, client: &str, bytes: &[u8]) -> Result<(), KitError> {
        self.send(client, Message::Binary(bytes.to_vec()))
    }

    fn send(&mut self, client: &str, msg: Message) -> Result<(), KitError> {
        self.connected(client)?;
        let client = client.to_owned();
        self.call("on-message", |p, s| p.call_on_message(s, &client, &msg))
    }

    /// `client` disconnects with `code` (1000 normal, 1001 going away, 1006 abnormal, …).
    pub fn disconnect(&mut self, client: &str, code: u16, reason: &str) -> Result<(), KitError> {
        self.connected(client)?;
        self.leave(client, code, reason)
    }

    /// Advance the virtual clock by `ms`, firing every timer that falls due, in order of due
    /// time (then of id), each with the clock at its due time.
    pub fn advance_ms(&mut self, ms: u64) -> Result<(), KitError> {
        let target = self.now_ms().saturating_add(ms);
        loop {
            let world = &mut self.store.data_mut().world;
            let next = world
                .timers
                .iter()
                .filter(|(_, t)| t.due_ms <= target)
                .min_by_key(|(id, t)| (t.due_ms, **id))
                .map(|(id, _)| *id);
            let Some(id) = next else {
                break;
            };
            let Some(t) = world.timers.remove(&id) else {
                break;
            };
            world.now_ms = world.now_ms.max(t.due_ms);
            let timer = Timer {
                id,
                payload: t.payload,
                client: t.client,
            };
            self.call("on-timer", |p, s| p.call_on_timer(s, &timer))?;
        }
        let world = &mut self.store.data_mut().world;
        world.now_ms = world.now_ms.max(target);
        Ok(())
    }

    /// The virtual clock, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.store.data().world.now_ms
    }

    /// Timers pending.
    pub fn pending_timers(&self) -> usize {
        self.store.data().world.timers.len()
    }

    /// What `client` received and was not taken yet (frames of a client that left stay).
    pub fn received(&self, client: &str) -> &[Frame] {
        self.store
            .data()
            .world
            .clients
            .get(client)
            .map_or(&[][..], |c| &c.inbox[..])
    }

    /// Take what `client` received.
    pub fn take_received(&mut self, client: &str) -> Vec<Frame> {
        self.store
            .data_mut()
            .world
            .clients
            .get_mut(client)
            .map(|c| std::mem::take(&mut c.inbox))
            .unwrap_or_default()
    }

    /// How the gateway closed `client` (rejected, `close-client`), if it did.
    pub fn closed(&self, client: &str) -> Option<(u16, String)> {
        self.store
            .data()
            .world
            .clients
            .get(client)
            .and_then(|c| c.closed.clone())
    }

    /// Whether `client` is connected.
    pub fn is_connected(&self, client: &str) -> bool {
        self.store
            .data()
            .world
            .clients
            .get(client)
            .is_some_and(|c| c.connected)
    }

    /// The groups of `client`, sorted.
    pub fn groups_of(&self, client: &str) -> Vec<String> {
        self.store
            .data()
            .world
            .clients
            .get(client)
            .map(|c| c.groups.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The connected members of `group`.
    pub fn members(&self, group: &str) -> Vec<String> {
        self.store.data().world.members(group)
    }

    /// The uid bound to `client`.
    pub fn uid_of(&self, client: &str) -> Option<String> {
        self.store
            .data()
            .world
            .clients
            .get(client)
            .and_then(|c| c.uid.clone())
    }

    /// A value of the key-value store.
    pub fn kv(&self, key: &str) -> Option<&[u8]> {
        self.store.data().world.kv.get(key).map(Vec::as_slice)
    }

    /// A value of the key-value store as text.
    pub fn kv_str(&self, key: &str) -> Option<String> {
        self.kv(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Seed the key-value store (state a previous version left, say).
    pub fn set_kv(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        self.store
            .data_mut()
            .world
            .kv
            .insert(key.to_owned(), value.into());
    }

    /// Every key of the store, sorted.
    pub fn kv_keys(&self) -> Vec<String> {
        self.store.data().world.kv.keys().cloned().collect()
    }

    /// What the plugin logged so far.
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().world.logs
    }

    /// The traps so far, as `<event>: <cause>`.
    pub fn traps(&self) -> &[String] {
        &self.traps
    }
}
