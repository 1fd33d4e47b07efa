"""Echo plugin for the benchmark's application-echo scenario: text `<x>` is answered `echo:<x>`."""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import CloseReason, ConnectContext, Message, Message_Text, Timer


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        pass

    def on_connect(self, client: str, context: ConnectContext) -> None:
        pass

    def on_message(self, client: str, msg: Message) -> None:
        if isinstance(msg, Message_Text):
            host.send_to_client(client, Message_Text("echo:" + msg.value))

    def on_close(self, client: str, reason: CloseReason) -> None:
        pass

    def on_timer(self, timer: Timer) -> None:
        pass
