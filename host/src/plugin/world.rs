//! Which contract a component targets, and calls into a component of either.
//!
//! A component names the contract it was built against in its imports: the `host` interface is
//! imported as `wasmgate:plugin/host@0.1.0` or `…@0.2.0` (its types as `…/types@…`). The
//! export names (`init`, `on-connect`, …) carry no version, and 0.2 changed two of their
//! signatures; so the world is read from the imports, and a component importing neither (it
//! makes no host call) is tried against 0.2 first, then 0.1, by the types of its exports.
//! A component built for a contract this gateway does not know (`@0.3.0`) is refused with a
//! message naming the versions it serves, instead of a linker error about a missing import.

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use super::bindings::{CloseReason, Reject, WitConnectContext, WitMessage, WitTimer, v0_1, v0_2};
use super::state::HostState;

/// Prefix of every interface name of the contract.
const PACKAGE: &str = "wasmgate:plugin/";

/// The contracts this gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum World {
    /// `wasmgate:plugin@0.1.0`.
    V0_1,
    /// `wasmgate:plugin@0.2.0`.
    V0_2,
}

impl World {
    /// The version, as `GET /api/plugins` shows it (`world`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            World::V0_1 => "0.1.0",
            World::V0_2 => "0.2.0",
        }
    }
}

/// The contract named by a component's imports: `Ok(None)` when it imports none of its
/// interfaces, an error when it names a version not served here.
pub(crate) fn named_world(component: &Component) -> Result<Option<World>, String> {
    let engine = component.engine();
    let mut found = None;
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix(PACKAGE) else {
            continue;
        };
        let version = rest.split_once('@').map_or("", |(_, v)| v);
        let world = match version {
            "0.1.0" => World::V0_1,
            "0.2.0" => World::V0_2,
            other => {
                return Err(format!(
                    "the component imports {name}: it targets wasmgate:plugin@{other}, \
                     this gateway serves 0.1.0 and 0.2.0"
                ));
            }
        };
        match found {
            Some(w) if w != world => {
                return Err("the component imports both wasmgate:plugin@0.1.0 and @0.2.0".into());
            }
            _ => found = Some(world),
        }
    }
    Ok(found)
}

/// A compiled component linked against the host, exports checked: ready to instantiate.
pub(crate) enum PluginPre {
    V0_1(v0_1::PluginPre<HostState>),
    V0_2(v0_2::PluginPre<HostState>),
}

impl PluginPre {
    /// Link `component` for the contract it targets.
    pub(crate) fn new(linker: &Linker<HostState>, component: &Component) -> Result<Self, String> {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| format!("link (imports do not match the plugin world): {e:#}"))?;
        let exports = |world: World, e: wasmtime::Error| {
            format!(
                "exports do not match the plugin world wasmgate:plugin@{}: {e:#}",
                world.as_str()
            )
        };
        match named_world(component)? {
            Some(World::V0_1) => v0_1::PluginPre::new(pre)
                .map(PluginPre::V0_1)
                .map_err(|e| exports(World::V0_1, e)),
            Some(World::V0_2) => v0_2::PluginPre::new(pre)
                .map(PluginPre::V0_2)
                .map_err(|e| exports(World::V0_2, e)),
            None => match v0_2::PluginPre::new(pre.clone()) {
                Ok(p) => Ok(PluginPre::V0_2(p)),
                Err(e) => v0_1::PluginPre::new(pre)
                    .map(PluginPre::V0_1)
                    .map_err(|_| exports(World::V0_2, e)),
            },
        }
    }

    /// The contract it targets.
    pub(crate) fn world(&self) -> World {
        match self {
            PluginPre::V0_1(_) => World::V0_1,
            PluginPre::V0_2(_) => World::V0_2,
        }
    }

    /// A new instance in `store`.
    pub(crate) async fn instantiate_async(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Plugin> {
        Ok(match self {
            PluginPre::V0_1(p) => Plugin::V0_1(p.instantiate_async(store).await?),
            PluginPre::V0_2(p) => Plugin::V0_2(p.instantiate_async(store).await?),
        })
    }
}

/// Typed access to an instance's exports, whichever contract it targets. The calls take the
/// 0.2 types; a 0.1 instance gets what its contract has (no connect context, the timer's id and
/// payload).
pub(crate) enum Plugin {
    V0_1(v0_1::Plugin),
    V0_2(v0_2::Plugin),
}

// `&String`: the generated bindings take the WIT `client-id` (a `string` alias) that way, and a
// call should not allocate to convert.
#[allow(clippy::ptr_arg)]
impl Plugin {
    pub(crate) async fn call_init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Plugin::V0_1(p) => p.call_init(store, config).await,
            Plugin::V0_2(p) => p.call_init(store, config).await,
        }
    }

    pub(crate) async fn call_on_connect(
        &self,
        store: &mut Store<HostState>,
        client: &String,
        context: &WitConnectContext,
    ) -> wasmtime::Result<Result<(), Reject>> {
        match self {
            Plugin::V0_1(p) => Ok(p
                .call_on_connect(store, client)
                .await?
                .map_err(Reject::from)),
            Plugin::V0_2(p) => p.call_on_connect(store, client, context).await,
        }
    }

    pub(crate) async fn call_on_message(
        &self,
        store: &mut Store<HostState>,
        client: &String,
        msg: &mut WitMessage,
    ) -> wasmtime::Result<()> {
        match self {
            Plugin::V0_1(p) => {
                // Converted by move and back: the lane keeps its buffer (`bindings::Inbound`).
                let old: v0_1::wasmgate::plugin::types::Message =
                    std::mem::replace(msg, WitMessage::Text(String::new())).into();
                let called = p.call_on_message(store, client, &old).await;
                *msg = old.into();
                called
            }
            Plugin::V0_2(p) => p.call_on_message(store, client, msg).await,
        }
    }

    pub(crate) async fn call_on_close(
        &self,
        store: &mut Store<HostState>,
        client: &String,
        reason: CloseReason,
    ) -> wasmtime::Result<()> {
        match self {
            Plugin::V0_1(p) => p.call_on_close(store, client, &reason.into()).await,
            Plugin::V0_2(p) => p.call_on_close(store, client, &reason).await,
        }
    }

    pub(crate) async fn call_on_timer(
        &self,
        store: &mut Store<HostState>,
        timer: &WitTimer,
    ) -> wasmtime::Result<()> {
        match self {
            Plugin::V0_1(p) => p.call_on_timer(store, timer.id, &timer.payload).await,
            Plugin::V0_2(p) => p.call_on_timer(store, timer).await,
        }
    }
}
