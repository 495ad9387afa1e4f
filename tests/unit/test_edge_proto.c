/* common/edge_proto: the vpsd <-> vpsd-edge messages, encoded and decoded,
 * every malformed one refused, and a file descriptor passed over a real
 * SOCK_SEQPACKET socketpair. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/edge_proto.h"

static void test_round_trip(void **state)
{
        struct edge_msg m = { .type = EDGE_MSG_OPEN, .session = 0x0102030405060708ull, .kind = CONSOLE_SERIAL,
                              .address = "2001:db8::1", .ticket = "abc.def", .port = 8443 }, back;
        uint8_t buf[EDGE_MSG_MAX];
        int n;

        (void)state;
        n = edge_msg_encode(&m, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(edge_msg_decode(buf, (size_t)n, &back, NULL), 0);
        assert_int_equal(back.type, EDGE_MSG_OPEN);
        assert_true(back.session == m.session);
        assert_int_equal(back.kind, CONSOLE_SERIAL);
        assert_int_equal(back.port, 8443);
        assert_string_equal(back.address, m.address);
        assert_string_equal(back.ticket, m.ticket);
}

static void test_upload_messages(void **state)
{
        struct edge_msg m = { .type = EDGE_MSG_UPLOAD, .session = 9, .address = "127.0.0.1", .ticket = "a.b",
                              .text = "Debian 12 ../../etc/passwd" },
                        back;
        uint8_t buf[EDGE_MSG_MAX];
        struct error err = { 0 };
        int n;

        (void)state;
        n = edge_msg_encode(&m, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(edge_msg_decode(buf, (size_t)n, &back, NULL), 0);
        assert_string_equal(back.text, m.text);
        assert_string_equal(back.ticket, "a.b");
        m = (struct edge_msg){ .type = EDGE_MSG_UPLOAD_DONE, .session = 9, .size = 0x123456789abull };
        n = edge_msg_encode(&m, buf, sizeof(buf));
        assert_int_equal(edge_msg_decode(buf, (size_t)n, &back, NULL), 0);
        assert_true(back.size == 0x123456789abull);
        m = (struct edge_msg){ .type = EDGE_MSG_UPLOAD_RESULT, .session = 9, .status = 413, .text = "too big" };
        n = edge_msg_encode(&m, buf, sizeof(buf));
        assert_int_equal(edge_msg_decode(buf, (size_t)n, &back, NULL), 0);
        assert_int_equal(back.status, 413);
        assert_string_equal(back.text, "too big");
        /* A control character in the text, and a short upload message. */
        buf[n - 1] = '\n';
        assert_int_equal(edge_msg_decode(buf, (size_t)n, &back, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "text"));
        assert_int_equal(edge_msg_decode(buf, 20, &back, &err), -EBADMSG);
        /* A console message carries no upload fields: its bytes as before. */
        m = (struct edge_msg){ .type = EDGE_MSG_CLOSE, .session = 1, .text = "ignored" };
        assert_int_equal(edge_msg_encode(&m, buf, sizeof(buf)), 16);
}

static void test_malformed(void **state)
{
        struct edge_msg m = { .type = EDGE_MSG_OPEN, .session = 1, .address = "127.0.0.1", .ticket = "t" }, back;
        uint8_t buf[EDGE_MSG_MAX], bad[EDGE_MSG_MAX];
        struct error err = { 0 };
        int n = edge_msg_encode(&m, buf, sizeof(buf));

        (void)state;
        assert_int_equal(edge_msg_decode(buf, 3, &back, &err), -EBADMSG);
        assert_int_equal(edge_msg_decode(buf, (size_t)n - 1, &back, &err), -EBADMSG); /* lengths do not add up */
        memcpy(bad, buf, (size_t)n);
        bad[0] = 99;
        assert_int_equal(edge_msg_decode(bad, (size_t)n, &back, &err), -EBADMSG);
        memcpy(bad, buf, (size_t)n);
        bad[1] = CONSOLE_KIND_COUNT;
        assert_int_equal(edge_msg_decode(bad, (size_t)n, &back, &err), -EBADMSG);
        memcpy(bad, buf, (size_t)n);
        bad[n - 1] = '\n'; /* a control character in the ticket */
        assert_int_equal(edge_msg_decode(bad, (size_t)n, &back, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "ticket"));
        m.type = 0;
        assert_int_equal(edge_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
}

/* What the decoder refuses is never encoded: a ticket a client sent with a
 * space or a control byte (lws decodes %XX), an address that is an error
 * message, a text with a newline. */
static void test_encoder_refuses_what_decoder_would(void **state)
{
        static const char *const tickets[] = { "a b", "a\tb", "\r\nX: 1", "\x7f", "\xc3\xa9", "\x01" };
        struct edge_msg m = { .type = EDGE_MSG_OPEN, .session = 1, .address = "127.0.0.1" };
        uint8_t buf[EDGE_MSG_MAX];

        (void)state;
        for (size_t i = 0; i < sizeof(tickets) / sizeof(tickets[0]); i++) {
                strcpy(m.ticket, tickets[i]);
                assert_int_equal(edge_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
        }
        strcpy(m.ticket, "abc.def");
        strcpy(m.address, "getpeername: Transport endpoint is not connected");
        assert_int_equal(edge_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
        m = (struct edge_msg){ .type = EDGE_MSG_UPLOAD, .session = 2, .address = "::1", .ticket = "a.b",
                               .text = "two\nlines" };
        assert_int_equal(edge_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
        strcpy(m.text, "Debian 12 netinst");
        assert_true(edge_msg_encode(&m, buf, sizeof(buf)) > 0);
}

static void test_ticket_valid(void **state)
{
        char long_ticket[EDGE_TICKET_MAX + 2];

        (void)state;
        assert_true(edge_ticket_valid("eyJhIjoxfQ.c2ln"));
        assert_false(edge_ticket_valid("a b"));
        assert_false(edge_ticket_valid("a\r\nb"));
        assert_false(edge_ticket_valid("a\xff" "b"));
        assert_false(edge_ticket_valid("a\x7f"));
        memset(long_ticket, 'a', sizeof(long_ticket) - 1);
        long_ticket[sizeof(long_ticket) - 1] = '\0';
        assert_false(edge_ticket_valid(long_ticket));
        long_ticket[EDGE_TICKET_MAX] = '\0';
        assert_true(edge_ticket_valid(long_ticket));
}

static void test_fd_passing(void **state)
{
        struct edge_msg m = { .type = EDGE_MSG_GRANT, .session = 7 }, back;
        int sp[2], pipefd[2], fd = -1;
        char c = 0;

        (void)state;
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        assert_int_equal(edge_msg_recv(sp[1], &back, &fd, NULL), -EAGAIN);
        assert_int_equal(edge_msg_send(sp[0], &m, pipefd[1]), 0);
        close(pipefd[1]);
        assert_int_equal(edge_msg_recv(sp[1], &back, &fd, NULL), 0);
        assert_int_equal(back.type, EDGE_MSG_GRANT);
        assert_true(fd >= 0);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(write(fd, "x", 1), 1);
        assert_int_equal(read(pipefd[0], &c, 1), 1);
        assert_int_equal(c, 'x');
        close(fd);
        close(sp[0]);
        assert_int_equal(edge_msg_recv(sp[1], &back, &fd, NULL), -ECONNRESET);
        close(sp[1]);
        close(pipefd[0]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_encoder_refuses_what_decoder_would),
                cmocka_unit_test(test_upload_messages),
                cmocka_unit_test(test_ticket_valid),
                cmocka_unit_test(test_fd_passing),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
