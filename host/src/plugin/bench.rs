//! Support for the micro-benchmark `host/benches/plugin_call.rs`: an instance of a loaded
//! plugin driven directly by the caller's task, without the queue and the lane task, to
//! measure the bare cost of a call into a guest. Not a stable API.

use std::sync::Arc;

use super::actor::{self, Instance, describe};
use super::bindings::WitMessage;
use super::engine::version_of;
use super::{PluginError, PluginHost};

/// A private instance of a loaded plugin (sharing its store and timers).
pub struct DirectInstance {
    instance: Instance,
    /// The system events are scoped to.
    system: Arc<str>,
    call_timeout: std::time::Duration,
}

impl PluginHost {
    /// A fresh instance of plugin `name`, built from its file, for benchmarks.
    #[doc(hidden)]
    pub async fn direct_instance(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<DirectInstance, PluginError> {
        let load_error = |error: String| PluginError::Load {
            plugin: name.to_owned(),
            error,
        };
        let plugin = self
            .plugins
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| PluginError::NotFound(name.to_owned()))?;
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| PluginError::NotFound(name.to_owned()))?;
        let bytes = tokio::fs::read(dir.join(format!("{name}.wasm")))
            .await
            .map_err(|e| load_error(e.to_string()))?;
        let hash = version_of(&bytes);
        let loaded = self.prepare(bytes, hash).await.map_err(load_error)?;
        let instance = actor::instantiate(&self.runtime.engine, &plugin, &loaded, 0)
            .await
            .map_err(load_error)?;
        // This instance serves no events: timers its `init` set must not fire into the plugin.
        for id in &instance.held_timers {
            plugin.timers.cancel(*id);
        }
        Ok(DirectInstance {
            instance,
            system: plugin.systems.first().cloned().unwrap_or_default(),
            call_timeout: plugin.limits.call_timeout,
        })
    }
}

impl DirectInstance {
    /// Call `on-message(client, text)` on the caller's task.
    // `&String`: the generated binding takes one, and the benchmark should not allocate.
    #[allow(clippy::ptr_arg)]
    pub async fn on_message(&mut self, client: &String, text: &str) -> Result<(), String> {
        let store = &mut self.instance.store;
        store.data_mut().begin_event(self.system.clone());
        actor::arm(store, self.call_timeout);
        let _ticking = super::engine::ticking();
        let mut msg = WitMessage::Text(text.to_owned());
        let result = self
            .instance
            .bindings
            .call_on_message(&mut self.instance.store, client, &mut msg)
            .await;
        self.instance.store.data_mut().end_event();
        result.map_err(|e| describe(&e, self.call_timeout, None))
    }
}
