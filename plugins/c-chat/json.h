/*
 * A tiny JSON reader and writer for plugins, with no allocation while reading.
 *
 * Reading: json_parse() validates a whole document and returns a span; json_get() looks up a
 * member of an object span; json_str() decodes a string span. Nothing here trusts its input:
 * malformed JSON, deep nesting and truncated escapes are rejected, never read past the end.
 *
 * Writing: a growable string buffer (sb_*) that escapes JSON strings.
 */
#ifndef WASMGATE_JSON_H
#define WASMGATE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { J_NONE, J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

/* A value inside a document: its type and the bytes it spans (quotes and brackets included). */
typedef struct {
    jtype type;
    const char *p;
    size_t n;
} jval;

/* Validates `s[0..n)` as one JSON value (surrounding whitespace allowed). */
bool json_parse(const char *s, size_t n, jval *out);
/* The member `key` of an object value; false when `obj` is no object or has no such member. */
bool json_get(jval obj, const char *key, jval *out);
/* A string value decoded to a NUL-terminated UTF-8 copy (malloc'd), or NULL. */
char *json_str(jval v);
/* An integer value (no fraction, no exponent) that fits in int64. */
bool json_int(jval v, int64_t *out);

/* A growable output buffer. `oom` is set once an allocation fails; the content is then unusable. */
typedef struct {
    char *buf;
    size_t len;
    size_t cap;
    bool oom;
} sb;

void sb_raw(sb *b, const char *s, size_t n);
void sb_cstr(sb *b, const char *s);
/* Appends `s[0..n)` as a quoted, escaped JSON string. */
void sb_jstr(sb *b, const char *s, size_t n);
void sb_jcstr(sb *b, const char *s);
void sb_int(sb *b, int64_t v);
void sb_free(sb *b);

#endif
