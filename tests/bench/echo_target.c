/* echo_target: the console bench's stand-in for a guest's console socket.
 * Listens on every unix socket path given and sends back what each
 * connection sends, as fast as the socket takes it: one thread, epoll, one
 * 64 KiB buffer a connection, reading stopped while a write is pending. The
 * same server stands behind vpsd-edge (through vpsd, which connects it as a
 * service's serial.sock) and behind websockify (--unix-target).
 *
 *   echo_target PATH...      prints "ready" once listening; SIGTERM ends it
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BUFFER_SIZE (64 * 1024)
#define MAX_LISTENERS 64

struct conn {
        int fd;
        size_t off, len; /* buf[off, len) still to write back */
        char buf[BUFFER_SIZE];
};

static int listeners[MAX_LISTENERS];
static int n_listeners;

static int listen_on(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "echo_target: path too long: %s\n", path);
                return -1;
        }
        strcpy(sa.sun_path, path);
        unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
                fprintf(stderr, "echo_target: listen on %s: %s\n", path, strerror(errno));
                return -1;
        }
        chmod(path, 0666);
        return fd;
}

static void conn_close(struct conn *c)
{
        close(c->fd);
        free(c);
}

/* Writes what is buffered; then waits for input, or for room to write. */
static int conn_flush(int ep, struct conn *c)
{
        struct epoll_event ev = { .data.ptr = c };

        while (c->off < c->len) {
                ssize_t n = write(c->fd, c->buf + c->off, c->len - c->off);
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n <= 0)
                        return -1;
                c->off += (size_t)n;
        }
        if (c->off == c->len)
                c->off = c->len = 0;
        ev.events = c->len ? EPOLLOUT : EPOLLIN;
        return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_ready(int ep, struct conn *c, unsigned events)
{
        if (events & EPOLLOUT) {
                if (conn_flush(ep, c) < 0)
                        conn_close(c);
                return;
        }
        ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
        if (n < 0 && errno == EAGAIN)
                return;
        if (n <= 0) {
                conn_close(c);
                return;
        }
        c->off = 0;
        c->len = (size_t)n;
        if (conn_flush(ep, c) < 0)
                conn_close(c);
}

static void on_accept(int ep, int listener)
{
        for (;;) {
                int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0)
                        return;
                struct conn *c = malloc(sizeof(*c));
                struct epoll_event ev = { .events = EPOLLIN };
                if (!c) {
                        close(fd);
                        continue;
                }
                c->fd = fd;
                c->off = c->len = 0;
                ev.data.ptr = c;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                        conn_close(c);
        }
}

int main(int argc, char **argv)
{
        struct rlimit nofile = { 65536, 65536 };
        struct epoll_event events[256];
        int ep;

        if (argc < 2 || argc - 1 > MAX_LISTENERS) {
                fprintf(stderr, "usage: echo_target PATH... (at most %d)\n", MAX_LISTENERS);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        setrlimit(RLIMIT_NOFILE, &nofile);
        ep = epoll_create1(EPOLL_CLOEXEC);
        for (int i = 1; i < argc; i++) {
                struct epoll_event ev = { .events = EPOLLIN };
                int fd = listen_on(argv[i]);
                if (fd < 0)
                        return 1;
                listeners[n_listeners] = fd;
                /* Listeners are told from connections by a small integer
                 * where a connection has its pointer. */
                ev.data.u64 = (uint64_t)n_listeners++;
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        printf("ready\n");
        fflush(stdout);
        for (;;) {
                int n = epoll_wait(ep, events, 256, -1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return 1;
                for (int i = 0; i < n; i++) {
                        if (events[i].data.u64 < MAX_LISTENERS)
                                on_accept(ep, listeners[events[i].data.u64]);
                        else
                                on_ready(ep, events[i].data.ptr, events[i].events);
                }
        }
}
