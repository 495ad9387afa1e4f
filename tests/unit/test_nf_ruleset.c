/* netfilter/nf_ruleset: the fixed table, round-tripped as libnftnl's
 * tests/nft-rule-test.c does (build -> netlink message -> parse ->
 * compare), and checked for consistency: every set and chain a rule names
 * exists, every regular chain ends in a verdict, every key fits the
 * registers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h> /* before the linux/ headers, which yield to it */
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netfilter/nf_guest.h"
#include "netfilter/nf_ruleset.h"

#define TABLE "vpsd"

static char buf[65536] __attribute__((aligned(4)));

static struct nlmsghdr *header(uint16_t type)
{
        memset(buf, 0, sizeof(buf));
        return nftnl_nlmsg_build_hdr(buf, type, NFPROTO_BRIDGE, NLM_F_CREATE, 1);
}

static void rules_round_trip(void **state)
{
        struct nftnl_rule **rules = NULL;
        size_t n = 0;
        char want[2048], have[2048];

        (void)state;
        assert_int_equal(nf_ruleset_rules(TABLE, &rules, &n), 0);
        assert_true(n > 30);
        for (size_t i = 0; i < n; i++) {
                struct nlmsghdr *nlh = header(NFT_MSG_NEWRULE);
                struct nftnl_rule *back = nftnl_rule_alloc();
                uint32_t len_a = 0, len_b = 0;
                const void *ud_a, *ud_b;

                nftnl_rule_nlmsg_build_payload(nlh, rules[i]);
                assert_int_equal(nftnl_rule_nlmsg_parse(nlh, back), 0);
                assert_int_equal(nftnl_rule_get_u32(back, NFTNL_RULE_FAMILY), NFPROTO_BRIDGE);
                assert_string_equal(nftnl_rule_get_str(back, NFTNL_RULE_TABLE), TABLE);
                assert_string_equal(nftnl_rule_get_str(back, NFTNL_RULE_CHAIN),
                                    nftnl_rule_get_str(rules[i], NFTNL_RULE_CHAIN));
                ud_a = nftnl_rule_get_data(rules[i], NFTNL_RULE_USERDATA, &len_a);
                ud_b = nftnl_rule_get_data(back, NFTNL_RULE_USERDATA, &len_b);
                assert_int_equal(len_a, len_b);
                assert_memory_equal(ud_a, ud_b, len_a);
                assert_true(strlen(nf_ruleset_rule_comment(back)) > 3);
                assert_int_equal(nf_ruleset_rule_text(rules[i], want, sizeof(want)), 0);
                assert_int_equal(nf_ruleset_rule_text(back, have, sizeof(have)), 0);
                assert_string_equal(want, have);
                nftnl_rule_free(back);
        }
        nf_ruleset_rules_free(rules, n);
}

struct names {
        const char *chain;
        bool ok;
        char why[256];
};

/* Every set a lookup or objref names is one of ours, every chain a verdict
 * names exists, and no register read runs past the 16 32-bit registers. */
static int expr_check(struct nftnl_expr *e, void *data)
{
        struct names *n = data;
        const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME), *target = NULL;
        bool found = false;

        if (strcmp(name, "lookup") == 0)
                target = nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET);
        else if (strcmp(name, "objref") == 0)
                target = nftnl_expr_get_str(e, NFTNL_EXPR_OBJREF_SET_NAME);
        if (target) {
                for (int id = 0; id < NF_SET_COUNT; id++)
                        found = found || strcmp(nf_set_def(id)->name, target) == 0;
                if (!found) {
                        n->ok = false;
                        snprintf(n->why, sizeof(n->why), "chain %s: set %s unknown", n->chain, target);
                }
        }
        if (strcmp(name, "immediate") == 0 && nftnl_expr_is_set(e, NFTNL_EXPR_IMM_CHAIN)) {
                target = nftnl_expr_get_str(e, NFTNL_EXPR_IMM_CHAIN);
                for (size_t i = 0; i < nf_chain_count(); i++)
                        found = found || strcmp(nf_chain_def(i)->name, target) == 0;
                if (!found) {
                        n->ok = false;
                        snprintf(n->why, sizeof(n->why), "chain %s: goes to unknown chain %s", n->chain, target);
                }
        }
        if (strcmp(name, "payload") == 0) {
                uint32_t reg = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_DREG);
                uint32_t first = reg <= NFT_REG_4 ? NFT_REG32_00 + (reg - NFT_REG_1) * 4 : reg;
                uint32_t len = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_LEN);
                if (first + (len + 3) / 4 > NFT_REG32_15 + 1) {
                        n->ok = false;
                        snprintf(n->why, sizeof(n->why), "chain %s: payload past the registers", n->chain);
                }
        }
        return 0;
}

static void rules_name_what_exists(void **state)
{
        struct nftnl_rule **rules = NULL;
        size_t n = 0;

        (void)state;
        assert_int_equal(nf_ruleset_rules(TABLE, &rules, &n), 0);
        for (size_t i = 0; i < n; i++) {
                struct names names = { .chain = nftnl_rule_get_str(rules[i], NFTNL_RULE_CHAIN), .ok = true };
                nftnl_expr_foreach(rules[i], expr_check, &names);
                if (!names.ok)
                        fail_msg("%s", names.why);
        }
        /* Every chain has rules; every regular chain's last rule is a bare
         * verdict (drop, accept), so nothing falls off its end. */
        for (size_t c = 0; c < nf_chain_count(); c++) {
                struct nftnl_rule *last = NULL;
                for (size_t i = 0; i < n; i++)
                        if (strcmp(nftnl_rule_get_str(rules[i], NFTNL_RULE_CHAIN), nf_chain_def(c)->name) == 0)
                                last = rules[i];
                assert_non_null(last);
                if (nf_chain_def(c)->hook < 0) {
                        struct nftnl_expr_iter *it = nftnl_expr_iter_create(last);
                        struct nftnl_expr *e = nftnl_expr_iter_next(it);
                        assert_string_equal(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "immediate");
                        assert_null(nftnl_expr_iter_next(it));
                        nftnl_expr_iter_destroy(it);
                }
        }
        nf_ruleset_rules_free(rules, n);
}

static void sets_round_trip(void **state)
{
        (void)state;
        for (int id = 0; id < NF_SET_COUNT; id++) {
                struct nftnl_set *s = nf_ruleset_set(TABLE, id), *back = nftnl_set_alloc();
                struct nlmsghdr *nlh = header(NFT_MSG_NEWSET);
                static const uint16_t attrs[] = { NFTNL_SET_FLAGS, NFTNL_SET_KEY_TYPE, NFTNL_SET_KEY_LEN,
                                                  NFTNL_SET_ID };

                nftnl_set_nlmsg_build_payload(nlh, s);
                assert_int_equal(nftnl_set_nlmsg_parse(nlh, back), 0);
                assert_string_equal(nftnl_set_get_str(back, NFTNL_SET_NAME), nf_set_def(id)->name);
                assert_string_equal(nftnl_set_get_str(back, NFTNL_SET_TABLE), TABLE);
                for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
                        assert_int_equal(nftnl_set_get_u32(back, attrs[i]), nftnl_set_get_u32(s, attrs[i]));
                assert_true(nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN) <= NF_KEY_MAX);
                assert_int_equal(nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN) % 4, 0);
                if (nf_set_def(id)->flags & NFT_SET_OBJECT)
                        assert_int_equal(nftnl_set_get_u32(back, NFTNL_SET_OBJ_TYPE), nf_set_def(id)->obj_type);
                nftnl_set_free(s);
                nftnl_set_free(back);
        }
}

static void chains_round_trip(void **state)
{
        int base = 0;

        (void)state;
        for (size_t i = 0; i < nf_chain_count(); i++) {
                struct nftnl_chain *c = nf_ruleset_chain(TABLE, i), *back = nftnl_chain_alloc();
                struct nlmsghdr *nlh = header(NFT_MSG_NEWCHAIN);

                nftnl_chain_nlmsg_build_payload(nlh, c);
                assert_int_equal(nftnl_chain_nlmsg_parse(nlh, back), 0);
                assert_string_equal(nftnl_chain_get_str(back, NFTNL_CHAIN_NAME), nf_chain_def(i)->name);
                if (nf_chain_def(i)->hook >= 0) {
                        base++;
                        assert_int_equal(nftnl_chain_get_u32(back, NFTNL_CHAIN_HOOKNUM), nf_chain_def(i)->hook);
                        assert_int_equal(nftnl_chain_get_u32(back, NFTNL_CHAIN_POLICY), NF_ACCEPT);
                        assert_string_equal(nftnl_chain_get_str(back, NFTNL_CHAIN_TYPE), "filter");
                } else {
                        assert_false(nftnl_chain_is_set(back, NFTNL_CHAIN_HOOKNUM));
                }
                nftnl_chain_free(c);
                nftnl_chain_free(back);
        }
        assert_int_equal(base, 2);
}

static void objects_round_trip(void **state)
{
        struct nftnl_obj *counter = nf_ruleset_counter(TABLE, "tx_vnet0", 7, 700), *back = nftnl_obj_alloc();
        struct nftnl_obj *limit = nf_ruleset_limit(TABLE, "rx_vnet0", 12500000);
        struct nlmsghdr *nlh;

        (void)state;
        nlh = header(NFT_MSG_NEWOBJ);
        nftnl_obj_nlmsg_build_payload(nlh, counter);
        assert_int_equal(nftnl_obj_nlmsg_parse(nlh, back), 0);
        assert_string_equal(nftnl_obj_get_str(back, NFTNL_OBJ_NAME), "tx_vnet0");
        assert_int_equal(nftnl_obj_get_u32(back, NFTNL_OBJ_TYPE), NFT_OBJECT_COUNTER);
        assert_int_equal(nftnl_obj_get_u64(back, NFTNL_OBJ_CTR_PKTS), 7);
        assert_int_equal(nftnl_obj_get_u64(back, NFTNL_OBJ_CTR_BYTES), 700);
        nftnl_obj_free(back);

        back = nftnl_obj_alloc();
        nlh = header(NFT_MSG_NEWOBJ);
        nftnl_obj_nlmsg_build_payload(nlh, limit);
        assert_int_equal(nftnl_obj_nlmsg_parse(nlh, back), 0);
        assert_int_equal(nftnl_obj_get_u32(back, NFTNL_OBJ_TYPE), NFT_OBJECT_LIMIT);
        assert_int_equal(nftnl_obj_get_u64(back, NFTNL_OBJ_LIMIT_RATE), 12500000);
        assert_int_equal(nftnl_obj_get_u64(back, NFTNL_OBJ_LIMIT_UNIT), 1);
        assert_int_equal(nftnl_obj_get_u32(back, NFTNL_OBJ_LIMIT_TYPE), NFT_LIMIT_PKT_BYTES);
        assert_int_equal(nftnl_obj_get_u32(back, NFTNL_OBJ_LIMIT_FLAGS), NFT_LIMIT_F_INV);
        nftnl_obj_free(back);
        nftnl_obj_free(counter);
        nftnl_obj_free(limit);
}

/* The number of element nests in a NEWSETELEM message. */
static size_t elements_in(const struct nlmsghdr *nlh)
{
        const struct nlattr *attr, *elem;
        size_t n = 0;

        mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg))
                if (mnl_attr_get_type(attr) == NFTA_SET_ELEM_LIST_ELEMENTS)
                        mnl_attr_for_each_nested(elem, attr) n++;
        return n;
}

/* A guest's elements, built into NEWSETELEM messages and parsed back:
 * same keys, same data. One element a message for the parse (libnftnl
 * 1.2.4 numbers the element nests it writes 1, 2, 3... but reads back only
 * nests numbered 1, as the kernel writes them), all of a set in one for the
 * count. */
static void elements_round_trip(void **state)
{
        struct in_addr v4[2];
        struct in6_addr v6[1];
        struct nf_guest g = { .ifname = "vnet0", .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .ipv4 = v4, .n_ipv4 = 2,
                              .ipv6 = v6, .n_ipv6 = 1, .port_speed_mbit = 100 };
        struct nf_footprint fp = { 0 };

        (void)state;
        inet_pton(AF_INET, "192.0.2.10", &v4[0]);
        inet_pton(AF_INET, "192.0.2.11", &v4[1]);
        inet_pton(AF_INET6, "2001:db8::10", &v6[0]);
        assert_int_equal(nf_footprint_add(&fp, &g), 0);
        nf_footprint_sort(&fp);
        for (size_t i = 0; i < fp.n_elems; i++) {
                const struct nf_elem *e = &fp.elems[i];
                enum nf_set_id id = e->set;
                struct nftnl_set *s = nf_elems_build(TABLE, id, &e, 1, true), *back = nftnl_set_alloc();
                struct nlmsghdr *nlh = header(NFT_MSG_NEWSETELEM);
                struct nftnl_set_elems_iter *it;
                struct nftnl_set_elem *x;
                uint32_t len = 0;
                const void *key;

                nftnl_set_elems_nlmsg_build_payload(nlh, s);
                assert_int_equal(nftnl_set_elems_nlmsg_parse(nlh, back), 0);
                assert_string_equal(nftnl_set_get_str(back, NFTNL_SET_NAME), nf_set_def(id)->name);
                it = nftnl_set_elems_iter_create(back);
                x = nftnl_set_elems_iter_next(it);
                assert_non_null(x);
                key = nftnl_set_elem_get(x, NFTNL_SET_ELEM_KEY, &len);
                assert_int_equal(len, nf_set_key_len(id));
                assert_memory_equal(key, e->key, len);
                if (nf_set_def(id)->flags & NFT_SET_OBJECT) {
                        assert_string_equal(nftnl_set_elem_get_str(x, NFTNL_SET_ELEM_OBJREF), e->data);
                } else {
                        assert_false(nftnl_set_elem_is_set(x, NFTNL_SET_ELEM_CHAIN));
                }
                assert_null(nftnl_set_elems_iter_next(it));
                nftnl_set_elems_iter_destroy(it);
                nftnl_set_free(s);
                nftnl_set_free(back);
        }
        for (int id = 0; id < NF_SET_COUNT; id++) {
                const struct nf_elem *refs[64];
                size_t n = 0;
                for (size_t i = 0; i < fp.n_elems; i++)
                        if (fp.elems[i].set == id)
                                refs[n++] = &fp.elems[i];
                struct nftnl_set *s = nf_elems_build(TABLE, id, refs, n, false);
                struct nlmsghdr *nlh = header(NFT_MSG_DELSETELEM);
                nftnl_set_elems_nlmsg_build_payload(nlh, s);
                assert_int_equal(elements_in(nlh), n);
                nftnl_set_free(s);
        }
        nf_footprint_free(&fp);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(rules_round_trip),   cmocka_unit_test(rules_name_what_exists),
                cmocka_unit_test(sets_round_trip),    cmocka_unit_test(chains_round_trip),
                cmocka_unit_test(objects_round_trip), cmocka_unit_test(elements_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
