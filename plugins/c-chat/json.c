/* A tiny JSON reader and writer: see json.h. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const char *s;
    size_t n;
    size_t i;
} cursor;

static void ws(cursor *c) {
    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') break;
        c->i++;
    }
}

static bool lit(cursor *c, const char *word) {
    size_t len = strlen(word);
    if (c->n - c->i < len || memcmp(c->s + c->i, word, len) != 0) return false;
    c->i += len;
    return true;
}

static bool is_hex(char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static bool skip_string(cursor *c) {
    if (c->i >= c->n || c->s[c->i] != '"') return false;
    c->i++;
    while (c->i < c->n) {
        unsigned char ch = (unsigned char)c->s[c->i++];
        if (ch == '"') return true;
        if (ch < 0x20) return false;
        if (ch == '\\') {
            if (c->i >= c->n) return false;
            char e = c->s[c->i++];
            if (e == 'u') {
                if (c->n - c->i < 4) return false;
                for (int k = 0; k < 4; k++) {
                    if (!is_hex(c->s[c->i + k])) return false;
                }
                c->i += 4;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return false;
            }
        }
    }
    return false;
}

static bool digits(cursor *c) {
    size_t start = c->i;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') c->i++;
    return c->i > start;
}

static bool skip_number(cursor *c) {
    if (c->i < c->n && c->s[c->i] == '-') c->i++;
    if (c->i < c->n && c->s[c->i] == '0') {
        c->i++;
    } else if (!digits(c)) {
        return false;
    }
    if (c->i < c->n && c->s[c->i] == '.') {
        c->i++;
        if (!digits(c)) return false;
    }
    if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
        c->i++;
        if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-')) c->i++;
        if (!digits(c)) return false;
    }
    return true;
}

static bool value(cursor *c, jval *out, int depth);

static bool skip_container(cursor *c, char close, bool object, int depth) {
    c->i++; /* the opening bracket */
    ws(c);
    if (c->i < c->n && c->s[c->i] == close) {
        c->i++;
        return true;
    }
    for (;;) {
        jval ignored;
        if (object) {
            ws(c);
            if (!skip_string(c)) return false;
            ws(c);
            if (c->i >= c->n || c->s[c->i] != ':') return false;
            c->i++;
        }
        if (!value(c, &ignored, depth + 1)) return false;
        ws(c);
        if (c->i >= c->n) return false;
        char ch = c->s[c->i++];
        if (ch == close) return true;
        if (ch != ',') return false;
    }
}

static bool value(cursor *c, jval *out, int depth) {
    if (depth > MAX_DEPTH) return false;
    ws(c);
    if (c->i >= c->n) return false;
    size_t start = c->i;
    char ch = c->s[c->i];
    bool ok;
    jtype type;
    switch (ch) {
    case '{': type = J_OBJ; ok = skip_container(c, '}', true, depth); break;
    case '[': type = J_ARR; ok = skip_container(c, ']', false, depth); break;
    case '"': type = J_STR; ok = skip_string(c); break;
    case 't': type = J_BOOL; ok = lit(c, "true"); break;
    case 'f': type = J_BOOL; ok = lit(c, "false"); break;
    case 'n': type = J_NULL; ok = lit(c, "null"); break;
    default: type = J_NUM; ok = skip_number(c); break;
    }
    if (!ok) return false;
    out->type = type;
    out->p = c->s + start;
    out->n = c->i - start;
    return true;
}

bool json_parse(const char *s, size_t n, jval *out) {
    cursor c = {s, n, 0};
    if (!value(&c, out, 0)) return false;
    ws(&c);
    return c.i == c.n;
}

/* Compares a (validated) string span with a C string, decoding only simple escapes. */
static bool key_equals(const char *p, size_t n, const char *key) {
    char *decoded = json_str((jval){J_STR, p, n});
    if (!decoded) return false;
    bool eq = strcmp(decoded, key) == 0;
    free(decoded);
    return eq;
}

bool json_get(jval obj, const char *key, jval *out) {
    if (obj.type != J_OBJ) return false;
    cursor c = {obj.p, obj.n, 1};
    for (;;) {
        ws(&c);
        if (c.i >= c.n || c.s[c.i] == '}') return false;
        size_t kstart = c.i;
        if (!skip_string(&c)) return false;
        size_t klen = c.i - kstart;
        ws(&c);
        if (c.i >= c.n || c.s[c.i] != ':') return false;
        c.i++;
        jval v;
        if (!value(&c, &v, 1)) return false;
        if (key_equals(c.s + kstart, klen, key)) {
            *out = v;
            return true;
        }
        ws(&c);
        if (c.i >= c.n || c.s[c.i] != ',') return false;
        c.i++;
    }
}

static unsigned hex4(const char *p) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char ch = p[k];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
        else v |= (unsigned)(ch - 'A' + 10);
    }
    return v;
}

static size_t utf8(char *dst, unsigned cp) {
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

char *json_str(jval v) {
    if (v.type != J_STR || v.n < 2) return NULL;
    const char *p = v.p + 1;
    const char *end = v.p + v.n - 1; /* the closing quote */
    /* Decoding never grows: an escape of k bytes yields at most k bytes. */
    char *out = malloc(v.n);
    if (!out) return NULL;
    size_t o = 0;
    while (p < end) {
        if (*p != '\\') {
            out[o++] = *p++;
            continue;
        }
        p++;
        char e = *p++;
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp = hex4(p);
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = hex4(p + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD; /* no NUL, no lone surrogate */
            o += utf8(out + o, cp);
            break;
        }
        default: out[o++] = e; break; /* " \ / */
        }
    }
    out[o] = '\0';
    return out;
}

bool json_int(jval v, int64_t *out) {
    if (v.type != J_NUM || v.n == 0 || v.n > 20) return false;
    int64_t acc = 0;
    size_t i = 0;
    bool neg = v.p[0] == '-';
    if (neg) i++;
    if (i == v.n) return false;
    for (; i < v.n; i++) {
        char ch = v.p[i];
        if (ch < '0' || ch > '9') return false;
        int d = ch - '0';
        if (acc > (INT64_MAX - d) / 10) return false;
        acc = acc * 10 + d;
    }
    *out = neg ? -acc : acc;
    return true;
}

void sb_raw(sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1) cap *= 2;
        char *grown = realloc(b->buf, cap);
        if (!grown) {
            b->oom = true;
            return;
        }
        b->buf = grown;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

void sb_cstr(sb *b, const char *s) { sb_raw(b, s, strlen(s)); }

void sb_jstr(sb *b, const char *s, size_t n) {
    sb_raw(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        if (ch == '"') esc = "\\\"";
        else if (ch == '\\') esc = "\\\\";
        else if (ch == '\n') esc = "\\n";
        else if (ch == '\r') esc = "\\r";
        else if (ch == '\t') esc = "\\t";
        else if (ch < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", ch);
            esc = tmp;
        }
        if (esc) {
            sb_raw(b, s + i - run, run);
            run = 0;
            sb_cstr(b, esc);
        } else {
            run++;
        }
    }
    sb_raw(b, s + n - run, run);
    sb_raw(b, "\"", 1);
}

void sb_jcstr(sb *b, const char *s) { sb_jstr(b, s, strlen(s)); }

void sb_int(sb *b, int64_t v) {
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    if (k > 0) sb_raw(b, tmp, (size_t)k);
}

void sb_free(sb *b) {
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}
