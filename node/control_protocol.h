/* The control protocol between vpsctl and vpsd (docs/control-protocol.md):
 * one JSON object per line each way.
 *   request: {"id": 7, "method": "service.show", "params": {"uuid": "…"}}
 *   reply:   {"id": 7, "ok": true, "result": {…}}
 *            {"id": 7, "ok": false, "error": {"code": "not_found", "message": "…"}}
 * Both ends use this module, so they cannot drift apart. */
#pragma once

#include <json-c/json.h>
#include <stdint.h>

#include "common/error.h"

#define CONTROL_METHOD_MAX 64

struct control_request {
        int64_t id;                 /* chosen by the client, echoed back */
        const char *method;         /* points into root */
        struct json_object *params; /* an object, never NULL; points into root */
        struct json_object *root;   /* owns the above */
};

/* Parses and validates one request line. On error, *ret_id is the request's
 * id when one could be read (else -1), so the refusal can still be matched. */
int control_request_parse(const char *line, size_t len, struct control_request *ret, int64_t *ret_id,
                          struct error *err);
void control_request_done(struct control_request *req);

/* The reply line (with its '\n') for a result (ownership taken) or an
 * error; the caller frees it. NULL only when out of memory. */
char *control_reply_ok(int64_t id, struct json_object *result);
char *control_reply_error(int64_t id, int code, const char *message);

/* The stable name of an error code: -ENOENT "not_found", -EINVAL
 * "invalid", -EBUSY "busy", -EACCES and -EPERM "forbidden", -E2BIG
 * "too_large", -EEXIST "exists", -EOPNOTSUPP "unknown_method", -EAGAIN
 * "try_again", -EBADFD "wrong_state" (not in a state that allows it),
 * anything else "internal". */
const char *control_error_name(int code);

/* A request line (with its '\n'); params ownership is taken. */
char *control_request_format(int64_t id, const char *method, struct json_object *params);

/* Parses a reply line for request id. On an "ok": false reply returns
 * -EREMOTE with err->msg = the server's message and *ret_code its code. */
int control_reply_parse(const char *line, size_t len, int64_t id, struct json_object **ret_result,
                        char *ret_code, size_t code_size, struct error *err);
