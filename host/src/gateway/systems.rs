//! Systems (tenants): created by the configuration, by plugins and by the API's `register`,
//! bounded by `limits.max_systems`, and removed by the API's `unregister`.

use tracing::info;

use super::{Gateway, GatewayError};
use crate::domain::close::CloseCode;
use crate::domain::names::SystemId;
use crate::registry::RegistryError;

/// Close reason of the clients of an unregistered system (with 1001, going away: the endpoint
/// they connected to no longer exists, and they should not reconnect to it blindly).
pub const UNREGISTERED_REASON: &str = "system unregistered";

impl Gateway {
    /// Create a system (tenant); `false` when it existed already. Refused when the name breaks
    /// the name rule or `limits.max_systems` systems exist.
    pub async fn register_system(&self, system: &str) -> Result<bool, GatewayError> {
        let system = SystemId::parse(system, &self.config().limits)?;
        let max = self
            .config()
            .systems
            .get(system.as_str())
            .and_then(|s| s.max_connections);
        let created = self.inner.registry.register_system(&system, max).await?;
        self.inner
            .registered
            .lock()
            .insert(system.as_str().to_owned(), max);
        Ok(created)
    }

    /// Remove a system created at run time (by `register`): its clients are closed with 1001
    /// "system unregistered", it leaves the registry and every metric series labelled with it
    /// is dropped. Systems of the configuration and systems a plugin serves are refused
    /// ([`GatewayError::Protected`]): they would come back on the next restart or reload.
    /// Returns how many clients were closed.
    pub async fn unregister_system(&self, system: &SystemId) -> Result<usize, GatewayError> {
        if self.config().systems.contains_key(system.as_str()) {
            return Err(GatewayError::Protected(
                system.to_string(),
                "declared in the configuration",
            ));
        }
        if self
            .inner
            .events
            .get()
            .is_some_and(|sink| sink.serves(system))
        {
            return Err(GatewayError::Protected(
                system.to_string(),
                "served by a plugin",
            ));
        }
        let clients = self.inner.registry.remove_system(system).await?;
        self.inner.registered.lock().remove(system.as_str());
        for client in &clients {
            self.close_local(client, CloseCode::GOING_AWAY, UNREGISTERED_REASON);
        }
        self.inner.metrics.remove_system(system);
        info!(%system, clients = clients.len(), "system unregistered");
        Ok(clients.len())
    }

    pub(super) async fn ensure_system(&self, system: &str) -> Result<(), GatewayError> {
        if self.inner.registry.system_exists(system).await? {
            Ok(())
        } else {
            Err(RegistryError::UnknownSystem(system.to_owned()).into())
        }
    }
}
