/* Between the codec's halves (sync_codec.c: messages; sync_session.c:
 * handshake and MACs). Not for other modules. */
#pragma once

#include <json-c/json.h>

#include "sync_codec.h"

/* The side that may send kind. */
bool sync_kind_sent_by(enum sync_kind kind, enum sync_role role);

/* The version (-EPROTONOSUPPORT unless 1) and the kind of obj. */
int sync_msg_envelope(struct json_object *obj, enum sync_kind *ret_kind, struct error *err);

/* Reads obj (its "mac" already taken out) into msg, strictly: the
 * envelope ("v", "kind", optional "n") and the kind's fields, nothing
 * else. msg is cleared first; on failure it holds nothing owned. */
int sync_msg_decode(struct json_object *obj, struct sync_msg *msg, struct error *err);

/* The JSON object of msg (without "mac"), every field checked as a
 * receiver would. */
int sync_msg_encode(const struct sync_msg *msg, struct json_object **ret_obj, struct error *err);
