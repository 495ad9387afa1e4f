#include "control_protocol.h"

#include <errno.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

static bool method_name_valid(const char *m)
{
        size_t n = strlen(m);

        if (n == 0 || n > CONTROL_METHOD_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((m[i] >= 'a' && m[i] <= 'z') || m[i] == '.' || m[i] == '-'))
                        return false;
        return true;
}

int control_request_parse(const char *line, size_t len, struct control_request *ret, int64_t *ret_id,
                          struct error *err)
{
        cleanup_json struct json_object *root = NULL;
        struct json_object *params = NULL;
        const char *method = NULL;
        int64_t id = -1;
        int r;

        *ret_id = -1;
        r = json_parse_object(line, len, &root, err);
        if (r < 0)
                return r;
        r = json_get_int64(root, "id", true, &id, err);
        if (r < 0)
                return r;
        if (id < 0)
                return error_set(err, -EINVAL, "field `id` must not be negative");
        *ret_id = id;
        r = json_get_string(root, "method", true, &method, err);
        if (r < 0)
                return r;
        if (!method_name_valid(method))
                return error_set(err, -EINVAL, "field `method` is not a method name");
        r = json_get_object(root, "params", false, &params, err);
        if (r < 0)
                return r;
        json_object_object_foreach(root, key, value) {
                (void)value;
                if (strcmp(key, "id") && strcmp(key, "method") && strcmp(key, "params"))
                        return error_set(err, -EINVAL, "unknown field `%.64s`", key);
        }
        if (!params) {
                params = json_object_new_object();
                if (!params)
                        return error_set(err, -ENOMEM, "out of memory");
                json_object_object_add(root, "params", params);
        }
        ret->id = id;
        ret->method = method;
        ret->params = params;
        ret->root = steal_pointer(&root);
        return 0;
}

void control_request_done(struct control_request *req)
{
        json_object_put(req->root);
        memset(req, 0, sizeof(*req));
}

static const struct {
        int code;
        const char *name;
} error_names[] = {
        { -ENOENT, "not_found" },   { -EINVAL, "invalid" },       { -EBUSY, "busy" },
        { -EACCES, "forbidden" },   { -EPERM, "forbidden" },      { -E2BIG, "too_large" },
        { -EEXIST, "exists" },      { -EOPNOTSUPP, "unknown_method" }, { -EAGAIN, "try_again" },
        { -EBADFD, "wrong_state" },
};

const char *control_error_name(int code)
{
        for (size_t i = 0; i < ARRAY_SIZE(error_names); i++)
                if (error_names[i].code == code)
                        return error_names[i].name;
        return "internal";
}

static char *to_line(struct json_object *obj)
{
        const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        char *line = NULL;

        if (s && asprintf(&line, "%s\n", s) < 0)
                line = NULL;
        json_object_put(obj);
        return line;
}

char *control_reply_ok(int64_t id, struct json_object *result)
{
        struct json_object *o = json_object_new_object();

        if (!o) {
                json_object_put(result);
                return NULL;
        }
        json_object_object_add(o, "id", json_object_new_int64(id));
        json_object_object_add(o, "ok", json_object_new_boolean(1));
        json_object_object_add(o, "result", result ? result : json_object_new_object());
        return to_line(o);
}

char *control_reply_error(int64_t id, int code, const char *message)
{
        struct json_object *o = json_object_new_object(), *e = json_object_new_object();

        if (!o || !e) {
                json_object_put(o);
                json_object_put(e);
                return NULL;
        }
        json_object_object_add(e, "code", json_object_new_string(control_error_name(code)));
        json_object_object_add(e, "message", json_object_new_string(message));
        json_object_object_add(o, "id", id >= 0 ? json_object_new_int64(id) : NULL);
        json_object_object_add(o, "ok", json_object_new_boolean(0));
        json_object_object_add(o, "error", e);
        return to_line(o);
}

char *control_request_format(int64_t id, const char *method, struct json_object *params)
{
        struct json_object *o = json_object_new_object();

        if (!o) {
                json_object_put(params);
                return NULL;
        }
        json_object_object_add(o, "id", json_object_new_int64(id));
        json_object_object_add(o, "method", json_object_new_string(method));
        json_object_object_add(o, "params", params ? params : json_object_new_object());
        return to_line(o);
}

int control_reply_parse(const char *line, size_t len, int64_t id, struct json_object **ret_result,
                        char *ret_code, size_t code_size, struct error *err)
{
        cleanup_json struct json_object *root = NULL;
        struct json_object *ok, *result = NULL, *e = NULL;
        const char *code = NULL, *message = NULL;
        int64_t got_id = -1;
        int r;

        r = json_parse_object(line, len, &root, err);
        if (r < 0)
                return error_prefix(err, "reply from vpsd");
        if (!json_object_object_get_ex(root, "ok", &ok) || !json_object_is_type(ok, json_type_boolean))
                return error_set(err, -EPROTO, "reply from vpsd has no `ok` field");
        if (json_get_int64(root, "id", false, &got_id, err) < 0 || (got_id != id && got_id != -1))
                return error_set(err, -EPROTO, "reply from vpsd is for another request");
        if (!json_object_get_boolean(ok)) {
                if (json_get_object(root, "error", true, &e, err) < 0 ||
                    json_get_string(e, "code", true, &code, err) < 0 ||
                    json_get_string(e, "message", true, &message, err) < 0)
                        return error_prefix(err, "reply from vpsd");
                str_copy(ret_code, code_size, code);
                return error_set(err, -EREMOTE, "%s", message);
        }
        if (json_get_object(root, "result", true, &result, err) < 0)
                return error_prefix(err, "reply from vpsd");
        *ret_result = json_object_get(result);
        return 0;
}
