//! Test guest `panicker`: the text frame `panic` panics (a trap: the gateway must replace the
//! instance and keep the connection). Any other frame is echoed back unchanged.

use wasmgate_guest::{Message, Plugin, export_plugin, host};

/// No state.
#[derive(Default)]
struct Panicker;

impl Plugin for Panicker {
    fn on_message(&mut self, client: &str, msg: Message) {
        if msg.as_text() == Some("panic") {
            panic!("panicker was asked to panic by {client}");
        }
        let _ = host::send_to_client(client, msg);
    }
}

export_plugin!(Panicker);
