#include "json.h"

#include <errno.h>
#include <string.h>

#define JSON_MAX_DEPTH 16

int json_parse_object(const char *buf, size_t len, struct json_object **ret_obj, struct error *err)
{
        struct json_tokener *tok;
        struct json_object *obj;
        enum json_tokener_error jerr;
        size_t end;

        if (len > INT32_MAX)
                return error_set(err, -E2BIG, "JSON text too large");
        /* json-c would stop at a NUL and call the text complete. */
        if (memchr(buf, '\0', len))
                return error_set(err, -EINVAL, "JSON text contains a NUL byte");
        tok = json_tokener_new_ex(JSON_MAX_DEPTH);
        if (!tok)
                return error_set(err, -ENOMEM, "out of memory");
        /* Standard JSON only: no trailing commas, single quotes or NaN that
         * another implementation of the protocol would read differently.
         * Trailing bytes are refused below, with one message for all cases. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
        obj = json_tokener_parse_ex(tok, buf, (int)len);
        jerr = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        /* A literal `null` parses to a NULL object with success: that is
         * "not an object", below, not invalid JSON. */
        if (jerr != json_tokener_success) {
                json_object_put(obj);
                if (jerr == json_tokener_continue)
                        return error_set(err, -EINVAL, "JSON text ends early");
                return error_set(err, -EINVAL, "invalid JSON at byte %zu: %s", end,
                                 json_tokener_error_desc(jerr));
        }
        for (; end < len; end++)
                if (!strchr(" \t\r\n", buf[end])) {
                        json_object_put(obj);
                        return error_set(err, -EINVAL, "unexpected bytes after the JSON object at byte %zu",
                                         end);
                }
        if (!obj || !json_object_is_type(obj, json_type_object)) {
                json_object_put(obj);
                return error_set(err, -EINVAL, "expected a JSON object");
        }
        *ret_obj = obj;
        return 0;
}

static int get_typed(struct json_object *obj, const char *key, bool required, json_type type,
                     const char *type_name, struct json_object **ret, struct error *err)
{
        struct json_object *v = NULL;

        if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
                if (required)
                        return error_set(err, -ENOENT, "field `%s` is missing", key);
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, type))
                return error_set(err, -EINVAL, "field `%s` must be %s", key, type_name);
        *ret = v;
        return 0;
}

int json_get_string(struct json_object *obj, const char *key, bool required, const char **ret, struct error *err)
{
        struct json_object *v = NULL;
        int r = get_typed(obj, key, required, json_type_string, "a string", &v, err);

        if (r < 0)
                return r;
        if (v) {
                /* A "\u0000" escape puts a NUL inside: every C reader would
                 * see a shorter string than the one validated as JSON. */
                if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
                        return error_set(err, -EINVAL, "field `%s` contains a NUL character", key);
                *ret = json_object_get_string(v);
        }
        return 0;
}

int json_get_int64(struct json_object *obj, const char *key, bool required, int64_t *ret, struct error *err)
{
        struct json_object *v = NULL;
        int r = get_typed(obj, key, required, json_type_int, "an integer", &v, err);

        if (r < 0)
                return r;
        if (v) {
                /* json-c (0.16) saturates out-of-range numbers instead of
                 * failing, and sets no errno. A number above INT64_MAX is
                 * kept as a uint64 (clamped to UINT64_MAX), which
                 * json_object_get_uint64() still sees; one below INT64_MIN
                 * is clamped to INT64_MIN while parsing and cannot be told
                 * apart. */
                int64_t n = json_object_get_int64(v);
                if (n == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
                        return error_set(err, -ERANGE, "field `%s` is out of range", key);
                *ret = n;
        }
        return 0;
}

int json_get_object(struct json_object *obj, const char *key, bool required, struct json_object **ret,
                    struct error *err)
{
        struct json_object *v = NULL;
        int r = get_typed(obj, key, required, json_type_object, "an object", &v, err);

        if (r < 0)
                return r;
        if (v)
                *ret = v;
        return 0;
}

int json_get_bool(struct json_object *obj, const char *key, bool required, bool *ret, struct error *err)
{
        struct json_object *v = NULL;
        int r = get_typed(obj, key, required, json_type_boolean, "true or false", &v, err);

        if (r == 0 && v)
                *ret = json_object_get_boolean(v);
        return r;
}

int json_get_strings(struct json_object *obj, const char *key, bool required, const char **ret, size_t max,
                     size_t *ret_n, struct error *err)
{
        struct json_object *v = NULL;
        size_t n;
        int r = get_typed(obj, key, required, json_type_array, "an array", &v, err);

        if (r < 0)
                return r;
        n = v ? json_object_array_length(v) : 0;
        if (n > max)
                return error_set(err, -EINVAL, "field `%s`: at most %zu items", key, max);
        for (size_t i = 0; i < n; i++) {
                struct json_object *item = json_object_array_get_idx(v, i);
                const char *s;

                if (!json_object_is_type(item, json_type_string))
                        return error_set(err, -EINVAL, "field `%s`: item %zu is not a string", key, i);
                s = json_object_get_string(item);
                if (strlen(s) != (size_t)json_object_get_string_len(item))
                        return error_set(err, -EINVAL, "field `%s`: item %zu contains a NUL character", key, i);
                ret[i] = s;
        }
        *ret_n = n;
        return 0;
}

int json_check_keys(struct json_object *obj, const char *const *names, struct error *err)
{
        json_object_object_foreach(obj, key, value) {
                bool known = false;

                (void)value;
                for (size_t i = 0; names[i] && !known; i++)
                        known = strcmp(key, names[i]) == 0;
                if (!known)
                        return error_set(err, -EINVAL, "unknown field `%.64s`", key);
        }
        return 0;
}
