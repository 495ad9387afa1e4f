/* The web console, vpsd's side (docs/console.md): it starts vpsd-edge and
 * restarts it when it dies, checks every ticket the edge forwards, and
 * answers with the guest's connected console socket or a refusal. vpsd
 * keeps its own copy of every socket it passed, so it can end a session
 * (shutdown) whatever the edge does, and it counts sessions per service
 * and in total. */
#pragma once

#include <stdint.h>
#include <uv.h>

#include "common/edge_proto.h"
#include "common/error.h"
#include "node/store.h"

struct console;

struct console_config {
        const char *edge_path;         /* vpsd-edge */
        const char *web_dir;           /* its pages */
        const char *listen_address;    /* "127.0.0.1", "::" … */
        unsigned port;
        const char *cert, *key;        /* PEM; made self-signed when absent */
        const char *user;              /* the edge's user, created if missing */
        const char *origins;           /* allowed Origins, space-separated; empty: the page's own */
        const char *ledger_public_key; /* PEM Ed25519 public key, or empty */
        const char *run_dir;           /* guests' run folders: RUN_DIR/UUID/{vnc,serial}.sock */
        unsigned idle_timeout;         /* seconds */
        unsigned max_lifetime;         /* seconds */
        unsigned max_sessions;
        unsigned max_sessions_per_service;
        unsigned max_failed_tickets;   /* per client address and minute */
        unsigned max_per_address;      /* connections open at once from one address; 0: any */
        const char *log_level;         /* the edge's */
};

int console_start(uv_loop_t *loop, struct store *store, const struct console_config *config,
                  struct console **ret_console, struct error *err);

/* A ticket for the service's own account signed by vpsd's key (made at
 * start, never stored), valid 60 s: the operator's. */
int console_ticket_new(struct console *console, const char *uuid, enum console_kind kind, char *out, size_t size,
                       struct error *err);

/* The port the edge listens on, 0 while it is not ready. */
unsigned console_port(const struct console *console);

/* Ends every open session of the service now (why goes to the log):
 * stop, restart, reinstall, terminate, suspend, a new owner. */
void console_close_service(struct console *console, const char *uuid, const char *why);

struct iso_store;
/* The ISO store that takes uploads through the edge (docs/iso.md). */
void console_set_iso(struct console *console, struct iso_store *isos);

/* An ISO upload ticket for account, signed by vpsd's key, valid 60 s:
 * the operator's `vpsctl iso ticket`. */
int console_iso_ticket_new(struct console *console, const char *account, uint64_t max_bytes, char *out, size_t size,
                           struct error *err);

/* Stops the edge and ends every session. Accepts NULL; returns NULL. */
struct console *console_stop(struct console *console);
