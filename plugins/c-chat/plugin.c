/*
 * wasmgate chat plugin in C (world wasmgate:plugin/plugin@0.1.0).
 *
 * Speaks the same JSON protocol as the Rust chat plugin (plugins/chat): a client sends text
 * frames {"event": <name>, "data": {...}} and gets replies
 * {"event": <name>, "code": 0, "msg": "success", "data": {...}} or
 * {"event": <name>, "code": <non-zero>, "msg": "<why>", "data": null}.
 *
 * Build: scripts/build-c-plugin.sh plugins/c-chat plugins/c-chat.wasm
 *
 * Ownership rules of the wit-bindgen C bindings (plugin.h is generated at build time):
 * - arguments of exported functions (client, msg, payload, ...) belong to us: free them;
 * - arguments we pass to host functions stay ours (the host copies them);
 * - results and errors of host functions are malloc'd for us: free them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plugin.h"

#define LANG "c"

/* Error codes shared by the JS, Python and C examples. */
enum {
    BAD_REQUEST = 400, /* malformed JSON or a missing field */
    FORBIDDEN = 403,   /* saying something in a room you did not join */
    NOT_FOUND = 404,   /* unknown event, or nobody to whisper to */
    CONFLICT = 409,    /* nickname already taken by another client */
    HOST_ERROR = 500,  /* a host call failed; msg says why */
};

/* Field limits, in characters (as the Rust chat). */
enum { MAX_NAME = 32, MAX_ROOM = 64, MAX_TEXT = 2000 };

typedef wasmgate_plugin_host_error_t host_error;

/* Plugin memory: lost on a trap or a reload, and private to one instance of a pool
 * (`instances = N`), so only the config lives here (every instance reads the same config).
 * Names and rooms live in the gateway's registry, which every instance shares. */
static char *g_version;

/* The key on_nick reads to take the plugin's key-value lock: the first kv call of an event holds
 * it until the event returns, across every instance of a pool, so the "is the name free?" check
 * and the bind cannot interleave with another instance's nick. Never written. */
static const char NICK_LOCK[] = "lock:nick";

/* ---- small helpers --------------------------------------------------------------------- */

/* A component-model string that borrows `n` bytes at `s`. */
static plugin_string_t borrow(const char *s, size_t n) {
    plugin_string_t out = {(uint8_t *)s, n};
    return out;
}

static plugin_string_t borrow_c(const char *s) { return borrow(s, strlen(s)); }

static void log_msg(wasmgate_plugin_host_level_t level, const char *text) {
    plugin_string_t s = borrow_c(text);
    wasmgate_plugin_host_log(level, &s);
}

/* Appends "kind: detail" for a host error, then frees it. */
static void describe(sb *out, host_error *err) {
    static const char *const kinds[] = {"unknown-client", "invalid-argument", "quota-exceeded",
                                        "unavailable"};
    const plugin_string_t *detail = &err->val.unknown_client; /* every case carries a string */
    sb_cstr(out, err->tag < 4 ? kinds[err->tag] : "error");
    sb_cstr(out, ": ");
    sb_raw(out, (const char *)detail->ptr, detail->len);
    wasmgate_plugin_host_error_free(err);
}

/* Sends a text frame; a failure (the client left meanwhile) is only logged. */
static void send_text(plugin_string_t *client, const char *text, size_t len) {
    wasmgate_plugin_host_message_t msg;
    msg.tag = WASMGATE_PLUGIN_TYPES_MESSAGE_TEXT;
    msg.val.text = borrow(text, len);
    host_error err;
    if (!wasmgate_plugin_host_send_to_client(client, &msg, &err)) {
        sb why = {0};
        sb_cstr(&why, "send failed: ");
        describe(&why, &err);
        if (!why.oom) log_msg(WASMGATE_PLUGIN_TYPES_LEVEL_WARN, why.buf);
        sb_free(&why);
    }
}

static void send_sb(plugin_string_t *client, sb *b) {
    if (!b->oom) send_text(client, b->buf, b->len);
}

/* ---- requests -------------------------------------------------------------------------- */

/* One request being handled: its input and the reply under construction. */
typedef struct {
    plugin_string_t *client; /* the sender (borrowed) */
    jval data;               /* the request's "data" member (may be J_NONE) */
    sb out;                  /* the reply's "data" as JSON text, when code == 0 */
    int code;                /* 0, or the error code of the reply */
    sb msg;                  /* the error message, when code != 0 */
} req;

static void fail(req *r, int code, const char *a, const char *b, const char *c) {
    r->code = code;
    sb_cstr(&r->msg, a);
    if (b) sb_cstr(&r->msg, b);
    if (c) sb_cstr(&r->msg, c);
}

static void fail_host(req *r, host_error *err) {
    r->code = HOST_ERROR;
    describe(&r->msg, err);
}

static bool blank(const char *s) {
    for (; *s; s++) {
        if (!strchr(" \t\n\r\v\f", *s)) return false;
    }
    return true;
}

/* Unicode scalar values in a UTF-8 string. */
static size_t chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* A required string member of data: present, not blank, at most `max` characters (malloc'd),
 * or NULL after failing with 400. */
static char *field(req *r, const char *name, size_t max) {
    jval v;
    char *s = NULL;
    if (json_get(r->data, name, &v)) s = json_str(v);
    if (!s || blank(s)) {
        free(s);
        fail(r, BAD_REQUEST, "missing field '", name, "'");
        return NULL;
    }
    if (chars(s) > max) {
        char limit[48];
        snprintf(limit, sizeof limit, "' is longer than %zu characters", max);
        free(s);
        fail(r, BAD_REQUEST, "field '", name, limit);
        return NULL;
    }
    return s;
}

/* The nickname (uid) of a client, or its client id; malloc'd. NULL after failing. */
static char *name_of(req *r) {
    plugin_option_string_t uid;
    host_error err;
    if (!wasmgate_plugin_host_get_uid_by_client_id(r->client, &uid, &err)) {
        fail_host(r, &err);
        return NULL;
    }
    const plugin_string_t *src = uid.is_some ? &uid.val : r->client;
    char *name = malloc(src->len + 1);
    if (name) {
        memcpy(name, src->ptr, src->len);
        name[src->len] = '\0';
    }
    plugin_option_string_free(&uid);
    if (!name) fail(r, HOST_ERROR, "out of memory", NULL, NULL);
    return name;
}

static bool same(const plugin_string_t *a, const plugin_string_t *b) {
    return a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0;
}

/* {"<key>": "<value>"} */
static void out_pair(req *r, const char *key, const char *value) {
    sb_cstr(&r->out, "{");
    sb_jcstr(&r->out, key);
    sb_cstr(&r->out, ":");
    sb_jcstr(&r->out, value);
    sb_cstr(&r->out, "}");
}

static void out_strings(sb *out, const plugin_string_t *items, size_t n) {
    sb_cstr(out, "[");
    for (size_t i = 0; i < n; i++) {
        if (i) sb_cstr(out, ",");
        sb_jstr(out, (const char *)items[i].ptr, items[i].len);
    }
    sb_cstr(out, "]");
}

/* ---- handlers -------------------------------------------------------------------------- */

static void on_nick(req *r) {
    char *name = field(r, "name", MAX_NAME);
    if (!name) return;
    plugin_string_t lock_key = borrow_c(NICK_LOCK);
    plugin_option_list_u8_t unused;
    host_error lock_err;
    if (!wasmgate_plugin_host_kv_get(&lock_key, &unused, &lock_err)) {
        fail_host(r, &lock_err);
        free(name);
        return;
    }
    plugin_option_list_u8_free(&unused);
    plugin_string_t uid = borrow_c(name);
    wasmgate_plugin_host_list_client_id_t owners;
    wasmgate_plugin_host_get_client_ids_by_uid(&uid, &owners);
    bool taken = false;
    for (size_t i = 0; i < owners.len; i++) taken |= !same(&owners.ptr[i], r->client);
    wasmgate_plugin_host_list_client_id_free(&owners);
    host_error err;
    plugin_option_string_t old = {0};
    if (taken) {
        fail(r, CONFLICT, "nick '", name, "' is taken");
    } else if (!wasmgate_plugin_host_get_uid_by_client_id(r->client, &old, &err)) {
        fail_host(r, &err);
    } else if (old.is_some && !same(&old.val, &uid) &&
               !wasmgate_plugin_host_unbind_uid(r->client, &err)) {
        fail_host(r, &err);
    } else if (!wasmgate_plugin_host_bind_uid(r->client, &uid, &err)) {
        fail_host(r, &err);
    } else {
        out_pair(r, "name", name);
    }
    plugin_option_string_free(&old);
    free(name);
}

static void on_join_leave(req *r, bool join) {
    char *room = field(r, "room", MAX_ROOM);
    if (!room) return;
    plugin_string_t group = borrow_c(room);
    host_error err;
    wasmgate_plugin_host_member_t member = {0}; /* no userId/extend in the notices */
    bool ok = join ? wasmgate_plugin_host_join_group(r->client, &group, &member, &err)
                   : wasmgate_plugin_host_leave_group(r->client, &group, &err);
    if (ok) out_pair(r, "room", room);
    else fail_host(r, &err);
    free(room);
}

static void on_join(req *r) { on_join_leave(r, true); }
static void on_leave(req *r) { on_join_leave(r, false); }

static void on_say(req *r) {
    char *room = field(r, "room", MAX_ROOM);
    char *text = room ? field(r, "text", MAX_TEXT) : NULL;
    char *from = NULL;
    if (!text) goto done;
    plugin_string_t group = borrow_c(room);
    wasmgate_plugin_host_list_client_id_t members;
    wasmgate_plugin_host_get_client_ids_by_group(&group, &members);
    bool member = false;
    for (size_t i = 0; i < members.len; i++) member |= same(&members.ptr[i], r->client);
    wasmgate_plugin_host_list_client_id_free(&members);
    if (!member) {
        fail(r, FORBIDDEN, "not in room '", room, "'");
        goto done;
    }
    if (!(from = name_of(r))) goto done;
    sb said = {0};
    sb_cstr(&said, "{\"event\":\"said\",\"data\":{\"room\":");
    sb_jcstr(&said, room);
    sb_cstr(&said, ",\"from\":");
    sb_jcstr(&said, from);
    sb_cstr(&said, ",\"text\":");
    sb_jcstr(&said, text);
    sb_cstr(&said, "}}");
    if (said.oom) {
        fail(r, HOST_ERROR, "out of memory", NULL, NULL);
    } else {
        wasmgate_plugin_host_message_t msg;
        msg.tag = WASMGATE_PLUGIN_TYPES_MESSAGE_TEXT;
        msg.val.text = borrow(said.buf, said.len);
        wasmgate_plugin_host_list_client_id_t exclude = {NULL, 0};
        uint32_t delivered;
        host_error err;
        if (wasmgate_plugin_host_send_to_group(&group, &msg, &exclude, &delivered, &err)) {
            sb_cstr(&r->out, "{\"room\":");
            sb_jcstr(&r->out, room);
            sb_cstr(&r->out, ",\"delivered\":");
            sb_int(&r->out, delivered);
            sb_cstr(&r->out, "}");
        } else {
            fail_host(r, &err);
        }
    }
    sb_free(&said);
done:
    free(room);
    free(text);
    free(from);
}

static void on_whisper(req *r) {
    char *to = field(r, "to", MAX_NAME);
    char *text = to ? field(r, "text", MAX_TEXT) : NULL;
    char *from = text ? name_of(r) : NULL;
    if (!from) goto done;
    sb body = {0};
    sb_cstr(&body, "{\"event\":\"whisper\",\"data\":{\"from\":");
    sb_jcstr(&body, from);
    sb_cstr(&body, ",\"text\":");
    sb_jcstr(&body, text);
    sb_cstr(&body, "}}");
    if (body.oom) {
        fail(r, HOST_ERROR, "out of memory", NULL, NULL);
    } else {
        wasmgate_plugin_host_message_t msg;
        msg.tag = WASMGATE_PLUGIN_TYPES_MESSAGE_TEXT;
        msg.val.text = borrow(body.buf, body.len);
        plugin_string_t uid = borrow_c(to);
        uint32_t delivered;
        host_error err;
        if (!wasmgate_plugin_host_send_to_uid(&uid, &msg, &delivered, &err)) {
            fail_host(r, &err);
        } else if (delivered == 0) {
            fail(r, NOT_FOUND, "'", to, "' is not online");
        } else {
            sb_cstr(&r->out, "{\"to\":");
            sb_jcstr(&r->out, to);
            sb_cstr(&r->out, ",\"delivered\":");
            sb_int(&r->out, delivered);
            sb_cstr(&r->out, "}");
        }
    }
    sb_free(&body);
done:
    free(to);
    free(text);
    free(from);
}

static void on_who(req *r) {
    char *room = field(r, "room", MAX_ROOM);
    if (!room) return;
    plugin_string_t group = borrow_c(room);
    plugin_list_string_t uids;
    wasmgate_plugin_host_get_uids_by_group(&group, &uids);
    sb_cstr(&r->out, "{\"room\":");
    sb_jcstr(&r->out, room);
    sb_cstr(&r->out, ",\"uids\":");
    out_strings(&r->out, uids.ptr, uids.len);
    sb_cstr(&r->out, "}");
    plugin_list_string_free(&uids);
    free(room);
}

static void on_info_set(req *r) {
    char *key = field(r, "key", MAX_ROOM);
    if (!key) return;
    jval v;
    char *value = json_get(r->data, "value", &v) ? json_str(v) : NULL;
    if (!value) {
        fail(r, BAD_REQUEST, "missing field 'value'", NULL, NULL);
        free(key);
        return;
    }
    plugin_tuple2_string_string_t entry = {borrow_c(key), borrow_c(value)};
    wasmgate_plugin_host_info_t info = {&entry, 1};
    host_error err;
    if (wasmgate_plugin_host_update_info(r->client, &info, &err)) {
        sb_cstr(&r->out, "{\"key\":");
        sb_jcstr(&r->out, key);
        sb_cstr(&r->out, ",\"value\":");
        sb_jcstr(&r->out, value);
        sb_cstr(&r->out, "}");
    } else {
        fail_host(r, &err);
    }
    free(key);
    free(value);
}

static void on_info_get(req *r) {
    wasmgate_plugin_host_info_t info;
    host_error err;
    if (!wasmgate_plugin_host_get_info(r->client, &info, &err)) {
        fail_host(r, &err);
        return;
    }
    sb_cstr(&r->out, "{");
    for (size_t i = 0; i < info.len; i++) {
        if (i) sb_cstr(&r->out, ",");
        sb_jstr(&r->out, (const char *)info.ptr[i].f0.ptr, info.ptr[i].f0.len);
        sb_cstr(&r->out, ":");
        sb_jstr(&r->out, (const char *)info.ptr[i].f1.ptr, info.ptr[i].f1.len);
    }
    sb_cstr(&r->out, "}");
    wasmgate_plugin_host_info_free(&info);
}

static void on_kv_incr(req *r) {
    char *key = field(r, "key", MAX_ROOM);
    if (!key) return;
    plugin_string_t k = borrow_c(key);
    int64_t value;
    host_error err;
    if (wasmgate_plugin_host_kv_incr(&k, 1, &value, &err)) {
        sb_cstr(&r->out, "{\"value\":");
        sb_int(&r->out, value);
        sb_cstr(&r->out, "}");
    } else {
        fail_host(r, &err);
    }
    free(key);
}

static void on_timer_request(req *r) {
    jval v;
    int64_t ms;
    if (!json_get(r->data, "ms", &v) || !json_int(v, &ms) || ms < 0) {
        fail(r, BAD_REQUEST, "missing field 'ms'", NULL, NULL);
        return;
    }
    /* The timer's payload remembers who asked: {"client": <id>, "payload": <any JSON>}. */
    sb payload = {0};
    sb_cstr(&payload, "{\"client\":");
    sb_jstr(&payload, (const char *)r->client->ptr, r->client->len);
    sb_cstr(&payload, ",\"payload\":");
    if (json_get(r->data, "payload", &v)) sb_raw(&payload, v.p, v.n);
    else sb_cstr(&payload, "null");
    sb_cstr(&payload, "}");
    if (payload.oom) {
        fail(r, HOST_ERROR, "out of memory", NULL, NULL);
    } else {
        plugin_string_t p = borrow(payload.buf, payload.len);
        uint64_t id;
        host_error err;
        if (wasmgate_plugin_host_set_timer((uint64_t)ms, &p, NULL, &id, &err)) {
            sb_cstr(&r->out, "{\"id\":");
            sb_int(&r->out, (int64_t)id);
            sb_cstr(&r->out, "}");
        } else {
            fail_host(r, &err);
        }
    }
    sb_free(&payload);
}

static void on_version(req *r) { out_pair(r, "version", g_version ? g_version : "1"); }

static const struct {
    const char *event;
    void (*handle)(req *r);
} HANDLERS[] = {
    {"nick", on_nick},         {"join", on_join},       {"leave", on_leave},
    {"say", on_say},           {"whisper", on_whisper}, {"who", on_who},
    {"info-set", on_info_set}, {"info-get", on_info_get}, {"kv-incr", on_kv_incr},
    {"timer", on_timer_request}, {"version", on_version},
};

/* {"event":<ev>,"code":<code>,"msg":<msg>,"data":null} as a reply; `ev` NULL means "error". */
static void send_error(plugin_string_t *client, const char *ev, int code, const char *msg, size_t n) {
    sb b = {0};
    sb_cstr(&b, "{\"event\":");
    sb_jcstr(&b, ev ? ev : "error");
    sb_cstr(&b, ",\"code\":");
    sb_int(&b, code);
    sb_cstr(&b, ",\"msg\":");
    sb_jstr(&b, msg, n);
    sb_cstr(&b, ",\"data\":null}");
    send_sb(client, &b);
    sb_free(&b);
}

static void handle_text(plugin_string_t *client, const char *frame, size_t len) {
    static const char hello[] = "hello";
    if (len == sizeof hello - 1 && memcmp(frame, hello, len) == 0) {
        send_text(client, "hello from " LANG, strlen("hello from " LANG));
        return;
    }
    jval doc, ev;
    const char *bad = NULL;
    if (!json_parse(frame, len, &doc)) bad = "bad request: not JSON";
    else if (doc.type != J_OBJ) bad = "bad request: not a JSON object";
    else if (!json_get(doc, "event", &ev)) bad = "bad request: no `event` field";
    else if (ev.type != J_STR) bad = "bad request: `event` is not a string";
    char *event = bad ? NULL : json_str(ev);
    if (!event) {
        if (!bad) bad = "bad request: out of memory";
        send_error(client, NULL, BAD_REQUEST, bad, strlen(bad));
        return;
    }
    req r = {client, {J_NONE, NULL, 0}, {0}, 0, {0}};
    json_get(doc, "data", &r.data);
    void (*handle)(req *) = NULL;
    for (size_t i = 0; i < sizeof HANDLERS / sizeof HANDLERS[0]; i++) {
        if (strcmp(HANDLERS[i].event, event) == 0) handle = HANDLERS[i].handle;
    }
    if (!handle) {
        fail(&r, NOT_FOUND, "unknown event", NULL, NULL);
    } else {
        handle(&r);
    }
    if (r.code == 0 && r.out.oom) fail(&r, HOST_ERROR, "out of memory", NULL, NULL);
    if (r.code != 0) {
        send_error(client, event, r.code, r.msg.oom ? "" : r.msg.buf, r.msg.oom ? 0 : r.msg.len);
    } else {
        sb b = {0};
        sb_cstr(&b, "{\"event\":");
        sb_jcstr(&b, event);
        sb_cstr(&b, ",\"code\":0,\"msg\":\"success\",\"data\":");
        if (r.out.len) sb_raw(&b, r.out.buf, r.out.len);
        else sb_cstr(&b, "null");
        sb_cstr(&b, "}");
        send_sb(client, &b);
        sb_free(&b);
    }
    sb_free(&r.out);
    sb_free(&r.msg);
    free(event);
}

/* ---- exports --------------------------------------------------------------------------- */

bool exports_plugin_init(plugin_string_t *config, plugin_string_t *err) {
    (void)err; /* this plugin never refuses to load */
    jval doc, v;
    free(g_version);
    g_version = NULL;
    if (json_parse((const char *)config->ptr, config->len, &doc) && json_get(doc, "version", &v)) {
        if (v.type == J_STR) {
            g_version = json_str(v);
        } else if ((g_version = malloc(v.n + 1))) {
            memcpy(g_version, v.p, v.n);
            g_version[v.n] = '\0';
        }
    }
    sb line = {0};
    sb_cstr(&line, LANG " chat ready, version ");
    sb_cstr(&line, g_version ? g_version : "1");
    if (!line.oom) log_msg(WASMGATE_PLUGIN_TYPES_LEVEL_INFO, line.buf);
    sb_free(&line);
    plugin_string_free(config);
    return true;
}

bool exports_plugin_on_connect(plugin_client_id_t *client, plugin_connect_context_t *context,
                               plugin_reject_t *err) {
    (void)err; /* everyone is welcome */
    plugin_connect_context_free(context);
    plugin_string_free(client);
    return true;
}

void exports_plugin_on_message(plugin_client_id_t *client, plugin_message_t *msg) {
    if (msg->tag == WASMGATE_PLUGIN_TYPES_MESSAGE_TEXT) {
        handle_text(client, (const char *)msg->val.text.ptr, msg->val.text.len);
    } else {
        /* Binary frames are echoed back as they came. */
        host_error err;
        if (!wasmgate_plugin_host_send_to_client(client, msg, &err)) {
            wasmgate_plugin_host_error_free(&err);
        }
    }
    plugin_message_free(msg);
    plugin_string_free(client);
}

void exports_plugin_on_close(plugin_client_id_t *client, plugin_close_reason_t *reason) {
    sb line = {0};
    sb_raw(&line, (const char *)client->ptr, client->len);
    sb_cstr(&line, " left (");
    sb_int(&line, reason->code);
    sb_cstr(&line, ")");
    if (!line.oom) log_msg(WASMGATE_PLUGIN_TYPES_LEVEL_DEBUG, line.buf);
    sb_free(&line);
    plugin_close_reason_free(reason);
    plugin_string_free(client);
}

void exports_plugin_on_timer(plugin_timer_t *timer) {
    plugin_string_t *payload = &timer->payload;
    jval doc, v;
    char *client = NULL;
    if (json_parse((const char *)payload->ptr, payload->len, &doc) && json_get(doc, "client", &v)) {
        client = json_str(v);
    }
    if (!client) {
        log_msg(WASMGATE_PLUGIN_TYPES_LEVEL_WARN, "bad timer payload");
    } else {
        sb b = {0};
        sb_cstr(&b, "{\"event\":\"timer\",\"data\":{\"payload\":");
        if (json_get(doc, "payload", &v)) sb_raw(&b, v.p, v.n);
        else sb_cstr(&b, "null");
        sb_cstr(&b, "}}");
        plugin_string_t to = borrow_c(client);
        send_sb(&to, &b);
        sb_free(&b);
        free(client);
    }
    plugin_timer_free(timer);
}
