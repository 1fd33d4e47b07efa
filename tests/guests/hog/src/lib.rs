//! Test guest `hog`: allocates memory until it runs out. Any other frame is echoed back.
//!
//! - `hog`: grabs 1 MiB blocks (touching every page) with fallible allocation until the
//!   allocator fails (`memory.grow` refused at the instance's cap), then replies
//!   `hog:<MiB obtained>` and frees everything. The instance survives.
//! - `hog-abort`: grows a vector with infallible allocation until it fails: Rust aborts, which
//!   traps the instance (the gateway must replace it).

use wasmgate_guest::{Message, Plugin, export_plugin, host};

/// Size of one block.
const MIB: usize = 1 << 20;

/// No state.
#[derive(Default)]
struct Hog;

fn hog_fallibly() -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        if block.try_reserve_exact(MIB).is_err() || blocks.try_reserve(1).is_err() {
            return blocks.len();
        }
        block.resize(MIB, 0xA5);
        blocks.push(block);
    }
}

fn hog_until_abort() -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![0x5A; MIB]);
        std::hint::black_box(&blocks);
    }
}

impl Plugin for Hog {
    fn on_message(&mut self, client: &str, msg: Message) {
        let reply = match msg.as_text() {
            Some("hog") => Message::text(format!("hog:{}", hog_fallibly())),
            Some("hog-abort") => Message::text(format!("hog-abort:{}", hog_until_abort())),
            _ => msg,
        };
        let _ = host::send_to_client(client, reply);
    }
}

export_plugin!(Hog);
