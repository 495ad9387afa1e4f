/* common/linebuf: newline framing with a line-length limit, and that a
 * refused append changes nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/linebuf.h"

static int append_str(struct linebuf *lb, const char *s)
{
        return linebuf_append(lb, s, strlen(s));
}

/* Takes the next line and checks it is want (NUL-terminated, right length). */
static void expect_line(struct linebuf *lb, const char *want)
{
        char *line = NULL;
        size_t len = 0;

        assert_true(linebuf_next(lb, &line, &len));
        assert_non_null(line);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(line, want, len);
        assert_int_equal(line[len], '\0');
}

static void expect_no_line(struct linebuf *lb)
{
        char *line = (char *)"untouched";
        size_t len = 12345;

        assert_false(linebuf_next(lb, &line, &len));
        assert_string_equal(line, "untouched");
        assert_int_equal(len, 12345);
}

/* A snapshot of everything a refused append must leave alone. */
struct snapshot {
        size_t len, start, tail, max;
        char *bytes;
};

static void snapshot_take(const struct linebuf *lb, struct snapshot *s)
{
        s->len = lb->len;
        s->start = lb->start;
        s->tail = lb->tail;
        s->max = lb->max;
        s->bytes = malloc(lb->len + 1);
        assert_non_null(s->bytes);
        if (lb->len)
                memcpy(s->bytes, lb->data, lb->len);
}

static void snapshot_expect_same(const struct linebuf *lb, struct snapshot *s)
{
        assert_int_equal(lb->len, s->len);
        assert_int_equal(lb->start, s->start);
        assert_int_equal(lb->tail, s->tail);
        assert_int_equal(lb->max, s->max);
        if (s->len)
                assert_memory_equal(lb->data, s->bytes, s->len);
        free(s->bytes);
        s->bytes = NULL;
}

static void test_empty(void **state)
{
        struct linebuf lb;

        (void)state;
        linebuf_init(&lb, 16);
        assert_int_equal(linebuf_pending(&lb), 0);
        expect_no_line(&lb);
        assert_int_equal(linebuf_append(&lb, "", 0), 0);
        assert_int_equal(linebuf_pending(&lb), 0);
        expect_no_line(&lb);
        linebuf_free(&lb);
        /* Freeing twice is harmless: free() left it empty. */
        linebuf_free(&lb);
}

static void test_split_across_appends(void **state)
{
        struct linebuf lb;

        (void)state;
        linebuf_init(&lb, 64);
        assert_int_equal(append_str(&lb, "{\"id\":"), 0);
        expect_no_line(&lb);
        assert_int_equal(linebuf_pending(&lb), 6);
        assert_int_equal(append_str(&lb, "1}"), 0);
        expect_no_line(&lb);
        assert_int_equal(append_str(&lb, "\n{\"id\""), 0);
        expect_line(&lb, "{\"id\":1}");
        expect_no_line(&lb);
        assert_int_equal(linebuf_pending(&lb), 5);
        assert_int_equal(append_str(&lb, ":2}\n"), 0);
        expect_line(&lb, "{\"id\":2}");
        expect_no_line(&lb);
        assert_int_equal(linebuf_pending(&lb), 0);
        linebuf_free(&lb);
}

static void test_byte_at_a_time(void **state)
{
        const char *stream = "one\ntwo\n\nthree\n";
        struct linebuf lb;

        (void)state;
        linebuf_init(&lb, 5);
        for (const char *p = stream; *p; p++)
                assert_int_equal(linebuf_append(&lb, p, 1), 0);
        expect_line(&lb, "one");
        expect_line(&lb, "two");
        expect_line(&lb, "");
        expect_line(&lb, "three");
        expect_no_line(&lb);
        linebuf_free(&lb);
}

static void test_several_lines_one_append(void **state)
{
        struct linebuf lb;

        (void)state;
        linebuf_init(&lb, 8);
        assert_int_equal(append_str(&lb, "a\nbb\n\nccc\ndd"), 0);
        assert_int_equal(linebuf_pending(&lb), 12);
        expect_line(&lb, "a");
        assert_int_equal(linebuf_pending(&lb), 10);
        expect_line(&lb, "bb");
        expect_line(&lb, "");
        expect_line(&lb, "ccc");
        expect_no_line(&lb);
        assert_int_equal(linebuf_pending(&lb), 2);
        assert_int_equal(append_str(&lb, "d\n"), 0);
        expect_line(&lb, "ddd");
        assert_int_equal(linebuf_pending(&lb), 0);
        linebuf_free(&lb);
}

static void test_empty_lines(void **state)
{
        struct linebuf lb;

        (void)state;
        /* max 0: only empty lines are possible. */
        linebuf_init(&lb, 0);
        assert_int_equal(append_str(&lb, "\n\n\n"), 0);
        expect_line(&lb, "");
        expect_line(&lb, "");
        expect_line(&lb, "");
        expect_no_line(&lb);
        assert_int_equal(append_str(&lb, "x"), -E2BIG);
        assert_int_equal(linebuf_pending(&lb), 0);
        linebuf_free(&lb);
}

static void test_exact_max(void **state)
{
        struct linebuf lb;

        (void)state;
        linebuf_init(&lb, 8);
        /* 8 bytes and the newline: accepted, before and after the '\n'. */
        assert_int_equal(append_str(&lb, "12345678"), 0);
        assert_int_equal(append_str(&lb, "\n"), 0);
        expect_line(&lb, "12345678");
        assert_int_equal(append_str(&lb, "abcdefgh\nABCDEFGH\n"), 0);
        expect_line(&lb, "abcdefgh");
        expect_line(&lb, "ABCDEFGH");
        expect_no_line(&lb);
        linebuf_free(&lb);
}

static void test_max_plus_one(void **state)
{
        struct linebuf lb;
        struct snapshot s;

        (void)state;
        linebuf_init(&lb, 8);
        assert_int_equal(append_str(&lb, "ok\npart"), 0);
        snapshot_take(&lb, &s);
        /* Terminated or not, 9 bytes is one too many. */
        assert_int_equal(append_str(&lb, "56789"), -E2BIG);
        snapshot_expect_same(&lb, &s);
        snapshot_take(&lb, &s);
        assert_int_equal(append_str(&lb, "56789\n"), -E2BIG);
        snapshot_expect_same(&lb, &s);
        /* A good line first does not let a later long one in. */
        snapshot_take(&lb, &s);
        assert_int_equal(append_str(&lb, "\nfine\n123456789\n"), -E2BIG);
        snapshot_expect_same(&lb, &s);
        assert_int_equal(linebuf_pending(&lb), 7);

        /* What was there before is still there, whole. */
        expect_line(&lb, "ok");
        expect_no_line(&lb);
        assert_int_equal(append_str(&lb, "5678\n"), 0);
        expect_line(&lb, "part5678");
        linebuf_free(&lb);

        /* On a fresh buffer: nothing allocated, nothing held. */
        linebuf_init(&lb, 8);
        assert_int_equal(append_str(&lb, "123456789"), -E2BIG);
        assert_int_equal(linebuf_pending(&lb), 0);
        assert_int_equal(lb.len, 0);
        expect_no_line(&lb);
        linebuf_free(&lb);
}

static void test_long_line_many_appends(void **state)
{
        struct linebuf lb;
        struct snapshot s;
        int r = 0, appends = 0;

        (void)state;
        linebuf_init(&lb, 100);
        /* Bounded, so that a broken limit fails here instead of looping. */
        while (r == 0 && appends < 1000) {
                snapshot_take(&lb, &s);
                r = append_str(&lb, "0123456");
                if (r == 0) {
                        free(s.bytes);
                        appends++;
                        expect_no_line(&lb);
                }
        }
        assert_int_equal(r, -E2BIG);
        /* 14 x 7 = 98 fit; the 15th would make 105. */
        assert_int_equal(appends, 14);
        snapshot_expect_same(&lb, &s);
        assert_int_equal(linebuf_pending(&lb), 98);
        /* Two more bytes still fit, a third does not. */
        assert_int_equal(append_str(&lb, "ab"), 0);
        assert_int_equal(append_str(&lb, "c"), -E2BIG);
        assert_int_equal(append_str(&lb, "\n"), 0);
        assert_int_equal(linebuf_pending(&lb), 101);
        {
                char *line;
                size_t len;

                assert_true(linebuf_next(&lb, &line, &len));
                assert_int_equal(len, 100);
                assert_int_equal(line[100], '\0');
        }
        linebuf_free(&lb);
}

/* The length of the unterminated line survives consuming the lines before
 * it (the buffer is compacted on the next append). */
static void test_tail_after_consume(void **state)
{
        struct linebuf lb;

        (void)state;
        linebuf_init(&lb, 5);
        assert_int_equal(append_str(&lb, "abc\nde"), 0);
        expect_line(&lb, "abc");
        assert_int_equal(append_str(&lb, "fgh"), 0);
        assert_int_equal(linebuf_pending(&lb), 5);
        assert_int_equal(append_str(&lb, "i"), -E2BIG);
        assert_int_equal(append_str(&lb, "\nvwxyz\n"), 0);
        expect_line(&lb, "defgh");
        expect_line(&lb, "vwxyz");
        expect_no_line(&lb);
        assert_int_equal(linebuf_pending(&lb), 0);
        linebuf_free(&lb);
}

/* Bytes are bytes: a NUL or a '\r' is part of the line. */
static void test_binary_bytes(void **state)
{
        static const char bytes[] = "a\0b\r\n";
        struct linebuf lb;
        char *line;
        size_t len;

        (void)state;
        linebuf_init(&lb, 16);
        assert_int_equal(linebuf_append(&lb, bytes, sizeof(bytes) - 1), 0);
        assert_true(linebuf_next(&lb, &line, &len));
        assert_int_equal(len, 4);
        assert_memory_equal(line, "a\0b\r", 4);
        linebuf_free(&lb);
}

/* Many lines through one buffer: what is held stays bounded by what is
 * pending, not by what went through. */
static void test_stream(void **state)
{
        struct linebuf lb;
        char msg[32];

        (void)state;
        linebuf_init(&lb, 32);
        for (int i = 0; i < 10000; i++) {
                snprintf(msg, sizeof(msg), "line %d\n", i);
                assert_int_equal(append_str(&lb, msg), 0);
                snprintf(msg, sizeof(msg), "line %d", i);
                expect_line(&lb, msg);
                assert_true(lb.len <= 32 + 1);
        }
        assert_int_equal(linebuf_pending(&lb), 0);
        linebuf_free(&lb);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_split_across_appends),
                cmocka_unit_test(test_byte_at_a_time),
                cmocka_unit_test(test_several_lines_one_append),
                cmocka_unit_test(test_empty_lines),
                cmocka_unit_test(test_exact_max),
                cmocka_unit_test(test_max_plus_one),
                cmocka_unit_test(test_long_line_many_appends),
                cmocka_unit_test(test_tail_after_consume),
                cmocka_unit_test(test_binary_bytes),
                cmocka_unit_test(test_stream),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
