//! [`RedisRegistry`]: the registry of a cluster, shared by every node through Redis.
//!
//! Keys, under `{base}` = `{prefix}{len}:{system}:` ([`system_base`]): `clients` (hash client →
//! node id), `groups:<g>` (hash member → what it declared, for the offline notice), `groups`
//! (set of groups with members), `cgroups:<client>` (set), `uids` (hash client → uid),
//! `uid:<u>` (set of clients), `info:<client>` (hash), `node:<id>` (set of the clients a node
//! holds, for reaping a dead node without a scan); `{prefix}systems` (hash system → its
//! `max_connections`, empty for none). Counts and membership are answered by Redis (HLEN,
//! SCARD, SISMEMBER); multi-key changes are Lua scripts ([`super::scripts`]).
//!
//! Every call waits at most [`REDIS_TIMEOUT`](super::broker::REDIS_TIMEOUT); past it, or when Redis fails, it answers
//! [`RegistryError::Unavailable`] (HTTP 503), never a wrong "unknown".

use std::collections::{BTreeSet, HashSet};

use parking_lot::Mutex;

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, Script, Value};

use super::broker::{unavailable, within};
use super::mirror::Snapshot;
use super::scripts::{REGISTER_SYSTEM, Scripts, UNKNOWN_CLIENT, UNKNOWN_SYSTEM};
use super::wire::system_base;
use crate::config::LimitsConfig;
use crate::registry::{Info, Joined, Left, Member, Registry, RegistryError, Result};

/// The registry in Redis, for one node.
pub struct RedisRegistry {
    conn: ConnectionManager,
    prefix: String,
    systems_key: String,
    node: u32,
    limits: LimitsConfig,
    scripts: Scripts,
    register: Script,
    /// Clients whose removal failed (Redis down or slow): removed again once Redis answers
    /// ([`RedisRegistry::retry_removals`]), so no client that left stays listed. Bounded by the
    /// clients this node held.
    pending: Mutex<HashSet<(String, String)>>,
}

fn parse<T: FromRedisValue>(v: Value) -> Result<T> {
    redis::from_redis_value(v).map_err(|e| unavailable(format!("unexpected redis answer: {e}")))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A member as stored: `<len of user_id>:<user_id><extend>`.
fn encode_member(m: &Member) -> String {
    format!("{}:{}{}", m.user_id.len(), m.user_id, m.extend)
}

fn decode_member(s: &str) -> Member {
    let parsed = s.split_once(':').and_then(|(len, rest)| {
        let len: usize = len.parse().ok()?;
        let (user_id, extend) = (rest.get(..len)?, rest.get(len..)?);
        Some(Member {
            user_id: user_id.to_owned(),
            extend: extend.to_owned(),
        })
    });
    parsed.unwrap_or_default()
}

impl RedisRegistry {
    /// A registry over `conn`, its keys under `prefix`, for node `node`.
    pub fn new(conn: ConnectionManager, prefix: &str, node: u32, limits: LimitsConfig) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            systems_key: format!("{prefix}systems"),
            node,
            limits,
            scripts: Scripts::new(),
            register: Script::new(REGISTER_SYSTEM),
            pending: Mutex::default(),
        }
    }

    /// Remove again the clients whose removal failed: for each, what it left (`None`: it was
    /// not in the registry any more: reaped, or Redis lost it). Stops at the first failure
    /// (Redis is still away; the rest stay pending).
    pub async fn retry_removals(&self) -> Vec<(String, String, Option<Vec<Left>>)> {
        let pending: Vec<(String, String)> = self.pending.lock().drain().collect();
        let mut done = Vec::new();
        let mut rest = pending.into_iter();
        for (system, client) in rest.by_ref() {
            match self.remove_once(&system, &client).await {
                Ok(left) => done.push((system, client, Some(left))),
                Err(RegistryError::Unavailable(_)) => {
                    self.pending.lock().insert((system, client));
                    break;
                }
                Err(_) => done.push((system, client, None)),
            }
        }
        self.pending.lock().extend(rest);
        done
    }

    /// Remove `client`, without queueing a retry when Redis fails (the reaper retries a whole
    /// node instead, and must be the one to announce what it removes).
    pub async fn remove_once(&self, system: &str, client: &str) -> Result<Vec<Left>> {
        let v = self
            .script(&self.scripts.remove_client, system, client, &[client])
            .await?;
        lefts(v, client)
    }

    /// How many removals wait for Redis.
    pub fn pending_removals(&self) -> usize {
        self.pending.lock().len()
    }

    /// What the registry holds about `client` (for the [`super::mirror`]).
    pub async fn snapshot(&self, system: &str, client: &str) -> Result<Snapshot> {
        let v = self
            .script(&self.scripts.snapshot, system, client, &[client])
            .await?;
        let (uid, groups, info): (String, Vec<String>, Vec<String>) = parse(v)?;
        let pairs = |flat: Vec<String>| {
            let mut it = flat.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        };
        Ok(Snapshot {
            uid: (!uid.is_empty()).then_some(uid),
            groups: pairs(groups),
            info: pairs(info),
        })
    }

    /// Register live `client` again as `snapshot` has it (Redis lost its data).
    pub async fn restore(&self, system: &str, client: &str, snapshot: &Snapshot) -> Result<()> {
        let instance = crate::ids::instance_of(client).unwrap_or(client);
        let ngroups = snapshot.groups.len().to_string();
        let mut args: Vec<&str> = vec![
            client,
            instance,
            snapshot.uid.as_deref().unwrap_or(""),
            &ngroups,
        ];
        for (k, v) in snapshot.groups.iter().chain(&snapshot.info) {
            args.push(k);
            args.push(v);
        }
        self.script(&self.scripts.restore, system, client, &args)
            .await?;
        Ok(())
    }

    fn base(&self, system: &str) -> String {
        system_base(&self.prefix, system)
    }

    /// Run a registry script on `system` (`client` is `ARGV[4]` when it names one).
    async fn script(&self, s: &Script, system: &str, client: &str, args: &[&str]) -> Result<Value> {
        let mut inv = s.prepare_invoke();
        inv.arg(&self.systems_key)
            .arg(system)
            .arg(self.base(system));
        for a in args {
            inv.arg(*a);
        }
        let mut conn = self.conn.clone();
        match within(inv.invoke_async::<Value>(&mut conn)).await? {
            Value::Int(UNKNOWN_SYSTEM) => Err(RegistryError::UnknownSystem(system.to_owned())),
            Value::Int(UNKNOWN_CLIENT) => Err(RegistryError::UnknownClient(client.to_owned())),
            v => Ok(v),
        }
    }

    /// The clients of `system` that `instance` registered, as the registry has them.
    pub async fn instance_clients(&self, system: &str, instance: &str) -> Result<Vec<String>> {
        let c = Self::key_cmd("SMEMBERS", format!("{}node:{instance}", self.base(system)));
        self.read(system, c).await
    }

    /// `cmd` on `system`'s keys, in one atomic round trip with the check that the system exists.
    async fn read<T: FromRedisValue>(&self, system: &str, cmd: redis::Cmd) -> Result<T> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HEXISTS")
            .arg(&self.systems_key)
            .arg(system)
            .add_command(cmd);
        let mut conn = self.conn.clone();
        let (exists, v): (bool, Value) = within(pipe.query_async(&mut conn)).await?;
        if !exists {
            return Err(RegistryError::UnknownSystem(system.to_owned()));
        }
        parse(v)
    }

    fn key_cmd(name: &str, key: String) -> redis::Cmd {
        let mut c = redis::cmd(name);
        c.arg(key);
        c
    }

    /// Delete every key under `base`, a batch at a time (SCAN, never KEYS).
    async fn delete_under(&self, base: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let pattern = format!("{}*", redis_glob_escape(base));
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = within(scan.query_async(&mut conn)).await?;
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(keys);
                within(unlink.query_async::<()>(&mut conn)).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// `s` with the glob characters of SCAN MATCH escaped.
fn redis_glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// `(group, member, others)` triples answered by the remove-client script.
fn lefts(v: Value, client: &str) -> Result<Vec<Left>> {
    let rows: Vec<(String, String, Vec<String>)> = parse(v)?;
    Ok(rows
        .into_iter()
        .map(|(group, member, others)| Left {
            group,
            member: decode_member(&member),
            others: sorted(others.into_iter().filter(|c| c != client).collect()),
        })
        .collect())
}

#[async_trait::async_trait]
impl Registry for RedisRegistry {
    async fn register_system(&self, system: &str, max_connections: Option<usize>) -> Result<bool> {
        let max = max_connections.map(|m| m.to_string()).unwrap_or_default();
        let mut inv = self.register.prepare_invoke();
        inv.arg(&self.systems_key)
            .arg(system)
            .arg(&max)
            .arg(if max_connections.is_some() { "1" } else { "0" })
            .arg(self.limits.max_systems);
        let mut conn = self.conn.clone();
        match within(inv.invoke_async::<i64>(&mut conn)).await? {
            -1 => Err(RegistryError::TooManySystems {
                max: self.limits.max_systems,
            }),
            n => Ok(n == 1),
        }
    }

    async fn remove_system(&self, system: &str) -> Result<Vec<String>> {
        let base = self.base(system);
        let ids: Vec<String> = self
            .read(system, Self::key_cmd("HKEYS", format!("{base}clients")))
            .await?;
        let mut conn = self.conn.clone();
        let mut del = redis::cmd("HDEL");
        del.arg(&self.systems_key).arg(system);
        within(del.query_async::<()>(&mut conn)).await?;
        self.delete_under(&base).await?;
        Ok(sorted(ids))
    }

    async fn system_exists(&self, system: &str) -> Result<bool> {
        let mut c = redis::cmd("HEXISTS");
        c.arg(&self.systems_key).arg(system);
        let mut conn = self.conn.clone();
        within(c.query_async(&mut conn)).await
    }

    async fn systems(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let c = Self::key_cmd("HKEYS", self.systems_key.clone());
        Ok(sorted(within(c.query_async(&mut conn)).await?))
    }

    async fn add_client(&self, system: &str, client: &str, uid: Option<&str>) -> Result<()> {
        let node = self.node.to_string();
        let instance = crate::ids::instance_of(client).unwrap_or(&node);
        let v = self
            .script(
                &self.scripts.add_client,
                system,
                client,
                &[client, instance, uid.unwrap_or("")],
            )
            .await?;
        match v {
            Value::Int(-1) => Err(RegistryError::SystemFull(system.to_owned())),
            _ => Ok(()),
        }
    }

    async fn remove_client(&self, system: &str, client: &str) -> Result<Vec<Left>> {
        match self.remove_once(system, client).await {
            Err(e @ RegistryError::Unavailable(_)) => {
                self.pending
                    .lock()
                    .insert((system.to_owned(), client.to_owned()));
                Err(e)
            }
            other => other,
        }
    }

    async fn client_exists(&self, system: &str, client: &str) -> Result<bool> {
        let mut c = redis::cmd("HEXISTS");
        c.arg(format!("{}clients", self.base(system))).arg(client);
        let mut conn = self.conn.clone();
        within(c.query_async(&mut conn)).await
    }

    async fn clients(&self, system: &str) -> Result<Vec<String>> {
        let c = Self::key_cmd("HKEYS", format!("{}clients", self.base(system)));
        Ok(sorted(self.read(system, c).await?))
    }

    async fn client_count(&self, system: &str) -> Result<usize> {
        let c = Self::key_cmd("HLEN", format!("{}clients", self.base(system)));
        self.read(system, c).await
    }

    async fn join_group(
        &self,
        system: &str,
        client: &str,
        group: &str,
        member: Member,
    ) -> Result<Joined> {
        let (per_client, per_system) = (
            self.limits.max_groups_per_client.to_string(),
            self.limits.max_groups_per_system.to_string(),
        );
        let m = encode_member(&member);
        let args = [client, group, m.as_str(), &per_client, &per_system];
        match self
            .script(&self.scripts.join_group, system, client, &args)
            .await?
        {
            Value::Int(-1) => Err(RegistryError::TooManyGroupsForClient {
                client: client.to_owned(),
                max: self.limits.max_groups_per_client,
            }),
            Value::Int(-2) => Err(RegistryError::TooManyGroups {
                system: system.to_owned(),
                max: self.limits.max_groups_per_system,
            }),
            v => {
                let (new, members): (i64, Vec<String>) = parse(v)?;
                let others = sorted(members.into_iter().filter(|c| c != client).collect());
                Ok(Joined {
                    new: new == 1,
                    others,
                })
            }
        }
    }

    async fn leave_group(&self, system: &str, client: &str, group: &str) -> Result<Left> {
        match self
            .script(&self.scripts.leave_group, system, client, &[client, group])
            .await?
        {
            Value::Int(-1) => Err(RegistryError::NotInGroup {
                client: client.to_owned(),
                group: group.to_owned(),
            }),
            v => {
                let (member, others): (String, Vec<String>) = parse(v)?;
                Ok(Left {
                    group: group.to_owned(),
                    member: decode_member(&member),
                    others: sorted(others),
                })
            }
        }
    }

    async fn group_clients(&self, system: &str, group: &str) -> Result<Vec<String>> {
        let c = Self::key_cmd("HKEYS", format!("{}groups:{group}", self.base(system)));
        Ok(sorted(self.read(system, c).await?))
    }

    async fn group_count(&self, system: &str, group: &str, exclude: &[String]) -> Result<usize> {
        let key = format!("{}groups:{group}", self.base(system));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HEXISTS")
            .arg(&self.systems_key)
            .arg(system)
            .cmd("HLEN")
            .arg(&key);
        let unique: BTreeSet<&String> = exclude.iter().collect();
        for c in &unique {
            pipe.cmd("HEXISTS").arg(&key).arg(*c);
        }
        let mut conn = self.conn.clone();
        let answers: Vec<i64> = within(pipe.query_async(&mut conn)).await?;
        if answers.first() != Some(&1) {
            return Err(RegistryError::UnknownSystem(system.to_owned()));
        }
        let len = answers.get(1).copied().unwrap_or(0);
        let excluded: i64 = answers.iter().skip(2).sum();
        Ok(usize::try_from(len - excluded).unwrap_or(0))
    }

    async fn groups(&self, system: &str) -> Result<Vec<String>> {
        let c = Self::key_cmd("SMEMBERS", format!("{}groups", self.base(system)));
        Ok(sorted(self.read(system, c).await?))
    }

    async fn client_groups(&self, system: &str, client: &str) -> Result<Vec<String>> {
        let base = self.base(system);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HEXISTS")
            .arg(&self.systems_key)
            .arg(system)
            .cmd("HEXISTS")
            .arg(format!("{base}clients"))
            .arg(client)
            .cmd("SMEMBERS")
            .arg(format!("{base}cgroups:{client}"));
        let mut conn = self.conn.clone();
        let (system_known, client_known, groups): (bool, bool, Vec<String>) =
            within(pipe.query_async(&mut conn)).await?;
        if !system_known {
            return Err(RegistryError::UnknownSystem(system.to_owned()));
        }
        if !client_known {
            return Err(RegistryError::UnknownClient(client.to_owned()));
        }
        Ok(sorted(groups))
    }

    async fn bind_uid(&self, system: &str, client: &str, uid: &str) -> Result<()> {
        self.script(&self.scripts.bind_uid, system, client, &[client, uid])
            .await?;
        Ok(())
    }

    async fn unbind_uid(&self, system: &str, client: &str) -> Result<Option<String>> {
        let v = self
            .script(&self.scripts.unbind_uid, system, client, &[client])
            .await?;
        let old: Vec<String> = parse(v)?;
        Ok(old.into_iter().next())
    }

    async fn uid_of(&self, system: &str, client: &str) -> Result<Option<String>> {
        let v = self
            .script(&self.scripts.uid_of, system, client, &[client])
            .await?;
        let uid: Vec<String> = parse(v)?;
        Ok(uid.into_iter().next())
    }

    async fn clients_by_uid(&self, system: &str, uid: &str) -> Result<Vec<String>> {
        let c = Self::key_cmd("SMEMBERS", format!("{}uid:{uid}", self.base(system)));
        Ok(sorted(self.read(system, c).await?))
    }

    async fn uids(&self, system: &str) -> Result<Vec<String>> {
        let c = Self::key_cmd("HVALS", format!("{}uids", self.base(system)));
        let all: Vec<String> = self.read(system, c).await?;
        Ok(all
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect())
    }

    async fn group_uids(&self, system: &str, group: &str) -> Result<Vec<String>> {
        let v = self
            .script(&self.scripts.group_uids, system, "", &[group])
            .await?;
        let all: Vec<String> = parse(v)?;
        Ok(all
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect())
    }

    async fn info(&self, system: &str, client: &str) -> Result<Info> {
        let v = self
            .script(&self.scripts.info, system, client, &[client])
            .await?;
        let flat: Vec<String> = parse(v)?;
        let mut info = Info::new();
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            info.insert(k, v);
        }
        Ok(info)
    }

    async fn set_info(&self, system: &str, client: &str, info: Info) -> Result<()> {
        self.write_info(system, client, info, true).await
    }

    async fn update_info(&self, system: &str, client: &str, info: Info) -> Result<()> {
        self.write_info(system, client, info, false).await
    }
}

impl RedisRegistry {
    /// Replace (`replace`) or merge a client's info, the limits checked on the result.
    async fn write_info(
        &self,
        system: &str,
        client: &str,
        info: Info,
        replace: bool,
    ) -> Result<()> {
        let (max_entries, max_bytes) = (self.limits.max_info_entries, self.limits.max_info_bytes);
        // The incoming map alone is checked first: a huge body is refused without a round trip.
        if info.len() > max_entries {
            return Err(RegistryError::InfoTooManyEntries {
                len: info.len(),
                max: max_entries,
            });
        }
        let bytes: usize = info.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > max_bytes {
            return Err(RegistryError::InfoTooLarge {
                len: bytes,
                max: max_bytes,
            });
        }
        let (e, b) = (max_entries.to_string(), max_bytes.to_string());
        let mut args: Vec<&str> = vec![client, if replace { "1" } else { "0" }, &e, &b];
        for (k, v) in &info {
            args.push(k);
            args.push(v);
        }
        match self
            .script(&self.scripts.write_info, system, client, &args)
            .await?
        {
            Value::Int(_) => Ok(()),
            v => {
                let (what, len): (i64, usize) = parse(v)?;
                Err(if what == -1 {
                    RegistryError::InfoTooManyEntries {
                        len,
                        max: max_entries,
                    }
                } else {
                    RegistryError::InfoTooLarge {
                        len,
                        max: max_bytes,
                    }
                })
            }
        }
    }
}

#[cfg(test)]
#[path = "redis_registry_tests.rs"]
mod tests;
