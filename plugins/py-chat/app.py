"""wasmgate chat plugin in Python (world wasmgate:plugin/plugin@0.2.0).

Speaks the same JSON protocol as the Rust chat plugin (plugins/chat): a client sends text
frames ``{"event": <name>, "data": {...}}`` and gets replies
``{"event": <name>, "code": 0, "msg": "success", "data": {...}}`` or
``{"event": <name>, "code": <non-zero>, "msg": "<why>", "data": null}``.

Build: scripts/build-py-plugin.sh plugins/py-chat plugins/py-chat.wasm
"""

import json
from typing import Any, Callable, Dict, TypeVar

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    CloseReason,
    ConnectContext,
    Member,
    Timer,
    Level,
    Message,
    Message_Binary,
    Message_Text,
)

LANG = "python"

# Error codes shared by the JS, Python and C examples.
BAD_REQUEST = 400  # malformed JSON or a missing field
FORBIDDEN = 403  # saying something in a room you did not join
NOT_FOUND = 404  # unknown event, or nobody to whisper to
CONFLICT = 409  # nickname already taken by another client
HOST_ERROR = 500  # a host call failed; msg says why

# Field limits, in characters (as the Rust chat).
MAX_NAME = 32
MAX_ROOM = 64
MAX_TEXT = 2000

# Plugin memory: lost on a trap or a reload, and private to one instance of a pool
# (`instances = N`), so only the config lives here (every instance reads the same config).
# Names and rooms live in the gateway's registry, which every instance shares.
_version = "1"

# The key `nick` reads to take the plugin's key-value lock: the first kv call of an event holds
# it until the event returns, across every instance of a pool, so the "is the name free?" check
# and the bind cannot interleave with another instance's `nick`. Never written.
NICK_LOCK = "lock:nick"

T = TypeVar("T")


class Reply(Exception):
    """Raised by handlers to produce an error reply."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def describe(err: Any) -> str:
    """A host `error` variant (raised as `Err`) as a readable string."""
    if isinstance(err, Err):
        err = err.value
    name = type(err).__name__.removeprefix("Error_")
    kebab = "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")
    value = getattr(err, "value", err)
    return f"{kebab}: {value}"


def call(fn: Callable[[], T]) -> T:
    """Calls a host function, mapping its error to a 500 reply."""
    try:
        return fn()
    except Err as err:
        raise Reply(HOST_ERROR, describe(err)) from None


def send(client: str, obj: Dict[str, Any]) -> None:
    try:
        host.send_to_client(client, Message_Text(json.dumps(obj)))
    except Err as err:
        host.log(Level.WARN, f"send to {client} failed: {describe(err)}")


def field(data: Dict[str, Any], name: str, limit: int) -> str:
    """A required string field of `data`: present, not blank, at most `limit` characters."""
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Reply(BAD_REQUEST, f"missing field '{name}'")
    if len(value) > limit:
        raise Reply(BAD_REQUEST, f"field '{name}' is longer than {limit} characters")
    return value


def name_of(client: str) -> str:
    """The nickname of a client (its uid), or its client id when it has none."""
    uid = call(lambda: host.get_uid_by_client_id(client))
    return uid if uid is not None else client


def on_nick(client: str, data: Dict[str, Any]) -> Any:
    name = field(data, "name", MAX_NAME)
    call(lambda: host.kv_get(NICK_LOCK))
    if any(c != client for c in host.get_client_ids_by_uid(name)):
        raise Reply(CONFLICT, f"nick '{name}' is taken")
    old = call(lambda: host.get_uid_by_client_id(client))
    if old is not None and old != name:
        call(lambda: host.unbind_uid(client))
    call(lambda: host.bind_uid(client, name))
    return {"name": name}


def on_join(client: str, data: Dict[str, Any]) -> Any:
    room = field(data, "room", MAX_ROOM)
    call(lambda: host.join_group(client, room, Member("", "")))
    return {"room": room}


def on_leave(client: str, data: Dict[str, Any]) -> Any:
    room = field(data, "room", MAX_ROOM)
    call(lambda: host.leave_group(client, room))
    return {"room": room}


def on_say(client: str, data: Dict[str, Any]) -> Any:
    room = field(data, "room", MAX_ROOM)
    text = field(data, "text", MAX_TEXT)
    if client not in host.get_client_ids_by_group(room):
        raise Reply(FORBIDDEN, f"not in room '{room}'")
    said = {"event": "said", "data": {"room": room, "from": name_of(client), "text": text}}
    delivered = call(lambda: host.send_to_group(room, Message_Text(json.dumps(said)), []))
    return {"room": room, "delivered": delivered}


def on_whisper(client: str, data: Dict[str, Any]) -> Any:
    to = field(data, "to", MAX_NAME)
    text = field(data, "text", MAX_TEXT)
    msg = {"event": "whisper", "data": {"from": name_of(client), "text": text}}
    delivered = call(lambda: host.send_to_uid(to, Message_Text(json.dumps(msg))))
    if delivered == 0:
        raise Reply(NOT_FOUND, f"'{to}' is not online")
    return {"to": to, "delivered": delivered}


def on_who(_client: str, data: Dict[str, Any]) -> Any:
    room = field(data, "room", MAX_ROOM)
    return {"room": room, "uids": host.get_uids_by_group(room)}


def on_info_set(client: str, data: Dict[str, Any]) -> Any:
    key = field(data, "key", MAX_ROOM)
    value = data.get("value")
    if not isinstance(value, str):
        raise Reply(BAD_REQUEST, "missing field 'value'")
    call(lambda: host.update_info(client, [(key, value)]))
    return {"key": key, "value": value}


def on_info_get(client: str, _data: Dict[str, Any]) -> Any:
    return dict(call(lambda: host.get_info(client)))


def on_kv_incr(_client: str, data: Dict[str, Any]) -> Any:
    key = field(data, "key", MAX_ROOM)
    return {"value": call(lambda: host.kv_incr(key, 1))}


def on_timer_request(client: str, data: Dict[str, Any]) -> Any:
    ms = data.get("ms")
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        raise Reply(BAD_REQUEST, "missing field 'ms'")
    payload = json.dumps({"client": client, "payload": data.get("payload")})
    return {"id": call(lambda: host.set_timer(ms, payload, None))}


def on_version(_client: str, _data: Dict[str, Any]) -> Any:
    return {"version": _version}


HANDLERS: Dict[str, Callable[[str, Dict[str, Any]], Any]] = {
    "nick": on_nick,
    "join": on_join,
    "leave": on_leave,
    "say": on_say,
    "whisper": on_whisper,
    "who": on_who,
    "info-set": on_info_set,
    "info-get": on_info_get,
    "kv-incr": on_kv_incr,
    "timer": on_timer_request,
    "version": on_version,
}


def bad_request(client: str, why: str) -> None:
    """A frame that is no JSON event: answered with event "error"."""
    send(client, {"event": "error", "code": BAD_REQUEST, "msg": f"bad request: {why}", "data": None})


def handle_text(client: str, frame: str) -> None:
    if frame == "hello":
        host.send_to_client(client, Message_Text(f"hello from {LANG}"))
        return
    try:
        req = json.loads(frame)
    except ValueError:
        return bad_request(client, "not JSON")
    if not isinstance(req, dict):
        return bad_request(client, "not a JSON object")
    if "event" not in req:
        return bad_request(client, "no `event` field")
    if not isinstance(req["event"], str):
        return bad_request(client, "`event` is not a string")
    event = req["event"]
    data = req.get("data")
    if not isinstance(data, dict):
        data = {}
    handler = HANDLERS.get(event)
    if handler is None:
        send(client, {"event": event, "code": NOT_FOUND, "msg": "unknown event", "data": None})
        return
    try:
        result = handler(client, data)
    except Reply as reply:
        send(client, {"event": event, "code": reply.code, "msg": reply.msg, "data": None})
        return
    except Err as err:
        send(client, {"event": event, "code": HOST_ERROR, "msg": describe(err), "data": None})
        return
    send(client, {"event": event, "code": 0, "msg": "success", "data": result})


class WitWorld(wit_world.WitWorld):
    """The exports of the `plugin` world."""

    def init(self, config: str) -> None:
        global _version
        if config.strip():
            try:
                parsed = json.loads(config)
            except ValueError:
                parsed = None  # Not JSON: keep the default version.
            if isinstance(parsed, dict) and "version" in parsed:
                v = parsed["version"]
                _version = v if isinstance(v, str) else json.dumps(v)
        host.log(Level.INFO, f"{LANG} chat ready, version {_version}")

    def on_connect(self, client: str, context: ConnectContext) -> None:
        pass  # Everyone is welcome.

    def on_message(self, client: str, msg: Message) -> None:
        if isinstance(msg, Message_Text):
            handle_text(client, msg.value)
        elif isinstance(msg, Message_Binary):
            # Binary frames are echoed back as they came.
            try:
                host.send_to_client(client, msg)
            except Err as err:
                host.log(Level.WARN, f"echo failed: {describe(err)}")

    def on_close(self, client: str, reason: CloseReason) -> None:
        host.log(Level.DEBUG, f"{client} left ({reason.code})")

    def on_timer(self, timer: Timer) -> None:
        payload = timer.payload
        try:
            parsed = json.loads(payload)
            client = parsed["client"]
        except (ValueError, KeyError, TypeError):
            host.log(Level.WARN, f"bad timer payload {payload}")
            return
        send(client, {"event": "timer", "data": {"payload": parsed.get("payload")}})
