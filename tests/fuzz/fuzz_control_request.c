/* libFuzzer target: control_request_parse() on arbitrary bytes (one
 * request line as vpsd reads it), then the reply vpsd would send: for an
 * accepted request, control_reply_ok() on a copy of its params; for a
 * refused one, control_reply_error(). Either reply must be one line that
 * the client's control_reply_parse() takes as the answer to that id. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "node/control_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One line, ending in its only '\n'. */
static void check_line(const char *line)
{
        size_t len;

        if (!line)
                abort();
        len = strlen(line);
        if (len < 2 || line[len - 1] != '\n' || memchr(line, '\n', len - 1))
                abort();
}

static void reply_to_accepted(struct control_request *req)
{
        struct json_object *copy = NULL, *result = NULL;
        struct error err = { 0 };
        char code[32];
        char *line;

        if (req->id < 0 || !req->method || !json_object_is_type(req->params, json_type_object))
                abort();
        if (json_object_deep_copy(req->params, &copy, NULL) < 0)
                abort();
        line = control_reply_ok(req->id, copy);
        check_line(line);
        if (control_reply_parse(line, strlen(line), req->id, &result, code, sizeof(code), &err) != 0)
                abort();
        if (!json_object_is_type(result, json_type_object) ||
            json_object_object_length(result) != json_object_object_length(req->params))
                abort();
        json_object_put(result);
        free(line);
}

static void reply_to_refused(int64_t id, int code, const char *message)
{
        struct json_object *result = NULL;
        struct error err = { 0 };
        char got_code[32] = "";
        char *line;

        if (id < -1)
                abort();
        line = control_reply_error(id, code, message);
        check_line(line);
        if (control_reply_parse(line, strlen(line), id < 0 ? 0 : id, &result, got_code, sizeof(got_code), &err) !=
                    -EREMOTE ||
            strcmp(got_code, control_error_name(code)) != 0 || strcmp(err.msg, message) != 0)
                abort();
        free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct control_request req;
        struct error err = { 0 };
        int64_t id = -2;
        int r;

        r = control_request_parse((const char *)data, size, &req, &id, &err);
        if (r < 0) {
                if (err.code != r || err.msg[0] == '\0')
                        abort();
                reply_to_refused(id, r, err.msg);
                return 0;
        }
        if (r != 0 || id != req.id)
                abort();
        reply_to_accepted(&req);
        control_request_done(&req);
        return 0;
}
