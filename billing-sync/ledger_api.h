/* The ledger's JSON HTTP API for a provider's portal (docs/ledger.md,
 * "HTTP API"), without the HTTP: a method, a path under /api/v1/, the
 * query's arguments and a JSON body in; a status and a JSON body out.
 * The server (ledger_http.c) has checked the bearer token before. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "billing-sync/ledger.h"

#define LEDGER_API_BODY_MAX (64 * 1024)
#define LEDGER_API_ARGS_MAX 8

struct ledger_api_request {
        const char *method;                      /* "GET" or "POST" */
        const char *path;                        /* "/api/v1/…", no query */
        const char *args[LEDGER_API_ARGS_MAX];   /* the query's "name=value" pairs, decoded */
        size_t n_args;
        const char *body;                        /* may be NULL */
        size_t body_len;
        int64_t now;
};

struct ledger_api_response {
        int status;
        struct json_object *body; /* owned by the caller */
        bool changed;             /* the store changed: tick, and wake the nodes' connections */
        char log[256];            /* for the server's log when status is 500: never shown to the client */
};

void ledger_api_handle(struct ledger *ledger, const struct ledger_api_request *req, struct ledger_api_response *ret);

/* {"error": text} with status: what every refusal looks like. */
void ledger_api_error(struct ledger_api_response *resp, int status, const char *text);
