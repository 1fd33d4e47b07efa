//! Test guest `badinit`: `init` always returns `Err("refusing to start")`, so loading it must
//! fail (and on a hot reload the previous version must keep serving). Its other handlers echo,
//! so a host that ignored the error would be caught answering.

use wasmgate_guest::{Message, Plugin, export_plugin, host};

/// No state.
#[derive(Default)]
struct BadInit;

impl Plugin for BadInit {
    fn init(&mut self, _config: &str) -> Result<(), String> {
        Err("refusing to start".to_owned())
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        let _ = host::send_to_client(client, msg);
    }
}

export_plugin!(BadInit);
