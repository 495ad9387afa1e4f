#include "edge_proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

/* On the wire, little-endian: u8 type, u8 kind, u16 port, u64 session,
 * u16 address length, u16 ticket length, then the two strings. The upload
 * messages follow them with u16 status, u16 text length, u64 size and the
 * text. */
#define HEADER_SIZE 16
#define UPLOAD_SIZE 12

static const char *const kind_names[] = { "vnc", "serial" };

const char *console_kind_name(enum console_kind kind)
{
        return (unsigned)kind < CONSOLE_KIND_COUNT ? kind_names[kind] : "?";
}

int console_kind_parse(const char *name, enum console_kind *ret_kind)
{
        for (unsigned i = 0; i < CONSOLE_KIND_COUNT; i++)
                if (strcmp(name, kind_names[i]) == 0) {
                        *ret_kind = (enum console_kind)i;
                        return 0;
                }
        return -EINVAL;
}

bool edge_msg_is_upload(enum edge_msg_type type) { return type >= EDGE_MSG_UPLOAD && type <= EDGE_MSG_UPLOAD_RESULT; }

static void put16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void put64(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v |= (uint64_t)p[i] << (8 * i);
        return v;
}

/* The index of the first byte that is not printable ASCII (a space is,
 * where spaces is set: labels, messages), or n. One rule both ways: the
 * encoder refuses what the decoder would, so a string from a client that
 * breaks it fails where it is sent, as a refusal, and never reaches vpsd
 * as a malformed message (vpsd kills an edge that sends one). */
static size_t string_bad_byte(const uint8_t *p, size_t n, bool spaces)
{
        size_t i = 0;

        while (i < n && p[i] >= (spaces ? 0x20 : 0x21) && p[i] <= 0x7e)
                i++;
        return i;
}

bool edge_ticket_valid(const char *ticket)
{
        size_t n = strnlen(ticket, EDGE_TICKET_MAX + 1);

        return n <= EDGE_TICKET_MAX && string_bad_byte((const uint8_t *)ticket, n, false) == n;
}

int edge_msg_encode(const struct edge_msg *msg, uint8_t *buf, size_t size)
{
        size_t alen = strnlen(msg->address, sizeof(msg->address)),
               tlen = strnlen(msg->ticket, sizeof(msg->ticket)), xlen = strnlen(msg->text, sizeof(msg->text)),
               total;
        bool upload = edge_msg_is_upload(msg->type);

        if (msg->type < EDGE_MSG_READY || msg->type > EDGE_MSG_UPLOAD_RESULT ||
            (unsigned)msg->kind >= CONSOLE_KIND_COUNT || alen > EDGE_ADDRESS_MAX || tlen > EDGE_TICKET_MAX ||
            xlen > EDGE_TEXT_MAX)
                return -EINVAL;
        if (string_bad_byte((const uint8_t *)msg->address, alen, false) < alen ||
            string_bad_byte((const uint8_t *)msg->ticket, tlen, false) < tlen ||
            (upload && string_bad_byte((const uint8_t *)msg->text, xlen, true) < xlen))
                return -EINVAL;
        total = HEADER_SIZE + alen + tlen + (upload ? UPLOAD_SIZE + xlen : 0);
        if (total > size)
                return -ENOBUFS;
        buf[0] = (uint8_t)msg->type;
        buf[1] = (uint8_t)msg->kind;
        put16(buf + 2, msg->port);
        put64(buf + 4, msg->session);
        put16(buf + 12, (uint16_t)alen);
        put16(buf + 14, (uint16_t)tlen);
        memcpy(buf + HEADER_SIZE, msg->address, alen);
        memcpy(buf + HEADER_SIZE + alen, msg->ticket, tlen);
        if (upload) {
                uint8_t *u = buf + HEADER_SIZE + alen + tlen;
                put16(u, msg->status);
                put16(u + 2, (uint16_t)xlen);
                put64(u + 4, msg->size);
                memcpy(u + UPLOAD_SIZE, msg->text, xlen);
        }
        return (int)total;
}

static int string_take(const char *field, const uint8_t *p, size_t n, size_t max, bool spaces, char *out,
                       struct error *err)
{
        size_t bad;

        if (n > max)
                return error_set(err, -EBADMSG, "%s longer than %zu bytes", field, max);
        bad = string_bad_byte(p, n, spaces);
        if (bad < n)
                return error_set(err, -EBADMSG, "%s: byte %zu is not printable", field, bad + 1);
        memcpy(out, p, n);
        out[n] = '\0';
        return 0;
}

int edge_msg_decode(const uint8_t *buf, size_t len, struct edge_msg *ret, struct error *err)
{
        struct edge_msg m = { 0 };
        size_t alen, tlen, xlen = 0, fixed;
        const uint8_t *u;

        if (len < HEADER_SIZE)
                return error_set(err, -EBADMSG, "message of %zu bytes is shorter than its header", len);
        if (buf[0] < EDGE_MSG_READY || buf[0] > EDGE_MSG_UPLOAD_RESULT)
                return error_set(err, -EBADMSG, "unknown message type %u", buf[0]);
        if (buf[1] >= CONSOLE_KIND_COUNT)
                return error_set(err, -EBADMSG, "unknown console kind %u", buf[1]);
        m.type = buf[0];
        m.kind = buf[1];
        m.port = get16(buf + 2);
        m.session = get64(buf + 4);
        alen = get16(buf + 12);
        tlen = get16(buf + 14);
        fixed = HEADER_SIZE + alen + tlen;
        u = buf + fixed;
        if (edge_msg_is_upload(m.type)) {
                if (fixed + UPLOAD_SIZE > len)
                        return error_set(err, -EBADMSG, "upload message of %zu bytes is shorter than its fields", len);
                m.status = get16(u);
                xlen = get16(u + 2);
                m.size = get64(u + 4);
                fixed += UPLOAD_SIZE;
                u += UPLOAD_SIZE;
        }
        if (fixed + xlen != len)
                return error_set(err, -EBADMSG, "message lengths (%zu + %zu + %zu) do not add up to %zu bytes", alen,
                                 tlen, xlen, len - HEADER_SIZE);
        if (string_take("address", buf + HEADER_SIZE, alen, EDGE_ADDRESS_MAX, false, m.address, err) < 0 ||
            string_take("ticket", buf + HEADER_SIZE + alen, tlen, EDGE_TICKET_MAX, false, m.ticket, err) < 0 ||
            string_take("text", u, xlen, EDGE_TEXT_MAX, true, m.text, err) < 0)
                return err ? err->code : -EBADMSG;
        *ret = m;
        return 0;
}

int edge_msg_send(int sock, const struct edge_msg *msg, int fd)
{
        uint8_t buf[EDGE_MSG_MAX];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        int n = edge_msg_encode(msg, buf, sizeof(buf));

        if (n < 0)
                return n;
        iov.iov_base = buf;
        iov.iov_len = (size_t)n;
        if (fd >= 0) {
                struct cmsghdr *c;
                memset(&control, 0, sizeof(control));
                mh.msg_control = control.buf;
                mh.msg_controllen = sizeof(control.buf);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        for (;;) {
                ssize_t sent = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (sent < 0 && errno == EINTR)
                        continue;
                if (sent < 0)
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                return 0;
        }
}

int edge_msg_recv(int sock, struct edge_msg *ret_msg, int *ret_fd, struct error *err)
{
        uint8_t buf[EDGE_MSG_MAX + 1];
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(4 * sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        cleanup_close int fd = -1;
        ssize_t n;

        *ret_fd = -1;
        do
                n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : error_set_errno(err, -errno, "receive");
        /* Every fd that came is ours to close, wanted or not. */
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                        int got;
                        memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (fd < 0)
                                fd = got;
                        else
                                close(got);
                }
        }
        if (n == 0)
                return error_set(err, -ECONNRESET, "the peer closed the socketpair");
        if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
                return error_set(err, -EBADMSG, "message longer than %d bytes", EDGE_MSG_MAX);
        if (edge_msg_decode(buf, (size_t)n, ret_msg, err) < 0)
                return -EBADMSG;
        *ret_fd = steal_fd(&fd);
        return 0;
}
