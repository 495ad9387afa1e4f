/* A fresh store in its own temporary folder, for unit tests that need the
 * real schema: setup and teardown for cmocka_unit_test_setup_teardown().
 * The fixture struct may be the first member of a test's own. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/store.h"

struct store_fixture {
        char dir[64];
        char db[128];
        struct store *store;
};

static inline int store_fixture_open(struct store_fixture *f, const char *name)
{
        struct error err = { 0 };

        snprintf(f->dir, sizeof(f->dir), "/tmp/test-%s-XXXXXX", name);
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->db, sizeof(f->db), "%s/vpsd.db", f->dir);
        return store_open(f->db, &f->store, &err) < 0 ? -1 : 0;
}

static inline int store_fixture_close(struct store_fixture *f)
{
        char cmd[160];

        store_close(f->store);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        return system(cmd) == 0 ? 0 : -1;
}
