/* json-c helpers for bytes from outside: bounded parse, typed field access.
 * Every getter fills err with a message naming the field. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Parses exactly one JSON object from buf[len] (no trailing bytes but
 * white space), nesting at most 16 deep. */
int json_parse_object(const char *buf, size_t len, struct json_object **ret_obj, struct error *err);

/* Field getters: -ENOENT when absent and required (absent and optional:
 * returns 0 and leaves *ret untouched), -EINVAL on a wrong type. */
int json_get_string(struct json_object *obj, const char *key, bool required, const char **ret, struct error *err);
int json_get_int64(struct json_object *obj, const char *key, bool required, int64_t *ret, struct error *err);
int json_get_object(struct json_object *obj, const char *key, bool required, struct json_object **ret,
                    struct error *err);
int json_get_bool(struct json_object *obj, const char *key, bool required, bool *ret, struct error *err);
/* An array of at most max strings: pointers into obj into ret[max], the
 * count in *ret_n (0 when absent and optional). */
int json_get_strings(struct json_object *obj, const char *key, bool required, const char **ret, size_t max,
                     size_t *ret_n, struct error *err);
/* -EINVAL naming the first key of obj that is not in names[] (NULL-ended). */
int json_check_keys(struct json_object *obj, const char *const *names, struct error *err);

static inline void json_object_putp(struct json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define cleanup_json __attribute__((cleanup(json_object_putp)))
