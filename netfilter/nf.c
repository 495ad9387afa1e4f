/* The handle, its model of the table, and the three changes: rebuild,
 * apply and remove, each one batch. */
#include "netfilter/nf_private.h"

#include <errno.h>
#include <linux/netfilter.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "netfilter/nf_ruleset.h"

/* Elements per NEWSETELEM/DELSETELEM message: ~80 bytes each, so a message
 * stays far below the batch's page overrun. */
#define ELEMS_PER_MESSAGE 256

int nf_open(struct nf **ret, const char *table, struct error *err)
{
        struct nf *nf;
        int r;

        if (!table)
                table = NF_TABLE_DEFAULT;
        if (!*table || strlen(table) >= NFT_TABLE_MAXNAMELEN)
                return error_set(err, -EINVAL, "nftables table name `%s`: empty or too long", table);
        nf = calloc(1, sizeof(*nf));
        if (!nf)
                return error_set(err, -ENOMEM, "nftables handle");
        snprintf(nf->table, sizeof(nf->table), "%s", table);
        r = nf_socket_open(&nf->sock, err);
        if (r < 0) {
                free(nf);
                return r;
        }
        *ret = nf;
        return 0;
}

static void model_clear(struct nf_guest **guests, size_t n)
{
        if (!guests)
                return;
        for (size_t i = 0; i < n; i++)
                nf_guest_free(guests[i]);
        free(guests);
}

struct nf *nf_close(struct nf *nf)
{
        if (nf) {
                nf_socket_close(&nf->sock);
                model_clear(nf->guests, nf->n_guests);
                free(nf);
        }
        return NULL;
}

size_t nf_guest_count(const struct nf *nf)
{
        return nf->n_guests;
}

/* The index of ifname in the model, or where it would go. */
static size_t model_find(const struct nf *nf, const char *ifname, bool *found)
{
        size_t lo = 0, hi = nf->n_guests;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strncmp(nf->guests[mid]->ifname, ifname, IFNAMSIZ);
                if (c == 0) {
                        *found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *found = false;
        return lo;
}

int nf_guests_footprint(struct nf_guest *const *guests, size_t n, struct nf_footprint *ret)
{
        struct nf_footprint fp = { 0 };

        for (size_t i = 0; i < n; i++)
                if (nf_footprint_add(&fp, guests[i]) < 0) {
                        nf_footprint_free(&fp);
                        return -ENOMEM;
                }
        nf_footprint_sort(&fp);
        *ret = fp;
        return 0;
}

/* ------------------------------------------------------- batch contents */

/* One NEWSETELEM (add) or DELSETELEM message per set and per
 * ELEMS_PER_MESSAGE; elems are sorted by set. port names the guest in
 * errors (NULL: a rebuild, many guests). */
static int batch_elems(struct nf *nf, struct nf_batch *b, const struct nf_elem *const *elems, size_t n, bool add,
                       const char *port)
{
        for (size_t i = 0, j; i < n; i = j) {
                enum nf_set_id set = elems[i]->set;
                int r;

                for (j = i; j < n && j - i < ELEMS_PER_MESSAGE && elems[j]->set == set;)
                        j++;
                r = nf_batch_put(b, NF_KIND_ELEMS, nf_elems_build(nf->table, set, elems + i, j - i, add), false,
                                 add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, add ? NLM_F_CREATE | NLM_F_EXCL : 0,
                                 elems + i, j - i, "%s%s%s%s %zu element%s %s set %s", port ? "guest port `" : "",
                                 port ? port : "", port ? "`: " : "", add ? "add" : "delete", j - i,
                                 j - i == 1 ? "" : "s", add ? "to" : "from", nf_set_def(set)->name);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int batch_objs(struct nf *nf, struct nf_batch *b, const struct nf_obj *const *objs, size_t n, bool add,
                      const char *port)
{
        for (size_t i = 0; i < n; i++) {
                int r = nf_batch_put(b, NF_KIND_OBJ, nf_obj_build(nf->table, objs[i]), false,
                                     add ? NFT_MSG_NEWOBJ : NFT_MSG_DELOBJ, add ? NLM_F_CREATE | NLM_F_EXCL : 0, NULL,
                                     0, "%s%s%s%s %s %s", port ? "guest port `" : "", port ? port : "",
                                     port ? "`: " : "", add ? "add" : "delete",
                                     objs[i]->type == NFT_OBJECT_LIMIT ? "limit" : "counter", objs[i]->name);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The table, emptied whether it existed or not (adding an existing table
 * without NLM_F_EXCL changes nothing, so the delete always has a table to
 * delete), made again with its sets, chains and rules. */
static int batch_table(struct nf *nf, struct nf_batch *b)
{
        const uint16_t create = NLM_F_CREATE | NLM_F_EXCL;
        const char *t = nf->table;
        struct nftnl_rule **rules = NULL;
        size_t n = 0, in_chain = 0;
        const char *chain = "";
        int r;

        r = nf_batch_put(b, NF_KIND_TABLE, nf_ruleset_table(t), false, NFT_MSG_NEWTABLE, NLM_F_CREATE, NULL, 0,
                         "make sure table %s exists", t);
        if (r == 0)
                r = nf_batch_put(b, NF_KIND_TABLE, nf_ruleset_table(t), false, NFT_MSG_DELTABLE, 0, NULL, 0,
                                 "delete table %s", t);
        if (r == 0)
                r = nf_batch_put(b, NF_KIND_TABLE, nf_ruleset_table(t), false, NFT_MSG_NEWTABLE, create, NULL, 0,
                                 "add table %s", t);
        for (int id = 0; id < NF_SET_COUNT && r == 0; id++)
                r = nf_batch_put(b, NF_KIND_SET, nf_ruleset_set(t, id), false, NFT_MSG_NEWSET, create, NULL, 0,
                                 "add set %s", nf_set_def(id)->name);
        for (size_t i = 0; i < nf_chain_count() && r == 0; i++)
                r = nf_batch_put(b, NF_KIND_CHAIN, nf_ruleset_chain(t, i), false, NFT_MSG_NEWCHAIN, create, NULL, 0,
                                 "add chain %s", nf_chain_def(i)->name);
        if (r == 0)
                r = nf_ruleset_rules(t, &rules, &n);
        for (size_t i = 0; i < n && r == 0; i++) {
                const char *c = nftnl_rule_get_str(rules[i], NFTNL_RULE_CHAIN);
                in_chain = strcmp(c, chain) == 0 ? in_chain + 1 : 1;
                chain = c;
                r = nf_batch_put(b, NF_KIND_RULE, rules[i], true, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
                                 NULL, 0, "add rule %zu of chain %s (%s)", in_chain, c,
                                 nf_ruleset_rule_comment(rules[i]));
        }
        nf_ruleset_rules_free(rules, n);
        return r;
}

/* ---------------------------------------------------------------- rebuild */

static int port_counters_cmp(const void *a, const void *b)
{
        return strncmp(((const struct nf_port_counters *)a)->ifname, ((const struct nf_port_counters *)b)->ifname,
                       IFNAMSIZ);
}

/* Starts every counter of fp from what the old table counted for it. */
static void counters_carry(struct nf_footprint *fp, const struct nf_port_counters *old, size_t n_old)
{
        for (size_t i = 0; i < fp->n_objs; i++) {
                struct nf_obj *o = &fp->objs[i];
                struct nf_port_counters key = { 0 };
                const struct nf_port_counters *found;

                if (o->type != NFT_OBJECT_COUNTER)
                        continue;
                snprintf(key.ifname, sizeof(key.ifname), "%s", o->name + 3);
                found = n_old ? bsearch(&key, old, n_old, sizeof(*old), port_counters_cmp) : NULL;
                if (!found)
                        continue;
                o->packets = o->name[0] == 't' ? found->counters.tx_packets : found->counters.rx_packets;
                o->bytes = o->name[0] == 't' ? found->counters.tx_bytes : found->counters.rx_bytes;
        }
}

static int guest_ptr_cmp(const void *a, const void *b)
{
        return strncmp((*(struct nf_guest *const *)a)->ifname, (*(struct nf_guest *const *)b)->ifname, IFNAMSIZ);
}

/* Validated copies of the guests, sorted by port, none twice. */
static int model_make(const struct nf_guest *guests, size_t n, struct nf_guest ***ret, struct error *err)
{
        struct nf_guest **copies;
        int r;

        if (n > NF_GUESTS_MAX)
                return error_set(err, -EINVAL, "%zu guests: at most %d per table", n, NF_GUESTS_MAX);
        for (size_t i = 0; i < n; i++)
                if ((r = nf_guest_validate(&guests[i], err)) < 0)
                        return r;
        copies = calloc(n ? n : 1, sizeof(*copies));
        if (!copies)
                return error_set(err, -ENOMEM, "copy of %zu guests", n);
        for (size_t i = 0; i < n; i++)
                if (!(copies[i] = nf_guest_dup(&guests[i]))) {
                        model_clear(copies, i);
                        return error_set(err, -ENOMEM, "copy of %zu guests", n);
                }
        qsort(copies, n, sizeof(*copies), guest_ptr_cmp);
        for (size_t i = 1; i < n; i++)
                if (guest_ptr_cmp(&copies[i - 1], &copies[i]) == 0) {
                        r = error_set(err, -EINVAL, "guest port `%s`: given twice", copies[i]->ifname);
                        model_clear(copies, n);
                        return r;
                }
        *ret = copies;
        return 0;
}

/* Pointers to every element and object of fp, for the batch builders. */
struct fp_refs {
        const struct nf_elem **elems;
        const struct nf_obj **objs;
};

static int fp_refs_all(const struct nf_footprint *fp, struct fp_refs *ret)
{
        ret->elems = malloc((fp->n_elems ? fp->n_elems : 1) * sizeof(*ret->elems));
        ret->objs = malloc((fp->n_objs ? fp->n_objs : 1) * sizeof(*ret->objs));
        if (!ret->elems || !ret->objs)
                return -ENOMEM;
        for (size_t i = 0; i < fp->n_elems; i++)
                ret->elems[i] = &fp->elems[i];
        for (size_t i = 0; i < fp->n_objs; i++)
                ret->objs[i] = &fp->objs[i];
        return 0;
}

static void fp_refs_free(struct fp_refs *refs)
{
        free(refs->elems);
        free(refs->objs);
}

int nf_rebuild(struct nf *nf, const struct nf_guest *guests, size_t n, struct error *err)
{
        struct nf_footprint fp = { 0 };
        struct fp_refs refs = { 0 };
        struct nf_port_counters *old = NULL;
        struct nf_guest **model = NULL;
        struct nf_batch *b = NULL;
        size_t n_old = 0;
        int r;

        r = model_make(guests, n, &model, err);
        if (r < 0)
                return r;
        r = nf_counters_dump(nf, &old, &n_old);
        if (r < 0 && r != -ENOENT) {
                error_set_errno(err, r, "table %s: read counters to carry over", nf->table);
                goto out;
        }
        r = nf_guests_footprint(model, n, &fp);
        if (r == 0)
                counters_carry(&fp, old, n_old);
        if (r == 0)
                r = fp_refs_all(&fp, &refs);
        b = r == 0 ? nf_batch_new(&nf->sock) : NULL;
        if (!b) {
                r = error_set(err, -ENOMEM, "table %s: rebuild of %zu guests", nf->table, n);
                goto out;
        }
        r = batch_table(nf, b);
        if (r == 0)
                r = batch_objs(nf, b, refs.objs, fp.n_objs, true, NULL);
        if (r == 0)
                r = batch_elems(nf, b, refs.elems, fp.n_elems, true, NULL);
        if (r < 0)
                error_set(err, r, "batch of %zu messages", nf_batch_count(b));
        else
                r = nf_batch_send(b, err);
        if (r < 0) {
                error_prefix(err, "table %s: rebuild", nf->table);
                goto out;
        }
        model_clear(nf->guests, nf->n_guests);
        nf->guests = steal_pointer(&model);
        nf->n_guests = nf->cap_guests = n;
        nf->built = true;
out:
        nf_batch_free(b);
        fp_refs_free(&refs);
        nf_footprint_free(&fp);
        free(old);
        model_clear(model, n);
        return r;
}

/* ------------------------------------------------------- apply and remove */

/* What turns footprint old into new: elements and objects to delete and
 * to add. Objects of one name whose settings differ (a limit at a new
 * rate) are deleted and added again, and so are the elements naming them,
 * whose version differs. */
struct diff {
        struct fp_refs del, add;
        size_t n_del_elems, n_add_elems, n_del_objs, n_add_objs;
};

static int diff_make(const struct nf_footprint *old, const struct nf_footprint *new, struct diff *d)
{
        size_t i = 0, j = 0;

        memset(d, 0, sizeof(*d));
        d->del.elems = malloc((old->n_elems + 1) * sizeof(*d->del.elems));
        d->add.elems = malloc((new->n_elems + 1) * sizeof(*d->add.elems));
        d->del.objs = malloc((old->n_objs + 1) * sizeof(*d->del.objs));
        d->add.objs = malloc((new->n_objs + 1) * sizeof(*d->add.objs));
        if (!d->del.elems || !d->add.elems || !d->del.objs || !d->add.objs)
                return -ENOMEM;
        while (i < old->n_elems || j < new->n_elems) {
                int c = i == old->n_elems   ? 1
                        : j == new->n_elems ? -1
                                            : nf_elem_cmp(&old->elems[i], &new->elems[j]);
                if (c < 0)
                        d->del.elems[d->n_del_elems++] = &old->elems[i++];
                else if (c > 0)
                        d->add.elems[d->n_add_elems++] = &new->elems[j++];
                else
                        i++, j++;
        }
        for (i = j = 0; i < old->n_objs || j < new->n_objs;) {
                int c = i == old->n_objs   ? 1
                        : j == new->n_objs ? -1
                                           : nf_obj_cmp(&old->objs[i], &new->objs[j]);
                if (c == 0 && nf_obj_equal(&old->objs[i], &new->objs[j])) {
                        i++, j++;
                        continue;
                }
                if (c <= 0)
                        d->del.objs[d->n_del_objs++] = &old->objs[i++];
                if (c >= 0)
                        d->add.objs[d->n_add_objs++] = &new->objs[j++];
        }
        return 0;
}

static void diff_free(struct diff *d)
{
        fp_refs_free(&d->del);
        fp_refs_free(&d->add);
}

/* Sends the diff as one batch: deletions first (elements before the
 * objects they name), then additions (objects before their elements). */
static int diff_send(struct nf *nf, const struct diff *d, const char *port, struct error *err)
{
        struct nf_batch *b;
        int r;

        if (d->n_del_elems + d->n_add_elems + d->n_del_objs + d->n_add_objs == 0)
                return 0;
        b = nf_batch_new(&nf->sock);
        if (!b)
                return error_set(err, -ENOMEM, "guest port `%s`: batch", port);
        r = batch_elems(nf, b, d->del.elems, d->n_del_elems, false, port);
        if (r == 0)
                r = batch_objs(nf, b, d->del.objs, d->n_del_objs, false, port);
        if (r == 0)
                r = batch_objs(nf, b, d->add.objs, d->n_add_objs, true, port);
        if (r == 0)
                r = batch_elems(nf, b, d->add.elems, d->n_add_elems, true, port);
        if (r < 0)
                error_set(err, r, "guest port `%s`: batch", port);
        else
                r = nf_batch_send(b, err);
        nf_batch_free(b);
        return r;
}

static int model_reserve(struct nf *nf)
{
        if (nf->n_guests < nf->cap_guests)
                return 0;
        size_t cap = nf->cap_guests ? nf->cap_guests * 2 : 16;
        struct nf_guest **guests = realloc(nf->guests, cap * sizeof(*guests));
        if (!guests)
                return -ENOMEM;
        nf->guests = guests;
        nf->cap_guests = cap;
        return 0;
}

int nf_guest_apply(struct nf *nf, const struct nf_guest *g, struct error *err)
{
        struct nf_footprint old = { 0 }, new = { 0 };
        struct nf_guest *copy = NULL;
        struct diff d = { 0 };
        bool found;
        size_t i;
        int r;

        r = nf_guest_validate(g, err);
        if (r < 0)
                return r;
        if (!nf->built)
                return error_set(err, -ESTALE, "guest port `%s`: table %s not rebuilt by this handle yet", g->ifname,
                                 nf->table);
        i = model_find(nf, g->ifname, &found);
        if (!found && nf->n_guests >= NF_GUESTS_MAX)
                return error_set(err, -ENOSPC, "guest port `%s`: table %s holds %d guests already", g->ifname,
                                 nf->table, NF_GUESTS_MAX);
        copy = nf_guest_dup(g);
        if (!copy || model_reserve(nf) < 0 || (found && nf_footprint_add(&old, nf->guests[i]) < 0) ||
            nf_footprint_add(&new, g) < 0) {
                r = error_set(err, -ENOMEM, "guest port `%s`: apply", g->ifname);
                goto out;
        }
        nf_footprint_sort(&old);
        nf_footprint_sort(&new);
        r = diff_make(&old, &new, &d);
        if (r < 0) {
                error_set(err, r, "guest port `%s`: apply", g->ifname);
                goto out;
        }
        r = diff_send(nf, &d, g->ifname, err);
        if (r < 0)
                goto out;
        if (found) {
                nf_guest_free(nf->guests[i]);
        } else {
                memmove(&nf->guests[i + 1], &nf->guests[i], (nf->n_guests - i) * sizeof(*nf->guests));
                nf->n_guests++;
        }
        nf->guests[i] = steal_pointer(&copy);
out:
        diff_free(&d);
        nf_footprint_free(&old);
        nf_footprint_free(&new);
        nf_guest_free(copy);
        return r;
}

int nf_guest_remove(struct nf *nf, const char *ifname, struct error *err)
{
        struct nf_footprint old = { 0 }, none = { 0 };
        struct diff d = { 0 };
        bool found;
        size_t i;
        int r;

        if (!nf_ifname_valid(ifname, IFNAMSIZ))
                return error_set(err, -EINVAL, "guest port `%.*s`: not a valid interface name", IFNAMSIZ, ifname);
        if (!nf->built)
                return error_set(err, -ESTALE, "guest port `%s`: table %s not rebuilt by this handle yet", ifname,
                                 nf->table);
        i = model_find(nf, ifname, &found);
        if (!found)
                return error_set(err, -ENOENT, "guest port `%s`: not managed", ifname);
        r = nf_footprint_add(&old, nf->guests[i]);
        if (r == 0) {
                nf_footprint_sort(&old);
                r = diff_make(&old, &none, &d);
        }
        if (r < 0)
                r = error_set(err, r, "guest port `%s`: remove", ifname);
        else
                r = diff_send(nf, &d, ifname, err);
        if (r == 0) {
                nf_guest_free(nf->guests[i]);
                memmove(&nf->guests[i], &nf->guests[i + 1], (nf->n_guests - i - 1) * sizeof(*nf->guests));
                nf->n_guests--;
        }
        diff_free(&d);
        nf_footprint_free(&old);
        return r;
}
