/* Leases on the node: the money side enforced locally. A service whose
 * paid lease (`paid_until`, wall-clock time from the ledger) ended more
 * than `grace` ago is suspended by the node itself, ledger reachable or
 * not; `retention` after such a suspension it becomes removal-queued and
 * the ledger is told; its data goes only on the ledger's terminate, or at
 * once when the operator opted into autonomous removal. The node never
 * lifts a suspension on its own: a clock that jumps backwards releases
 * nothing. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/error.h"
#include "node/guest.h"
#include "node/store.h"

struct lease_policy {
        int64_t grace_s;         /* after paid_until, before suspension (default 0) */
        int64_t retention_s;     /* after a lease suspension, before removal-queued (default 3 days) */
        bool autonomous_removal; /* removal-queued services are terminated by the node itself */
};

#define LEASE_GRACE_MAX_S (90 * 86400)
#define LEASE_RETENTION_MAX_S (365 * 86400)

void lease_policy_default(struct lease_policy *ret);

/* When a lease that ends at paid_until suspends, and when a lease
 * suspension that began at suspended_at is queued for removal. */
int64_t lease_suspend_at(int64_t paid_until, const struct lease_policy *policy);
int64_t lease_removal_at(int64_t suspended_at, const struct lease_policy *policy);

/* The policy kept in the store (node_facts), or the default. */
int lease_policy_load(struct store *store, struct lease_policy *ret, struct error *err);

/* Changes the policy from a JSON object with any of grace_s, retention_s,
 * autonomous_removal (others refused); stores it whole, or nothing. */
int lease_policy_update(struct store *store, struct json_object *changes, struct lease_policy *ret,
                        struct error *err);

struct json_object *lease_policy_json(const struct lease_policy *policy);

/* What happens next to a service, for people: adds "next": {"event",
 * "at"} (suspend, removal-queued) or null to the service's full form. */
int lease_annotate(struct store *store, struct json_object *service, struct error *err);

struct leases;

/* The scheduler: checks every second, and exactly at the next deadline. */
int leases_new(uv_loop_t *loop, struct store *store, struct guests *guests, struct leases **ret,
               struct error *err);

/* Looks again now (after a renew, a policy change). */
void leases_kick(struct leases *leases);

/* A new paid_until. A lease suspension it ends is lifted in place. */
int lease_renew(struct leases *leases, const char *uuid, int64_t paid_until, const char *actor, guest_done_fn done,
                void *userdata, struct error *err);

/* Accepts NULL; returns NULL; the memory goes once the loop has run. */
struct leases *leases_free(struct leases *leases);
