//! The registry: which systems exist, which clients each has, their groups, uids and info.
//!
//! It is a trait so that a cluster can put a shared (Redis-backed) registry where the
//! [`LocalRegistry`] sits now. Every operation is scoped to one system: a system is a tenant and
//! nothing here lets one system see another's clients.

mod local;

use std::collections::BTreeMap;

pub use local::{LocalRegistry, shrink};

/// A client's info map (GatewayWorker's session): string keys to string values.
pub type Info = BTreeMap<String, String>;

/// What a client declared when it joined a group; echoed in the group's online/offline notices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// The application's user id, as passed to `bind_to_group`.
    pub user_id: String,
    /// Free-form data for the application, as passed to `bind_to_group`.
    pub extend: String,
}

/// The result of adding a client to a group.
#[derive(Debug, Clone)]
pub struct Joined {
    /// `false` when the client was already a member (its member data is updated).
    pub new: bool,
    /// The group's other members, who get the online notice.
    pub others: Vec<String>,
}

/// A client's membership that ended, for the offline notice.
#[derive(Debug, Clone)]
pub struct Left {
    /// The group it left.
    pub group: String,
    /// What it declared when it joined.
    pub member: Member,
    /// The group's remaining members, who get the offline notice.
    pub others: Vec<String>,
}

/// Failures of registry operations. The HTTP API answers the unknown ones 404, the limits 429
/// (counts: clients, groups, systems) or 413 (sizes: info), an unreachable backend 503, with
/// this message; host calls get `unknown-client`, `invalid-argument`, `quota-exceeded` or
/// `unavailable` with the same message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No system of that name.
    #[error("unknown system: {0}")]
    UnknownSystem(String),
    /// No client of that id in the system.
    #[error("unknown client: {0}")]
    UnknownClient(String),
    /// The client is not a member of that group.
    #[error("client {client} is not in group {group}")]
    NotInGroup {
        /// The client.
        client: String,
        /// The group.
        group: String,
    },
    /// The system has as many clients as it may (`systems.<name>.max_connections`).
    #[error("system {0} is full")]
    SystemFull(String),
    /// The client is in as many groups as it may.
    #[error("client {client} is in {max} groups, the limit (limits.max_groups_per_client)")]
    TooManyGroupsForClient {
        /// The client.
        client: String,
        /// The limit.
        max: usize,
    },
    /// The system has as many groups as it may.
    #[error("system {system} has {max} groups, the limit (limits.max_groups_per_system)")]
    TooManyGroups {
        /// The system.
        system: String,
        /// The limit.
        max: usize,
    },
    /// As many systems exist as may.
    #[error("{max} systems exist, the limit (limits.max_systems)")]
    TooManySystems {
        /// The limit.
        max: usize,
    },
    /// The info map would have too many entries.
    #[error("info would have {len} entries, over limits.max_info_entries ({max})")]
    InfoTooManyEntries {
        /// Entries it would have.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The info map would be too large.
    #[error("info would be {len} bytes, over limits.max_info_bytes ({max})")]
    InfoTooLarge {
        /// Bytes (keys plus values) it would have.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The registry could not answer (a shared backend is down or too slow). Never turned into
    /// "unknown": a client that may exist must not be reported gone because Redis blinked.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
}

impl RegistryError {
    /// What kind of failure this is, for the HTTP status and the WIT error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::UnknownSystem(_)
            | RegistryError::UnknownClient(_)
            | RegistryError::NotInGroup { .. } => ErrorKind::NotFound,
            RegistryError::SystemFull(_)
            | RegistryError::TooManyGroupsForClient { .. }
            | RegistryError::TooManyGroups { .. }
            | RegistryError::TooManySystems { .. } => ErrorKind::TooMany,
            RegistryError::InfoTooManyEntries { .. } | RegistryError::InfoTooLarge { .. } => {
                ErrorKind::TooLarge
            }
            RegistryError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
}

/// Classes of registry failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something named does not exist (HTTP 404).
    NotFound,
    /// A count limit was hit (HTTP 429, WIT `quota-exceeded`).
    TooMany,
    /// A size limit was hit (HTTP 413, WIT `quota-exceeded`).
    TooLarge,
    /// The registry's backend could not answer (HTTP 503, WIT `unavailable`).
    Unavailable,
}

/// Shorthand for registry results.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The registry's operations. Implementations must be cheap to call concurrently.
///
/// Every operation is fallible, queries included: a shared registry can be unreachable, and
/// that must answer [`RegistryError::Unavailable`], never a wrong "no such client". Whether a
/// client or system exists is `Ok(false)` when it does not, whatever the other errors.
#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Create a system; `Ok(false)` when it existed already.
    async fn register_system(&self, system: &str, max_connections: Option<usize>) -> Result<bool>;
    /// Remove a system and everything in it; returns the ids of its clients (to be closed).
    async fn remove_system(&self, system: &str) -> Result<Vec<String>>;
    /// Whether a system exists.
    async fn system_exists(&self, system: &str) -> Result<bool>;
    /// Every system's name.
    async fn systems(&self) -> Result<Vec<String>>;

    /// Add a connected client, with a uid if it authenticated with one.
    async fn add_client(&self, system: &str, client: &str, uid: Option<&str>) -> Result<()>;
    /// Remove a client and every membership it had; returns them for the offline notices.
    async fn remove_client(&self, system: &str, client: &str) -> Result<Vec<Left>>;
    /// Whether a client is connected to the system.
    async fn client_exists(&self, system: &str, client: &str) -> Result<bool>;
    /// Every client of the system.
    async fn clients(&self, system: &str) -> Result<Vec<String>>;
    /// How many clients the system has.
    async fn client_count(&self, system: &str) -> Result<usize>;

    /// Add a client to a group (creating the group).
    async fn join_group(
        &self,
        system: &str,
        client: &str,
        group: &str,
        member: Member,
    ) -> Result<Joined>;
    /// Remove a client from a group (dropping the group when it empties).
    async fn leave_group(&self, system: &str, client: &str, group: &str) -> Result<Left>;
    /// The members of a group; empty for an unknown group.
    async fn group_clients(&self, system: &str, group: &str) -> Result<Vec<String>>;
    /// How many members a group has, not counting those in `exclude`. A shared registry
    /// answers without sending the member list (a cluster's `send_to_group` asks this, not
    /// [`Registry::group_clients`]).
    async fn group_count(&self, system: &str, group: &str, exclude: &[String]) -> Result<usize> {
        let members = self.group_clients(system, group).await?;
        Ok(members.iter().filter(|m| !exclude.contains(m)).count())
    }
    /// Every group with at least one member.
    async fn groups(&self, system: &str) -> Result<Vec<String>>;
    /// The groups a client is in.
    async fn client_groups(&self, system: &str, client: &str) -> Result<Vec<String>>;

    /// Bind a uid to a client (replacing any previous uid of that client).
    async fn bind_uid(&self, system: &str, client: &str, uid: &str) -> Result<()>;
    /// Remove a client's uid; returns the uid it had.
    async fn unbind_uid(&self, system: &str, client: &str) -> Result<Option<String>>;
    /// A client's uid.
    async fn uid_of(&self, system: &str, client: &str) -> Result<Option<String>>;
    /// The clients bound to a uid.
    async fn clients_by_uid(&self, system: &str, uid: &str) -> Result<Vec<String>>;
    /// Every uid bound in the system.
    async fn uids(&self, system: &str) -> Result<Vec<String>>;
    /// The distinct uids of a group's members.
    async fn group_uids(&self, system: &str, group: &str) -> Result<Vec<String>>;

    /// A client's info map.
    async fn info(&self, system: &str, client: &str) -> Result<Info>;
    /// Replace a client's info map.
    async fn set_info(&self, system: &str, client: &str, info: Info) -> Result<()>;
    /// Merge entries into a client's info map.
    async fn update_info(&self, system: &str, client: &str, info: Info) -> Result<()>;
}
