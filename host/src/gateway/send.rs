//! Delivery: queueing one frame to one, several or every client of a system.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Message;
use tracing::error;

use super::{Gateway, GatewayError};
use crate::outbound::{self, Outbound, Prepared};
use crate::registry::RegistryError;

/// Recipients per task when a broadcast is split over the runtime's workers.
const FAN_OUT_CHUNK: usize = 1024;

/// A broadcast to fewer recipients than this is written by the sending task alone.
const FAN_OUT_SPLIT_MIN: usize = 2 * FAN_OUT_CHUNK;

/// What is pushed into a client's queue.
#[derive(Clone, Copy)]
enum Push<'a> {
    /// A frame encoded once for several recipients ([`Outbound::push_prepared`]).
    Shared(&'a Prepared),
    /// A message for one recipient ([`Outbound::push_one`]).
    One(&'a Message),
}

impl Gateway {
    /// Queue `msg` to a client of `system` on this node; false when it is not here (or is
    /// closing). Metrics are counted by the callers, once per send rather than per recipient.
    fn push(&self, system: &str, client: &str, msg: Push<'_>) -> bool {
        let Some(conn) = self.inner.connections.get(client) else {
            return false;
        };
        if &*conn.system != system {
            return false;
        }
        self.push_to(system, &conn.out, msg).is_ok()
    }

    /// Push to one queue; an overflow is counted here (the client is told to close).
    fn push_to(
        &self,
        system: &str,
        out: &Outbound,
        msg: Push<'_>,
    ) -> Result<(), outbound::QueueError> {
        let pushed = match msg {
            Push::Shared(prepared) => out.push_prepared(prepared),
            Push::One(msg) => out.push_one(msg),
        };
        if let Err(outbound::QueueError::Overflow) = pushed {
            self.count_overflow(system);
        }
        pushed
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
        let delivered = self.push(system, client, Push::One(msg));
        self.count_out(system, usize::from(delivered));
        delivered
    }

    /// Queue `msg` to `clients` of `system` (here, in this task): notices, which are sent from
    /// code that cannot wait, and every send to fewer than [`FAN_OUT_SPLIT_MIN`] clients.
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
            .filter(|c| self.push(system, c, Push::Shared(&msg)))
            .count();
        self.count_out(system, n);
        n
    }

    /// Publish `msg` once for those of `clients` held by other nodes; how many that is. Nothing
    /// (not even a walk of `clients`) on a single node.
    fn publish_remote<'a>(
        &self,
        system: &str,
        clients: impl Iterator<Item = &'a str>,
        msg: &Message,
    ) -> Result<usize, GatewayError> {
        let Some(broker) = self.inner.broker.get() else {
            return Ok(0);
        };
        let remote: Vec<&str> = clients
            .filter(|c| self.remote_broker(c).is_some())
            .collect();
        if !remote.is_empty() {
            broker.to_clients(system, &remote, msg)?;
            self.count_out(system, remote.len());
        }
        Ok(remote.len())
    }

    /// Queue `msg` to `clients` of `system` except `exclude`; how many took it. A send to a chat
    /// room's handful of members pushes as it looks them up (no list of queues is built); only
    /// a send large enough to be split collects the queues first.
    async fn deliver_many<'a, I>(
        &self,
        system: &str,
        clients: I,
        exclude: &[String],
        msg: Message,
    ) -> usize
    where
        I: IntoIterator<Item = &'a String>,
        I::IntoIter: ExactSizeIterator,
    {
        let clients = clients.into_iter();
        if clients.len() < FAN_OUT_SPLIT_MIN {
            return self.deliver_all(system, clients, exclude, &msg);
        }
        let targets = self.queues_of(system, clients, exclude);
        self.fan_out(system, targets, Prepared::new(msg)).await
    }

    /// The queues of `clients` that are connected to `system` on this node.
    fn queues_of<'a>(
        &self,
        system: &str,
        clients: impl IntoIterator<Item = &'a String>,
        exclude: &[String],
    ) -> Vec<Outbound> {
        clients
            .into_iter()
            .filter(|c| !exclude.contains(c))
            .filter_map(|c| {
                let conn = self.inner.connections.get(c)?;
                (&*conn.system == system).then(|| conn.out.clone())
            })
            .collect()
    }

    /// Push `msg` to each of `targets`; how many took it.
    fn push_each(&self, system: &str, targets: &[Outbound], msg: &Prepared) -> usize {
        targets
            .iter()
            .filter(|out| self.push_to(system, out, Push::Shared(msg)).is_ok())
            .count()
    }

    /// Push `msg` to every one of `targets` and count the deliveries. Returns once every
    /// recipient has it queued or written, so a sender's next message to any of them comes
    /// after this one.
    ///
    /// A large broadcast is split into chunks of [`FAN_OUT_CHUNK`] recipients run as tasks, so
    /// that every worker of the runtime writes sockets: on one worker a write costs ~5 µs of
    /// CPU (10k clients: ~50 ms), which is what a single-threaded Node `ws` pays too; the second
    /// core is the only way to be well ahead of it (issue 13). Chunks are disjoint, and such
    /// broadcasts to one system take the system's turn one at a time, so every client sees them
    /// in the same order. Small sends stay in this task: a spawn costs more than it saves; they
    /// take no turn, so two concurrent small broadcasts from different senders (like any two
    /// concurrent sends) may reach two clients in different orders; each sender's own order
    /// per client always holds.
    async fn fan_out(&self, system: &str, targets: Vec<Outbound>, msg: Prepared) -> usize {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let table = (workers > 1 && targets.len() >= FAN_OUT_SPLIT_MIN)
            .then(|| self.inner.by_system.get(system).map(|t| t.clone()))
            .flatten();
        let n = match table {
            None => self.push_each(system, &targets, &msg),
            Some(table) => {
                // The whole split broadcast runs in a task of its own, its turn held by that
                // task: a caller that goes away (an API client hanging up) must not cut it
                // half-way (its chunks not started would be aborted) nor release the turn
                // while chunks still write (the next broadcast could overtake them).
                let turn = table.turn.clone();
                let (gateway, system_name) = (self.clone(), Arc::<str>::from(system));
                let whole = tokio::spawn(async move {
                    let _turn = turn.lock_owned().await;
                    let targets = Arc::new(targets);
                    let msg = Arc::new(msg);
                    let mut chunks = tokio::task::JoinSet::new();
                    for start in (0..targets.len()).step_by(FAN_OUT_CHUNK) {
                        let (gateway, system, targets, msg) = (
                            gateway.clone(),
                            system_name.clone(),
                            targets.clone(),
                            msg.clone(),
                        );
                        chunks.spawn(async move {
                            let end = (start + FAN_OUT_CHUNK).min(targets.len());
                            gateway.push_each(&system, &targets[start..end], &msg)
                        });
                    }
                    let mut n = 0;
                    while let Some(done) = chunks.join_next().await {
                        match done {
                            Ok(k) => n += k,
                            // Only pushes to queues: a panic is a bug; its deliveries are
                            // not counted.
                            Err(e) => {
                                error!(system = %system_name, cause = %e, "fan-out chunk failed");
                            }
                        }
                    }
                    n
                });
                whole.await.unwrap_or_else(|e| {
                    error!(system, cause = %e, "fan-out failed");
                    0
                })
            }
        };
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
        // A client connected here is in the registry (`connect` registers before it inserts the
        // connection, `disconnect` removes the connection first): it is delivered to without a
        // registry lookup (a system-map read, the system's lock, a SipHash of the id: 0.35 us
        // of the 12.4 us per reply of the Rust echo plugin, perf, 1000 clients). In a cluster
        // this also delivers to a local client while the registry disagrees or cannot answer
        // (Redis down or lost its data, this node being reaped, its system being unregistered).
        // Not delivered here (elsewhere, closing, unknown): the lookup decides as before.
        if self.deliver(system, client, &msg) {
            return Ok(true);
        }
        if !self.inner.registry.client_exists(system, client).await? {
            self.ensure_system(system).await?;
            return Err(RegistryError::UnknownClient(client.to_owned()).into());
        }
        if let Some(broker) = self.remote_broker(client) {
            broker.to_clients(system, &[client], &msg)?;
            self.count_out(system, 1);
            return Ok(true);
        }
        Ok(self.deliver(system, client, &msg))
    }

    /// [`Gateway::send_to_client`] to a client whose own queue the caller holds: the client
    /// whose message a plugin is handling, replied to from the call its connection task makes
    /// (`from` of `EventSink::message`, `plugin::state::Caller`). The queue is the
    /// connection's, so no lookup decides where it goes. `None` when that queue is closed (the
    /// client is leaving): the caller then sends as to anyone, and the registry decides as
    /// before. A full queue: not delivered, counted, the client told to close, as through
    /// `send_to_client`, except that no registry is asked whether the client exists (in a
    /// cluster, `send_to_client` asked Redis after an overflow and could answer `unavailable`).
    pub(crate) fn send_to_own(
        &self,
        system: &str,
        own: &Outbound,
        msg: &Message,
    ) -> Option<Result<bool, GatewayError>> {
        // The queue applies the size rule `check_size` does: its refusal is the same error.
        match self.push_to(system, own, Push::One(msg)) {
            Ok(()) => {
                self.count_out(system, 1);
                Some(Ok(true))
            }
            Err(outbound::QueueError::Overflow) => Some(Ok(false)),
            Err(e @ outbound::QueueError::TooLarge { .. }) => Some(Err(e.into())),
            Err(outbound::QueueError::Closed) => None,
        }
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
        let remote = self.publish_remote(system, unique.iter().map(|c| c.as_str()), &msg)?;
        Ok(remote + self.deliver_many(system, unique, &[], msg).await)
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
        if let Some(broker) = self.inner.broker.get() {
            // A cluster never reads the member list to send: Redis counts the group (one round
            // trip), one packet goes to the group's channel (only nodes with members listen),
            // and this node writes to its own members, which it knows. Redis commands per
            // broadcast: 2, whatever the group's size.
            let count = self
                .inner
                .registry
                .group_count(system, group, exclude)
                .await?;
            broker.to_group(system, group, exclude, &msg)?;
            let local = broker.local_members(system, group);
            self.deliver_many(system, &local, exclude, msg).await;
            return Ok(count);
        }
        let members = self.inner.registry.group_clients(system, group).await?;
        Ok(self.deliver_many(system, &members, exclude, msg).await)
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
        if let Some(broker) = self.inner.broker.get() {
            // Other nodes count their own deliveries; this answer counts this node's.
            broker.to_system(system, exclude, &msg)?;
        }
        Ok(self.fan_out_to_local_system(system, exclude, msg).await)
    }

    /// Write `msg` to every client of `system` on this node except `exclude`; for this node's
    /// own sends and for packets from other nodes alike. Only this node's connections can be
    /// written to: walk them, queue handles in hand (cloned out of the table so that connects
    /// and disconnects do not wait for the broadcast's writes).
    pub(super) async fn fan_out_to_local_system(
        &self,
        system: &str,
        exclude: &[String],
        msg: Message,
    ) -> usize {
        let targets: Vec<Outbound> = match self.inner.by_system.get(system) {
            Some(table) => table
                .conns
                .read()
                .iter()
                .filter(|(id, _)| !exclude.contains(id))
                .map(|(_, out)| out.clone())
                .collect(),
            None => Vec::new(),
        };
        self.fan_out(system, targets, Prepared::new(msg)).await
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
        let remote = self.publish_remote(system, clients.iter().map(String::as_str), &msg)?;
        Ok(remote + self.deliver_many(system, &clients, &[], msg).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    async fn gateway(max_queue_messages: usize) -> Gateway {
        let mut config = crate::Config {
            max_queue_messages,
            ..crate::Config::default()
        };
        config
            .systems
            .insert("app".into(), crate::config::SystemConfig::default());
        Gateway::new(Arc::new(config)).await
    }

    fn sent(gw: &Gateway) -> u64 {
        gw.metrics()
            .messages_out
            .get_or_create(&Metrics::system("app"))
            .get()
    }

    /// The reply of a plugin to the client whose message it handles: pushed to that client's
    /// own queue, answered and counted as `send_to_client` answers and counts.
    #[tokio::test]
    async fn a_reply_to_the_sender_goes_to_its_own_queue() {
        let gw = gateway(1).await;
        let (id, mut rx) = gw.connect("app", None).await.expect("connect");
        let own = rx.sender();
        let msg = Message::text("hi");
        assert!(matches!(gw.send_to_own("app", &own, &msg), Some(Ok(true))));
        assert_eq!(sent(&gw), 1);
        assert_eq!(rx.try_recv(), Some(msg.clone()));
        // Larger than any queue may hold: the error `send_to_client` gives.
        let huge = Message::binary(vec![0u8; gw.config().max_queue_bytes + 1]);
        assert!(matches!(gw.send_to_own("app", &own, &huge), Some(Err(_))));
        assert_eq!(sent(&gw), 1);
        // The queue holds one message: the third overflows, is counted, and closes the client.
        assert!(matches!(gw.send_to_own("app", &own, &msg), Some(Ok(true))));
        assert!(matches!(gw.send_to_own("app", &own, &msg), Some(Ok(false))));
        assert_eq!(sent(&gw), 2);
        let overflows = gw
            .metrics()
            .queue_overflows
            .get_or_create(&Metrics::system("app"))
            .get();
        assert_eq!(overflows, 1);
        assert!(own.is_closing());
        drop(rx);
        gw.disconnect("app", &id, 1000, "").await;
    }

    /// A client whose connection ended (its task dropped its side of the queue): not pushed
    /// to; the caller sends as to anyone, and the registry decides (here: unknown client).
    #[tokio::test]
    async fn a_reply_to_a_sender_that_left_is_sent_as_to_anyone() {
        let gw = gateway(8).await;
        let (id, rx) = gw.connect("app", None).await.expect("connect");
        let own = rx.sender();
        drop(rx);
        let msg = Message::text("hi");
        assert!(gw.send_to_own("app", &own, &msg).is_none());
        gw.disconnect("app", &id, 1000, "").await;
        assert!(gw.send_to_client("app", &id, msg).await.is_err());
        assert_eq!(sent(&gw), 0);
    }
}
