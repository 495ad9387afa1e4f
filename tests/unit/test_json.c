/* common/json: the bounded parse of one object, and the typed getters. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

#define SENTINEL ((struct json_object *)0x1)

static struct json_object *parse_ok(const char *text)
{
        struct json_object *obj = NULL;
        struct error err = { 0 };

        assert_int_equal(json_parse_object(text, strlen(text), &obj, &err), 0);
        assert_non_null(obj);
        assert_true(json_object_is_type(obj, json_type_object));
        return obj;
}

/* Expects a refusal with exactly msg, and *ret_obj untouched. */
static void expect_refused_len(const char *text, size_t len, int code, const char *msg)
{
        struct json_object *obj = SENTINEL;
        struct error err = { 0 };

        assert_int_equal(json_parse_object(text, len, &obj, &err), code);
        assert_int_equal(err.code, code);
        assert_string_equal(err.msg, msg);
        assert_ptr_equal(obj, SENTINEL);
}

static void expect_refused(const char *text, int code, const char *msg)
{
        expect_refused_len(text, strlen(text), code, msg);
}

static void test_parse_good(void **state)
{
        cleanup_json struct json_object *obj = NULL, *empty = NULL, *spaced = NULL;
        struct json_object *v;

        (void)state;
        obj = parse_ok("{\"a\":1,\"b\":\"two\",\"c\":{\"d\":[true,null]}}");
        assert_int_equal(json_object_object_length(obj), 3);
        assert_true(json_object_object_get_ex(obj, "b", &v));
        assert_string_equal(json_object_get_string(v), "two");
        empty = parse_ok("{}");
        assert_int_equal(json_object_object_length(empty), 0);
        /* White space before and after is fine. */
        spaced = parse_ok(" \t\r\n{ \"a\" : 1 } \t\r\n\n");
        assert_int_equal(json_object_object_length(spaced), 1);
}

/* The length given is what is parsed, not up to a terminator. */
static void test_parse_uses_len(void **state)
{
        const char *text = "{\"a\":1}garbage";
        struct json_object *obj = NULL;
        struct error err = { 0 };

        (void)state;
        assert_int_equal(json_parse_object(text, 7, &obj, &err), 0);
        json_object_put(obj);
        expect_refused_len("{\"a\":1}", 6, -EINVAL, "JSON text ends early");
}

static void test_parse_trailing(void **state)
{
        (void)state;
        expect_refused("{} x", -EINVAL, "unexpected bytes after the JSON object at byte 3");
        expect_refused("{}{}", -EINVAL, "unexpected bytes after the JSON object at byte 2");
        expect_refused("{\"a\":1}\n{\"a\":2}", -EINVAL, "unexpected bytes after the JSON object at byte 8");
        /* A vertical tab or form feed is not JSON white space. */
        expect_refused("{}\v", -EINVAL, "unexpected bytes after the JSON object at byte 2");
        expect_refused("{}\f", -EINVAL, "unexpected bytes after the JSON object at byte 2");
}

/* Strict mode: what a lenient parser accepts, another implementation of
 * the protocol might read differently. (json-c 0.16's strict mode still
 * takes single-quoted strings and NaN.) */
static void test_parse_strict(void **state)
{
        struct json_object *obj = NULL;
        struct error err = { 0 };

        (void)state;
        assert_int_equal(json_parse_object("{\"a\":1,}", 8, &obj, &err), -EINVAL);
        assert_int_equal(json_parse_object("{\"a\":01}", 9, &obj, &err), -EINVAL);
        assert_null(obj);
}

static void test_parse_not_object(void **state)
{
        (void)state;
        expect_refused("[1,2]", -EINVAL, "expected a JSON object");
        expect_refused("[]\n", -EINVAL, "expected a JSON object");
        expect_refused("\"text\"", -EINVAL, "expected a JSON object");
        expect_refused("true ", -EINVAL, "expected a JSON object");
        /* json-c returns no object at all for a `null`. */
        expect_refused("null ", -EINVAL, "expected a JSON object");
        expect_refused("42 ", -EINVAL, "expected a JSON object");
        /* A bare number could go on, and json-c waits for more after a
         * bare literal too. Refused all the same. */
        expect_refused("42", -EINVAL, "JSON text ends early");
        expect_refused("true", -EINVAL, "JSON text ends early");
        expect_refused("null", -EINVAL, "JSON text ends early");
}

static void test_parse_nul(void **state)
{
        static const char inside[] = "{\"a\":\"x\0y\"}";
        static const char after[] = "{\"a\":1}\0";

        (void)state;
        expect_refused_len(inside, sizeof(inside) - 1, -EINVAL, "JSON text contains a NUL byte");
        expect_refused_len(after, sizeof(after) - 1, -EINVAL, "JSON text contains a NUL byte");
        expect_refused_len("\0{}", 3, -EINVAL, "JSON text contains a NUL byte");
}

static void test_parse_truncated(void **state)
{
        (void)state;
        expect_refused("", -EINVAL, "JSON text ends early");
        expect_refused("   ", -EINVAL, "JSON text ends early");
        expect_refused("{", -EINVAL, "JSON text ends early");
        expect_refused("{\"a\":", -EINVAL, "JSON text ends early");
        expect_refused("{\"a\":\"unterminated", -EINVAL, "JSON text ends early");
        expect_refused("{\"a\":[1,2", -EINVAL, "JSON text ends early");
}

static void test_parse_invalid(void **state)
{
        struct json_object *obj = SENTINEL;
        struct error err = { 0 };
        const char *text = "{\"a\" 1}";

        (void)state;
        assert_int_equal(json_parse_object(text, strlen(text), &obj, &err), -EINVAL);
        assert_ptr_equal(obj, SENTINEL);
        assert_true(strncmp(err.msg, "invalid JSON at byte 5: ", strlen("invalid JSON at byte 5: ")) == 0);
        text = "{a:1}";
        assert_int_equal(json_parse_object(text, strlen(text), &obj, &err), -EINVAL);
        assert_true(strncmp(err.msg, "invalid JSON at byte 1: ", strlen("invalid JSON at byte 1: ")) == 0);
        text = "}";
        assert_int_equal(json_parse_object(text, strlen(text), &obj, &err), -EINVAL);
        assert_true(strncmp(err.msg, "invalid JSON at byte 0: ", strlen("invalid JSON at byte 0: ")) == 0);
        assert_ptr_equal(obj, SENTINEL);
}

/* Values nested depth deep, as json-c counts them: the object, depth - 2
 * arrays, and the number innermost (a value of its own). */
static char *nested(int depth)
{
        size_t size = (size_t)depth * 2 + 16;
        char *s = malloc(size), *p = s;

        assert_non_null(s);
        p += sprintf(p, "{\"a\":");
        for (int i = 2; i < depth; i++)
                *p++ = '[';
        *p++ = '1';
        for (int i = 2; i < depth; i++)
                *p++ = ']';
        strcpy(p, "}");
        return s;
}

static void test_parse_depth(void **state)
{
        cleanup_free char *d16 = nested(16), *d17 = nested(17), *d1000 = nested(1000);
        struct json_object *obj = NULL;
        struct error err = { 0 };

        (void)state;
        assert_int_equal(json_parse_object(d16, strlen(d16), &obj, &err), 0);
        json_object_put(obj);
        /* 16 containers deep, the innermost empty: 16 values. */
        obj = parse_ok("{\"a\":[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]}");
        json_object_put(obj);
        obj = SENTINEL;
        assert_int_equal(json_parse_object(d17, strlen(d17), &obj, &err), -EINVAL);
        assert_ptr_equal(obj, SENTINEL);
        assert_non_null(strstr(err.msg, "nesting too deep"));
        assert_int_equal(json_parse_object(d1000, strlen(d1000), &obj, &err), -EINVAL);
        assert_ptr_equal(obj, SENTINEL);
        assert_non_null(strstr(err.msg, "nesting too deep"));
}

static void test_get_string(void **state)
{
        cleanup_json struct json_object *obj = parse_ok("{\"s\":\"val\",\"e\":\"\",\"n\":1,\"z\":null,\"o\":{}}");
        const char *s = "untouched";
        struct error err = { 0 };

        (void)state;
        assert_int_equal(json_get_string(obj, "s", true, &s, &err), 0);
        assert_string_equal(s, "val");
        assert_int_equal(json_get_string(obj, "e", true, &s, &err), 0);
        assert_string_equal(s, "");

        s = "untouched";
        assert_int_equal(json_get_string(obj, "missing", true, &s, &err), -ENOENT);
        assert_string_equal(err.msg, "field `missing` is missing");
        assert_string_equal(s, "untouched");
        assert_int_equal(json_get_string(obj, "missing", false, &s, &err), 0);
        assert_string_equal(s, "untouched");
        /* null is absent. */
        assert_int_equal(json_get_string(obj, "z", true, &s, &err), -ENOENT);
        assert_string_equal(err.msg, "field `z` is missing");
        assert_int_equal(json_get_string(obj, "z", false, &s, &err), 0);
        assert_string_equal(s, "untouched");

        /* An escaped NUL would cut the string short for every C reader. */
        {
                cleanup_json struct json_object *nul = parse_ok("{\"s\":\"ok\\u0000evil\",\"end\":\"x\\u0000\"}");

                assert_int_equal(json_get_string(nul, "s", true, &s, &err), -EINVAL);
                assert_string_equal(err.msg, "field `s` contains a NUL character");
                assert_int_equal(json_get_string(nul, "end", false, &s, &err), -EINVAL);
                assert_string_equal(err.msg, "field `end` contains a NUL character");
                assert_string_equal(s, "untouched");
        }

        assert_int_equal(json_get_string(obj, "n", true, &s, &err), -EINVAL);
        assert_string_equal(err.msg, "field `n` must be a string");
        assert_int_equal(json_get_string(obj, "o", false, &s, &err), -EINVAL);
        assert_string_equal(err.msg, "field `o` must be a string");
        assert_string_equal(s, "untouched");
}

static void test_get_int64(void **state)
{
        cleanup_json struct json_object *obj =
                parse_ok("{\"i\":-42,\"zero\":0,\"s\":\"7\",\"d\":1.5,\"e\":1e3,\"b\":true,\"z\":null,\"a\":[1]}");
        int64_t n = 99;
        struct error err = { 0 };

        (void)state;
        assert_int_equal(json_get_int64(obj, "i", true, &n, &err), 0);
        assert_int_equal(n, -42);
        assert_int_equal(json_get_int64(obj, "zero", true, &n, &err), 0);
        assert_int_equal(n, 0);

        n = 99;
        assert_int_equal(json_get_int64(obj, "missing", true, &n, &err), -ENOENT);
        assert_string_equal(err.msg, "field `missing` is missing");
        assert_int_equal(json_get_int64(obj, "missing", false, &n, &err), 0);
        assert_int_equal(json_get_int64(obj, "z", false, &n, &err), 0);
        assert_int_equal(n, 99);

        static const char *const wrong[] = { "s", "d", "e", "b", "a" };
        for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
                char msg[64];

                snprintf(msg, sizeof(msg), "field `%s` must be an integer", wrong[i]);
                assert_int_equal(json_get_int64(obj, wrong[i], true, &n, &err), -EINVAL);
                assert_string_equal(err.msg, msg);
                assert_int_equal(n, 99);
        }
}

static void test_get_int64_range(void **state)
{
        cleanup_json struct json_object *obj = parse_ok("{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                                                        "\"over\":9223372036854775808,"
                                                        "\"u64max\":18446744073709551615,"
                                                        "\"huge\":99999999999999999999999999}");
        int64_t n = 99;
        struct error err = { 0 };

        (void)state;
        assert_int_equal(json_get_int64(obj, "max", true, &n, &err), 0);
        assert_true(n == INT64_MAX);
        assert_int_equal(json_get_int64(obj, "min", true, &n, &err), 0);
        assert_true(n == INT64_MIN);

        /* json-c keeps these, saturated; they must not come out as
         * INT64_MAX. */
        n = 99;
        assert_int_equal(json_get_int64(obj, "over", true, &n, &err), -ERANGE);
        assert_string_equal(err.msg, "field `over` is out of range");
        assert_int_equal(json_get_int64(obj, "u64max", true, &n, &err), -ERANGE);
        assert_string_equal(err.msg, "field `u64max` is out of range");
        assert_int_equal(json_get_int64(obj, "huge", false, &n, &err), -ERANGE);
        assert_string_equal(err.msg, "field `huge` is out of range");
        assert_int_equal(n, 99);
}

static void test_get_object(void **state)
{
        cleanup_json struct json_object *obj = parse_ok("{\"o\":{\"x\":1},\"a\":[],\"s\":\"{}\",\"z\":null}");
        struct json_object *o = SENTINEL;
        struct error err = { 0 };

        (void)state;
        assert_int_equal(json_get_object(obj, "o", true, &o, &err), 0);
        assert_true(json_object_is_type(o, json_type_object));
        assert_int_equal(json_object_object_length(o), 1);

        o = SENTINEL;
        assert_int_equal(json_get_object(obj, "missing", true, &o, &err), -ENOENT);
        assert_string_equal(err.msg, "field `missing` is missing");
        assert_int_equal(json_get_object(obj, "missing", false, &o, &err), 0);
        assert_int_equal(json_get_object(obj, "z", false, &o, &err), 0);
        assert_ptr_equal(o, SENTINEL);
        assert_int_equal(json_get_object(obj, "a", true, &o, &err), -EINVAL);
        assert_string_equal(err.msg, "field `a` must be an object");
        assert_int_equal(json_get_object(obj, "s", true, &o, &err), -EINVAL);
        assert_string_equal(err.msg, "field `s` must be an object");
        assert_ptr_equal(o, SENTINEL);
}

/* A NULL error object is allowed: the code still comes back. */
static void test_null_error(void **state)
{
        cleanup_json struct json_object *obj = parse_ok("{\"s\":1}");
        struct json_object *o = SENTINEL;
        const char *s;

        (void)state;
        assert_int_equal(json_parse_object("[]", 2, &o, NULL), -EINVAL);
        assert_ptr_equal(o, SENTINEL);
        assert_int_equal(json_get_string(obj, "s", true, &s, NULL), -EINVAL);
        assert_int_equal(json_get_string(obj, "x", true, &s, NULL), -ENOENT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_good),
                cmocka_unit_test(test_parse_uses_len),
                cmocka_unit_test(test_parse_trailing),
                cmocka_unit_test(test_parse_strict),
                cmocka_unit_test(test_parse_not_object),
                cmocka_unit_test(test_parse_nul),
                cmocka_unit_test(test_parse_truncated),
                cmocka_unit_test(test_parse_invalid),
                cmocka_unit_test(test_parse_depth),
                cmocka_unit_test(test_get_string),
                cmocka_unit_test(test_get_int64),
                cmocka_unit_test(test_get_int64_range),
                cmocka_unit_test(test_get_object),
                cmocka_unit_test(test_null_error),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
