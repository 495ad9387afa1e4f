#include "lws_server.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

void lws_server_info_init(struct lws_context_creation_info *info, const struct lws_server_tls *tls)
{
        memset(info, 0, sizeof(*info));
        info->options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        if (!strchr(tls->address, ':'))
                info->options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        info->port = tls->port;
        info->iface = tls->address;
        info->ssl_cert_filepath = tls->cert;
        info->ssl_private_key_filepath = tls->key;
        /* HTTP/1.1 only: websockets over h2 are a second code path for
         * nothing our servers need. */
        info->alpn = "http/1.1";
        /* Privileges are ours to drop, not lws's. */
        info->uid = -1;
        info->gid = -1;
        info->timeout_secs = 10;
}

static char log_who[32] = "lws";

/* lws logs some refusals at error level, one a request ("Ran out of header
 * data space" for each oversized one): a client could fill the node's log.
 * Lines pass at LOG_RATE a second on average, LOG_BURST at once; what is
 * dropped is counted and said with the next line that passes. */
#define LOG_RATE 20
#define LOG_BURST 100

static struct {
        uint64_t last_ms;
        unsigned tokens_milli; /* thousandths of a line */
        unsigned long dropped;
        bool started;
} log_budget;

/* Takes a line's worth from the budget, if there is one. */
static bool log_take(void)
{
        uint64_t now = time_now_mono_ms(), refill;

        if (!log_budget.started) {
                log_budget.started = true;
                log_budget.tokens_milli = LOG_BURST * 1000;
                log_budget.last_ms = now;
        }
        refill = (now - log_budget.last_ms) * LOG_RATE;
        log_budget.last_ms = now;
        log_budget.tokens_milli = refill >= LOG_BURST * 1000 - log_budget.tokens_milli
                                          ? LOG_BURST * 1000
                                          : log_budget.tokens_milli + (unsigned)refill;
        if (log_budget.tokens_milli < 1000)
                return false;
        log_budget.tokens_milli -= 1000;
        return true;
}

static void log_line(int level, const char *line)
{
        char text[512], msg[64];
        size_t n;

        if (!log_take()) {
                log_budget.dropped++;
                return;
        }
        snprintf(msg, sizeof(msg), "%s: libwebsockets", log_who);
        /* The count is a line of the budget too: said when there is room. */
        if (log_budget.dropped && log_take()) {
                log_write(LOG_LEVEL_WARN, msg, "dropped=%lu why=\"more lines a second than the log takes from it\"",
                          log_budget.dropped);
                log_budget.dropped = 0;
        }
        snprintf(text, sizeof(text), "%s", line);
        n = strlen(text);
        while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
                text[--n] = '\0';
        log_write(level == LLL_ERR ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, msg, "line=\"%s\"", text);
}

void lws_server_log_to(const char *who)
{
        snprintf(log_who, sizeof(log_who), "%s", who);
        lws_set_log_level(LLL_ERR | LLL_WARN, log_line);
}

int lws_server_port(struct lws_context *context)
{
        struct lws_vhost *vh = lws_get_vhost_by_name(context, "default");

        return vh ? lws_get_vhost_listen_port(vh) : -1;
}

int lws_server_confirm_upgrade(const char *upgrade)
{
        return upgrade && strcasecmp(upgrade, "websocket") == 0 ? 0 : -1;
}
