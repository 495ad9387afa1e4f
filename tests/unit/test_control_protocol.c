/* node/control_protocol: request validation, and replies round-tripped
 * through the same codec vpsctl uses. */
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
#include "node/control_protocol.h"

static int parse(const char *line, struct control_request *req, int64_t *id, struct error *err)
{
        return control_request_parse(line, strlen(line), req, id, err);
}

/* Expects a refusal with code, exactly msg and *ret_id == want_id, and
 * the request left as it was. */
static void expect_refused(const char *line, int code, int64_t want_id, const char *msg)
{
        struct control_request req, before;
        struct error err = { 0 };
        int64_t id = 12345;

        memset(&req, 0x5a, sizeof(req));
        before = req;
        assert_int_equal(parse(line, &req, &id, &err), code);
        assert_int_equal(err.code, code);
        assert_string_equal(err.msg, msg);
        assert_true(id == want_id);
        assert_memory_equal(&req, &before, sizeof(req));
}

static void test_request_good(void **state)
{
        struct control_request req;
        struct error err = { 0 };
        const char *uuid = NULL;
        int64_t id = 12345;

        (void)state;
        assert_int_equal(parse("{\"id\":7,\"method\":\"service.show\",\"params\":{\"uuid\":\"1b4e\"}}", &req, &id, &err),
                         0);
        assert_true(id == 7);
        assert_true(req.id == 7);
        assert_string_equal(req.method, "service.show");
        assert_non_null(req.params);
        assert_int_equal(json_get_string(req.params, "uuid", true, &uuid, &err), 0);
        assert_string_equal(uuid, "1b4e");
        assert_non_null(req.root);
        control_request_done(&req);
        assert_null(req.root);
        assert_null(req.params);
        assert_null(req.method);

        /* Without params: an empty object, never NULL. Field order is free,
         * and a trailing newline is white space. */
        assert_int_equal(parse(" {\"method\":\"node.status\", \"id\":0}\n", &req, &id, &err), 0);
        assert_true(req.id == 0);
        assert_true(id == 0);
        assert_string_equal(req.method, "node.status");
        assert_non_null(req.params);
        assert_true(json_object_is_type(req.params, json_type_object));
        assert_int_equal(json_object_object_length(req.params), 0);
        control_request_done(&req);

        /* params null is params absent. */
        assert_int_equal(parse("{\"id\":9223372036854775807,\"method\":\"a-b.c\",\"params\":null}", &req, &id, &err),
                         0);
        assert_true(req.id == INT64_MAX);
        assert_true(json_object_is_type(req.params, json_type_object));
        control_request_done(&req);
}

static void test_request_method_limits(void **state)
{
        char line[256], method[CONTROL_METHOD_MAX + 2];
        struct control_request req;
        struct error err = { 0 };
        int64_t id;

        (void)state;
        memset(method, 'm', CONTROL_METHOD_MAX);
        method[CONTROL_METHOD_MAX] = '\0';
        snprintf(line, sizeof(line), "{\"id\":1,\"method\":\"%s\"}", method);
        assert_int_equal(parse(line, &req, &id, &err), 0);
        assert_int_equal(strlen(req.method), CONTROL_METHOD_MAX);
        control_request_done(&req);

        strcat(method, "m");
        snprintf(line, sizeof(line), "{\"id\":1,\"method\":\"%s\"}", method);
        expect_refused(line, -EINVAL, 1, "field `method` is not a method name");
}

static void test_request_bad_id(void **state)
{
        (void)state;
        expect_refused("{\"method\":\"node.status\"}", -ENOENT, -1, "field `id` is missing");
        expect_refused("{\"id\":null,\"method\":\"node.status\"}", -ENOENT, -1, "field `id` is missing");
        expect_refused("{\"id\":-1,\"method\":\"node.status\"}", -EINVAL, -1, "field `id` must not be negative");
        expect_refused("{\"id\":-9223372036854775808,\"method\":\"node.status\"}", -EINVAL, -1,
                       "field `id` must not be negative");
        expect_refused("{\"id\":\"7\",\"method\":\"node.status\"}", -EINVAL, -1, "field `id` must be an integer");
        expect_refused("{\"id\":7.5,\"method\":\"node.status\"}", -EINVAL, -1, "field `id` must be an integer");
        expect_refused("{\"id\":true,\"method\":\"node.status\"}", -EINVAL, -1, "field `id` must be an integer");
        expect_refused("{\"id\":[7],\"method\":\"node.status\"}", -EINVAL, -1, "field `id` must be an integer");
        /* Above INT64_MAX: not to be echoed back as another id. */
        expect_refused("{\"id\":9223372036854775808,\"method\":\"node.status\"}", -ERANGE, -1,
                       "field `id` is out of range");
}

static void test_request_bad_method(void **state)
{
        (void)state;
        /* The id was read: the refusal can carry it. */
        expect_refused("{\"id\":7}", -ENOENT, 7, "field `method` is missing");
        expect_refused("{\"id\":7,\"method\":null}", -ENOENT, 7, "field `method` is missing");
        expect_refused("{\"id\":7,\"method\":42}", -EINVAL, 7, "field `method` must be a string");
        expect_refused("{\"id\":7,\"method\":\"Service.show\"}", -EINVAL, 7, "field `method` is not a method name");
        expect_refused("{\"id\":7,\"method\":\"\"}", -EINVAL, 7, "field `method` is not a method name");
        expect_refused("{\"id\":7,\"method\":\"service/show\"}", -EINVAL, 7, "field `method` is not a method name");
        expect_refused("{\"id\":7,\"method\":\"service show\"}", -EINVAL, 7, "field `method` is not a method name");
        expect_refused("{\"id\":7,\"method\":\"service_show\"}", -EINVAL, 7, "field `method` is not a method name");
        expect_refused("{\"id\":7,\"method\":\"service.show\\n\"}", -EINVAL, 7, "field `method` is not a method name");
        expect_refused("{\"id\":7,\"method\":\"s\\u00e9rvice\"}", -EINVAL, 7, "field `method` is not a method name");
        /* Was accepted as "node.status": the escaped NUL hid the rest from
         * the name check. */
        expect_refused("{\"id\":7,\"method\":\"node.status\\u0000; rm -rf\"}", -EINVAL, 7,
                       "field `method` contains a NUL character");
}

static void test_request_bad_params(void **state)
{
        (void)state;
        expect_refused("{\"id\":3,\"method\":\"a.b\",\"params\":[1]}", -EINVAL, 3, "field `params` must be an object");
        expect_refused("{\"id\":3,\"method\":\"a.b\",\"params\":\"{}\"}", -EINVAL, 3,
                       "field `params` must be an object");
        expect_refused("{\"id\":3,\"method\":\"a.b\",\"params\":0}", -EINVAL, 3, "field `params` must be an object");
        expect_refused("{\"id\":3,\"method\":\"a.b\",\"extra\":1}", -EINVAL, 3, "unknown field `extra`");
        expect_refused("{\"id\":3,\"method\":\"a.b\",\"params\":{},\"Params\":{}}", -EINVAL, 3,
                       "unknown field `Params`");
}

static void test_request_malformed(void **state)
{
        static const char nul[] = "{\"id\":7,\"method\":\"a\0\"}";
        struct control_request req;
        struct error err = { 0 };
        int64_t id = 12345;

        (void)state;
        /* Nothing readable: no id to match, even if one is in there. */
        expect_refused("{\"id\":7,", -EINVAL, -1, "JSON text ends early");
        expect_refused("", -EINVAL, -1, "JSON text ends early");
        expect_refused("{\"id\":7,\"method\":\"a.b\"} {}", -EINVAL, -1,
                       "unexpected bytes after the JSON object at byte 24");
        expect_refused("[{\"id\":7,\"method\":\"a.b\"}]", -EINVAL, -1, "expected a JSON object");
        assert_int_equal(control_request_parse(nul, sizeof(nul) - 1, &req, &id, &err), -EINVAL);
        assert_true(id == -1);
        assert_string_equal(err.msg, "JSON text contains a NUL byte");
        id = 12345;
        assert_int_equal(parse("{\"id\" 7}", &req, &id, &err), -EINVAL);
        assert_true(id == -1);
        assert_true(strncmp(err.msg, "invalid JSON at byte ", strlen("invalid JSON at byte ")) == 0);
}

static void test_error_names(void **state)
{
        static const struct {
                int code;
                const char *name;
        } names[] = {
                { -ENOENT, "not_found" },
                { -EINVAL, "invalid" },
                { -EBUSY, "busy" },
                { -EACCES, "forbidden" },
                { -EPERM, "forbidden" },
                { -E2BIG, "too_large" },
                { -EEXIST, "exists" },
                { -EOPNOTSUPP, "unknown_method" },
                { -EAGAIN, "try_again" },
                { -EIO, "internal" },
                { -ENOMEM, "internal" },
                { 0, "internal" },
                { ENOENT, "internal" }, /* positive: not an error code */
        };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                assert_string_equal(control_error_name(names[i].code), names[i].name);
}

/* A reply is one line: a single '\n', at the end. */
static void expect_one_line(const char *line)
{
        size_t len;

        assert_non_null(line);
        len = strlen(line);
        assert_true(len > 1);
        assert_int_equal(line[len - 1], '\n');
        assert_null(memchr(line, '\n', len - 1));
}

static void test_reply_ok_round_trip(void **state)
{
        struct json_object *result = json_object_new_object(), *got = NULL;
        cleanup_free char *line = NULL;
        struct error err = { 0 };
        char code[32] = "untouched";
        const char *name = NULL;

        (void)state;
        json_object_object_add(result, "name", json_object_new_string("web-1\n\"x\""));
        line = control_reply_ok(7, result);
        expect_one_line(line);
        assert_string_equal(line, "{\"id\":7,\"ok\":true,\"result\":{\"name\":\"web-1\\n\\\"x\\\"\"}}\n");

        assert_int_equal(control_reply_parse(line, strlen(line), 7, &got, code, sizeof(code), &err), 0);
        assert_non_null(got);
        assert_int_equal(json_get_string(got, "name", true, &name, &err), 0);
        assert_string_equal(name, "web-1\n\"x\"");
        assert_string_equal(code, "untouched");
        json_object_put(got);

        /* Without the newline as well. */
        assert_int_equal(control_reply_parse(line, strlen(line) - 1, 7, &got, code, sizeof(code), &err), 0);
        json_object_put(got);
}

static void test_reply_ok_empty(void **state)
{
        cleanup_free char *line = control_reply_ok(0, NULL);
        struct json_object *got = NULL;
        struct error err = { 0 };
        char code[32];

        (void)state;
        assert_string_equal(line, "{\"id\":0,\"ok\":true,\"result\":{}}\n");
        assert_int_equal(control_reply_parse(line, strlen(line), 0, &got, code, sizeof(code), &err), 0);
        assert_true(json_object_is_type(got, json_type_object));
        assert_int_equal(json_object_object_length(got), 0);
        json_object_put(got);
}

static void test_reply_error_round_trip(void **state)
{
        static const int codes[] = { -ENOENT, -EINVAL, -EBUSY, -EACCES, -EPERM, -E2BIG,
                                     -EEXIST, -EOPNOTSUPP, -EAGAIN, -EIO };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(codes); i++) {
                cleanup_free char *line = control_reply_error(9, codes[i], "service 1b4e: not here\nsecond line");
                struct json_object *got = (struct json_object *)0x1;
                struct error err = { 0 };
                char code[32] = "";

                expect_one_line(line);
                assert_int_equal(control_reply_parse(line, strlen(line), 9, &got, code, sizeof(code), &err),
                                 -EREMOTE);
                assert_string_equal(code, control_error_name(codes[i]));
                assert_string_equal(err.msg, "service 1b4e: not here\nsecond line");
                assert_ptr_equal(got, (struct json_object *)0x1);
        }
}

static void test_reply_error_format(void **state)
{
        cleanup_free char *line = control_reply_error(3, -EBUSY, "service is busy");
        cleanup_free char *no_id = control_reply_error(-1, -EINVAL, "JSON text ends early");
        struct json_object *got = NULL;
        struct error err = { 0 };
        char code[32] = "";

        (void)state;
        assert_string_equal(line, "{\"id\":3,\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"service is busy\"}}\n");
        /* A refusal of a request whose id could not be read: id null,
         * taken as the answer to whatever the client asked. */
        assert_string_equal(no_id, "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"invalid\","
                                   "\"message\":\"JSON text ends early\"}}\n");
        assert_int_equal(control_reply_parse(no_id, strlen(no_id), 42, &got, code, sizeof(code), &err), -EREMOTE);
        assert_string_equal(code, "invalid");
        assert_string_equal(err.msg, "JSON text ends early");
}

static void test_reply_other_id(void **state)
{
        cleanup_free char *ok = control_reply_ok(8, NULL);
        cleanup_free char *error = control_reply_error(8, -ENOENT, "gone");
        struct json_object *got = (struct json_object *)0x1;
        struct error err = { 0 };
        char code[32] = "untouched";

        (void)state;
        assert_int_equal(control_reply_parse(ok, strlen(ok), 7, &got, code, sizeof(code), &err), -EPROTO);
        assert_string_equal(err.msg, "reply from vpsd is for another request");
        assert_int_equal(control_reply_parse(error, strlen(error), 7, &got, code, sizeof(code), &err), -EPROTO);
        assert_string_equal(err.msg, "reply from vpsd is for another request");
        assert_ptr_equal(got, (struct json_object *)0x1);
        assert_string_equal(code, "untouched");
}

static void expect_reply_refused(const char *line, int code, const char *msg)
{
        struct json_object *got = (struct json_object *)0x1;
        struct error err = { 0 };
        char got_code[32] = "untouched";

        assert_int_equal(control_reply_parse(line, strlen(line), 7, &got, got_code, sizeof(got_code), &err), code);
        assert_string_equal(err.msg, msg);
        assert_ptr_equal(got, (struct json_object *)0x1);
        assert_string_equal(got_code, "untouched");
}

static void test_reply_garbage(void **state)
{
        (void)state;
        expect_reply_refused("hello\n", -EINVAL, "reply from vpsd: invalid JSON at byte 0: unexpected character");
        expect_reply_refused("", -EINVAL, "reply from vpsd: JSON text ends early");
        expect_reply_refused("[]\n", -EINVAL, "reply from vpsd: expected a JSON object");
        expect_reply_refused("{\"id\":7,\"ok\":true,\"result\":{}} trailing", -EINVAL,
                             "reply from vpsd: unexpected bytes after the JSON object at byte 31");
        expect_reply_refused("{\"id\":7}", -EPROTO, "reply from vpsd has no `ok` field");
        expect_reply_refused("{\"id\":7,\"ok\":1,\"result\":{}}", -EPROTO, "reply from vpsd has no `ok` field");
        expect_reply_refused("{\"id\":7,\"ok\":\"true\",\"result\":{}}", -EPROTO, "reply from vpsd has no `ok` field");
        expect_reply_refused("{\"id\":\"7\",\"ok\":true,\"result\":{}}", -EPROTO,
                             "reply from vpsd is for another request");
        expect_reply_refused("{\"id\":7,\"ok\":true}", -ENOENT, "reply from vpsd: field `result` is missing");
        expect_reply_refused("{\"id\":7,\"ok\":true,\"result\":[]}", -EINVAL,
                             "reply from vpsd: field `result` must be an object");
        expect_reply_refused("{\"id\":7,\"ok\":false}", -ENOENT, "reply from vpsd: field `error` is missing");
        expect_reply_refused("{\"id\":7,\"ok\":false,\"error\":\"bad\"}", -EINVAL,
                             "reply from vpsd: field `error` must be an object");
        expect_reply_refused("{\"id\":7,\"ok\":false,\"error\":{\"message\":\"m\"}}", -ENOENT,
                             "reply from vpsd: field `code` is missing");
        expect_reply_refused("{\"id\":7,\"ok\":false,\"error\":{\"code\":\"busy\"}}", -ENOENT,
                             "reply from vpsd: field `message` is missing");
        expect_reply_refused("{\"id\":7,\"ok\":false,\"error\":{\"code\":1,\"message\":\"m\"}}", -EINVAL,
                             "reply from vpsd: field `code` must be a string");
}

static void test_request_format_round_trip(void **state)
{
        struct json_object *params = json_object_new_object();
        cleanup_free char *line = NULL, *bare = NULL;
        struct control_request req;
        struct error err = { 0 };
        const char *uuid = NULL;
        int64_t id;

        (void)state;
        json_object_object_add(params, "uuid", json_object_new_string("1b4e/x"));
        line = control_request_format(12, "service.show", params);
        expect_one_line(line);
        /* No "\/": the slash is written as it is. */
        assert_string_equal(line, "{\"id\":12,\"method\":\"service.show\",\"params\":{\"uuid\":\"1b4e/x\"}}\n");
        assert_int_equal(control_request_parse(line, strlen(line), &req, &id, &err), 0);
        assert_true(req.id == 12);
        assert_string_equal(req.method, "service.show");
        assert_int_equal(json_get_string(req.params, "uuid", true, &uuid, &err), 0);
        assert_string_equal(uuid, "1b4e/x");
        control_request_done(&req);

        bare = control_request_format(0, "node.status", NULL);
        assert_string_equal(bare, "{\"id\":0,\"method\":\"node.status\",\"params\":{}}\n");
        assert_int_equal(control_request_parse(bare, strlen(bare), &req, &id, &err), 0);
        control_request_done(&req);
}

/* The reply a server sends for a request it refused is one the client
 * takes as the answer to that request. */
static void test_refusal_round_trip(void **state)
{
        const char *request = "{\"id\":31,\"method\":\"BAD\"}";
        cleanup_free char *line = NULL;
        struct control_request req;
        struct json_object *got = NULL;
        struct error err = { 0 }, remote = { 0 };
        char code[32] = "";
        int64_t id;
        int r;

        (void)state;
        r = control_request_parse(request, strlen(request), &req, &id, &err);
        assert_int_equal(r, -EINVAL);
        line = control_reply_error(id, r, err.msg);
        assert_int_equal(control_reply_parse(line, strlen(line), 31, &got, code, sizeof(code), &remote), -EREMOTE);
        assert_string_equal(code, "invalid");
        assert_string_equal(remote.msg, "field `method` is not a method name");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_request_good),
                cmocka_unit_test(test_request_method_limits),
                cmocka_unit_test(test_request_bad_id),
                cmocka_unit_test(test_request_bad_method),
                cmocka_unit_test(test_request_bad_params),
                cmocka_unit_test(test_request_malformed),
                cmocka_unit_test(test_error_names),
                cmocka_unit_test(test_reply_ok_round_trip),
                cmocka_unit_test(test_reply_ok_empty),
                cmocka_unit_test(test_reply_error_round_trip),
                cmocka_unit_test(test_reply_error_format),
                cmocka_unit_test(test_reply_other_id),
                cmocka_unit_test(test_reply_garbage),
                cmocka_unit_test(test_request_format_round_trip),
                cmocka_unit_test(test_refusal_round_trip),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
