/* netfilter/nf_guest: what a guest puts in the table (its elements and
 * objects), the derived link-local address, and the refusal of bad input
 * with a message naming the port, before anything reaches the kernel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nf_tables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netfilter/nf_guest.h"

static struct in_addr v4[3];
static struct in6_addr v6[2];

static struct nf_guest typical(void)
{
        struct nf_guest g = { .ifname = "vnet7", .mac = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef }, .ipv4 = v4,
                              .n_ipv4 = 2, .ipv6 = v6, .n_ipv6 = 1 };

        inet_pton(AF_INET, "192.0.2.10", &v4[0]);
        inet_pton(AF_INET, "192.0.2.11", &v4[1]);
        inet_pton(AF_INET6, "2001:db8::10", &v6[0]);
        inet_pton(AF_INET6, "2001:db8:1::10", &v6[1]);
        return g;
}

/* The elements of fp in set `set`, formatted, one per line. */
static void format_set(const struct nf_footprint *fp, enum nf_set_id set, char *out, size_t size)
{
        size_t len = 0;

        out[0] = '\0';
        for (size_t i = 0; i < fp->n_elems; i++)
                if (fp->elems[i].set == set) {
                        nf_elem_format(&fp->elems[i], out + len, size - len);
                        len = strlen(out);
                        len += (size_t)snprintf(out + len, size - len, "\n");
                }
}

static void link_local_is_eui64(void **state)
{
        const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };
        struct in6_addr ll;
        char text[INET6_ADDRSTRLEN];

        (void)state;
        nf_link_local_from_mac(mac, &ll);
        inet_ntop(AF_INET6, &ll, text, sizeof(text));
        assert_string_equal(text, "fe80::5054:ff:feab:cdef");
}

static void footprint_of_a_typical_guest(void **state)
{
        struct nf_guest g = typical();
        struct nf_footprint fp = { 0 };
        char out[4096];

        (void)state;
        assert_int_equal(nf_footprint_add(&fp, &g), 0);
        nf_footprint_sort(&fp);
        format_set(&fp, NF_SET_PORTS, out, sizeof(out));
        assert_string_equal(out, "ports { \"vnet7\" }\n");
        format_set(&fp, NF_SET_SUSPENDED, out, sizeof(out));
        assert_string_equal(out, "");
        format_set(&fp, NF_SET_MACS, out, sizeof(out));
        assert_string_equal(out, "macs { \"vnet7\" . 52:54:00:ab:cd:ef }\n");
        format_set(&fp, NF_SET_IP4, out, sizeof(out));
        assert_string_equal(out, "ip4 { \"vnet7\" . 192.0.2.10 }\nip4 { \"vnet7\" . 192.0.2.11 }\n");
        format_set(&fp, NF_SET_ARP, out, sizeof(out));
        assert_string_equal(out, "arp { \"vnet7\" . 52:54:00:ab:cd:ef . 0.0.0.0 }\n"
                                 "arp { \"vnet7\" . 52:54:00:ab:cd:ef . 192.0.2.10 }\n"
                                 "arp { \"vnet7\" . 52:54:00:ab:cd:ef . 192.0.2.11 }\n");
        format_set(&fp, NF_SET_IP6, out, sizeof(out));
        assert_string_equal(out, "ip6 { \"vnet7\" . 2001:db8::10 }\nip6 { \"vnet7\" . fe80::5054:ff:feab:cdef }\n");
        format_set(&fp, NF_SET_SOLICITED, out, sizeof(out));
        assert_string_equal(out, "solicited { \"vnet7\" . ff02::1:ff00:10 }\nsolicited { \"vnet7\" . ff02::1:ffab:cdef }\n");
        format_set(&fp, NF_SET_FAMILIES, out, sizeof(out));
        assert_string_equal(out, "families { \"vnet7\" . 0x0800 }\n"
                                 "families { \"vnet7\" . 0x0806 }\n"
                                 "families { \"vnet7\" . 0x86dd }\n");
        format_set(&fp, NF_MAP_TX_COUNTER, out, sizeof(out));
        assert_string_equal(out, "tx_counters { \"vnet7\" : tx_vnet7 }\n");
        format_set(&fp, NF_MAP_TX_LIMIT, out, sizeof(out));
        assert_string_equal(out, ""); /* unlimited */
        assert_int_equal(fp.n_objs, 2);
        assert_int_equal(fp.objs[0].type, NFT_OBJECT_COUNTER);
        nf_footprint_free(&fp);
}

static void footprint_follows_the_plan(void **state)
{
        struct nf_guest g = typical();
        struct nf_footprint fp = { 0 };
        char out[4096];

        (void)state;
        g.suspended = true;
        g.port_speed_mbit = 100;
        g.n_ipv6 = 2; /* 2001:db8::10 and 2001:db8:1::10 share a solicited-node group */
        assert_int_equal(nf_footprint_add(&fp, &g), 0);
        nf_footprint_sort(&fp);
        format_set(&fp, NF_SET_SUSPENDED, out, sizeof(out));
        assert_string_equal(out, "suspended { \"vnet7\" }\n");
        format_set(&fp, NF_MAP_RX_LIMIT, out, sizeof(out));
        assert_string_equal(out, "rx_limits { \"vnet7\" : rx_vnet7 }\n");
        format_set(&fp, NF_SET_SOLICITED, out, sizeof(out));
        assert_string_equal(out, "solicited { \"vnet7\" . ff02::1:ff00:10 }\nsolicited { \"vnet7\" . ff02::1:ffab:cdef }\n");
        assert_int_equal(fp.n_objs, 4);
        for (size_t i = 0; i < fp.n_objs; i++)
                if (fp.objs[i].type == NFT_OBJECT_LIMIT)
                        assert_int_equal(fp.objs[i].rate_bytes, 12500000); /* 100 Mbit/s in bytes */
        nf_footprint_free(&fp);

        /* No IPv6 allocated: nothing of IPv6, not even the link-local. */
        g = typical();
        g.n_ipv6 = 0;
        assert_int_equal(nf_footprint_add(&fp, &g), 0);
        nf_footprint_sort(&fp);
        format_set(&fp, NF_SET_IP6, out, sizeof(out));
        assert_string_equal(out, "");
        format_set(&fp, NF_SET_IP6_PORTS, out, sizeof(out));
        assert_string_equal(out, "");
        format_set(&fp, NF_SET_FAMILIES, out, sizeof(out));
        assert_string_equal(out, "families { \"vnet7\" . 0x0800 }\nfamilies { \"vnet7\" . 0x0806 }\n");
        nf_footprint_free(&fp);

        /* No IPv4: no ARP at all, probes included. */
        g = typical();
        g.n_ipv4 = 0;
        assert_int_equal(nf_footprint_add(&fp, &g), 0);
        format_set(&fp, NF_SET_ARP, out, sizeof(out));
        assert_string_equal(out, "");
        nf_footprint_free(&fp);
}

/* A speed change is a new limit object under the same name, and the map
 * element naming it must go and come back with it: its version differs. */
static void speed_change_differs_in_element_and_object(void **state)
{
        struct nf_guest g = typical();
        struct nf_footprint a = { 0 }, b = { 0 };

        (void)state;
        g.port_speed_mbit = 100;
        assert_int_equal(nf_footprint_add(&a, &g), 0);
        g.port_speed_mbit = 200;
        assert_int_equal(nf_footprint_add(&b, &g), 0);
        nf_footprint_sort(&a);
        nf_footprint_sort(&b);
        assert_int_equal(a.n_elems, b.n_elems);
        for (size_t i = 0; i < a.n_elems; i++)
                if (a.elems[i].set == NF_MAP_TX_LIMIT || a.elems[i].set == NF_MAP_RX_LIMIT)
                        assert_int_not_equal(nf_elem_cmp(&a.elems[i], &b.elems[i]), 0);
                else
                        assert_int_equal(nf_elem_cmp(&a.elems[i], &b.elems[i]), 0);
        for (size_t i = 0; i < a.n_objs; i++) {
                assert_int_equal(nf_obj_cmp(&a.objs[i], &b.objs[i]), 0);
                assert_true(nf_obj_equal(&a.objs[i], &b.objs[i]) == (a.objs[i].type == NFT_OBJECT_COUNTER));
        }
        nf_footprint_free(&a);
        nf_footprint_free(&b);
}

static void expect_refused(struct nf_guest *g, const char *words)
{
        struct error err = { 0 };

        assert_int_equal(nf_guest_validate(g, &err), -EINVAL);
        if (!strstr(err.msg, words) || !strstr(err.msg, "guest port `"))
                fail_msg("message `%s` lacks `%s`", err.msg, words);
}

static void bad_input_is_refused(void **state)
{
        struct nf_guest g;
        struct in_addr bad4;
        struct in6_addr bad6;
        struct error err = { 0 };

        (void)state;
        g = typical();
        assert_int_equal(nf_guest_validate(&g, &err), 0);

        memcpy(g.ifname, "0123456789abcdef", IFNAMSIZ); /* 16 bytes, no room for the NUL */
        expect_refused(&g, "interface name");
        g = typical();
        strcpy(g.ifname, "bad/name");
        expect_refused(&g, "`bad/name`");
        strcpy(g.ifname, "bad\nname");
        expect_refused(&g, "`bad\\x0aname`"); /* shown, not printed raw */
        strcpy(g.ifname, "");
        expect_refused(&g, "interface name");
        strcpy(g.ifname, "..");
        expect_refused(&g, "interface name");

        g = typical();
        g.mac[0] = 0x01;
        expect_refused(&g, "is multicast");
        memset(g.mac, 0, 6);
        expect_refused(&g, "not an address");

        const char *bad_v4[] = { "0.0.0.0", "224.0.0.1", "239.1.2.3", "255.255.255.255", "127.0.0.1", "0.1.2.3" };
        for (size_t i = 0; i < sizeof(bad_v4) / sizeof(bad_v4[0]); i++) {
                g = typical();
                inet_pton(AF_INET, bad_v4[i], &bad4);
                g.ipv4 = &bad4;
                g.n_ipv4 = 1;
                expect_refused(&g, bad_v4[i]);
        }
        const char *bad_v6[] = { "::", "::1", "ff02::1", "fe80::1", "febf::1" };
        for (size_t i = 0; i < sizeof(bad_v6) / sizeof(bad_v6[0]); i++) {
                g = typical();
                inet_pton(AF_INET6, bad_v6[i], &bad6);
                g.ipv6 = &bad6;
                g.n_ipv6 = 1;
                expect_refused(&g, bad_v6[i]);
        }

        g = typical();
        v4[1] = v4[0];
        expect_refused(&g, "given twice");
        g = typical();
        g.n_ipv6 = 2;
        v6[1] = v6[0];
        expect_refused(&g, "given twice");
        g = typical();
        g.n_ipv4 = NF_ADDRESSES_MAX + 1;
        expect_refused(&g, "more than");
        g = typical();
        g.ipv4 = NULL;
        expect_refused(&g, "without addresses");
        g = typical();
        g.port_speed_mbit = NF_PORT_SPEED_MAX_MBIT + 1;
        expect_refused(&g, "port speed");
}

static void ifname_charset(void **state)
{
        (void)state;
        assert_true(nf_ifname_valid("vnet0", IFNAMSIZ));
        assert_true(nf_ifname_valid("tap-1b4e.2_x", IFNAMSIZ));
        assert_true(nf_ifname_valid("123456789012345", IFNAMSIZ));
        assert_false(nf_ifname_valid("1234567890123456", 17));
        assert_false(nf_ifname_valid("a b", IFNAMSIZ));
        assert_false(nf_ifname_valid("a:b", IFNAMSIZ));
        assert_false(nf_ifname_valid(".", IFNAMSIZ));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(link_local_is_eui64),
                cmocka_unit_test(footprint_of_a_typical_guest),
                cmocka_unit_test(footprint_follows_the_plan),
                cmocka_unit_test(speed_change_differs_in_element_and_object),
                cmocka_unit_test(bad_input_is_refused),
                cmocka_unit_test(ifname_charset),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
