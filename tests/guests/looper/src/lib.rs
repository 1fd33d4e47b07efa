//! Test guest `looper`: the text frame `loop` makes `on-message` spin forever, so the gateway's
//! per-call deadline must interrupt it (a trap: the instance is replaced). Any other frame is
//! echoed back unchanged.

use wasmgate_guest::{Message, Plugin, export_plugin, host};

/// No state.
#[derive(Default)]
struct Looper;

impl Plugin for Looper {
    fn on_message(&mut self, client: &str, msg: Message) {
        if msg.as_text() == Some("loop") {
            let mut spins: u64 = 0;
            loop {
                // black_box keeps the optimizer from proving anything about the loop.
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        let _ = host::send_to_client(client, msg);
    }
}

export_plugin!(Looper);
