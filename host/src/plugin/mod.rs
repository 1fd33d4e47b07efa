//! Plugin runtime. (Lead's temporary interface so the core compiles; the runtime helper replaces this file.)
use crate::gateway::Gateway;
use std::sync::Arc;
/// Placeholder.
#[derive(Debug, thiserror::Error)]
#[error("plugin runtime not built yet")]
pub struct PluginError;
/// Placeholder.
pub struct PluginHost;
impl PluginHost {
    /// Placeholder.
    pub async fn start(_gateway: Gateway) -> Result<Arc<PluginHost>, PluginError> {
        Err(PluginError)
    }
}
/// Placeholder.
pub fn router(_host: Arc<PluginHost>) -> axum::Router {
    axum::Router::new()
}
