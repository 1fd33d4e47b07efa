//! `GET /dashboard/events`: the dashboard's live feed, a Server-Sent Events stream pushing one
//! JSON snapshot a second (systems with their connections and groups, plugins, message totals).
//!
//! It runs only while a dashboard holds it open: an idle gateway does no work for it. The number
//! of open streams is bounded ([`MAX_STREAMS`]; past it 429), each ends when the gateway shuts
//! down, and it sits behind the API's authentication (a page sends its token as a Bearer header
//! through `fetch`, which `EventSource` cannot).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Interval, MissedTickBehavior};

use crate::api::ApiError;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::plugin::PluginHost;

/// Dashboards that may stream at once: each costs one snapshot a second.
pub const MAX_STREAMS: usize = 16;
/// Time between two snapshots.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Groups listed per system in a snapshot: a system may hold 100k groups, a page shows a few.
pub const MAX_GROUPS_SHOWN: usize = 50;

#[derive(Clone)]
struct Feed {
    gateway: Gateway,
    plugins: Option<Arc<PluginHost>>,
    streams: Arc<Semaphore>,
}

/// The feed's route; the caller mounts it behind the API's authentication.
pub fn router(gateway: Gateway, plugins: Option<Arc<PluginHost>>) -> Router {
    Router::new()
        .route("/dashboard/events", get(events))
        .with_state(Feed {
            gateway,
            plugins,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        })
}

/// What one open stream holds: its place among the bounded streams and its clock.
struct Open {
    feed: Feed,
    ticks: Interval,
    _permit: OwnedSemaphorePermit,
}

async fn events(
    State(feed): State<Feed>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = feed.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::TooMany(format!(
            "{MAX_STREAMS} dashboard streams are open, the limit"
        ))
    })?;
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let open = Open {
        feed,
        ticks,
        _permit: permit,
    };
    let stream = stream::unfold(open, |mut open| async move {
        let stop = open.feed.gateway.shutdown_token().clone();
        tokio::select! {
            () = stop.cancelled() => None,
            _ = open.ticks.tick() => {
                let data = snapshot(&open.feed).await.to_string();
                Some((Ok(Event::default().data(data)), open))
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `{t, systems:{name:{connections, groups:[[name,size]…], groupCount}}, messagesIn,
/// messagesOut, plugins:[…as GET /api/plugins]}`.
async fn snapshot(feed: &Feed) -> Value {
    let gw = &feed.gateway;
    let reg = gw.registry();
    let metrics = gw.metrics();
    let mut systems = Map::new();
    let (mut total_in, mut total_out) = (0u64, 0u64);
    // A registry that cannot answer shows no systems in this snapshot; the next one retries.
    let names = reg.systems().await.unwrap_or_else(|err| {
        tracing::warn!(cause = %err, "events snapshot without systems");
        Vec::new()
    });
    for name in names {
        let label = Metrics::system(&name);
        // `get`, not `get_or_create`: reading must not create a series (one for a system
        // unregistered meanwhile would outlive it).
        total_in += metrics.messages_in.get(&label).map_or(0, |c| c.get());
        total_out += metrics.messages_out.get(&label).map_or(0, |c| c.get());
        let connections = reg.client_count(&name).await.unwrap_or(0);
        let names = reg.groups(&name).await.unwrap_or_default();
        let mut groups = Vec::new();
        for g in names.iter().take(MAX_GROUPS_SHOWN) {
            let size = reg.group_clients(&name, g).await.map_or(0, |m| m.len());
            groups.push(json!([g, size]));
        }
        systems.insert(
            name,
            json!({"connections": connections, "groups": groups, "groupCount": names.len()}),
        );
    }
    let plugins = feed
        .plugins
        .as_ref()
        .map_or(Value::Array(Vec::new()), |p| p.list()["list"].clone());
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    json!({
        "t": t,
        "systems": systems,
        "messagesIn": total_in,
        "messagesOut": total_out,
        "plugins": plugins,
    })
}
