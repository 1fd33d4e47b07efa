//! Test guest `rt-connecttrap` (plugin runtime tests): `on-connect` panics, which the gateway
//! must treat as an accept (the connection stays). Messages are echoed back.

use wasmgate_guest::{ConnectContext, Message, Plugin, Reject, export_plugin, host};

/// No state.
#[derive(Default)]
struct ConnectTrap;

impl Plugin for ConnectTrap {
    fn on_connect(&mut self, client: &str, _ctx: &ConnectContext) -> Result<(), Reject> {
        panic!("rt-connecttrap traps in on-connect of {client}");
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        let _ = host::send_to_client(client, msg);
    }
}

export_plugin!(ConnectTrap);
