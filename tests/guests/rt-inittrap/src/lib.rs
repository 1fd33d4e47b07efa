//! Test guest `rt-inittrap` (plugin runtime tests): `init` panics, so loading it must fail with a
//! trap and, on a hot reload, leave the previous version serving. Its handlers echo, so a host
//! that ignored the trap would be caught answering.

use wasmgate_guest::{Message, Plugin, export_plugin, host};

/// No state.
#[derive(Default)]
struct InitTrap;

impl Plugin for InitTrap {
    fn init(&mut self, _config: &str) -> Result<(), String> {
        panic!("rt-inittrap traps in init");
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        let _ = host::send_to_client(client, msg);
    }
}

export_plugin!(InitTrap);
