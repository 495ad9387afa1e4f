/* Test driver for netfilter/: one struct nf, driven by JSON lines on stdin,
 * one JSON reply line per command on stdout, so that pytest (and the
 * benchmark) can run it inside a network namespace and keep its model
 * between commands, as vpsd does.
 *
 *   {"op":"rebuild","guests":[GUEST...]}    {"op":"apply","guest":GUEST}
 *   {"op":"remove","ifname":"vg1"}          {"op":"check"}
 *   {"op":"counters","ifname":"vg1"}        {"op":"counters_all"}
 *   GUEST: {"ifname":"vg1","mac":"02:00:00:00:00:01","ipv4":["10.0.0.2"],
 *           "ipv6":["fd00::2"],"suspended":false,"speed":0}
 *
 * Replies: {"ok":true,"us":N,...} or {"ok":false,"code":-E,"error":"...",
 * "us":N}, where us is the library call's duration in microseconds.
 * Usage: nf_driver [TABLE] */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "netfilter/nf.h"

/* A guest parsed from JSON, with room for its addresses. */
struct guest_buf {
        struct nf_guest g;
        struct in_addr *ipv4;
        struct in6_addr *ipv6;
};

static void guest_buf_free(struct guest_buf *b)
{
        free(b->ipv4);
        free(b->ipv6);
}

static const char *str_field(struct json_object *o, const char *key)
{
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
                       ? json_object_get_string(v)
                       : NULL;
}

/* Parses GUEST. The interface name is copied into its 16 bytes as given,
 * even unterminated, so that the library's own check is what refuses it. */
static int guest_parse(struct json_object *o, struct guest_buf *b, char *why, size_t why_size)
{
        struct json_object *v, *list4 = NULL, *list6 = NULL;
        const char *ifname = str_field(o, "ifname"), *mac = str_field(o, "mac");
        unsigned m[6];

        memset(b, 0, sizeof(*b));
        if (!ifname || !mac || sscanf(mac, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
                snprintf(why, why_size, "guest needs ifname and mac");
                return -EINVAL;
        }
        memcpy(b->g.ifname, ifname, strnlen(ifname, IFNAMSIZ));
        for (int i = 0; i < 6; i++)
                b->g.mac[i] = (uint8_t)m[i];
        json_object_object_get_ex(o, "ipv4", &list4);
        json_object_object_get_ex(o, "ipv6", &list6);
        b->g.n_ipv4 = list4 ? json_object_array_length(list4) : 0;
        b->g.n_ipv6 = list6 ? json_object_array_length(list6) : 0;
        b->ipv4 = calloc(b->g.n_ipv4 + 1, sizeof(*b->ipv4));
        b->ipv6 = calloc(b->g.n_ipv6 + 1, sizeof(*b->ipv6));
        if (!b->ipv4 || !b->ipv6)
                return -ENOMEM;
        for (size_t i = 0; i < b->g.n_ipv4; i++)
                if (inet_pton(AF_INET, json_object_get_string(json_object_array_get_idx(list4, i)), &b->ipv4[i]) != 1) {
                        snprintf(why, why_size, "bad ipv4");
                        return -EINVAL;
                }
        for (size_t i = 0; i < b->g.n_ipv6; i++)
                if (inet_pton(AF_INET6, json_object_get_string(json_object_array_get_idx(list6, i)), &b->ipv6[i]) != 1) {
                        snprintf(why, why_size, "bad ipv6");
                        return -EINVAL;
                }
        b->g.ipv4 = b->ipv4;
        b->g.ipv6 = b->ipv6;
        b->g.suspended = json_object_object_get_ex(o, "suspended", &v) && json_object_get_boolean(v);
        b->g.port_speed_mbit = json_object_object_get_ex(o, "speed", &v) ? (uint32_t)json_object_get_int64(v) : 0;
        return 0;
}

static struct json_object *counters_json(const struct nf_counters *c)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "rx_bytes", json_object_new_int64((int64_t)c->rx_bytes));
        json_object_object_add(o, "rx_packets", json_object_new_int64((int64_t)c->rx_packets));
        json_object_object_add(o, "tx_bytes", json_object_new_int64((int64_t)c->tx_bytes));
        json_object_object_add(o, "tx_packets", json_object_new_int64((int64_t)c->tx_packets));
        return o;
}

static uint64_t now_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int op_rebuild(struct nf *nf, struct json_object *req, struct json_object *reply, struct error *err)
{
        struct json_object *list = NULL;
        struct guest_buf *bufs;
        struct nf_guest *guests;
        size_t n;
        int r = 0;
        uint64_t t0;

        json_object_object_get_ex(req, "guests", &list);
        n = list ? json_object_array_length(list) : 0;
        bufs = calloc(n + 1, sizeof(*bufs));
        guests = calloc(n + 1, sizeof(*guests));
        if (!bufs || !guests)
                r = error_set(err, -ENOMEM, "driver");
        for (size_t i = 0; i < n && r == 0; i++) {
                r = guest_parse(json_object_array_get_idx(list, i), &bufs[i], err->msg, sizeof(err->msg));
                guests[i] = bufs[i].g;
        }
        if (r == 0) {
                t0 = now_us();
                r = nf_rebuild(nf, guests, n, err);
                json_object_object_add(reply, "us", json_object_new_int64((int64_t)(now_us() - t0)));
        }
        for (size_t i = 0; bufs && i < n; i++)
                guest_buf_free(&bufs[i]);
        free(bufs);
        free(guests);
        return r;
}

static int op_apply(struct nf *nf, struct json_object *req, struct json_object *reply, struct error *err)
{
        struct json_object *o = NULL;
        struct guest_buf b;
        uint64_t t0;
        int r;

        if (!json_object_object_get_ex(req, "guest", &o))
                return error_set(err, -EINVAL, "driver: apply needs guest");
        r = guest_parse(o, &b, err->msg, sizeof(err->msg));
        if (r == 0) {
                t0 = now_us();
                r = nf_guest_apply(nf, &b.g, err);
                json_object_object_add(reply, "us", json_object_new_int64((int64_t)(now_us() - t0)));
        }
        guest_buf_free(&b);
        return r;
}

static int op_simple(struct nf *nf, const char *op, struct json_object *req, struct json_object *reply,
                     struct error *err)
{
        const char *ifname = str_field(req, "ifname");
        uint64_t t0 = now_us();
        int r;

        if (strcmp(op, "check") == 0) {
                r = nf_check(nf, err);
        } else if (strcmp(op, "remove") == 0 && ifname) {
                r = nf_guest_remove(nf, ifname, err);
        } else if (strcmp(op, "counters") == 0 && ifname) {
                struct nf_counters c;
                r = nf_counters_read(nf, ifname, &c, err);
                if (r == 0)
                        json_object_object_add(reply, "counters", counters_json(&c));
        } else if (strcmp(op, "counters_all") == 0) {
                struct nf_port_counters *all = NULL;
                size_t n = 0;
                r = nf_counters_read_all(nf, &all, &n, err);
                if (r == 0) {
                        struct json_object *ports = json_object_new_object();
                        for (size_t i = 0; i < n; i++)
                                json_object_object_add(ports, all[i].ifname, counters_json(&all[i].counters));
                        json_object_object_add(reply, "ports", ports);
                }
                free(all);
        } else {
                return error_set(err, -EINVAL, "driver: unknown op `%s` or missing ifname", op);
        }
        json_object_object_add(reply, "us", json_object_new_int64((int64_t)(now_us() - t0)));
        return r;
}

int main(int argc, char **argv)
{
        struct error err = { 0 };
        struct nf *nf = NULL;
        char *line = NULL;
        size_t cap = 0;

        if (nf_open(&nf, argc > 1 ? argv[1] : NULL, &err) < 0) {
                fprintf(stderr, "nf_driver: %s\n", err.msg);
                return 1;
        }
        while (getline(&line, &cap, stdin) > 0) {
                struct json_object *req = json_tokener_parse(line), *reply = json_object_new_object();
                const char *op = req ? str_field(req, "op") : NULL;
                int r;

                error_clear(&err);
                if (!op)
                        r = error_set(&err, -EINVAL, "driver: not a JSON object with op");
                else if (strcmp(op, "rebuild") == 0)
                        r = op_rebuild(nf, req, reply, &err);
                else if (strcmp(op, "apply") == 0)
                        r = op_apply(nf, req, reply, &err);
                else
                        r = op_simple(nf, op, req, reply, &err);
                json_object_object_add(reply, "ok", json_object_new_boolean(r == 0));
                if (r < 0) {
                        json_object_object_add(reply, "code", json_object_new_int(r));
                        json_object_object_add(reply, "error", json_object_new_string(err.msg));
                }
                printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
                fflush(stdout);
                json_object_put(reply);
                json_object_put(req);
        }
        free(line);
        nf_close(nf);
        return 0;
}
