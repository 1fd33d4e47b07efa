//! Delivery: queueing one frame to one, several or every client of a system.

use tokio_tungstenite::tungstenite::Message;

use super::{Gateway, GatewayError};
use crate::outbound::{self, Outbound, Prepared};
use crate::registry::RegistryError;

impl Gateway {
    /// Queue `msg` to a client of `system` on this node; false when it is not here (or is
    /// closing). Metrics are counted by the callers, once per send rather than per recipient.
    fn push(&self, system: &str, client: &str, msg: &Prepared) -> bool {
        let Some(conn) = self.inner.connections.get(client) else {
            return false;
        };
        if &*conn.system != system {
            return false;
        }
        self.push_to(system, &conn.out, msg)
    }

    fn push_to(&self, system: &str, out: &Outbound, msg: &Prepared) -> bool {
        match out.push_prepared(msg) {
            Ok(()) => true,
            Err(outbound::QueueError::Overflow) => {
                self.count_overflow(system);
                false
            }
            Err(outbound::QueueError::Closed | outbound::QueueError::TooLarge { .. }) => false,
        }
    }

    /// Refuse a message no queue could take, once per send (the size is the same for every
    /// recipient).
    fn check_size(&self, msg: &Message) -> Result<(), GatewayError> {
        Ok(outbound::check_size(
            msg.len(),
            self.config().max_queue_bytes,
        )?)
    }

    fn count_out(&self, system: &str, n: usize) {
        if n > 0 {
            self.inner.metrics.count_out(system, n as u64);
        }
    }

    fn deliver(&self, system: &str, client: &str, msg: &Message) -> bool {
        let delivered = self.push(system, client, &Prepared::new(msg.clone()));
        self.count_out(system, usize::from(delivered));
        delivered
    }

    pub(super) fn deliver_all<'a>(
        &self,
        system: &str,
        clients: impl IntoIterator<Item = &'a String>,
        exclude: &[String],
        msg: &Message,
    ) -> usize {
        // The frame is encoded once for every recipient.
        let msg = Prepared::new(msg.clone());
        let n = clients
            .into_iter()
            .filter(|c| !exclude.contains(c))
            .filter(|c| self.push(system, c, &msg))
            .count();
        self.count_out(system, n);
        n
    }

    /// Send to one client of `system`; `Ok(false)` when it is closing and the message was not
    /// queued.
    pub async fn send_to_client(
        &self,
        system: &str,
        client: &str,
        msg: Message,
    ) -> Result<bool, GatewayError> {
        self.check_size(&msg)?;
        if !self.inner.registry.client_exists(system, client).await {
            self.ensure_system(system).await?;
            return Err(RegistryError::UnknownClient(client.to_owned()).into());
        }
        Ok(self.deliver(system, client, &msg))
    }

    /// Send to several clients of `system`; unknown ids are skipped and repeated ids get the
    /// message once. Returns how many got it.
    pub async fn send_to_clients(
        &self,
        system: &str,
        clients: &[String],
        msg: Message,
    ) -> Result<usize, GatewayError> {
        self.check_size(&msg)?;
        self.ensure_system(system).await?;
        let unique: std::collections::BTreeSet<&String> = clients.iter().collect();
        Ok(self.deliver_all(system, unique, &[], &msg))
    }

    /// Send to every member of a group except `exclude`.
    pub async fn send_to_group(
        &self,
        system: &str,
        group: &str,
        msg: Message,
        exclude: &[String],
    ) -> Result<usize, GatewayError> {
        self.check_size(&msg)?;
        let members = self.inner.registry.group_clients(system, group).await?;
        Ok(self.deliver_all(system, &members, exclude, &msg))
    }

    /// Send to every client of the system except `exclude`.
    pub async fn send_to_system(
        &self,
        system: &str,
        msg: Message,
        exclude: &[String],
    ) -> Result<usize, GatewayError> {
        self.check_size(&msg)?;
        self.ensure_system(system).await?;
        // Only this node's connections can be written to: walk them, queue handles in hand
        // (cloned out of the table so that connects and disconnects do not wait for the
        // broadcast's writes).
        let targets: Vec<Outbound> = match self.inner.by_system.get(system) {
            Some(table) => table
                .read()
                .iter()
                .filter(|(id, _)| !exclude.contains(id))
                .map(|(_, out)| out.clone())
                .collect(),
            None => Vec::new(),
        };
        let msg = Prepared::new(msg);
        let n = targets
            .iter()
            .filter(|out| self.push_to(system, out, &msg))
            .count();
        self.count_out(system, n);
        Ok(n)
    }

    /// Send to every client bound to `uid`.
    pub async fn send_to_uid(
        &self,
        system: &str,
        uid: &str,
        msg: Message,
    ) -> Result<usize, GatewayError> {
        self.check_size(&msg)?;
        let clients = self.inner.registry.clients_by_uid(system, uid).await?;
        Ok(self.deliver_all(system, &clients, &[], &msg))
    }
}
