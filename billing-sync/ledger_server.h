/* `vps-ledger serve`: one process, one thread, lws's own event loop.
 * ledger_server.c holds the context, the clock, the tick timer and the
 * signals; ledger_sync.c the websocket endpoint /sync (the sync protocol's
 * ledger side); ledger_http.c the JSON API under /api/v1/. SQLite is used
 * synchronously from the loop: every operation is one short transaction. */
#pragma once

#include <libwebsockets.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "billing-sync/ledger.h"

#define LEDGER_API_TOKEN_MAX 256

struct ledger_server_config {
        const char *listen_address;
        int port;
        const char *cert, *key;
        const char *api_token_file;
        unsigned tick_interval;  /* seconds */
        int64_t now_base;        /* -1: the wall clock; else the clock starts here */
        const char *now_file;    /* tests: the clock is the number in this file */
};

struct sync_conn;

struct ledger_server {
        struct ledger *ledger;
        struct ledger_server_config config;
        struct lws_context *lws;
        struct sync_conn *conns; /* every /sync websocket */
        uint8_t token[LEDGER_API_TOKEN_MAX];
        size_t token_len;
        uint64_t mono_start_ms;
        int64_t last_now;
        lws_sorted_usec_list_t tick_timer;
        bool tick_wanted;
};

/* Runs the server until SIGTERM or SIGINT; 0 on a clean stop. */
int ledger_serve(struct ledger *ledger, const struct ledger_server_config *config, struct error *err);

/* The server's clock (Unix seconds). */
int64_t ledger_server_now(struct ledger_server *server);
/* The store changed: tick (what is due now is done now) and let every
 * node's connection send what was queued. */
void ledger_server_changed(struct ledger_server *server);
/* Whether token[len] is the API's, in constant time. */
bool ledger_server_token_ok(struct ledger_server *server, const char *token, size_t len);

/* ledger_sync.c */
int ledger_sync_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
/* Every established connection asks to write: its node may have new commands. */
void ledger_sync_wake(struct ledger_server *server);

/* ledger_http.c */
int ledger_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
size_t ledger_http_session_size(void);
size_t ledger_sync_session_size(void);
