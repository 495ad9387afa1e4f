/* netfilter/nf: the handle's contract before anything reaches the kernel:
 * a bad table name, input checked before the model, and changes refused
 * (-ESTALE) until a rebuild has made the model the kernel's. Opens a
 * netlink socket, sends nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "netfilter/nf.h"

static void bad_table_name(void **state)
{
        struct error err = { 0 };
        struct nf *nf = NULL;
        char long_name[300];

        (void)state;
        assert_int_equal(nf_open(&nf, "", &err), -EINVAL);
        memset(long_name, 'a', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        assert_int_equal(nf_open(&nf, long_name, &err), -EINVAL);
        assert_null(nf);
        assert_null(nf_close(NULL));
}

static void nothing_before_a_rebuild(void **state)
{
        struct in_addr v4;
        struct nf_guest g = { .ifname = "vnet0", .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .ipv4 = &v4, .n_ipv4 = 1 };
        struct nf_counters c;
        struct error err = { 0 };
        struct nf *nf = NULL;

        (void)state;
        inet_pton(AF_INET, "192.0.2.10", &v4);
        assert_int_equal(nf_open(&nf, NULL, &err), 0);
        assert_int_equal(nf_guest_count(nf), 0);

        assert_int_equal(nf_guest_apply(nf, &g, &err), -ESTALE);
        assert_non_null(strstr(err.msg, "guest port `vnet0`"));
        assert_int_equal(nf_guest_remove(nf, "vnet0", &err), -ESTALE);
        assert_int_equal(nf_check(nf, &err), -ESTALE);

        /* Bad input is refused first, whatever the handle's state. */
        g.mac[0] = 0x01;
        assert_int_equal(nf_guest_apply(nf, &g, &err), -EINVAL);
        assert_int_equal(nf_guest_remove(nf, "bad name", &err), -EINVAL);
        assert_int_equal(nf_counters_read(nf, "a/b", &c, &err), -EINVAL);
        g.mac[0] = 0x52;
        assert_int_equal(nf_rebuild(nf, (struct nf_guest[]){ g, g }, 2, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "given twice"));
        assert_int_equal(nf_guest_count(nf), 0);
        nf = nf_close(nf);
        assert_null(nf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(bad_table_name),
                cmocka_unit_test(nothing_before_a_rebuild),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
