//! Groups, uids and info: registry writes that notify (1001/1002) whoever they concern.
//!
//! Names arrive checked ([`GroupName`], [`Uid`]): the API and host calls parse them with the
//! same rule. Counts and sizes (groups per client and per system, info entries and bytes) are
//! the registry's to check, since it holds what they count.

use tracing::warn;

use super::{Gateway, GatewayError};
use crate::cluster::Change;
use crate::domain::names::{GroupName, Uid};
use crate::registry::{Info, Left, Member};
use crate::wire::{NOTICE_OFFLINE, NOTICE_ONLINE, notice};

impl Gateway {
    /// Add a client to a group; the group's other members get the online notice (1001).
    pub async fn join_group(
        &self,
        system: &str,
        client: &str,
        group: &GroupName,
        member: Member,
    ) -> Result<(), GatewayError> {
        let joined = self
            .inner
            .registry
            .join_group(system, client, group, member.clone())
            .await?;
        if joined.new {
            self.track(Change::Joined {
                system,
                group,
                client,
            });
            self.notify(
                system,
                group,
                &joined.others,
                NOTICE_ONLINE,
                client,
                &member,
            );
        }
        Ok(())
    }

    /// Remove a client from a group; the remaining members get the offline notice (1002).
    pub async fn leave_group(
        &self,
        system: &str,
        client: &str,
        group: &GroupName,
    ) -> Result<(), GatewayError> {
        let left = self
            .inner
            .registry
            .leave_group(system, client, group)
            .await?;
        self.track(Change::Left {
            system,
            group,
            client,
        });
        self.notify_left(system, client, &left);
        Ok(())
    }

    pub(super) fn notify_left(&self, system: &str, client: &str, left: &Left) {
        let (others, member) = (&left.others, &left.member);
        self.notify(system, &left.group, others, NOTICE_OFFLINE, client, member);
    }

    /// Send a group notice about `client` to `to`: here directly, and through the group's
    /// channel when some of them are on other nodes (each node tells its own members).
    fn notify(
        &self,
        system: &str,
        group: &str,
        to: &[String],
        code: i64,
        client: &str,
        member: &Member,
    ) {
        let enabled = self
            .config()
            .systems
            .get(system)
            .is_none_or(|s| s.group_notices);
        if to.is_empty() || !enabled {
            return;
        }
        let id = self.next_message_id();
        let frame = notice(&id, code, client, &member.user_id, &member.extend);
        if let Some(broker) = self.inner.broker.get()
            && to.iter().any(|c| self.remote_broker(c).is_some())
        {
            let exclude = [client.to_owned()];
            if let Err(e) = broker.to_group(system, group, &exclude, &frame) {
                warn!(system, group, client, cause = %e, "group notice not sent to other nodes");
            }
        }
        self.deliver_all(system, to, &[], &frame);
    }

    /// Bind a uid to a client.
    pub async fn bind_uid(
        &self,
        system: &str,
        client: &str,
        uid: &Uid,
    ) -> Result<(), GatewayError> {
        self.inner.registry.bind_uid(system, client, uid).await?;
        self.track(Change::Touched { system, client });
        Ok(())
    }

    /// Remove a client's uid.
    pub async fn unbind_uid(&self, system: &str, client: &str) -> Result<(), GatewayError> {
        self.inner.registry.unbind_uid(system, client).await?;
        self.track(Change::Touched { system, client });
        Ok(())
    }

    /// Replace a client's info.
    pub async fn set_info(
        &self,
        system: &str,
        client: &str,
        info: Info,
    ) -> Result<(), GatewayError> {
        self.inner.registry.set_info(system, client, info).await?;
        self.track(Change::Touched { system, client });
        Ok(())
    }

    /// Merge into a client's info.
    pub async fn update_info(
        &self,
        system: &str,
        client: &str,
        info: Info,
    ) -> Result<(), GatewayError> {
        self.inner
            .registry
            .update_info(system, client, info)
            .await?;
        self.track(Change::Touched { system, client });
        Ok(())
    }
}
