//! Delivery of what other nodes publish to this node's clients ([`LocalDelivery`]): the same
//! local queues as every other send, counted the same way.

use tokio_tungstenite::tungstenite::Message;

use super::Gateway;
use crate::cluster::timers::{Adopted, TimerRecord};
use crate::cluster::{Change, LocalDelivery};
use crate::domain::close::CloseCode;
use crate::registry::Left;

/// The reason a plugin's `on-close` gets for a client of a dead node (with code 1006: the
/// connection ended without a close frame, as far as anyone can tell).
pub const REAPED_REASON: &str = "node lost";

#[async_trait::async_trait]
impl LocalDelivery for Gateway {
    fn to_local_clients(
        &self,
        system: &str,
        clients: &[String],
        exclude: &[String],
        msg: &Message,
    ) -> usize {
        self.deliver_all(system, clients, exclude, msg)
    }

    async fn to_local_system(&self, system: &str, exclude: &[String], msg: Message) -> usize {
        self.fan_out_to_local_system(system, exclude, msg).await
    }

    fn reaped(&self, system: &str, client: &str, left: Vec<Left>) {
        for l in &left {
            self.notify_left(system, client, l);
        }
        if let Some(sink) = self.inner.events.get() {
            sink.close(system, client, CloseCode::ABNORMAL.get(), REAPED_REASON);
        }
    }

    fn reaped_while_away(&self, code: u16, reason: &str) {
        // New ids first: a client connecting from now on is not one the reaper is removing.
        self.inner.retired.lock().insert(self.inner.ids.instance());
        self.inner.ids.renew();
        for conn in self.inner.connections.iter() {
            conn.out.close(CloseCode::from_peer(code), reason);
        }
    }

    fn removed_late(&self, system: &str, client: &str, left: Option<Vec<Left>>) {
        for l in left.iter().flatten() {
            self.track(Change::Left {
                system,
                group: &l.group,
                client,
            });
            self.notify_left(system, client, l);
        }
        let deferred = self.inner.deferred.lock().remove(client);
        if let Some((code, reason)) = deferred
            && (left.is_some() || !self.was_reaped(client))
            && let Some(sink) = self.inner.events.get()
        {
            sink.close(system, client, code, &reason);
        }
    }

    fn instance(&self) -> String {
        self.inner.ids.instance()
    }

    fn adopt_timer(&self, timer: Adopted) -> bool {
        let Some(sink) = self.inner.events.get() else {
            return false;
        };
        let now = crate::plugin::now_ms();
        let delay = std::time::Duration::from_millis(timer.record.due_ms.saturating_sub(now));
        sink.adopt_timer(
            &timer.plugin,
            timer.id,
            &timer.record.system,
            timer.record.payload,
            timer.record.client,
            delay,
        )
    }

    fn pending_timers(&self) -> Vec<(String, u64, TimerRecord)> {
        let Some(sink) = self.inner.events.get() else {
            return Vec::new();
        };
        let instance = self.inner.ids.instance();
        sink.pending_timers()
            .into_iter()
            .map(|(plugin, id, system, payload, client, due_ms)| {
                let record = TimerRecord {
                    system: system.to_string(),
                    payload,
                    client,
                    due_ms,
                    instance: instance.clone(),
                };
                (plugin, id, record)
            })
            .collect()
    }

    fn systems_to_restore(&self) -> Vec<(String, Option<usize>)> {
        self.inner
            .registered
            .lock()
            .iter()
            .map(|(s, m)| (s.clone(), *m))
            .collect()
    }

    fn close_local_client(&self, system: &str, client: &str, code: u16, reason: &str) {
        // Checked by the node that took the request; checked again: a packet is outside input.
        let Ok(code) = CloseCode::application(code) else {
            tracing::warn!(
                system,
                client,
                code,
                "cluster close with a code not allowed"
            );
            return;
        };
        if let Some(conn) = self.inner.connections.get(client)
            && &*conn.system == system
        {
            conn.out.close(code, reason);
        }
    }
}
