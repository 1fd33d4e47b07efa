"""A minimal wasmgate plugin in Python: echoes text frames and counts messages.

Build: scripts/build-py-plugin.sh <this dir> <out.wasm>   (see README.md)
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    CloseReason,
    ConnectContext,
    Level,
    Member,
    Message,
    Message_Text,
    Timer,
)

# Module state lives as long as the instance: a trap or a reload starts afresh, and with
# `instances = N` each instance has its own (init runs in each). Keep what must survive, or what
# other clients need, in the key-value store (host.kv_set / host.kv_incr) or the registry.
prefix = "echo: "


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        """Called once, before any other event. `raise Err("why")` refuses to load."""
        global prefix
        if config:
            try:
                prefix = json.loads(config).get("prefix", prefix)
            except ValueError:
                raise Err("config is not JSON")
        host.log(Level.INFO, "template plugin ready")

    def on_connect(self, client: str, context: ConnectContext) -> None:
        """A client connected. `raise Err(types.Reject(4000, "why"))` turns it away.

        `context` says how: `query` (`?nick=ann` → [("nick", "ann")]), selected `headers`,
        `peer`, `uid` and the verified token's `claims` (JSON text) when a token is required.
        """
        nick = next((v for k, v in context.query if k == "nick"), "")
        # The member data goes into the lobby's join/leave notices (1001/1002).
        host.join_group(client, "lobby", Member(nick, ""))

    def on_message(self, client: str, msg: Message) -> None:
        if not isinstance(msg, Message_Text):
            return
        count = host.kv_incr("messages", 1)
        host.send_to_client(client, Message_Text(f"{prefix}{msg.value} (#{count})"))

    def on_close(self, client: str, reason: CloseReason) -> None:
        host.log(Level.DEBUG, f"{client} closed with {reason.code}")

    def on_timer(self, timer: Timer) -> None:
        """A timer fired: `timer.id`, `timer.payload`, `timer.client` (when bound to one)."""
        pass

