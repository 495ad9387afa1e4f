/* ws_client: the websocket client of bench_console.py, the same for
 * vpsd-edge and for websockify: TLS 1.3 (OpenSSL; the bench's self-signed
 * pair is not verified), the RFC 6455 handshake with an Origin, masked
 * binary frames out, the payload of data frames counted in (a proxy may
 * cut the echo into other frames than were sent). In C so that the client
 * costs less than the proxy it measures; it reports its own CPU time.
 *
 *   ws_client throughput PORT PATH ORIGIN SECONDS FRAME_BYTES
 *       one session: frames sent back to back while at most WINDOW bytes
 *       are unanswered, for one warm-up second and then SECONDS; prints
 *       {"bytes":…,"seconds":…,"cpu_seconds":…}: echoed bytes counted
 *   ws_client latency PORT PATH ORIGIN COUNT FRAME_BYTES
 *       one session, one frame at a time: the microseconds until all of
 *       its echo is back, COUNT times after 100 unmeasured;
 *       prints {"p50_us":…,"p99_us":…,"max_us":…}
 *   ws_client hold PORT PATHS_FILE ORIGIN COUNT
 *       COUNT sessions, the i-th on line i of PATHS_FILE (all on its
 *       first line when it has one), one at a time; each echoes a byte
 *       once. Prints "open N" (fewer than COUNT when one failed, or when
 *       the machine's available memory fell under 2 GiB), then holds them
 *       idle until stdin ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "ws_frame.h"

#define WINDOW (1024 * 1024)
#define MEMORY_FLOOR_KIB (2ULL * 1024 * 1024)

static SSL_CTX *ctx;

struct ws {
        int fd;
        SSL *ssl;
        struct ws_rx rx;
        bool closed; /* a close frame came */
};

static void die(const char *what)
{
        fprintf(stderr, "ws_client: %s: %s\n", what, errno ? strerror(errno) : "");
        ERR_print_errors_fp(stderr);
        exit(1);
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               (double)ru.ru_stime.tv_usec / 1e6;
}

/* Feeds received bytes; returns how many of them were data-frame payload. */
static uint64_t rx_feed(struct ws *w, const unsigned char *p, size_t n)
{
        struct ws_rx *r = &w->rx;
        uint64_t data = 0;

        while (n) {
                if (r->payload_left) {
                        size_t take = r->payload_left < n ? (size_t)r->payload_left : n;
                        if (r->opcode <= 2)
                                data += take;
                        r->payload_left -= take;
                        p += take;
                        n -= take;
                        continue;
                }
                n--;
                if (ws_rx_header_byte(r, *p++) && r->opcode == 8)
                        w->closed = true;
        }
        return data;
}

/* A masked binary frame of size bytes. One mask for every frame a run
 * sends (a browser draws one per frame): the server unmasks as much. */
static unsigned char *frame_make(size_t size, size_t *ret_len)
{
        size_t h = 2 + (size < 126 ? 0 : size <= 0xffff ? 2 : 8) + 4;
        unsigned char *f = malloc(h + size), mask[4];

        if (!f)
                die("malloc");
        RAND_bytes(mask, sizeof(mask));
        f[0] = 0x82;
        if (size < 126) {
                f[1] = 0x80 | (unsigned char)size;
        } else if (size <= 0xffff) {
                f[1] = 0x80 | 126;
                f[2] = (unsigned char)(size >> 8);
                f[3] = (unsigned char)size;
        } else {
                f[1] = 0x80 | 127;
                for (int i = 0; i < 8; i++)
                        f[2 + i] = (unsigned char)((uint64_t)size >> (56 - 8 * i));
        }
        memcpy(f + h - 4, mask, 4);
        for (size_t i = 0; i < size; i++)
                f[h + i] = (unsigned char)('a' + i % 26) ^ mask[i % 4];
        *ret_len = h + size;
        return f;
}

static int ws_connect(struct ws *w, int port, const char *path, const char *origin)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char request[2048], reply[4096];
        size_t got = 0;
        int one = 1, n;

        memset(w, 0, sizeof(*w));
        w->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (w->fd < 0 || connect(w->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -1;
        setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        w->ssl = SSL_new(ctx);
        SSL_set_fd(w->ssl, w->fd);
        if (SSL_connect(w->ssl) != 1)
                return -1;
        n = snprintf(request, sizeof(request),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Origin: %s\r\n\r\n",
                     path, port, origin);
        if (n <= 0 || (size_t)n >= sizeof(request) || SSL_write(w->ssl, request, n) != n)
                return -1;
        /* Byte by byte up to the blank line: nothing after it is eaten. */
        while (got < sizeof(reply) - 1) {
                if (SSL_read(w->ssl, reply + got, 1) != 1)
                        return -1;
                got++;
                if (got >= 4 && memcmp(reply + got - 4, "\r\n\r\n", 4) == 0)
                        break;
        }
        reply[got] = '\0';
        if (strncmp(reply, "HTTP/1.1 101", 12) != 0) {
                errno = 0;
                fprintf(stderr, "ws_client: %s: handshake answered: %.60s\n", path, reply);
                return -1;
        }
        return 0;
}

static void ws_close(struct ws *w)
{
        SSL_free(w->ssl);
        close(w->fd);
}

/* Blocking: sends a frame, reads until want payload bytes came back. */
static int ws_roundtrip(struct ws *w, const unsigned char *frame, size_t len, uint64_t want)
{
        unsigned char buf[65536];
        uint64_t got = 0;

        if (SSL_write(w->ssl, frame, (int)len) != (int)len)
                return -1;
        while (got < want) {
                int n = SSL_read(w->ssl, buf, sizeof(buf));
                if (n <= 0)
                        return -1;
                got += rx_feed(w, buf, (size_t)n);
                if (w->closed) {
                        errno = 0;
                        return -1;
                }
        }
        return 0;
}

static int run_throughput(struct ws *w, double seconds, size_t frame_size)
{
        static unsigned char buf[1 << 18];
        size_t len, sent_in_frame = 0;
        unsigned char *frame = frame_make(frame_size, &len);
        uint64_t sent = 0, echoed = 0, counted = 0;
        double start = now_s(), measure_from = start + 1, end = measure_from + seconds, cpu0 = 0;
        bool measuring = false, want_write = false;

        fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
        SSL_set_mode(w->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        for (;;) {
                double t = now_s();
                if (!measuring && t >= measure_from) {
                        measuring = true;
                        counted = 0;
                        cpu0 = cpu_s();
                        measure_from = t;
                }
                if (t >= end)
                        break;
                /* Read all there is. */
                for (;;) {
                        int n = SSL_read(w->ssl, buf, sizeof(buf));
                        if (n > 0) {
                                uint64_t d = rx_feed(w, buf, (size_t)n);
                                echoed += d;
                                counted += d;
                                continue;
                        }
                        int e = SSL_get_error(w->ssl, n);
                        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                                break;
                        die("read");
                }
                if (w->closed) {
                        errno = 0;
                        die("the server closed the session");
                }
                /* Send while the window allows. */
                want_write = false;
                while (sent - echoed < WINDOW) {
                        int n = SSL_write(w->ssl, frame + sent_in_frame, (int)(len - sent_in_frame));
                        if (n <= 0) {
                                int e = SSL_get_error(w->ssl, n);
                                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                                        want_write = true;
                                        break;
                                }
                                die("write");
                        }
                        sent_in_frame += (size_t)n;
                        if (sent_in_frame == len) {
                                sent_in_frame = 0;
                                sent += frame_size;
                        }
                }
                struct pollfd p = { .fd = w->fd, .events = POLLIN | (want_write ? POLLOUT : 0) };
                if (SSL_pending(w->ssl) == 0)
                        poll(&p, 1, 100);
        }
        printf("{\"bytes\": %llu, \"seconds\": %.3f, \"cpu_seconds\": %.3f}\n", (unsigned long long)counted,
               now_s() - measure_from, cpu_s() - cpu0);
        free(frame);
        return 0;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static int run_latency(struct ws *w, int count, size_t frame_size)
{
        size_t len;
        unsigned char *frame = frame_make(frame_size, &len);
        double *us = calloc((size_t)count, sizeof(double));

        if (!us)
                die("calloc");
        for (int i = -100; i < count; i++) {
                double t0 = now_s();
                if (ws_roundtrip(w, frame, len, frame_size) < 0)
                        die("round trip");
                if (i >= 0)
                        us[i] = (now_s() - t0) * 1e6;
        }
        qsort(us, (size_t)count, sizeof(double), cmp_double);
        printf("{\"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f}\n", us[count / 2],
               us[(size_t)((count * 99 + 99) / 100) - 1], us[count - 1]);
        free(us);
        free(frame);
        return 0;
}

static unsigned long long mem_available_kib(void)
{
        char line[256];
        unsigned long long kib = ~0ULL;
        FILE *f = fopen("/proc/meminfo", "r");

        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        return kib;
}

static int run_hold(int port, const char *paths_file, const char *origin, int count)
{
        struct rlimit nofile = { (rlim_t)count + 64, (rlim_t)count + 64 };
        struct ws *ws = calloc((size_t)count, sizeof(*ws));
        char **paths = calloc((size_t)count, sizeof(char *)), line[2048];
        FILE *f = fopen(paths_file, "r");
        int n_paths = 0, n_open = 0;
        size_t len;
        unsigned char *frame = frame_make(1, &len);

        if (!ws || !paths || !f)
                die(paths_file);
        setrlimit(RLIMIT_NOFILE, &nofile);
        while (n_paths < count && fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                paths[n_paths++] = strdup(line);
        }
        fclose(f);
        for (; n_open < count; n_open++) {
                if (n_open % 50 == 0 && mem_available_kib() < MEMORY_FLOOR_KIB)
                        break;
                /* A proxy that cannot take more is a result, not a crash. */
                if (ws_connect(&ws[n_open], port, paths[n_paths == 1 ? 0 : n_open], origin) < 0 ||
                    ws_roundtrip(&ws[n_open], frame, len, 1) < 0) {
                        fprintf(stderr, "ws_client: session %d failed: %s\n", n_open + 1,
                                errno ? strerror(errno) : "closed by the server");
                        ERR_print_errors_fp(stderr);
                        if (ws[n_open].ssl)
                                ws_close(&ws[n_open]);
                        break;
                }
        }
        printf("open %d\n", n_open);
        fflush(stdout);
        while (read(0, line, sizeof(line)) > 0)
                ;
        for (int i = 0; i < n_open; i++)
                ws_close(&ws[i]);
        return 0;
}

int main(int argc, char **argv)
{
        if (argc < 7 && !(argc == 6 && strcmp(argv[1], "hold") == 0)) {
                fprintf(stderr, "usage: ws_client throughput|latency PORT PATH ORIGIN SECONDS|COUNT FRAME_BYTES\n"
                                "       ws_client hold PORT PATHS_FILE ORIGIN COUNT\n");
                return 2;
        }
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        /* Records read from the socket many at a time (each read loop
         * goes on until OpenSSL wants more, so none sits unread): the
         * client costs less, and is less often what a run measures. */
        SSL_CTX_set_read_ahead(ctx, 1);
        SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024);
        int port = atoi(argv[2]);
        if (strcmp(argv[1], "hold") == 0)
                return run_hold(port, argv[3], argv[4], atoi(argv[5]));
        struct ws w;
        if (ws_connect(&w, port, argv[3], argv[4]) < 0)
                die("connect");
        if (strcmp(argv[1], "throughput") == 0)
                return run_throughput(&w, atof(argv[5]), (size_t)atol(argv[6]));
        if (strcmp(argv[1], "latency") == 0)
                return run_latency(&w, atoi(argv[5]), (size_t)atol(argv[6]));
        fprintf(stderr, "ws_client: unknown measurement %s\n", argv[1]);
        return 2;
}
