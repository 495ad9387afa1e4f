/* nf_check(): is the table in the kernel still the one we committed?
 * Anyone with CAP_NET_ADMIN can change it by hand (`nft add rule bridge
 * vpsd ...`, `nft delete element ...`, a dormant flag), so everything that
 * decides what passes is compared: table flags, chains, rules, sets, every
 * element and the objects' settings. Counter values are not: they move. */
#include "netfilter/nf_private.h"

#include <errno.h>
#include <linux/netfilter.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "netfilter/nf_ruleset.h"

#define RULE_TEXT_MAX 2048

/* What a dump collects: the libnftnl objects of our table, of one kind. */
struct collect {
        const char *table;
        enum nf_kind kind;
        void **items;
        size_t n, cap;
};

static int collect_cb(const struct nlmsghdr *nlh, void *data)
{
        struct collect *c = data;
        void *item = nf_kind_parse(c->kind, nlh, c->table);

        if (!item)
                return MNL_CB_OK;
        if (array_reserve(&c->items, &c->cap, c->n, sizeof(*c->items)) < 0) {
                nf_kind_free(c->kind, item);
                errno = ENOMEM;
                return MNL_CB_ERROR;
        }
        c->items[c->n++] = item;
        return MNL_CB_OK;
}

static void collect_reset(void *data)
{
        struct collect *c = data;

        for (size_t i = 0; i < c->n; i++)
                nf_kind_free(c->kind, c->items[i]);
        c->n = 0;
}

static void collect_free(struct collect *c)
{
        collect_reset(c);
        free(c->items);
        c->items = NULL;
}

/* Dumps message type `type` of our family. The request carries the table
 * (and set) name, which the kernel uses as a filter where it can; the
 * parsers check the table anyway. */
static int dump(struct nf *nf, uint16_t type, uint16_t table_attr, uint16_t set_attr, const char *set,
                const struct nf_request *req)
{
        char buf[NF_REQUEST_MAX] __attribute__((aligned(NLMSG_ALIGNTO))) = { 0 };
        struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_BRIDGE, NLM_F_DUMP, 0);

        mnl_attr_put_strz(nlh, table_attr, nf->table);
        if (set)
                mnl_attr_put_strz(nlh, set_attr, set);
        return nf_socket_request(&nf->sock, nlh, req);
}

static int collect_dump(struct nf *nf, uint16_t type, uint16_t table_attr, struct collect *c)
{
        return dump(nf, type, table_attr, 0, NULL, &(struct nf_request){ collect_cb, collect_reset, c });
}

/* ----------------------------------------------------------------- chains */

static bool chain_u32_equal(const struct nftnl_chain *a, const struct nftnl_chain *b, uint16_t attr)
{
        return nftnl_chain_is_set(a, attr) == nftnl_chain_is_set(b, attr) &&
               (!nftnl_chain_is_set(a, attr) || nftnl_chain_get_u32(a, attr) == nftnl_chain_get_u32(b, attr));
}

static int check_chains(struct nf *nf, struct error *err)
{
        struct collect c = { .table = nf->table, .kind = NF_KIND_CHAIN };
        int r = collect_dump(nf, NFT_MSG_GETCHAIN, NFTA_CHAIN_TABLE, &c);

        if (r < 0) {
                error_set_errno(err, r, "dump chains");
                goto out;
        }
        for (size_t i = 0; i < c.n && r == 0; i++) {
                const char *name = nftnl_chain_get_str(c.items[i], NFTNL_CHAIN_NAME);
                size_t j = 0;
                while (j < nf_chain_count() && strcmp(nf_chain_def(j)->name, name) != 0)
                        j++;
                if (j == nf_chain_count())
                        r = error_set(err, -EUCLEAN, "chain %s is not ours", name);
        }
        for (size_t j = 0; j < nf_chain_count() && r == 0; j++) {
                struct nftnl_chain *want = nf_ruleset_chain(nf->table, j), *have = NULL;
                for (size_t i = 0; i < c.n && !have; i++)
                        if (strcmp(nftnl_chain_get_str(c.items[i], NFTNL_CHAIN_NAME), nf_chain_def(j)->name) == 0)
                                have = c.items[i];
                if (!want)
                        r = error_set(err, -ENOMEM, "chains");
                else if (!have)
                        r = error_set(err, -EUCLEAN, "chain %s is missing", nf_chain_def(j)->name);
                else if (!chain_u32_equal(want, have, NFTNL_CHAIN_HOOKNUM) ||
                         !chain_u32_equal(want, have, NFTNL_CHAIN_PRIO) ||
                         !chain_u32_equal(want, have, NFTNL_CHAIN_POLICY) ||
                         nftnl_chain_is_set(want, NFTNL_CHAIN_TYPE) != nftnl_chain_is_set(have, NFTNL_CHAIN_TYPE) ||
                         (nftnl_chain_is_set(have, NFTNL_CHAIN_FLAGS) &&
                          (nftnl_chain_get_u32(have, NFTNL_CHAIN_FLAGS) & ~(uint32_t)NFT_CHAIN_BASE)))
                        r = error_set(err, -EUCLEAN, "chain %s: hook, priority, policy or flags changed",
                                      nf_chain_def(j)->name);
                if (want)
                        nftnl_chain_free(want);
        }
out:
        collect_free(&c);
        return r;
}

/* ------------------------------------------------------------------ rules */

static size_t rules_in_chain(const char *chain, struct nftnl_rule *const *rules, size_t n)
{
        size_t count = 0;

        for (size_t i = 0; i < n; i++)
                count += strcmp(nftnl_rule_get_str(rules[i], NFTNL_RULE_CHAIN), chain) == 0;
        return count;
}

/* The rules of one chain, ours against the kernel's, in order: the i-th
 * rule of the chain in the dump must be the i-th we built for it. */
static int chain_rules_compare(const char *chain, struct nftnl_rule *const *want, size_t n_want,
                               struct nftnl_rule *const *have, size_t n_have, struct error *err)
{
        size_t n_ours = rules_in_chain(chain, want, n_want), n_seen = rules_in_chain(chain, have, n_have);
        cleanup_free char *a = malloc(RULE_TEXT_MAX), *b = malloc(RULE_TEXT_MAX);

        if (!a || !b)
                return error_set(err, -ENOMEM, "rules");
        if (n_ours != n_seen)
                return error_set(err, -EUCLEAN, "chain %s: %zu rules where we made %zu", chain, n_seen, n_ours);
        for (size_t index = 1, i = 0, j = 0; index <= n_ours; index++, i++, j++) {
                while (strcmp(nftnl_rule_get_str(want[i], NFTNL_RULE_CHAIN), chain) != 0)
                        i++;
                while (strcmp(nftnl_rule_get_str(have[j], NFTNL_RULE_CHAIN), chain) != 0)
                        j++;
                if (nf_ruleset_rule_text(want[i], a, RULE_TEXT_MAX) < 0 ||
                    nf_ruleset_rule_text(have[j], b, RULE_TEXT_MAX) < 0 || strcmp(a, b) != 0)
                        return error_set(err, -EUCLEAN, "chain %s: rule %zu (%s) was changed", chain, index,
                                         nf_ruleset_rule_comment(want[i]));
        }
        return 0;
}

static int check_rules(struct nf *nf, struct error *err)
{
        struct collect c = { .table = nf->table, .kind = NF_KIND_RULE };
        struct nftnl_rule **want = NULL;
        size_t n_want = 0;
        int r = collect_dump(nf, NFT_MSG_GETRULE, NFTA_RULE_TABLE, &c);

        if (r < 0)
                return error_set_errno(err, r, "dump rules");
        if (nf_ruleset_rules(nf->table, &want, &n_want) < 0) {
                collect_free(&c);
                return error_set(err, -ENOMEM, "rules");
        }
        for (size_t k = 0; k < nf_chain_count() && r == 0; k++)
                r = chain_rules_compare(nf_chain_def(k)->name, want, n_want, (struct nftnl_rule *const *)c.items, c.n,
                                        err);
        for (size_t j = 0; j < c.n && r == 0; j++) {
                const char *chain = nftnl_rule_get_str(c.items[j], NFTNL_RULE_CHAIN);
                if (rules_in_chain(chain, want, n_want) == 0)
                        r = error_set(err, -EUCLEAN, "chain %s: rules not ours", chain);
        }
        nf_ruleset_rules_free(want, n_want);
        collect_free(&c);
        return r;
}

/* ------------------------------------------------------------------- sets */

static bool set_attrs_equal(const struct nftnl_set *want, const struct nftnl_set *have)
{
        static const uint16_t attrs[] = { NFTNL_SET_FLAGS, NFTNL_SET_KEY_TYPE, NFTNL_SET_KEY_LEN, NFTNL_SET_DATA_TYPE,
                                          NFTNL_SET_DATA_LEN, NFTNL_SET_OBJ_TYPE };

        for (size_t i = 0; i < ARRAY_SIZE(attrs); i++) {
                uint32_t w = nftnl_set_is_set(want, attrs[i]) ? nftnl_set_get_u32(want, attrs[i]) : 0;
                uint32_t h = nftnl_set_is_set(have, attrs[i]) ? nftnl_set_get_u32(have, attrs[i]) : 0;
                if (w != h)
                        return false;
        }
        return true;
}

static int check_sets(struct nf *nf, struct error *err)
{
        struct collect c = { .table = nf->table, .kind = NF_KIND_SET };
        int r = collect_dump(nf, NFT_MSG_GETSET, NFTA_SET_TABLE, &c);

        if (r < 0)
                return error_set_errno(err, r, "dump sets");
        if (c.n != NF_SET_COUNT)
                r = error_set(err, -EUCLEAN, "%zu sets, %d expected", c.n, NF_SET_COUNT);
        for (int id = 0; id < NF_SET_COUNT && r == 0; id++) {
                struct nftnl_set *want = nf_ruleset_set(nf->table, id), *have = NULL;
                for (size_t i = 0; i < c.n && !have; i++)
                        if (strcmp(nftnl_set_get_str(c.items[i], NFTNL_SET_NAME), nf_set_def(id)->name) == 0)
                                have = c.items[i];
                if (!want)
                        r = error_set(err, -ENOMEM, "sets");
                else if (!have)
                        r = error_set(err, -EUCLEAN, "set %s is missing", nf_set_def(id)->name);
                else if (!set_attrs_equal(want, have))
                        r = error_set(err, -EUCLEAN, "set %s: type or flags changed", nf_set_def(id)->name);
                if (want)
                        nftnl_set_free(want);
        }
        collect_free(&c);
        return r;
}

/* --------------------------------------------------------------- elements */

struct elems_seen {
        enum nf_set_id set;
        struct nf_elem *elems;
        size_t n, cap;
};

static int elems_cb(const struct nlmsghdr *nlh, void *data)
{
        struct elems_seen *seen = data;
        struct nftnl_set *s = nftnl_set_alloc();
        struct nftnl_set_elems_iter *it = NULL;
        struct nftnl_set_elem *e;
        int r = MNL_CB_OK;

        if (!s || nftnl_set_elems_nlmsg_parse(nlh, s) < 0 || !(it = nftnl_set_elems_iter_create(s)))
                goto fail;
        for (e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it)) {
                struct nf_elem *x;
                uint32_t len = 0;
                const void *key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
                if (array_reserve(&seen->elems, &seen->cap, seen->n, sizeof(*seen->elems)) < 0)
                        goto fail;
                x = &seen->elems[seen->n++];
                memset(x, 0, sizeof(*x));
                x->set = (uint8_t)seen->set;
                x->key_len = (uint8_t)(len < NF_KEY_MAX ? len : NF_KEY_MAX);
                if (key)
                        memcpy(x->key, key, x->key_len);
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_OBJREF))
                        snprintf(x->data, sizeof(x->data), "%s", nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_OBJREF));
        }
        goto out;
fail:
        errno = ENOMEM;
        r = MNL_CB_ERROR;
out:
        if (it)
                nftnl_set_elems_iter_destroy(it);
        if (s)
                nftnl_set_free(s);
        return r;
}

static void elems_reset(void *data)
{
        ((struct elems_seen *)data)->n = 0;
}

static int elem_qsort_cmp(const void *a, const void *b)
{
        return nf_elem_cmp(a, b);
}

/* Merges the kernel's elements of one set (sorted) against ours. */
static int elems_compare(const struct nf_elem *want, size_t n_want, const struct nf_elem *have, size_t n_have,
                         struct error *err)
{
        char text[160];
        size_t i = 0, j = 0;

        while (i < n_want || j < n_have) {
                struct nf_elem w;
                int c;
                if (i < n_want) {
                        w = want[i];
                        w.version = 0; /* the kernel cannot tell it */
                }
                c = i == n_want ? 1 : j == n_have ? -1 : nf_elem_cmp(&w, &have[j]);
                if (c < 0) {
                        nf_elem_format(&want[i], text, sizeof(text));
                        return error_set(err, -EUCLEAN, "element %s is missing", text);
                }
                if (c > 0) {
                        nf_elem_format(&have[j], text, sizeof(text));
                        return error_set(err, -EUCLEAN, "element %s is not ours", text);
                }
                i++, j++;
        }
        return 0;
}

static int check_elements(struct nf *nf, const struct nf_footprint *fp, struct error *err)
{
        struct elems_seen seen = { 0 };
        size_t start = 0;
        int r = 0;

        for (int id = 0; id < NF_SET_COUNT && r == 0; id++) {
                size_t end = start;
                while (end < fp->n_elems && fp->elems[end].set == id)
                        end++;
                seen.set = id;
                seen.n = 0;
                r = dump(nf, NFT_MSG_GETSETELEM, NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET,
                         nf_set_def(id)->name, &(struct nf_request){ elems_cb, elems_reset, &seen });
                if (r < 0) {
                        r = error_set_errno(err, r, "dump elements of set %s", nf_set_def(id)->name);
                        break;
                }
                if (seen.n)
                        qsort(seen.elems, seen.n, sizeof(*seen.elems), elem_qsort_cmp);
                r = elems_compare(fp->elems + start, end - start, seen.elems, seen.n, err);
                start = end;
        }
        free(seen.elems);
        return r;
}

/* ---------------------------------------------------------------- objects */

static int obj_bsearch_cmp(const void *a, const void *b)
{
        return nf_obj_cmp(a, b);
}

/* A limit as we make them: rate, 1 s, no burst, bytes, "over". */
static bool limit_as_made(struct nftnl_obj *o, uint64_t rate_bytes)
{
        return nftnl_obj_get_u64(o, NFTNL_OBJ_LIMIT_RATE) == rate_bytes &&
               nftnl_obj_get_u64(o, NFTNL_OBJ_LIMIT_UNIT) == 1 && nftnl_obj_get_u32(o, NFTNL_OBJ_LIMIT_BURST) == 0 &&
               nftnl_obj_get_u32(o, NFTNL_OBJ_LIMIT_TYPE) == NFT_LIMIT_PKT_BYTES &&
               nftnl_obj_get_u32(o, NFTNL_OBJ_LIMIT_FLAGS) == NFT_LIMIT_F_INV;
}

static int check_objects(struct nf *nf, const struct nf_footprint *fp, struct error *err)
{
        struct collect c = { .table = nf->table, .kind = NF_KIND_OBJ };
        int r = collect_dump(nf, NFT_MSG_GETOBJ, NFTA_OBJ_TABLE, &c);

        if (r < 0)
                return error_set_errno(err, r, "dump objects");
        for (size_t i = 0; i < c.n && r == 0; i++) {
                struct nf_obj key = { .type = nftnl_obj_get_u32(c.items[i], NFTNL_OBJ_TYPE) };
                const struct nf_obj *want;
                snprintf(key.name, sizeof(key.name), "%s", nftnl_obj_get_str(c.items[i], NFTNL_OBJ_NAME));
                want = fp->n_objs ? bsearch(&key, fp->objs, fp->n_objs, sizeof(*fp->objs), obj_bsearch_cmp) : NULL;
                if (!want)
                        r = error_set(err, -EUCLEAN, "object %s (type %u) is not ours", key.name, key.type);
                else if (want->type == NFT_OBJECT_LIMIT && !limit_as_made(c.items[i], want->rate_bytes))
                        r = error_set(err, -EUCLEAN, "limit %s was changed", key.name);
        }
        if (r == 0 && c.n != fp->n_objs)
                r = error_set(err, -EUCLEAN, "%zu of our %zu objects are missing", fp->n_objs - c.n, fp->n_objs);
        collect_free(&c);
        return r;
}

/* ------------------------------------------------------------------ table */

static int table_flags_cb(const struct nlmsghdr *nlh, void *data)
{
        struct nftnl_table *t = nftnl_table_alloc();

        if (!t) {
                errno = ENOMEM;
                return MNL_CB_ERROR;
        }
        if (nftnl_table_nlmsg_parse(nlh, t) == 0)
                *(uint32_t *)data = nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS);
        nftnl_table_free(t);
        return MNL_CB_OK;
}

static int check_table(struct nf *nf, struct error *err)
{
        char buf[NF_REQUEST_MAX] __attribute__((aligned(NLMSG_ALIGNTO))) = { 0 };
        struct nftnl_table *t = nf_ruleset_table(nf->table);
        uint32_t flags = 0;
        struct nlmsghdr *nlh;
        int r;

        if (!t)
                return error_set(err, -ENOMEM, "table");
        nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_BRIDGE, NLM_F_ACK, 0);
        nftnl_table_nlmsg_build_payload(nlh, t);
        nftnl_table_free(t);
        r = nf_socket_request(&nf->sock, nlh, &(struct nf_request){ table_flags_cb, NULL, &flags });
        if (r == -ENOENT)
                return error_set(err, -ENOENT, "is missing");
        if (r < 0)
                return error_set_errno(err, r, "read table");
        if (flags)
                return error_set(err, -EUCLEAN, "flags 0x%x set (dormant: filtering nothing)", flags);
        return 0;
}

int nf_check(struct nf *nf, struct error *err)
{
        struct nf_footprint fp = { 0 };
        int r;

        if (!nf->built)
                return error_set(err, -ESTALE, "table bridge %s: not rebuilt by this handle yet", nf->table);
        r = check_table(nf, err);
        if (r == 0)
                r = check_chains(nf, err);
        if (r == 0)
                r = check_rules(nf, err);
        if (r == 0)
                r = check_sets(nf, err);
        if (r == 0 && nf_guests_footprint(nf->guests, nf->n_guests, &fp) < 0)
                r = error_set(err, -ENOMEM, "footprint");
        if (r == 0)
                r = check_elements(nf, &fp, err);
        if (r == 0)
                r = check_objects(nf, &fp, err);
        nf_footprint_free(&fp);
        if (r < 0)
                error_prefix(err, "table bridge %s", nf->table);
        return r;
}
