#include "sync_canon.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct canon_buf {
        char *data;
        size_t len, cap, max;
};

bool sync_utf8_valid(const char *s, size_t len)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0;

        while (i < len) {
                unsigned c = p[i];
                size_t n;
                uint32_t cp, min;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if ((c & 0xe0) == 0xc0)
                        n = 1, cp = c & 0x1f, min = 0x80;
                else if ((c & 0xf0) == 0xe0)
                        n = 2, cp = c & 0x0f, min = 0x800;
                else if ((c & 0xf8) == 0xf0)
                        n = 3, cp = c & 0x07, min = 0x10000;
                else
                        return false;
                if (len - i - 1 < n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((p[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n + 1;
        }
        return true;
}

static int put(struct canon_buf *b, const char *s, size_t n)
{
        if (n > b->max - b->len)
                return -E2BIG;
        /* Room for the NUL too: array_reserve leaves cap above len + n. */
        if (array_reserve(&b->data, &b->cap, b->len + n, 1) < 0)
                return -ENOMEM;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

static int put_string(struct canon_buf *b, const char *s, size_t len)
{
        int r = put(b, "\"", 1);

        for (size_t i = 0; r == 0 && i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                char esc[8];
                size_t start = i;

                if (c >= 0x20 && c != '"' && c != '\\') {
                        while (i + 1 < len && (unsigned char)s[i + 1] >= 0x20 && s[i + 1] != '"' &&
                               s[i + 1] != '\\')
                                i++;
                        r = put(b, s + start, i - start + 1);
                        continue;
                }
                switch (c) {
                case '"': r = put(b, "\\\"", 2); break;
                case '\\': r = put(b, "\\\\", 2); break;
                case '\b': r = put(b, "\\b", 2); break;
                case '\f': r = put(b, "\\f", 2); break;
                case '\n': r = put(b, "\\n", 2); break;
                case '\r': r = put(b, "\\r", 2); break;
                case '\t': r = put(b, "\\t", 2); break;
                default:
                        snprintf(esc, sizeof(esc), "\\u%04x", c);
                        r = put(b, esc, 6);
                }
        }
        return r < 0 ? r : put(b, "\"", 1);
}

static int compare_keys(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int put_value(struct canon_buf *b, struct json_object *v, const char *path, struct error *err);

static int put_object(struct canon_buf *b, struct json_object *obj, const char *path, struct error *err)
{
        size_t n = (size_t)json_object_object_length(obj), i = 0;
        cleanup_free const char **keys = calloc(n ? n : 1, sizeof(*keys));
        int r;

        if (!keys)
                return error_set(err, -ENOMEM, "out of memory");
        json_object_object_foreach(obj, key, val) {
                (void)val;
                keys[i++] = key;
        }
        qsort(keys, n, sizeof(*keys), compare_keys);
        r = put(b, "{", 1);
        for (i = 0; r == 0 && i < n; i++) {
                char sub[128];

                if (!sync_utf8_valid(keys[i], strlen(keys[i])))
                        return error_set(err, -EINVAL, "%s: a key is not UTF-8", path);
                snprintf(sub, sizeof(sub), "%s.%.64s", path, keys[i]);
                if ((i > 0 && (r = put(b, ",", 1)) < 0) || (r = put_string(b, keys[i], strlen(keys[i]))) < 0 ||
                    (r = put(b, ":", 1)) < 0)
                        break;
                r = put_value(b, json_object_object_get(obj, keys[i]), sub, err);
        }
        return r < 0 ? r : put(b, "}", 1);
}

static int put_value(struct canon_buf *b, struct json_object *v, const char *path, struct error *err)
{
        char num[32];
        int r = 0;

        switch (json_object_get_type(v)) {
        case json_type_null:
                return put(b, "null", 4);
        case json_type_boolean:
                return json_object_get_boolean(v) ? put(b, "true", 4) : put(b, "false", 5);
        case json_type_int:
                /* json-c keeps numbers above INT64_MAX as uint64: none of
                 * ours is that large, so refuse rather than misprint. */
                if (json_object_get_int64(v) == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
                        return error_set(err, -EINVAL, "%s: integer out of range", path);
                snprintf(num, sizeof(num), "%lld", (long long)json_object_get_int64(v));
                return put(b, num, strlen(num));
        case json_type_double:
                return error_set(err, -EINVAL, "%s: only integers are allowed", path);
        case json_type_string: {
                const char *s = json_object_get_string(v);
                size_t len = (size_t)json_object_get_string_len(v);

                if (strlen(s) != len)
                        return error_set(err, -EINVAL, "%s: contains a NUL character", path);
                if (!sync_utf8_valid(s, len))
                        return error_set(err, -EINVAL, "%s: not valid UTF-8", path);
                return put_string(b, s, len);
        }
        case json_type_array:
                r = put(b, "[", 1);
                for (size_t i = 0; r == 0 && i < json_object_array_length(v); i++) {
                        char sub[160];

                        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
                        if (i > 0 && (r = put(b, ",", 1)) < 0)
                                break;
                        r = put_value(b, json_object_array_get_idx(v, i), sub, err);
                }
                return r < 0 ? r : put(b, "]", 1);
        case json_type_object:
                return put_object(b, v, path, err);
        }
        return error_set(err, -EINVAL, "%s: unknown JSON type", path);
}

int sync_canon_write(struct json_object *obj, size_t max, char **ret_text, size_t *ret_len, struct error *err)
{
        struct canon_buf b = { .max = max };
        int r;

        error_clear(err);
        r = put_value(&b, obj, "message", err);
        if (r == 0 && !b.data)
                r = -EINVAL;
        if (r < 0) {
                free(b.data);
                if (err && err->code < 0)
                        return err->code;
                if (r == -E2BIG)
                        return error_set(err, r, "message: longer than %zu bytes", max);
                return error_set(err, r, "message: out of memory");
        }
        *ret_text = b.data;
        if (ret_len)
                *ret_len = b.len;
        return 0;
}

int sync_hmac(const uint8_t *key, size_t key_len, const void *const *parts, const size_t *lens, size_t n,
              uint8_t out[SYNC_HMAC_SIZE])
{
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
        OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                                OSSL_PARAM_construct_end() };
        size_t out_len = 0;
        int r = -EIO;

        if (!ctx || EVP_MAC_init(ctx, key, key_len, params) != 1)
                goto out;
        for (size_t i = 0; i < n; i++)
                if (EVP_MAC_update(ctx, parts[i], lens[i]) != 1)
                        goto out;
        if (EVP_MAC_final(ctx, out, &out_len, SYNC_HMAC_SIZE) == 1 && out_len == SYNC_HMAC_SIZE)
                r = 0;
out:
        EVP_MAC_CTX_free(ctx);
        EVP_MAC_free(mac);
        return r;
}
