//! The API operations, named in one place: the route segment of `POST /api/websocket/<op>`,
//! the `op` label of the API metrics, and the variant `dispatch` matches on.

macro_rules! ops {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// An operation of the HTTP API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op {
            $($(#[$doc])* $variant,)*
        }

        impl Op {
            /// Every operation, in the README's order.
            pub const ALL: &'static [Op] = &[$(Op::$variant,)*];

            /// The route name, e.g. `send_to_group`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$variant => $name,)*
                }
            }

            /// The operation named `name`, if any.
            pub fn parse(name: &str) -> Option<Op> {
                match name {
                    $($name => Some(Op::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

ops! {
    /// Create a system (no `systemId` header: the system is in the body).
    Register => "register",
    /// Remove a system created by `register` and close its clients.
    Unregister => "unregister",
    /// Push to one client.
    SendToClient => "send_to_client",
    /// Push to several clients.
    SendToClients => "send_to_clients",
    /// Push to a group's members.
    SendToGroup => "send_to_group",
    /// Push to every client of the system.
    SendToSystem => "send_to_system",
    /// GatewayWorker's name of `send_to_system`.
    SendToAll => "send_to_all",
    /// Push to the clients bound to a uid.
    SendToUid => "send_to_uid",
    /// Put a client in a group.
    BindToGroup => "bind_to_group",
    /// Same as `bind_to_group`.
    JoinGroup => "join_group",
    /// Take a client out of a group.
    LeaveGroup => "leave_group",
    /// A group's clients, or the system's.
    GetOnlineList => "get_online_list",
    /// Close a client.
    CloseClient => "close_client",
    /// Every group with members.
    GetAllGroups => "get_all_groups",
    /// Bind a uid to a client.
    BindUid => "bind_uid",
    /// Remove a client's uid.
    UnbindUid => "unbind_uid",
    /// Whether a uid has a client.
    IsUidOnline => "is_uid_online",
    /// A client's uid.
    GetUidByClientId => "get_uid_by_client_id",
    /// The clients of a uid.
    GetClientIdsByUid => "get_client_ids_by_uid",
    /// How many clients a group has.
    GetClientCountByGroup => "get_client_count_by_group",
    /// A group's clients.
    GetClientIdsByGroup => "get_client_ids_by_group",
    /// A group's uids.
    GetUidsByGroup => "get_uids_by_group",
    /// How many uids a group has.
    GetUidCountByGroup => "get_uid_count_by_group",
    /// Every uid of the system.
    GetAllUid => "get_all_uid",
    /// Whether a client is connected.
    IsOnline => "is_online",
    /// How many clients the system has.
    GetAllClientCount => "get_all_client_count",
    /// A client's info.
    GetInfo => "get_info",
    /// Replace a client's info.
    SetInfo => "set_info",
    /// Merge into a client's info.
    UpdateInfo => "update_info",
}

impl Op {
    /// Whether the operation acts on the system named by the `systemId` header (all but
    /// `register` and `unregister`, whose system is in the body).
    pub fn needs_system_header(self) -> bool {
        !matches!(self, Op::Register | Op::Unregister)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.name()), Some(*op));
        }
        assert_eq!(Op::ALL.len(), 29);
        assert_eq!(Op::parse("drop_all_tables"), None);
    }
}
