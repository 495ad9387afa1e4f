/* libFuzzer target: the sync codec on arbitrary bytes, three ways: as the
 * first message of a connection (sync_hello_peek and a fresh ledger
 * session), as a message into an established node session (where the MAC
 * stops nearly everything), and straight into the field reader behind the
 * MAC. Whatever the reader accepts must build again to a message that
 * reads back the same; a refusal must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "billing-sync/sync_canon.h"
#include "billing-sync/sync_private.h"
#include "common/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key[SYNC_KEY_SIZE] = "fuzzing-key-fuzzing-key-fuzzing";

static void refused_with_reason(int r, const struct error *err)
{
        if (r < 0 && (err->code != r || err->msg[0] == '\0'))
                abort();
}

static void through_session(struct sync_session *s, const char *text, size_t size)
{
        struct sync_msg *msg = NULL;
        struct error err = { 0 };
        int r = sync_session_receive(s, text, size, &msg, &err);

        refused_with_reason(r, &err);
        sync_msg_free(msg);
}

static void through_reader(const char *text, size_t size)
{
        cleanup_json struct json_object *obj = NULL, *again = NULL;
        struct sync_msg msg, back;
        struct error err = { 0 };
        char *a = NULL, *b = NULL;
        int r;

        if (json_parse_object(text, size, &obj, &err) < 0)
                return;
        json_object_object_del(obj, "mac");
        r = sync_msg_decode(obj, &msg, &err);
        refused_with_reason(r, &err);
        if (r < 0)
                return;
        if (sync_msg_encode(&msg, &again, &err) < 0 || sync_canon_write(again, SYNC_MSG_MAX * 2, &a, NULL, &err) < 0)
                abort();
        if (sync_msg_decode(again, &back, &err) < 0)
                abort();
        json_object_put(again);
        again = NULL;
        if (sync_msg_encode(&back, &again, &err) < 0 || sync_canon_write(again, SYNC_MSG_MAX * 2, &b, NULL, &err) < 0 ||
            strcmp(a, b) != 0)
                abort();
        free(a);
        free(b);
        sync_msg_clear(&msg);
        sync_msg_clear(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct sync_session *established;
        const char *text = (const char *)data;
        char node[SYNC_NODE_ID_MAX + 1];
        struct sync_session *fresh = NULL;
        struct error err = { 0 };

        if (!established) {
                /* A node session that believes the handshake is done. */
                struct sync_session *ledger = NULL;
                struct sync_msg m = { .kind = SYNC_HELLO }, *got = NULL;
                char *t = NULL;

                if (sync_session_new(SYNC_ROLE_NODE, "fuzz", key, &established, &err) < 0 ||
                    sync_session_new(SYNC_ROLE_LEDGER, "fuzz", key, &ledger, &err) < 0 ||
                    sync_session_build(established, &m, &t, NULL, &err) < 0 ||
                    sync_session_receive(ledger, t, strlen(t), &got, &err) < 0)
                        abort();
                for (int step = 0; step < 3; step++) {
                        enum sync_kind k[] = { SYNC_CHALLENGE, SYNC_AUTH, SYNC_WELCOME };
                        struct sync_session *from = step == 1 ? established : ledger;
                        struct sync_session *to = step == 1 ? ledger : established;

                        free(t);
                        sync_msg_free(got);
                        m = (struct sync_msg){ .kind = k[step] };
                        if (sync_session_build(from, &m, &t, NULL, &err) < 0 ||
                            sync_session_receive(to, t, strlen(t), &got, &err) < 0)
                                abort();
                }
                free(t);
                sync_msg_free(got);
                sync_session_free(ledger);
        }
        refused_with_reason(sync_hello_peek(text, size, node, &err), &err);
        if (sync_session_new(SYNC_ROLE_LEDGER, "fuzz", key, &fresh, &err) < 0)
                abort();
        through_session(fresh, text, size);
        sync_session_free(fresh);
        through_session(established, text, size);
        through_reader(text, size);
        return 0;
}
