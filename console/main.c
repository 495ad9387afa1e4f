/* vpsd-edge: the web console's server, started and supervised by vpsd
 * (node/console.c). Privileges shrink step by step: as root it binds its
 * port and reads its key; then it becomes its own user for good; only
 * then does it read a byte from the internet. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "console/edge.h"

static void usage(FILE *out)
{
        fprintf(out,
                "Usage: vpsd-edge --link-fd FD --cert FILE --key FILE --web-dir DIR [OPTIONS]\n"
                "The web console's HTTPS and websocket server. vpsd starts it (console_listen in\n"
                "vpsd.conf, docs/console.md); it is not meant to be started by hand.\n"
                "\n"
                "      --link-fd FD         the SOCK_SEQPACKET socket to vpsd\n"
                "      --listen ADDRESS     address to listen on (default 127.0.0.1)\n"
                "      --port PORT          port (default 8443; 0: any free one)\n"
                "      --cert FILE          PEM certificate chain\n"
                "      --key FILE           PEM private key\n"
                "      --web-dir DIR        the console pages and their scripts\n"
                "      --user NAME          user to run as once listening (default vpsd-edge)\n"
                "      --origin ORIGIN      an allowed websocket Origin (repeat; default: the page's own)\n"
                "      --idle-timeout SEC   close a session silent both ways this long (0: never; default 900)\n"
                "      --max-sessions N     websockets at once (default 1000)\n"
                "      --max-pending N      of which waiting for vpsd's answer (default 256)\n"
                "      --max-per-address N  connections open at once from one client address;\n"
                "                           0: any (default 64)\n"
                "      --log-level LEVEL    debug, info, warn or error (default info)\n"
                "  -h, --help               show this help\n"
                "  -V, --version            show the version\n");
}

static int number(const char *opt, const char *s, unsigned min, unsigned max, unsigned *ret)
{
        char *end = NULL;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || !*s || *end || v < min || v > max) {
                fprintf(stderr, "vpsd-edge: %s: `%s` is not a number from %u to %u\n", opt, s, min, max);
                return -EINVAL;
        }
        *ret = (unsigned)v;
        return 0;
}

/* Becomes user for good: no supplementary groups, real, effective and
 * saved ids all the user's, and no way back (checked, not assumed). */
static int drop_privileges(const char *user, struct error *err)
{
        struct passwd pw, *res = NULL;
        char buf[4096];
        uid_t ru, eu, su;
        gid_t rg, eg, sg;

        if (getpwnam_r(user, &pw, buf, sizeof(buf), &res) != 0 || !res)
                return error_set(err, -ENOENT, "user `%s` does not exist", user);
        if (pw.pw_uid == 0 || pw.pw_gid == 0)
                return error_set(err, -EPERM, "user `%s` is root or in group root", user);
        if (setgroups(0, NULL) < 0 || setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) < 0 ||
            setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid) < 0)
                return error_set_errno(err, -errno, "become user `%s`", user);
        if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != pw.pw_uid || eu != pw.pw_uid ||
            su != pw.pw_uid || rg != pw.pw_gid || eg != pw.pw_gid || sg != pw.pw_gid || getgroups(0, NULL) != 0 ||
            setuid(0) == 0 || seteuid(0) == 0)
                return error_set(err, -EPERM, "still privileged after becoming `%s`", user);
        /* Nothing exec'd from here can gain privileges (set-uid files). */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return error_set_errno(err, -errno, "PR_SET_NO_NEW_PRIVS");
        return 0;
}

static void on_link_message(const struct edge_msg *msg, int fd, void *userdata)
{
        if (!edge_upload_message(userdata, msg, fd))
                edge_session_message(userdata, msg, fd);
}

static void edge_stop(struct edge *edge, int code);

static void on_link_lost(const struct error *err, void *userdata)
{
        struct edge *edge = userdata;

        log_error("edge: the link to vpsd is gone; stopping", "error=\"%s\"", err ? err->msg : "");
        edge->link = edge_link_close(edge->link);
        edge_stop(edge, 1);
}

static uv_signal_t sig_term, sig_int;

static void edge_stop(struct edge *edge, int code)
{
        if (edge->stopping)
                return;
        edge->stopping = true;
        edge->exit_code = code;
        edge->link = edge_link_close(edge->link);
        uv_close((uv_handle_t *)&sig_term, NULL);
        uv_close((uv_handle_t *)&sig_int, NULL);
        /* lws closes every connection and its handles on the loop; the
         * sessions' own handles close as their websockets do. */
        edge_server_stop(edge);
}

static void on_signal(uv_signal_t *s, int signum)
{
        (void)signum;
        edge_stop(s->data, 0);
}

static int parse_args(int argc, char **argv, struct edge_config *c, int *link_fd, enum log_level *level)
{
        static const struct option options[] = {
                { "link-fd", required_argument, NULL, 'l' },     { "listen", required_argument, NULL, 'a' },
                { "port", required_argument, NULL, 'p' },        { "cert", required_argument, NULL, 'c' },
                { "key", required_argument, NULL, 'k' },         { "web-dir", required_argument, NULL, 'w' },
                { "user", required_argument, NULL, 'u' },        { "origin", required_argument, NULL, 'o' },
                { "idle-timeout", required_argument, NULL, 'i' }, { "max-sessions", required_argument, NULL, 'm' },
                { "max-pending", required_argument, NULL, 'n' }, { "log-level", required_argument, NULL, 'L' },
                { "max-per-address", required_argument, NULL, 'P' },
                { "help", no_argument, NULL, 'h' },              { "version", no_argument, NULL, 'V' },
                {},
        };
        unsigned fd = 0;
        int opt;

        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":hV", options, NULL)) != -1) {
                int r = 0;
                switch (opt) {
                case 'l':
                        r = number("--link-fd", optarg, 3, 65535, &fd);
                        *link_fd = (int)fd;
                        break;
                case 'a':
                        r = str_copy(c->listen_address, sizeof(c->listen_address), optarg);
                        break;
                case 'p':
                        r = number("--port", optarg, 0, 65535, &c->port);
                        break;
                case 'c':
                        c->cert = optarg;
                        break;
                case 'k':
                        c->key = optarg;
                        break;
                case 'w':
                        c->web_dir = optarg;
                        break;
                case 'u':
                        c->user = optarg;
                        break;
                case 'o':
                        if (c->n_origins == EDGE_ORIGINS_MAX) {
                                fprintf(stderr, "vpsd-edge: at most %d origins\n", EDGE_ORIGINS_MAX);
                                return 2;
                        }
                        c->origins[c->n_origins++] = optarg;
                        break;
                case 'i':
                        r = number("--idle-timeout", optarg, 0, 86400, &c->idle_timeout);
                        break;
                case 'm':
                        r = number("--max-sessions", optarg, 1, 100000, &c->max_sessions);
                        break;
                case 'n':
                        r = number("--max-pending", optarg, 1, 100000, &c->max_pending);
                        break;
                case 'P':
                        r = number("--max-per-address", optarg, 0, 100000, &c->max_per_address);
                        break;
                case 'L':
                        r = log_level_parse(optarg, level);
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                case 'V':
                        printf("vpsd-edge %s\n", VPSD_VERSION);
                        exit(0);
                case ':':
                        fprintf(stderr, "vpsd-edge: option `%s` needs a value\n", argv[optind - 1]);
                        return 2;
                default:
                        fprintf(stderr, "vpsd-edge: bad option `%s`; try `vpsd-edge --help`\n", argv[optind - 1]);
                        return 2;
                }
                if (r < 0) {
                        fprintf(stderr, "vpsd-edge: bad value for `%s`\n", argv[optind - 1]);
                        return 2;
                }
        }
        if (optind != argc || *link_fd < 0 || !c->cert || !c->key || !c->web_dir) {
                fprintf(stderr, "vpsd-edge: --link-fd, --cert, --key and --web-dir are required; try --help\n");
                return 2;
        }
        return 0;
}

int main(int argc, char **argv)
{
        static const struct edge_link_callbacks link_callbacks = { on_link_message, on_link_lost };
        struct edge edge = { .exit_code = 0 };
        struct edge_config *c = &edge.config;
        enum log_level level = LOG_LEVEL_INFO;
        struct edge_msg ready = { .type = EDGE_MSG_READY };
        struct error err = { 0 };
        struct rlimit nofile;
        uv_loop_t loop;
        int link_fd = -1, r;

        str_copy(c->listen_address, sizeof(c->listen_address), "127.0.0.1");
        c->port = 8443;
        c->user = "vpsd-edge";
        c->idle_timeout = 900;
        c->max_sessions = 1000;
        c->max_pending = 256;
        c->max_per_address = 64;
        r = parse_args(argc, argv, c, &link_fd, &level);
        if (r)
                return r;
        log_set_level(level);
        signal(SIGPIPE, SIG_IGN);
        /* Two fds a session; the hard limit is root's to raise, now. */
        nofile.rlim_cur = nofile.rlim_max = (rlim_t)c->max_sessions * 2 + 256;
        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (rlim_t)c->max_sessions * 2 + 256) {
                nofile.rlim_cur = (rlim_t)c->max_sessions * 2 + 256;
                if (nofile.rlim_max < nofile.rlim_cur)
                        nofile.rlim_max = nofile.rlim_cur;
                setrlimit(RLIMIT_NOFILE, &nofile);
        }

        uv_loop_init(&loop);
        edge.loop = &loop;
        /* As root: the port may be privileged and the key root's alone. */
        if (edge_server_start(&edge, &err) < 0) {
                log_error("edge cannot start", "error=\"%s\"", err.msg);
                return 1;
        }
        ready.port = (uint16_t)edge_server_port(&edge);
        str_copy(ready.address, sizeof(ready.address), c->listen_address);
        /* From here on, never root again: the rest parses the internet. */
        if (getuid() == 0 || geteuid() == 0) {
                if (drop_privileges(c->user, &err) < 0) {
                        log_error("edge cannot start", "error=\"%s\"", err.msg);
                        return 1;
                }
        } else if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                return 1;
        }
        if (edge_link_open(&loop, link_fd, &link_callbacks, &edge, &edge.link, &err) < 0 ||
            edge_link_send(edge.link, &ready, -1) < 0) {
                log_error("edge cannot reach vpsd", "error=\"%s\"", err.msg);
                return 1;
        }
        uv_signal_init(&loop, &sig_term);
        uv_signal_init(&loop, &sig_int);
        sig_term.data = sig_int.data = &edge;
        uv_signal_start(&sig_term, on_signal, SIGTERM);
        uv_signal_start(&sig_int, on_signal, SIGINT);
        log_info("edge ready", "address=%s port=%u uid=%u", c->listen_address, ready.port, (unsigned)getuid());
        uv_run(&loop, UV_RUN_DEFAULT);
        edge_session_free_spares(&edge);
        edge_peers_free(&edge);
        uv_loop_close(&loop);
        return edge.exit_code;
}
