/* The ledger server's pure parts on a real store: the key files and the
 * seal (AES-256-GCM), and the API's routes without HTTP (status codes,
 * strict bodies, errors that change nothing). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "billing-sync/ledger_api.h"
#include "billing-sync/ledger_private.h"
#include "common/util.h"

struct fixture {
        char dir[64];
        char db[128];
        struct ledger *ledger;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct error err = { 0 };

        snprintf(f->dir, sizeof(f->dir), "/tmp/test-ledger-api-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->db, sizeof(f->db), "%s/ledger.db", f->dir);
        if (ledger_open(f->db, &f->ledger, &err) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[128];

        ledger_close(f->ledger);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
                return -1;
        free(f);
        return 0;
}

static void test_keys_made_once_and_private(void **state)
{
        struct fixture *f = *state;
        struct ledger *again = NULL;
        struct error err = { 0 };
        char *pem = NULL, *pem_again = NULL, path[160];
        struct stat st;

        assert_int_equal(ledger_ticket_public_pem(f->ledger, &pem, &err), 0);
        assert_non_null(strstr(pem, "BEGIN PUBLIC KEY"));
        assert_int_equal(ledger_open(f->db, &again, &err), 0);
        assert_int_equal(ledger_ticket_public_pem(again, &pem_again, &err), 0);
        assert_string_equal(pem, pem_again);
        assert_memory_equal(f->ledger->seal_key, again->seal_key, LEDGER_SEAL_KEY_SIZE);
        ledger_close(again);
        for (int i = 0; i < 2; i++) {
                snprintf(path, sizeof(path), "%s.%s", f->db, i ? "seal-key" : "ticket-key");
                assert_int_equal(stat(path, &st), 0);
                assert_int_equal(st.st_mode & 0777, 0600);
        }
        free(pem);
        free(pem_again);
}

static void test_seal(void **state)
{
        struct fixture *f = *state;
        struct error err = { 0 };
        const char *aad = "e52d9755-219d-47da-84a4-8d507bd72959";
        uint8_t *blob = NULL;
        size_t len = 0;
        char *text = NULL;

        assert_int_equal(ledger_seal(f->ledger, aad, "hunter2-hunter2", &blob, &len, &err), 0);
        assert_null(memmem(blob, len, "hunter2", 7));
        assert_int_equal(ledger_unseal(f->ledger, aad, blob, len, &text, &err), 0);
        assert_string_equal(text, "hunter2-hunter2");
        free(text);
        /* Another service's UUID, a changed byte, a cut: none opens. */
        assert_int_equal(ledger_unseal(f->ledger, "f52d9755-219d-47da-84a4-8d507bd72959", blob, len, &text, &err),
                         -EBADMSG);
        blob[len / 2] ^= 1;
        assert_int_equal(ledger_unseal(f->ledger, aad, blob, len, &text, &err), -EBADMSG);
        blob[len / 2] ^= 1;
        assert_int_equal(ledger_unseal(f->ledger, aad, blob, len - 1, &text, &err), -EBADMSG);
        assert_int_equal(ledger_unseal(f->ledger, aad, blob, 10, &text, &err), -EBADMSG);
        free(blob);
}

static int call(struct fixture *f, const char *method, const char *path, const char *body, char *out, size_t size)
{
        struct ledger_api_request req = { .method = method, .path = path, .body = body,
                                          .body_len = body ? strlen(body) : 0, .now = 1735732800 };
        struct ledger_api_response resp;

        ledger_api_handle(f->ledger, &req, &resp);
        if (out)
                snprintf(out, size, "%s", json_object_to_json_string_ext(resp.body, JSON_C_TO_STRING_PLAIN));
        json_object_put(resp.body);
        return resp.status;
}

static void test_routes(void **state)
{
        struct fixture *f = *state;
        char out[2048];

        assert_int_equal(call(f, "GET", "/api/v1/nothing", NULL, out, sizeof(out)), 404);
        assert_string_equal(out, "{\"error\":\"no such endpoint\"}");
        assert_int_equal(call(f, "GET", "/api/v2/plans", NULL, NULL, 0), 404);
        assert_int_equal(call(f, "POST", "/api/v1/services", "{}", NULL, 0), 405);
        assert_int_equal(call(f, "GET", "/api/v1/plans", NULL, out, sizeof(out)), 200);
        assert_string_equal(out, "[]");
        assert_int_equal(call(f, "POST", "/api/v1/plans", NULL, NULL, 0), 400);
        assert_int_equal(call(f, "POST", "/api/v1/plans", "{\"name\":\"s\"", NULL, 0), 400);
        assert_int_equal(call(f, "POST", "/api/v1/plans",
                              "{\"name\":\"s\",\"price\":100,\"vcpus\":1,\"memory_mib\":512,\"disk_gib\":5,\"x\":1}", out,
                              sizeof(out)),
                         400);
        assert_string_equal(out, "{\"error\":\"unknown field `x`\"}");
        assert_int_equal(call(f, "POST", "/api/v1/plans",
                              "{\"name\":\"s\",\"price\":100,\"vcpus\":1,\"memory_mib\":512,\"disk_gib\":5}", NULL, 0),
                         200);
        assert_int_equal(call(f, "POST", "/api/v1/plans",
                              "{\"name\":\"s\",\"price\":100,\"vcpus\":1,\"memory_mib\":512,\"disk_gib\":5}", NULL, 0),
                         409);
        assert_int_equal(call(f, "POST", "/api/v1/accounts", "{\"id\":\"a\"}", NULL, 0), 200);
        assert_int_equal(call(f, "POST", "/api/v1/orders", "{\"account\":\"a\",\"plan\":\"s\",\"hostname\":\"h\"}",
                              out, sizeof(out)),
                         402);
        assert_string_equal(out, "{\"error\":\"insufficient balance\"}");
        assert_int_equal(call(f, "GET", "/api/v1/accounts/a", NULL, out, sizeof(out)), 200);
        assert_non_null(strstr(out, "\"balance\":0,\"log\":[]"));
        assert_int_equal(call(f, "POST", "/api/v1/services/00000000-0000-4000-8000-000000000000/console-ticket",
                              "{\"account\":\"a\",\"kind\":\"vnc\"}", out, sizeof(out)),
                         403);
        assert_string_equal(out, "{\"error\":\"console refused\"}");
        assert_int_equal(call(f, "POST", "/api/v1/services/00000000-0000-4000-8000-000000000000/root-password", NULL,
                              NULL, 0),
                         404);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_keys_made_once_and_private, setup, teardown),
                cmocka_unit_test_setup_teardown(test_seal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
