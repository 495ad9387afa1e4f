/* vps-ledger: the reference ledger's command line (docs/ledger.md). Each
 * command is one transaction on the database; results are JSON on
 * stdout, refusals one line on stderr (exit 1; usage errors exit 2).
 * --now stands in for the clock, so that tests can move time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing-sync/ledger.h"
#include "billing-sync/ledger_server.h"
#include "billing-sync/money.h"
#include "common/json.h"
#include "common/util.h"

#define ARGS_MAX 64

struct args {
        const char *positional[ARGS_MAX];
        size_t n_positional;
        const char *names[ARGS_MAX], *values[ARGS_MAX];
        bool used[ARGS_MAX];
        size_t n_options;
};

/* Options that take no value. */
static bool is_flag(const char *name)
{
        return strcmp(name, "--all") == 0 || strcmp(name, "--no-auto-renew") == 0 ||
               strcmp(name, "--confirm-disk-shrink") == 0 || strcmp(name, "--autonomous-removal") == 0;
}

static int usage(const char *fmt, const char *what)
{
        fprintf(stderr, "vps-ledger: ");
        fprintf(stderr, fmt, what);
        fprintf(stderr, "\n(see docs/ledger.md, or vps-ledger --help)\n");
        return 2;
}

static int args_parse(int argc, char **argv, struct args *a)
{
        for (int i = 0; i < argc; i++) {
                if (strncmp(argv[i], "--", 2) != 0) {
                        if (a->n_positional == ARGS_MAX)
                                return -E2BIG;
                        a->positional[a->n_positional++] = argv[i];
                        continue;
                }
                if (a->n_options == ARGS_MAX)
                        return -E2BIG;
                a->names[a->n_options] = argv[i];
                if (!is_flag(argv[i])) {
                        if (i + 1 >= argc)
                                return usage("option %s needs a value", argv[i]), -EINVAL;
                        a->values[a->n_options] = argv[++i];
                }
                a->n_options++;
        }
        return 0;
}

/* The next unused value of option name (NULL when none); a flag gives "". */
static const char *opt(struct args *a, const char *name)
{
        for (size_t i = 0; i < a->n_options; i++)
                if (!a->used[i] && strcmp(a->names[i], name) == 0) {
                        a->used[i] = true;
                        return a->values[i] ? a->values[i] : "";
                }
        return NULL;
}

static int opt_int(struct args *a, const char *name, int64_t fallback, int64_t *ret)
{
        const char *v = opt(a, name);
        char *end = NULL;
        long long n;

        if (!v) {
                if (fallback < 0)
                        return usage("option %s is required", name), -EINVAL;
                *ret = fallback;
                return 0;
        }
        errno = 0;
        n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < 0)
                return usage("option %s: not a whole number", name), -EINVAL;
        *ret = n;
        return 0;
}

/* Every option given was one the command knows, with the positional count
 * it wants. */
static int args_done(struct args *a, size_t min, size_t max)
{
        for (size_t i = 0; i < a->n_options; i++)
                if (!a->used[i])
                        return usage("unknown or repeated option %s", a->names[i]), -EINVAL;
        if (a->n_positional < min || a->n_positional > max)
                return usage("%s: wrong number of arguments", a->n_positional ? a->positional[0] : "command"),
                       -EINVAL;
        return 0;
}

static int print(struct json_object *obj)
{
        puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(obj);
        return 0;
}

static struct json_object *ok_object(void)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "ok", json_object_new_boolean(true));
        return o;
}

/* "ADDR:PORT", "[IPv6]:PORT". */
static int parse_listen(const char *text, char *address, size_t size, int *ret_port)
{
        const char *colon = strrchr(text, ':');
        char *end = NULL;
        size_t len;
        long port;

        if (!colon)
                return -EINVAL;
        len = (size_t)(colon - text);
        if (len >= 2 && text[0] == '[' && text[len - 1] == ']')
                text++, len -= 2;
        if (len == 0 || len >= size)
                return -EINVAL;
        memcpy(address, text, len);
        address[len] = '\0';
        port = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || port < 0 || port > 65535)
                return -EINVAL;
        *ret_port = (int)port;
        return 0;
}

static int serve(struct ledger *ledger, struct args *a, int64_t now_base, struct error *err)
{
        struct ledger_server_config config = { .now_base = now_base };
        const char *listen = opt(a, "--listen");
        char address[64];
        int64_t interval;

        config.cert = opt(a, "--cert");
        config.key = opt(a, "--key");
        config.api_token_file = opt(a, "--api-token-file");
        config.now_file = opt(a, "--now-file");
        if (opt_int(a, "--tick-interval", 1, &interval) < 0 || args_done(a, 1, 1) < 0)
                return 2;
        if (!listen || !config.cert || !config.key || !config.api_token_file)
                return usage("%s: --listen, --cert, --key and --api-token-file are required", "serve");
        if (parse_listen(listen, address, sizeof(address), &config.port) < 0)
                return usage("--listen `%s`: not ADDR:PORT", listen);
        if (interval < 1 || interval > 3600)
                return usage("--tick-interval: 1 to 3600 seconds%s", "");
        config.listen_address = address;
        config.tick_interval = (unsigned)interval;
        return ledger_serve(ledger, &config, err);
}

/* `node policy ID …`: the policy kept for the node and sent to it. */
static int node_policy(struct ledger *ledger, struct args *a, int64_t now, struct error *err)
{
        struct ledger_policy p = { 0 };
        int r;

        p.autonomous_removal = opt(a, "--autonomous-removal") != NULL;
        if (opt_int(a, "--grace", -1, &p.grace_seconds) < 0 || opt_int(a, "--retention", -1, &p.retention_seconds) < 0 ||
            opt_int(a, "--iso-quota-bytes", 0, &p.iso_quota_bytes) < 0 || args_done(a, 3, 3) < 0)
                return 2;
        r = ledger_node_policy(ledger, a->positional[2], &p, now, err);
        return r < 0 ? r : print(ok_object());
}

/* `iso VERB …`: customer ISOs (docs/ledger.md, "ISOs"). */
static int run_iso(struct ledger *ledger, struct args *a, int64_t now, struct error *err)
{
        const char *verb = a->n_positional > 1 ? a->positional[1] : "";
        const char *id = a->n_positional > 2 ? a->positional[2] : "";
        struct json_object *out = NULL;
        int r;

        if (strcmp(verb, "list") == 0) {
                const char *account = opt(a, "--account");
                if (args_done(a, 2, 2) < 0)
                        return 2;
                r = ledger_iso_list(ledger, account, true, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(verb, "ticket") == 0) {
                const char *node = opt(a, "--node");
                int64_t max_bytes;
                if (opt_int(a, "--max-bytes", -1, &max_bytes) < 0 || args_done(a, 3, 3) < 0)
                        return 2;
                if (!node)
                        return usage("%s: --node is required", "iso ticket");
                r = ledger_iso_upload_ticket(ledger, id, node, max_bytes, now, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(verb, "approve") == 0) {
                if (args_done(a, 3, 3) < 0)
                        return 2;
                r = ledger_iso_approve(ledger, id, now, err);
        } else if (strcmp(verb, "reject") == 0) {
                const char *reason = opt(a, "--reason");
                if (args_done(a, 3, 3) < 0)
                        return 2;
                r = ledger_iso_reject(ledger, id, reason, now, err);
        } else if (strcmp(verb, "mount") == 0 || strcmp(verb, "eject") == 0 || strcmp(verb, "delete") == 0) {
                bool mount = strcmp(verb, "mount") == 0;
                const char *account = opt(a, "--account");
                const char *service = mount ? opt(a, "--service") : NULL;
                if (args_done(a, 3, 3) < 0)
                        return 2;
                if (!account || (mount && !service))
                        return usage("iso %s: --account (and to mount, --service) is required", verb);
                if (mount)
                        r = ledger_iso_mount(ledger, id, account, service, now, err);
                else if (strcmp(verb, "eject") == 0)
                        r = ledger_iso_eject(ledger, id, account, now, err);
                else
                        r = ledger_iso_delete(ledger, id, account, now, err);
        } else {
                return usage("unknown command `iso %s`", verb);
        }
        return r < 0 ? r : print(ok_object());
}

/* Runs the command in a->positional; returns 0, -errno (refused, err
 * set) or a usage exit code above 0. */
static int run(struct ledger *ledger, struct args *a, int64_t now, struct error *err)
{
        const char *noun = a->n_positional > 0 ? a->positional[0] : "";
        const char *verb = a->n_positional > 1 ? a->positional[1] : "";
        const char *const *p = a->positional;
        struct json_object *out = NULL;
        int r;

        if (strcmp(noun, "account") == 0 && strcmp(verb, "create") == 0) {
                const char *name = opt(a, "--name");
                if (args_done(a, 3, 3) < 0)
                        return 2;
                r = ledger_account_create(ledger, p[2], name, now, err);
                return r < 0 ? r : print(ok_object());
        }
        if (strcmp(noun, "account") == 0 && strcmp(verb, "top-up") == 0) {
                const char *memo = opt(a, "--memo");
                int64_t cents;
                if (args_done(a, 4, 4) < 0)
                        return 2;
                if (money_parse(p[3], &cents) < 0)
                        return usage("amount `%s`: not like 12 or 12.34", p[3]);
                r = ledger_top_up(ledger, p[2], cents, memo, now, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "account") == 0 && strcmp(verb, "show") == 0) {
                if (args_done(a, 3, 3) < 0)
                        return 2;
                r = ledger_account_show(ledger, p[2], &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "plan") == 0 && strcmp(verb, "create") == 0) {
                struct ledger_plan plan = { 0 };
                const char *price = opt(a, "--price");
                if (opt_int(a, "--vcpus", -1, &plan.vcpus) < 0 || opt_int(a, "--memory-mib", -1, &plan.memory_mib) < 0 ||
                    opt_int(a, "--disk-gib", -1, &plan.disk_gib) < 0 ||
                    opt_int(a, "--port-speed-mbit", 1000, &plan.port_speed_mbit) < 0 ||
                    opt_int(a, "--traffic-gib", 0, &plan.traffic_gib) < 0 ||
                    opt_int(a, "--cycle-months", 1, &plan.cycle_months) < 0 || args_done(a, 3, 3) < 0)
                        return 2;
                if (!price || money_parse(price, &plan.price) < 0)
                        return usage("%s: --price like 12 or 12.34 is required", "plan create");
                if (str_copy(plan.name, sizeof(plan.name), p[2]) < 0)
                        return usage("plan name `%s`: too long", p[2]);
                r = ledger_plan_create(ledger, &plan, err);
                return r < 0 ? r : print(ok_object());
        }
        if (strcmp(noun, "plan") == 0 && strcmp(verb, "list") == 0) {
                if (args_done(a, 2, 2) < 0)
                        return 2;
                r = ledger_plan_list(ledger, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "node") == 0 && strcmp(verb, "add") == 0) {
                struct ledger_node node = { 0 };
                const char *pool;
                node.console_url = opt(a, "--console-url");
                while ((pool = opt(a, "--pool")) && node.n_pools < LEDGER_POOLS_MAX)
                        node.pools[node.n_pools++] = pool;
                if (opt_int(a, "--vcpus", -1, &node.vcpus) < 0 || opt_int(a, "--memory-mib", -1, &node.memory_mib) < 0 ||
                    opt_int(a, "--disk-gib", -1, &node.disk_gib) < 0 || args_done(a, 3, 3) < 0)
                        return 2;
                if (str_copy(node.id, sizeof(node.id), p[2]) < 0)
                        return usage("node id `%s`: too long", p[2]);
                r = ledger_node_add(ledger, &node, now, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "node") == 0 && strcmp(verb, "list") == 0) {
                if (args_done(a, 2, 2) < 0)
                        return 2;
                r = ledger_node_list(ledger, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "node") == 0 && strcmp(verb, "policy") == 0)
                return node_policy(ledger, a, now, err);
        if (strcmp(noun, "iso") == 0)
                return run_iso(ledger, a, now, err);
        if (strcmp(noun, "node") == 0 && strcmp(verb, "commands") == 0) {
                int64_t after;
                if (opt_int(a, "--after", 0, &after) < 0 || args_done(a, 3, 3) < 0)
                        return 2;
                r = ledger_node_commands(ledger, p[2], after, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "order") == 0) {
                struct ledger_order order = { .auto_renew = true };
                const char *key;
                order.hostname = opt(a, "--hostname");
                order.template_name = opt(a, "--template");
                order.auto_renew = !opt(a, "--no-auto-renew");
                while ((key = opt(a, "--ssh-key")) && order.n_ssh_keys < LEDGER_SSH_KEYS_MAX)
                        order.ssh_keys[order.n_ssh_keys++] = key;
                if (args_done(a, 3, 3) < 0)
                        return 2;
                if (!order.hostname)
                        return usage("%s: --hostname is required", "order");
                if (!order.template_name)
                        order.template_name = "debian-12";
                order.account = p[1];
                order.plan = p[2];
                r = ledger_order(ledger, &order, now, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "service") == 0 && strcmp(verb, "list") == 0) {
                const char *account = opt(a, "--account");
                bool all = opt(a, "--all") != NULL;
                if (args_done(a, 2, 2) < 0)
                        return 2;
                r = ledger_service_list(ledger, account, all, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "service") == 0 && strcmp(verb, "show") == 0) {
                if (args_done(a, 3, 3) < 0)
                        return 2;
                r = ledger_service_show(ledger, p[2], &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "service") == 0 && strcmp(verb, "renew") == 0) {
                if (args_done(a, 3, ARGS_MAX) < 0)
                        return 2;
                r = ledger_renew(ledger, p + 2, a->n_positional - 2, now, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "service") == 0 && strcmp(verb, "change-plan") == 0) {
                bool confirm = opt(a, "--confirm-disk-shrink") != NULL;
                if (args_done(a, 4, 4) < 0)
                        return 2;
                r = ledger_change_plan(ledger, p[2], p[3], confirm, now, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "service") == 0 && strcmp(verb, "promise") == 0) {
                if (args_done(a, 3, 3) < 0)
                        return 2;
                r = ledger_promise(ledger, p[2], now, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "service") == 0 && strcmp(verb, "set-paid-until") == 0) {
                int64_t until;
                if (opt_int(a, "--at", -1, &until) < 0 || args_done(a, 3, 3) < 0)
                        return 2;
                r = ledger_set_paid_until(ledger, p[2], until, now, &out, err);
                return r < 0 ? r : print(out);
        }
        if (strcmp(noun, "service") == 0 && strcmp(verb, "transfer") == 0) {
                if (args_done(a, 4, 4) < 0)
                        return 2;
                r = ledger_transfer(ledger, p[2], p[3], now, err);
                return r < 0 ? r : print(ok_object());
        }
        if (strcmp(noun, "service") == 0 && strcmp(verb, "auto-renew") == 0) {
                if (args_done(a, 4, 4) < 0)
                        return 2;
                if (strcmp(p[3], "on") != 0 && strcmp(p[3], "off") != 0)
                        return usage("auto-renew: `%s` is not on or off", p[3]);
                r = ledger_set_auto_renew(ledger, p[2], strcmp(p[3], "on") == 0, now, err);
                return r < 0 ? r : print(ok_object());
        }
        if (strcmp(noun, "key") == 0 && strcmp(verb, "public") == 0) {
                cleanup_free char *pem = NULL;
                if (args_done(a, 2, 2) < 0)
                        return 2;
                r = ledger_ticket_public_pem(ledger, &pem, err);
                if (r == 0)
                        fputs(pem, stdout);
                return r;
        }
        if (strcmp(noun, "tick") == 0) {
                if (args_done(a, 1, 1) < 0)
                        return 2;
                r = ledger_tick(ledger, now, &out, err);
                return r < 0 ? r : print(out);
        }
        return usage("unknown command `%s`", noun);
}

static const char help[] =
        "usage: vps-ledger [--db PATH] [--now SECONDS] COMMAND …\n"
        "  account create ID [--name NAME]     account top-up ID AMOUNT [--memo TEXT]     account show ID\n"
        "  plan create NAME --price AMOUNT --vcpus N --memory-mib N --disk-gib N\n"
        "       [--cycle-months N] [--port-speed-mbit N] [--traffic-gib N]              plan list\n"
        "  node add ID --vcpus N --memory-mib N --disk-gib N [--pool CIDR,GATEWAY]… [--console-url URL]\n"
        "  node list\n"
        "  node commands ID [--after SEQ]\n"
        "  node policy ID --grace SECONDS --retention SECONDS [--autonomous-removal] [--iso-quota-bytes N]\n"
        "  order ACCOUNT PLAN --hostname NAME [--template NAME] [--ssh-key LINE]… [--no-auto-renew]\n"
        "  service list [--account ID] [--all]     service show UUID     service renew UUID…\n"
        "  service change-plan UUID PLAN [--confirm-disk-shrink]     service promise UUID\n"
        "  service set-paid-until UUID --at SECONDS\n"
        "  service transfer UUID ACCOUNT     service auto-renew UUID on|off\n"
        "  iso list [--account ID]     iso ticket ACCOUNT --node ID --max-bytes N\n"
        "  iso approve ISO     iso reject ISO [--reason TEXT]\n"
        "  iso mount ISO --account ID --service UUID     iso eject UUID --account ID     iso delete ISO --account ID\n"
        "  tick     key public\n"
        "  serve --listen ADDR:PORT --cert PEM --key PEM --api-token-file FILE [--tick-interval SECONDS]\n"
        "        [--now-file FILE]\n"
        "AMOUNT is in the currency's unit with at most two decimals (12.34). Results are JSON.\n"
        "--now SECONDS replaces the clock (serve: the clock starts there); serve --now-file FILE reads the\n"
        "clock from FILE (tests). Keys beside the database: PATH.ticket-key, PATH.seal-key (0600).\n";

int main(int argc, char **argv)
{
        const char *db = getenv("VPS_LEDGER_DB");
        int64_t now = time_now_wall(), now_base = -1;
        struct ledger *ledger = NULL;
        struct error err = { 0 };
        struct args a = { 0 };
        int i = 1, r;

        for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
                if (strcmp(argv[i], "--help") == 0) {
                        fputs(help, stdout);
                        return 0;
                }
                if (i + 1 >= argc)
                        return usage("option %s needs a value", argv[i]);
                if (strcmp(argv[i], "--db") == 0) {
                        db = argv[i + 1];
                } else if (strcmp(argv[i], "--now") == 0) {
                        char *end = NULL;
                        now = strtoll(argv[i + 1], &end, 10);
                        if (!*argv[i + 1] || *end || now < 0)
                                return usage("--now `%s`: not Unix seconds", argv[i + 1]);
                        now_base = now;
                } else {
                        return usage("unknown option %s", argv[i]);
                }
        }
        if (i >= argc)
                return fputs(help, stderr), 2;
        if (args_parse(argc - i, argv + i, &a) < 0)
                return 2;
        if (!db)
                db = "/var/lib/vps-ledger/ledger.db";
        r = ledger_open(db, &ledger, &err);
        if (r == 0 && a.n_positional > 0 && strcmp(a.positional[0], "serve") == 0)
                r = serve(ledger, &a, now_base, &err);
        else if (r == 0)
                r = run(ledger, &a, now, &err);
        ledger_close(ledger);
        if (r < 0) {
                fprintf(stderr, "vps-ledger: %s\n", err.msg);
                return 1;
        }
        return r;
}
