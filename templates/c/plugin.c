/*
 * A minimal wasmgate plugin in C: echoes text frames and counts messages.
 * Build: scripts/build-c-plugin.sh <this dir> <out.wasm>   (see README.md)
 *
 * plugin.h is generated at build time from wit/0.2.0/plugin.wit (wit-bindgen c). Ownership rules:
 * - arguments of exported functions belong to you: free them (plugin_string_free, ...);
 * - arguments you pass to host functions stay yours;
 * - results and errors returned by host functions are malloc'd for you: free them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* Globals live as long as the instance: a trap or a reload starts afresh, and with
 * `instances = N` each instance has its own (init runs in each). Keep what must survive, or what
 * other clients need, in the key-value store (wasmgate_plugin_host_kv_set / _kv_incr), as the
 * counter below (kv_incr is atomic across instances), or in the registry. */

static void log_info(const char *text) {
    plugin_string_t s;
    plugin_string_set(&s, text); /* borrows `text`, no copy */
    wasmgate_plugin_host_log(WASMGATE_PLUGIN_TYPES_LEVEL_INFO, &s);
}

/* Called once, before any other event. Return false with *err set (malloc'd, e.g. with
 * plugin_string_dup) to refuse to load. */
bool exports_plugin_init(plugin_string_t *config, plugin_string_t *err) {
    (void)err;
    log_info("template plugin ready");
    plugin_string_free(config);
    return true;
}

/* A client connected. Return false with err->code (4000-4999) and err->reason (malloc'd) set to
 * turn it away. `context` says how: query (list of name/value pairs), selected headers, peer,
 * uid and the verified token's claims (JSON) when the system requires a token. */
bool exports_plugin_on_connect(plugin_client_id_t *client, plugin_connect_context_t *context,
                               plugin_reject_t *err) {
    (void)err;
    plugin_string_t lobby;
    plugin_string_set(&lobby, "lobby");
    /* The member data goes into the lobby's join/leave notices (1001/1002): ?nick=<x> as userId. */
    wasmgate_plugin_host_member_t member = {0};
    for (size_t i = 0; i < context->query.len; i++) {
        plugin_tuple2_string_string_t *q = &context->query.ptr[i];
        if (q->f0.len == 4 && memcmp(q->f0.ptr, "nick", 4) == 0) {
            member.user_id = q->f1; /* borrowed: freed with the context below */
            break;
        }
    }
    wasmgate_plugin_host_error_t e;
    if (!wasmgate_plugin_host_join_group(client, &lobby, &member, &e)) {
        wasmgate_plugin_host_error_free(&e);
    }
    plugin_connect_context_free(context);
    plugin_string_free(client);
    return true;
}

void exports_plugin_on_message(plugin_client_id_t *client, plugin_message_t *msg) {
    if (msg->tag == WASMGATE_PLUGIN_TYPES_MESSAGE_TEXT) {
        plugin_string_t key;
        plugin_string_set(&key, "messages");
        int64_t count = 0;
        wasmgate_plugin_host_error_t e;
        if (!wasmgate_plugin_host_kv_incr(&key, 1, &count, &e)) wasmgate_plugin_host_error_free(&e);

        /* "echo: <text> (#<count>)" */
        size_t len = msg->val.text.len + 32;
        char *reply = malloc(len);
        if (reply) {
            int n = snprintf(reply, len, "echo: %.*s (#%lld)", (int)msg->val.text.len,
                             (const char *)msg->val.text.ptr, (long long)count);
            wasmgate_plugin_host_message_t out;
            out.tag = WASMGATE_PLUGIN_TYPES_MESSAGE_TEXT;
            out.val.text.ptr = (uint8_t *)reply;
            out.val.text.len = n > 0 ? (size_t)n : 0;
            if (!wasmgate_plugin_host_send_to_client(client, &out, &e)) {
                wasmgate_plugin_host_error_free(&e);
            }
            free(reply);
        }
    }
    plugin_message_free(msg);
    plugin_string_free(client);
}

/* A client is gone (already out of its groups). */
void exports_plugin_on_close(plugin_client_id_t *client, plugin_close_reason_t *reason) {
    plugin_close_reason_free(reason);
    plugin_string_free(client);
}

/* A timer set with wasmgate_plugin_host_set_timer fired: timer->id, timer->payload and
 * timer->client (is_some when the timer was bound to a client). */
void exports_plugin_on_timer(plugin_timer_t *timer) {
    plugin_timer_free(timer);
}
