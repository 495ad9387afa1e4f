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

/* A node n1 with one active service of account a: its UUID into uuid. */
static void node_with_service(struct fixture *f, char uuid[37])
{
        char out[4096];
        const char *p;

        assert_int_equal(call(f, "POST", "/api/v1/plans",
                              "{\"name\":\"s\",\"price\":100,\"vcpus\":1,\"memory_mib\":512,\"disk_gib\":5}", NULL, 0),
                         200);
        assert_int_equal(call(f, "POST", "/api/v1/nodes",
                              "{\"id\":\"n1\",\"vcpus\":4,\"memory_mib\":4096,\"disk_gib\":50,"
                              "\"pools\":[\"192.0.2.0/28,192.0.2.1\"]}",
                              NULL, 0),
                         200);
        for (const char *const *id = (const char *const[]){ "a", "b", NULL }; *id; id++) {
                char body[64];

                snprintf(body, sizeof(body), "{\"id\":\"%s\"}", *id);
                assert_int_equal(call(f, "POST", "/api/v1/accounts", body, NULL, 0), 200);
        }
        assert_int_equal(call(f, "POST", "/api/v1/accounts/a/top-up", "{\"amount\":1000}", NULL, 0), 200);
        assert_int_equal(call(f, "POST", "/api/v1/orders", "{\"account\":\"a\",\"plan\":\"s\",\"hostname\":\"h\"}",
                              out, sizeof(out)),
                         200);
        p = strstr(out, "\"uuid\":\"");
        assert_non_null(p);
        memcpy(uuid, p + 8, 36);
        uuid[36] = '\0';
}

static void test_node_policy(void **state)
{
        struct fixture *f = *state;
        char uuid[37], out[4096];

        node_with_service(f, uuid);
        /* A field missing is a bad request, not a missing node. */
        assert_int_equal(call(f, "POST", "/api/v1/nodes/n1/policy", "{\"grace_seconds\":1,\"retention_seconds\":2}",
                              out, sizeof(out)),
                         400);
        assert_string_equal(out, "{\"error\":\"field `autonomous_removal` is missing\"}");
        assert_int_equal(call(f, "POST", "/api/v1/nodes/n1/policy",
                              "{\"grace_seconds\":7776001,\"retention_seconds\":2,\"autonomous_removal\":true}", NULL,
                              0),
                         400);
        assert_int_equal(call(f, "POST", "/api/v1/nodes/n1/policy",
                              "{\"grace_seconds\":1,\"retention_seconds\":2,\"autonomous_removal\":true,"
                              "\"iso_quota_bytes\":0}",
                              NULL, 0),
                         400);
        assert_int_equal(call(f, "POST", "/api/v1/nodes/n1/policy",
                              "{\"grace_seconds\":1,\"retention_seconds\":2,\"autonomous_removal\":true,"
                              "\"iso_quota_bytes\":1048576}",
                              NULL, 0),
                         200);
        /* Without a quota the one kept stays (the node keeps its own too). */
        assert_int_equal(call(f, "POST", "/api/v1/nodes/n1/policy",
                              "{\"grace_seconds\":3,\"retention_seconds\":4,\"autonomous_removal\":false}", NULL, 0),
                         200);
        assert_int_equal(call(f, "GET", "/api/v1/nodes", NULL, out, sizeof(out)), 200);
        assert_non_null(strstr(out, "\"policy\":{\"grace_seconds\":3,\"retention_seconds\":4,\"autonomous_removal\":false,"
                                    "\"iso_quota_bytes\":1048576,\"at\":1735732800}"));
        assert_int_equal(call(f, "GET", "/api/v1/nodes/n1/commands", NULL, out, sizeof(out)), 200);
        assert_non_null(strstr(out, "\"seq\":3,\"kind\":\"set-policy\""));
        assert_null(strstr(strstr(out, "\"seq\":3,"), "iso_quota_bytes"));
}

static int iso_event(struct fixture *f, const char *node, int64_t seq, const char *account, const char *state,
                     const char *service)
{
        struct sync_msg e = { .kind = SYNC_ISO, .seq = seq, .at = 1735732800 + seq, .size = 4096 };
        struct error err = { 0 };

        str_copy(e.iso, sizeof(e.iso), "iso-0123456789abcdef0123");
        str_copy(e.account_id, sizeof(e.account_id), account);
        str_copy(e.state, sizeof(e.state), state);
        str_copy(e.label, sizeof(e.label), "CD");
        str_copy(e.service, sizeof(e.service), service ? service : "");
        return ledger_event_receive(f->ledger, node, &e, 1735732800, &err);
}

static void test_iso_records_and_refusals(void **state)
{
        struct fixture *f = *state;
        char uuid[37], out[4096], body[256], want[256];

        node_with_service(f, uuid);
        /* b has no service on n1: the node does not speak for it. */
        assert_int_equal(iso_event(f, "n1", 1, "b", "uploaded", NULL), 0);
        assert_int_equal(call(f, "GET", "/api/v1/isos", NULL, out, sizeof(out)), 200);
        assert_string_equal(out, "[]");
        assert_int_equal(iso_event(f, "n1", 2, "a", "uploaded", NULL), 0);
        assert_int_equal(iso_event(f, "n1", 3, "a", "approved", NULL), 0);
        assert_int_equal(iso_event(f, "n1", 4, "a", "mounted", uuid), 0);
        assert_int_equal(call(f, "GET", "/api/v1/accounts/a/isos", NULL, out, sizeof(out)), 200);
        snprintf(want, sizeof(want),
                 "[{\"id\":\"iso-0123456789abcdef0123\",\"label\":\"CD\",\"size\":4096,\"sha256\":null,"
                 "\"state\":\"approved\",\"mounted_in\":[\"%s\"]}]",
                 uuid);
        assert_string_equal(out, want);
        /* The owner's refusals read the same whatever the reason. */
        snprintf(body, sizeof(body), "{\"account\":\"b\",\"service\":\"%s\"}", uuid);
        assert_int_equal(call(f, "POST", "/api/v1/isos/iso-0123456789abcdef0123/mount", body, out, sizeof(out)), 403);
        assert_string_equal(out, "{\"error\":\"iso refused\"}");
        snprintf(body, sizeof(body), "{\"account\":\"a\",\"service\":\"%s\"}", uuid);
        assert_int_equal(call(f, "POST", "/api/v1/isos/iso-nosuch/mount", body, out, sizeof(out)), 403);
        assert_string_equal(out, "{\"error\":\"iso refused\"}");
        assert_int_equal(call(f, "POST", "/api/v1/isos/iso-0123456789abcdef0123/delete", "{\"account\":\"a\"}", out,
                              sizeof(out)),
                         409);
        assert_int_equal(call(f, "POST", "/api/v1/accounts/b/iso-upload-ticket",
                              "{\"node\":\"n1\",\"max_bytes\":1}", out, sizeof(out)),
                         403);
        assert_string_equal(out, "{\"error\":\"iso upload refused\"}");
        assert_int_equal(call(f, "POST", "/api/v1/accounts/a/iso-upload-ticket",
                              "{\"node\":\"n1\",\"max_bytes\":68719476737}", NULL, 0),
                         400);
        /* Deleted: out of the customer's list, and its drive freed. */
        assert_int_equal(iso_event(f, "n1", 5, "a", "deleted", NULL), 0);
        assert_int_equal(call(f, "GET", "/api/v1/accounts/a/isos", NULL, out, sizeof(out)), 200);
        assert_string_equal(out, "[]");
        assert_int_equal(call(f, "GET", "/api/v1/isos", NULL, out, sizeof(out)), 200);
        assert_non_null(strstr(out, "\"state\":\"deleted\",\"mounted_in\":[]"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_keys_made_once_and_private, setup, teardown),
                cmocka_unit_test_setup_teardown(test_seal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_node_policy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_iso_records_and_refusals, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
