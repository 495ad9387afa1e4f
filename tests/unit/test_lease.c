/* node/lease: the arithmetic of deadlines, and the policy kept in the
 * store: defaults, changes, and refusals that change nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "node/lease.h"
#include "node/store.h"
#include "store_fixture.h"

struct fixture {
        struct store_fixture base;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f || store_fixture_open(&f->base, "lease") < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        int r = store_fixture_close(&f->base);

        free(f);
        return r;
}

static void test_deadlines(void **state)
{
        struct lease_policy p;

        (void)state;
        lease_policy_default(&p);
        assert_int_equal(p.grace_s, 0);
        assert_int_equal(p.retention_s, 3 * 86400);
        assert_false(p.autonomous_removal);
        assert_int_equal(lease_suspend_at(1798761600, &p), 1798761600);
        assert_int_equal(lease_removal_at(1798761600, &p), 1798761600 + 259200);
        p.grace_s = 3600;
        assert_int_equal(lease_suspend_at(1798761600, &p), 1798765200);
}

static int update(struct fixture *f, const char *json, struct lease_policy *p, struct error *err)
{
        cleanup_json struct json_object *o = json_tokener_parse(json);

        return lease_policy_update(f->base.store, o, p, err);
}

static void test_policy_stored_and_changed(void **state)
{
        struct fixture *f = *state;
        struct lease_policy p, again;
        struct error err = { 0 };

        assert_int_equal(lease_policy_load(f->base.store, &p, &err), 0);
        assert_int_equal(p.retention_s, 259200);
        assert_int_equal(update(f, "{\"grace_s\": 7200, \"autonomous_removal\": true}", &p, &err), 0);
        assert_int_equal(lease_policy_load(f->base.store, &again, &err), 0);
        assert_int_equal(again.grace_s, 7200);
        assert_int_equal(again.retention_s, 259200);
        assert_true(again.autonomous_removal);
}

static void test_bad_policy_changes_nothing(void **state)
{
        struct fixture *f = *state;
        static const struct {
                const char *json, *message;
        } bad[] = {
                { "{\"grace_s\": -1}", "policy: grace_s: -1 is not within 0..7776000" },
                { "{\"retention_s\": 31536001}", "policy: retention_s: 31536001 is not within 0..31536000" },
                { "{\"grace_s\": \"1\"}", "policy: grace_s: a whole number of seconds is expected" },
                { "{\"autonomous_removal\": 1}", "policy: autonomous_removal: true or false" },
                { "{\"grace_s\": 5, \"colour\": 1}", "policy: unknown key `colour`" },
                { "[]", "policy: an object is expected" },
        };
        struct lease_policy p;
        struct error err = { 0 };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                error_clear(&err);
                assert_int_equal(update(f, bad[i].json, &p, &err), -EINVAL);
                assert_string_equal(err.msg, bad[i].message);
        }
        assert_int_equal(lease_policy_load(f->base.store, &p, &err), 0);
        assert_int_equal(p.grace_s, 0);
        assert_int_equal(p.retention_s, 259200);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_deadlines),
                cmocka_unit_test_setup_teardown(test_policy_stored_and_changed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_policy_changes_nothing, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
