/* The server's frame: the lws context (TLS, the two protocols), the
 * clock, the tick every tick_interval seconds, and a clean stop on
 * SIGTERM or SIGINT. */
#include "ledger_server.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/json.h"
#include "common/log.h"
#include "common/lws_server.h"
#include "common/util.h"

static volatile sig_atomic_t stop_requested;
static struct lws_context *signal_context;

static void on_signal(int signum)
{
        (void)signum;
        stop_requested = 1;
        /* Wakes lws_service() (a write to lws's own pipe). */
        if (signal_context)
                lws_cancel_service(signal_context);
}

static int read_number_file(const char *path, int64_t *ret)
{
        cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
        char text[32], *end = NULL;
        ssize_t n;
        long long v;

        if (fd < 0)
                return -errno;
        n = read(fd, text, sizeof(text) - 1);
        if (n <= 0)
                return -EINVAL;
        text[n] = '\0';
        errno = 0;
        v = strtoll(text, &end, 10);
        if (errno || end == text || (*end && *end != '\n') || v < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

int64_t ledger_server_now(struct ledger_server *server)
{
        int64_t now = 0;

        if (server->config.now_file) {
                /* A file that cannot be read keeps the last time read. */
                if (read_number_file(server->config.now_file, &now) == 0)
                        server->last_now = now;
                return server->last_now;
        }
        if (server->config.now_base >= 0)
                return server->config.now_base + (int64_t)((time_now_mono_ms() - server->mono_start_ms) / 1000);
        return time_now_wall();
}

static void tick(struct ledger_server *server)
{
        cleanup_json struct json_object *out = NULL;
        struct json_object *actions;
        struct error err = { 0 };

        if (ledger_tick(server->ledger, ledger_server_now(server), &out, &err) < 0) {
                log_error("ledger: tick failed", "error=\"%s\"", err.msg);
                return;
        }
        actions = json_object_object_get(out, "actions");
        for (size_t i = 0; i < json_object_array_length(actions); i++) {
                struct json_object *a = json_object_array_get_idx(actions, i);

                log_info("ledger: tick", "service=%s action=%s",
                         json_object_get_string(json_object_object_get(a, "service")),
                         json_object_get_string(json_object_object_get(a, "action")));
        }
}

void ledger_server_changed(struct ledger_server *server)
{
        tick(server);
        ledger_sync_wake(server);
}

static void on_tick_timer(lws_sorted_usec_list_t *sul)
{
        struct ledger_server *server = lws_container_of(sul, struct ledger_server, tick_timer);

        ledger_server_changed(server);
        lws_sul_schedule(server->lws, 0, &server->tick_timer, on_tick_timer,
                         (lws_usec_t)server->config.tick_interval * LWS_US_PER_SEC);
}

static void token_digest(const void *data, size_t len, uint8_t out[32])
{
        unsigned int n = 32;

        EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

bool ledger_server_token_ok(struct ledger_server *server, const char *token, size_t len)
{
        uint8_t want[32], got[32];

        /* Digests first: equal lengths, so the time taken tells nothing of
         * the token's length or of how much of it matched. */
        token_digest(server->token, server->token_len, want);
        token_digest(token, len, got);
        return CRYPTO_memcmp(want, got, sizeof(want)) == 0;
}

/* The API's bearer token: one line of a file that only its owner may read. */
static int token_load(struct ledger_server *server, const char *path, struct error *err)
{
        cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char text[LEDGER_API_TOKEN_MAX + 2];
        struct stat st;
        ssize_t n;

        if (fd < 0)
                return error_set_errno(err, -errno, "open `%s`", path);
        if (fstat(fd, &st) < 0)
                return error_set_errno(err, -errno, "stat `%s`", path);
        if (!S_ISREG(st.st_mode) || (st.st_mode & 0077))
                return error_set(err, -EPERM, "`%s`: the API token file must be a regular file of mode 0600", path);
        n = read(fd, text, sizeof(text));
        if (n < 0)
                return error_set_errno(err, -errno, "read `%s`", path);
        while (n > 0 && strchr("\r\n \t", text[n - 1]))
                n--;
        if (n == 0 || n > LEDGER_API_TOKEN_MAX)
                return error_set(err, -EINVAL, "`%s`: the API token is one line of 1 to %d characters", path,
                                 LEDGER_API_TOKEN_MAX);
        memcpy(server->token, text, (size_t)n);
        server->token_len = (size_t)n;
        OPENSSL_cleanse(text, sizeof(text));
        return 0;
}

static struct lws_protocols protocols[] = {
        /* First: plain HTTP lands here (the API), and so does a websocket
         * without our subprotocol, which it refuses. */
        { .name = "http", .callback = ledger_http_callback },
        { .name = "vpsd-sync.1", .callback = ledger_sync_callback, .rx_buffer_size = 65536 },
        { 0 },
};

int ledger_serve(struct ledger *ledger, const struct ledger_server_config *config, struct error *err)
{
        struct lws_server_tls tls = { config->listen_address, config->port, config->cert, config->key };
        struct ledger_server server = { .ledger = ledger, .config = *config };
        struct lws_context_creation_info info;
        struct sigaction sa = { .sa_handler = on_signal };
        int r = token_load(&server, config->api_token_file, err);

        if (r < 0)
                return r;
        protocols[0].per_session_data_size = ledger_http_session_size();
        protocols[1].per_session_data_size = ledger_sync_session_size();
        server.mono_start_ms = time_now_mono_ms();
        server.last_now = config->now_base >= 0 ? config->now_base : time_now_wall();
        lws_server_info_init(&info, &tls);
        info.protocols = protocols;
        info.user = &server;
        /* A websocket message is at most 512 KiB: lws reads it in 64 KiB. */
        info.pt_serv_buf_size = 64 * 1024;
        lws_server_log_to("ledger");
        server.lws = lws_create_context(&info);
        if (!server.lws) {
                OPENSSL_cleanse(server.token, sizeof(server.token));
                return error_set(err, -EIO, "libwebsockets: cannot serve on %s port %d (see its messages above)",
                                 config->listen_address, config->port);
        }
        signal(SIGPIPE, SIG_IGN);
        signal_context = server.lws;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        log_info("vps-ledger serving", "address=%s port=%d tick_interval=%u", config->listen_address,
                 lws_server_port(server.lws), config->tick_interval);
        ledger_server_changed(&server);
        lws_sul_schedule(server.lws, 0, &server.tick_timer, on_tick_timer,
                         (lws_usec_t)config->tick_interval * LWS_US_PER_SEC);
        while (!stop_requested)
                if (lws_service(server.lws, 0) < 0)
                        break;
        log_info("vps-ledger stopping");
        signal_context = NULL;
        /* Closes every connection: their CLOSED callbacks free them. */
        lws_context_destroy(server.lws);
        OPENSSL_cleanse(server.token, sizeof(server.token));
        return 0;
}
