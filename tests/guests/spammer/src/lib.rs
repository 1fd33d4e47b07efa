//! Test guest `spammer`: the text frame `spam` calls `send-to-client` to the sender 1,000,000
//! times in a loop with the text `spam`, ignoring errors (the gateway's outbound quota or the
//! call deadline must stop the damage). Any other frame is echoed back unchanged.

use wasmgate_guest::{Message, Plugin, export_plugin, host, log_info};

/// How many sends one `spam` attempts.
const SENDS: u32 = 1_000_000;

/// No state.
#[derive(Default)]
struct Spammer;

impl Plugin for Spammer {
    fn on_message(&mut self, client: &str, msg: Message) {
        if msg.as_text() == Some("spam") {
            let spam = Message::text("spam");
            let mut refused: u32 = 0;
            for _ in 0..SENDS {
                if host::send_to_client(client, &spam).is_err() {
                    refused += 1;
                }
            }
            log_info!("spammed {client}: {SENDS} sends, {refused} refused");
            return;
        }
        let _ = host::send_to_client(client, msg);
    }
}

export_plugin!(Spammer);
