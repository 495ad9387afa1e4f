#include "network.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "netfilter/nf.h"
#include "node/service.h"
#include "node/traffic.h"

/* Buckets older than their use go once an hour. */
#define PRUNE_EVERY_S 3600

struct network {
        uv_loop_t *loop;
        struct store *store;
        struct nf *nf;
        char table[32];
        unsigned sample_interval_s, check_interval_s;
        uv_timer_t sample_timer, check_timer;
        int timers_open;
        int64_t pruned_at;
};

/* One service's port with the addresses it owns (malloc'd). */
struct port {
        int64_t service_id;
        struct nf_guest guest;
        struct in_addr *ipv4;
        struct in6_addr *ipv6;
};

static void port_clear(struct port *p)
{
        free(p->ipv4);
        free(p->ipv6);
        *p = (struct port){ 0 };
}

static void ports_free(struct port *ports, size_t n)
{
        for (size_t i = 0; i < n; i++)
                port_clear(&ports[i]);
        free(ports);
}

static int mac_parse(const char *text, uint8_t mac[6])
{
        unsigned b[6];
        char end;

        if (!text || sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) != 6)
                return -EINVAL;
        for (int i = 0; i < 6; i++)
                mac[i] = (uint8_t)b[i];
        return 0;
}

static int port_addresses(struct network *n, struct port *p, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        size_t cap4 = 0, cap6 = 0;
        int r = store_prepare(n->store,
                              "SELECT family, address FROM addresses WHERE service_id = ?1 ORDER BY position", &stmt,
                              err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, p->service_id);
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                int family = sqlite3_column_int(stmt, 0);
                const char *text = (const char *)sqlite3_column_text(stmt, 1);
                void *slot;
                if (family == 4) {
                        if (array_reserve(&p->ipv4, &cap4, p->guest.n_ipv4, sizeof(*p->ipv4)) < 0)
                                return error_set(err, -ENOMEM, "out of memory");
                        slot = &p->ipv4[p->guest.n_ipv4++];
                } else {
                        if (array_reserve(&p->ipv6, &cap6, p->guest.n_ipv6, sizeof(*p->ipv6)) < 0)
                                return error_set(err, -ENOMEM, "out of memory");
                        slot = &p->ipv6[p->guest.n_ipv6++];
                }
                if (inet_pton(family == 4 ? AF_INET : AF_INET6, text, slot) != 1)
                        return error_set(err, -EINVAL, "address `%s` in the store is not valid", text);
        }
        if (r != SQLITE_DONE)
                return error_set(err, -EIO, "read addresses: %s", sqlite3_errmsg(store_db(n->store)));
        p->guest.ipv4 = p->ipv4;
        p->guest.ipv6 = p->ipv6;
        return 0;
}

/* Columns: id, uuid, mac, state, port_speed_mbit. */
#define PORT_COLUMNS "id, uuid, mac, state, port_speed_mbit"

static int port_from_row(struct network *n, sqlite3_stmt *stmt, struct port *p, struct error *err)
{
        const char *uuid = (const char *)sqlite3_column_text(stmt, 1);
        const char *state = (const char *)sqlite3_column_text(stmt, 3);
        char name[SERVICE_PORT_NAME_SIZE];
        int r;

        *p = (struct port){ .service_id = sqlite3_column_int64(stmt, 0) };
        service_port_name(uuid, name);
        str_copy(p->guest.ifname, sizeof(p->guest.ifname), name);
        if (mac_parse((const char *)sqlite3_column_text(stmt, 2), p->guest.mac) < 0)
                return error_set(err, -EINVAL, "service %s: MAC in the store is not valid", uuid);
        /* A suspended service, and one queued for removal, pass nothing. */
        p->guest.suspended = strcmp(state, "suspended") == 0 || strcmp(state, "removal-queued") == 0;
        p->guest.port_speed_mbit = (uint32_t)sqlite3_column_int64(stmt, 4);
        r = port_addresses(n, p, err);
        if (r < 0)
                return error_prefix(err, "service %s", uuid);
        return 0;
}

static int ports_load(struct network *n, struct port **ret, size_t *ret_n, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct port *ports = NULL;
        size_t count = 0, cap = 0;
        int r = store_prepare(n->store,
                              "SELECT " PORT_COLUMNS " FROM services WHERE state != 'terminated' ORDER BY id", &stmt,
                              err);

        if (r < 0)
                return r;
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                if (array_reserve(&ports, &cap, count, sizeof(*ports)) < 0) {
                        ports_free(ports, count);
                        return error_set(err, -ENOMEM, "out of memory");
                }
                r = port_from_row(n, stmt, &ports[count], err);
                count++;
                if (r < 0) {
                        ports_free(ports, count);
                        return r;
                }
        }
        if (r != SQLITE_DONE) {
                ports_free(ports, count);
                return error_set(err, -EIO, "read services: %s", sqlite3_errmsg(store_db(n->store)));
        }
        *ret = ports;
        *ret_n = count;
        return 0;
}

static int rebuild(struct network *n, struct error *err)
{
        struct port *ports = NULL;
        struct nf_guest *guests;
        size_t count = 0;
        int r;

        r = ports_load(n, &ports, &count, err);
        if (r < 0)
                return r;
        guests = calloc(count ? count : 1, sizeof(*guests));
        if (!guests) {
                ports_free(ports, count);
                return error_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < count; i++)
                guests[i] = ports[i].guest;
        r = nf_rebuild(n->nf, guests, count, err);
        free(guests);
        ports_free(ports, count);
        if (r == 0)
                log_info("guest filter rebuilt", "table=%s ports=%zu", n->table, count);
        return r;
}

int network_guest_apply(struct network *n, int64_t service_id, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct port p = { 0 };
        int r = store_prepare(n->store, "SELECT " PORT_COLUMNS " FROM services WHERE id = ?1", &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, service_id);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service %lld: not found", (long long)service_id);
        r = port_from_row(n, stmt, &p, err);
        if (r == 0)
                r = nf_guest_apply(n->nf, &p.guest, err);
        port_clear(&p);
        return r;
}

static int record(struct network *n, int64_t service_id, const struct nf_counters *c, struct error *err)
{
        const struct traffic_counters t = {
                .in_bytes = c->rx_bytes, .in_packets = c->rx_packets,
                .out_bytes = c->tx_bytes, .out_packets = c->tx_packets,
        };

        return traffic_record(n->store, service_id, &t, time_now_wall(), err);
}

int network_guest_remove(struct network *n, int64_t service_id, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        char name[SERVICE_PORT_NAME_SIZE];
        struct nf_counters c;
        int r = store_prepare(n->store, "SELECT uuid FROM services WHERE id = ?1", &stmt, err);

        if (r < 0)
                return r;
        sqlite3_bind_int64(stmt, 1, service_id);
        if (sqlite3_step(stmt) != SQLITE_ROW)
                return error_set(err, -ENOENT, "service %lld: not found", (long long)service_id);
        service_port_name((const char *)sqlite3_column_text(stmt, 0), name);
        /* What it sent since the last sample counts before its counters go. */
        if (nf_counters_read(n->nf, name, &c, NULL) == 0) {
                r = record(n, service_id, &c, err);
                if (r < 0)
                        return r;
        }
        r = nf_guest_remove(n->nf, name, err);
        if (r == -ENOENT) {
                error_clear(err);
                return 0;
        }
        return r;
}

/* Port name to service id, sorted by name for bsearch. */
struct port_id {
        char name[SERVICE_PORT_NAME_SIZE];
        int64_t id;
};

static int port_id_cmp(const void *a, const void *b)
{
        return strcmp(((const struct port_id *)a)->name, ((const struct port_id *)b)->name);
}

static int port_ids_load(struct network *n, struct port_id **ret, size_t *ret_n, struct error *err)
{
        cleanup_stmt sqlite3_stmt *stmt = NULL;
        struct port_id *ids = NULL;
        size_t count = 0, cap = 0;
        int r = store_prepare(n->store, "SELECT id, uuid FROM services WHERE state != 'terminated'", &stmt, err);

        if (r < 0)
                return r;
        while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
                if (array_reserve(&ids, &cap, count, sizeof(*ids)) < 0) {
                        free(ids);
                        return error_set(err, -ENOMEM, "out of memory");
                }
                ids[count].id = sqlite3_column_int64(stmt, 0);
                service_port_name((const char *)sqlite3_column_text(stmt, 1), ids[count].name);
                count++;
        }
        if (r != SQLITE_DONE) {
                free(ids);
                return error_set(err, -EIO, "read services: %s", sqlite3_errmsg(store_db(n->store)));
        }
        if (count)
                qsort(ids, count, sizeof(*ids), port_id_cmp);
        *ret = ids;
        *ret_n = count;
        return 0;
}

int network_sample(struct network *n, struct error *err)
{
        struct nf_port_counters *counters = NULL;
        struct port_id *ids = NULL;
        size_t n_counters = 0, n_ids = 0;
        sqlite3 *db = store_db(n->store);
        int r;

        r = nf_counters_read_all(n->nf, &counters, &n_counters, err);
        if (r < 0)
                return r;
        r = port_ids_load(n, &ids, &n_ids, err);
        if (r < 0) {
                free(counters);
                return r;
        }
        /* One transaction for every port: one write to disk a sample. */
        if (sqlite3_exec(db, STORE_TX_BEGIN, NULL, NULL, NULL) != SQLITE_OK)
                r = error_set(err, -EIO, "traffic: begin: %s", sqlite3_errmsg(db));
        for (size_t i = 0; r == 0 && i < n_counters; i++) {
                struct port_id key = { 0 }, *found;
                str_copy(key.name, sizeof(key.name), counters[i].ifname);
                found = n_ids ? bsearch(&key, ids, n_ids, sizeof(*ids), port_id_cmp) : NULL;
                if (found)
                        r = record(n, found->id, &counters[i].counters, err);
        }
        if (r == 0 && sqlite3_exec(db, STORE_TX_COMMIT, NULL, NULL, NULL) != SQLITE_OK)
                r = error_set(err, -EIO, "traffic: commit: %s", sqlite3_errmsg(db));
        if (r < 0 && !sqlite3_get_autocommit(db))
                sqlite3_exec(db, STORE_TX_ROLLBACK, NULL, NULL, NULL);
        free(counters);
        free(ids);
        return r;
}

static void on_sample(uv_timer_t *t)
{
        struct network *n = t->data;
        struct error err = { 0 };
        int64_t now = time_now_wall();

        if (network_sample(n, &err) < 0)
                log_warn("cannot sample the guests' traffic", "error=\"%s\"", err.msg);
        if (now - n->pruned_at >= PRUNE_EVERY_S) {
                n->pruned_at = now;
                if (traffic_prune(n->store, now, &err) < 0)
                        log_warn("cannot prune old traffic buckets", "error=\"%s\"", err.msg);
        }
}

/* Someone deleted or changed our table: what the store says is put back. */
static void on_check(uv_timer_t *t)
{
        struct network *n = t->data;
        struct error err = { 0 };
        int r = nf_check(n->nf, &err);

        if (r == 0)
                return;
        if (r != -ENOENT && r != -EUCLEAN) {
                log_warn("cannot check the guest filter", "table=%s error=\"%s\"", n->table, err.msg);
                return;
        }
        log_warn("the guest filter was changed from outside; rebuilding it", "table=%s difference=\"%s\"", n->table,
                 err.msg);
        error_clear(&err);
        if (rebuild(n, &err) < 0)
                log_error("cannot rebuild the guest filter", "table=%s error=\"%s\"", n->table, err.msg);
}

int network_new(uv_loop_t *loop, struct store *store, const struct network_config *config,
                struct network **ret_network, struct error *err)
{
        struct network *n = calloc(1, sizeof(*n));
        int r;

        if (!n)
                return error_set(err, -ENOMEM, "out of memory");
        n->loop = loop;
        n->store = store;
        n->sample_interval_s = config->sample_interval_s;
        n->check_interval_s = config->check_interval_s;
        if (str_copy(n->table, sizeof(n->table), config->table) < 0) {
                free(n);
                return error_set(err, -ENAMETOOLONG, "nft_table `%s` is too long", config->table);
        }
        r = nf_open(&n->nf, n->table, err);
        if (r < 0) {
                free(n);
                return r;
        }
        uv_timer_init(loop, &n->sample_timer);
        uv_timer_init(loop, &n->check_timer);
        n->sample_timer.data = n->check_timer.data = n;
        n->timers_open = 2;
        n->pruned_at = time_now_wall();
        *ret_network = n;
        return 0;
}

int network_start(struct network *n, struct error *err)
{
        int r = rebuild(n, err);

        if (r < 0)
                return error_prefix(err, "guest filter (table %s)", n->table);
        uv_timer_start(&n->sample_timer, on_sample, n->sample_interval_s * 1000ull, n->sample_interval_s * 1000ull);
        uv_timer_start(&n->check_timer, on_check, n->check_interval_s * 1000ull, n->check_interval_s * 1000ull);
        return 0;
}

static void timer_closed(uv_handle_t *h)
{
        struct network *n = h->data;

        if (--n->timers_open == 0)
                free(n);
}

struct network *network_free(struct network *n)
{
        struct error err = { 0 };

        if (!n)
                return NULL;
        if (uv_is_active((uv_handle_t *)&n->sample_timer) && network_sample(n, &err) < 0)
                log_warn("cannot sample the guests' traffic", "error=\"%s\"", err.msg);
        n->nf = nf_close(n->nf);
        uv_close((uv_handle_t *)&n->sample_timer, timer_closed);
        uv_close((uv_handle_t *)&n->check_timer, timer_closed);
        return NULL;
}
