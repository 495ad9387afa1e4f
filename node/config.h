/* vpsd's configuration: a file of `key = value` lines (docs/configuration.md).
 * Every key has a default that serves the embedded case, so an empty file
 * (or none) is a valid configuration. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/log.h"

#define CONFIG_DEFAULT_PATH "/etc/vpsd/vpsd.conf"
#define CONFIG_MAX_FILE_SIZE (1024 * 1024)
#define CONFIG_MAX_LINE 4096

enum hypervisor_mode {
        HYPERVISOR_AUTO, /* probe at start: kvm if full guests work, else tcg */
        HYPERVISOR_KVM,
        HYPERVISOR_TCG,
};

struct config {
        char state_dir[PATH_MAX];
        char control_socket[PATH_MAX];
        char control_group[64];
        unsigned control_max_clients;
        unsigned control_max_request; /* bytes of one request line */
        enum log_level log_level;
        enum hypervisor_mode hypervisor;
        char kvm_device[PATH_MAX];
        char kvm_probe_kernel[PATH_MAX]; /* empty: newest /boot/vmlinuz-* */
        unsigned kvm_probe_timeout;      /* seconds */
        char qemu_binary[PATH_MAX];
        char qemu_img[PATH_MAX];
        char template_dir[PATH_MAX]; /* empty: STATE_DIR/templates (config_template_dir()) */
        char libvirt_uri[256];
        char bridge[16];             /* IFNAMSIZ */
        char guest_run_dir[PATH_MAX];
        unsigned stop_timeout;       /* seconds for an ACPI shutdown before forced off */
        char genisoimage[PATH_MAX];
        char nft_table[32];              /* vpsd's nftables table (family bridge) */
        unsigned traffic_interval;       /* seconds between samples of the guests' counters */
        unsigned filter_check_interval;  /* seconds between checks that the table is intact */
        /* The web console (docs/console.md). */
        char console_listen[80];            /* "ADDRESS:PORT", "[IPV6]:PORT"; empty: no console */
        char console_cert[PATH_MAX];        /* empty: STATE_DIR/console/cert.pem, made self-signed */
        char console_key[PATH_MAX];         /* empty: STATE_DIR/console/key.pem */
        char console_edge[PATH_MAX];        /* empty: vpsd-edge beside vpsd */
        char console_web_dir[PATH_MAX];     /* empty: web/ beside vpsd */
        char console_user[33];
        char console_allowed_origins[1024]; /* space-separated; empty: the page's own origin */
        char ledger_public_key[PATH_MAX];   /* PEM Ed25519 public key of the ledger; empty: none */
        unsigned console_idle_timeout;      /* seconds */
        unsigned console_max_lifetime;      /* seconds */
        unsigned console_max_sessions;
        unsigned console_max_sessions_per_service;
        unsigned console_max_failed_tickets; /* per client address and minute */
        unsigned console_max_connections_per_address; /* open at once; 0: no limit */
        /* The billing ledger (docs/sync-protocol.md); no ledger_url: none. */
        char ledger_url[512];               /* wss://HOST[:PORT]/PATH */
        char ledger_ca_file[PATH_MAX];      /* PEM CA(s) the ledger's certificate must chain to */
        char ledger_key_file[PATH_MAX];     /* the key shared at enrolment, base64url, 0600 root */
        char ledger_node_id[65];            /* this node's id at the ledger */
        unsigned ledger_usage_interval;     /* seconds between traffic reports */
        /* The customer ISO store (docs/iso.md). */
        uint64_t iso_quota_bytes;            /* per account, unless the ledger set one */
        unsigned iso_max_uploads;            /* uploads at once on the node */
};

/* Fills every field with its default. */
void config_init(struct config *cfg);

/* Parses a whole configuration text on top of the defaults. name is what
 * errors call the file. On error cfg is untouched and err says
 * "NAME:LINE: key `KEY`: why". */
int config_parse(struct config *cfg, const char *name, const char *text, size_t len, struct error *err);

/* Reads and parses a file (at most CONFIG_MAX_FILE_SIZE bytes). */
int config_load(struct config *cfg, const char *path, struct error *err);

/* The template store's folder: template_dir, or STATE_DIR/templates.
 * -ENAMETOOLONG when it does not fit. */
int config_template_dir(const struct config *cfg, char *buf, size_t size);

/* Whether a key can change on SIGHUP (the others need a restart). */
bool config_key_reloadable(const char *key);

/* Calls fn for every key whose value differs between a and b. */
void config_diff(const struct config *a, const struct config *b, void (*fn)(const char *key, void *userdata),
                 void *userdata);

const char *hypervisor_mode_name(enum hypervisor_mode mode);

/* console_listen split: the address (brackets gone) and the port. */
/* Splits ledger_url into host, port (443 unless given) and path ("/sync"
 * unless given). -EINVAL unless wss://HOST[:PORT][/PATH]. */
int config_ledger_url(const char *url, char *host, size_t host_size, unsigned *ret_port, char *path,
                      size_t path_size);

int config_console_listen(const struct config *cfg, char *address, size_t size, unsigned *ret_port);
