/* The node's service API: what vpsctl, the sync layer and the scheduler
 * call. Nothing outside node/ reads the services tables directly. The JSON
 * form of a service is documented in docs/service.md. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>

#include "common/error.h"
#include "node/store.h"

enum service_state {
        SERVICE_PROVISIONING,
        SERVICE_RUNNING,
        SERVICE_STOPPED,
        SERVICE_SUSPENDED,
        SERVICE_REMOVAL_QUEUED,
        SERVICE_TERMINATED,
        SERVICE_STATE_COUNT,
};

const char *service_state_name(enum service_state state);
int service_state_parse(const char *name, enum service_state *ret_state);

/* A service UUID in its canonical form: 36 characters, lower-case hex and
 * dashes at 8-4-4-4-12. Anything else is refused before a lookup. */

/* Number of services in each state. */
int service_count_by_state(struct store *store, unsigned counts[SERVICE_STATE_COUNT], struct error *err);

/* A JSON array of services (summary form), oldest first. Terminated ones
 * only when include_terminated: they stay for the audit trail. */
int service_list_json(struct store *store, bool include_terminated, struct json_object **ret_list,
                      struct error *err);

/* The name of the service's guest port (its tap on the bridge): "vps"
 * and 12 hex digits of the UUID, the 15 characters a name may have; unique
 * on the host even with several vpsd beside each other. An infrastructure
 * identifier: never in customer-facing text. */
#define SERVICE_PORT_NAME_SIZE 16
void service_port_name(const char *uuid, char buf[SERVICE_PORT_NAME_SIZE]);

/* The service's row id by UUID, terminated ones too; -ENOENT, -EINVAL. */
int service_id_find(struct store *store, const char *uuid, int64_t *ret_id, struct error *err);

/* One service in full form; -ENOENT "service UUID: not found". */
int service_show_json(struct store *store, const char *uuid, struct json_object **ret_service, struct error *err);
