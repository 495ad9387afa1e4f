/* The sync codec (billing-sync/sync_codec.h): the canonical form and the
 * HMAC, the handshake, a round trip of every kind, and each class of
 * refusal the protocol names: replayed, reordered, forged, tampered,
 * truncated, oversized, unauthenticated, malformed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing-sync/sync_canon.h"
#include "billing-sync/sync_codec.h"
#include "billing-sync/sync_private.h"
#include "common/json.h"
#include "common/util.h"

#define NODE "node-7.fra"
#define UUID "1b4e28ba-2fa1-41d2-883f-0016d3cca427"

static const uint8_t key[SYNC_KEY_SIZE] = "0123456789abcdef0123456789abcde";
static const uint8_t other_key[SYNC_KEY_SIZE] = "fedcba9876543210fedcba987654321";

struct pair {
        struct sync_session *node, *ledger;
};

/* Builds msg on from, delivers it to to; returns what to returned. */
static int deliver(struct sync_session *from, struct sync_session *to, struct sync_msg *msg,
                   struct sync_msg **ret_msg)
{
        struct sync_msg *got = NULL;
        struct error err = { 0 };
        cleanup_free char *text = NULL;
        size_t len = 0;
        int r;

        assert_int_equal(sync_session_build(from, msg, &text, &len, &err), 0);
        assert_int_equal(strlen(text), len);
        r = sync_session_receive(to, text, len, &got, &err);
        if (r < 0)
                assert_true(err.msg[0] != '\0');
        if (ret_msg)
                *ret_msg = got;
        else
                sync_msg_free(got);
        return r;
}

static char *build(struct sync_session *from, struct sync_msg *msg)
{
        struct error err = { 0 };
        char *text = NULL;

        if (sync_session_build(from, msg, &text, NULL, &err) < 0)
                fail_msg("build %s: %s", sync_kind_name(msg->kind), err.msg);
        return text;
}

static int receive_text(struct sync_session *to, const char *text, size_t len, struct error *err)
{
        struct sync_msg *got = NULL;
        int r = sync_session_receive(to, text, len, &got, err);

        sync_msg_free(got);
        return r;
}

static void handshake(struct pair *p, const uint8_t *node_key, const uint8_t *ledger_key)
{
        struct sync_msg m = { .kind = SYNC_HELLO }, *got = NULL;
        cleanup_free char *hello = NULL;
        char peeked[SYNC_NODE_ID_MAX + 1];
        struct error err = { 0 };

        assert_int_equal(sync_session_new(SYNC_ROLE_NODE, NODE, node_key, &p->node, &err), 0);
        hello = build(p->node, &m);
        assert_int_equal(sync_hello_peek(hello, strlen(hello), peeked, &err), 0);
        assert_string_equal(peeked, NODE);
        assert_int_equal(sync_session_new(SYNC_ROLE_LEDGER, peeked, ledger_key, &p->ledger, &err), 0);
        assert_int_equal(receive_text(p->ledger, hello, strlen(hello), &err), 0);
        m = (struct sync_msg){ .kind = SYNC_CHALLENGE };
        if (deliver(p->ledger, p->node, &m, NULL) < 0)
                return;
        m = (struct sync_msg){ .kind = SYNC_AUTH, .last_command_seq = 41 };
        assert_int_equal(deliver(p->node, p->ledger, &m, &got), 0);
        assert_int_equal(got->last_command_seq, 41);
        assert_true(got->authenticated);
        sync_msg_free(got);
        assert_true(sync_session_established(p->ledger));
        assert_false(sync_session_established(p->node));
        m = (struct sync_msg){ .kind = SYNC_WELCOME, .last_event_seq = 9 };
        assert_int_equal(deliver(p->ledger, p->node, &m, NULL), 0);
        assert_true(sync_session_established(p->node));
}

static int setup(void **state)
{
        struct pair *p = calloc(1, sizeof(*p));

        handshake(p, key, key);
        *state = p;
        return 0;
}

static int teardown(void **state)
{
        struct pair *p = *state;

        sync_session_free(p->node);
        sync_session_free(p->ledger);
        free(p);
        return 0;
}

static void test_hmac_rfc4231(void **state)
{
        /* RFC 4231 test case 2. */
        static const uint8_t want[] = { 0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
                                        0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
                                        0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43 };
        const char *parts[] = { "what do ya ", "want for nothing?" };
        size_t lens[] = { 11, 17 };
        uint8_t out[SYNC_HMAC_SIZE];

        (void)state;
        assert_int_equal(sync_hmac((const uint8_t *)"Jefe", 4, (const void *const *)parts, lens, 2, out), 0);
        assert_memory_equal(out, want, sizeof(want));
}

static void canon_is(const char *json, const char *want)
{
        cleanup_json struct json_object *obj = NULL;
        cleanup_free char *text = NULL;
        struct error err = { 0 };

        assert_int_equal(json_parse_object(json, strlen(json), &obj, &err), 0);
        assert_int_equal(sync_canon_write(obj, 1024, &text, NULL, &err), 0);
        assert_string_equal(text, want);
}

static void test_canonical_form(void **state)
{
        cleanup_json struct json_object *obj = NULL;
        char *text = NULL;
        struct error err = { 0 };

        (void)state;
        canon_is("{ \"b\" : [1, -2, true, null], \"a\": {\"z\": \"\\u00e9/\\u2028\", \"y\": \"\\\"\\\\\\n\\u0001\\u007f\"} }",
                 "{\"a\":{\"y\":\"\\\"\\\\\\n\\u0001\x7f\",\"z\":\"\xc3\xa9/\xe2\x80\xa8\"},\"b\":[1,-2,true,null]}");
        canon_is("{\"aa\":1,\"a\":2,\"B\":3,\"\\t\":4}", "{\"\\t\":4,\"B\":3,\"a\":2,\"aa\":1}");
        /* Fractions, bytes that are not UTF-8 and outputs beyond the limit are refused. */
        assert_int_equal(json_parse_object("{\"a\":1.5}", 9, &obj, &err), 0);
        assert_int_equal(sync_canon_write(obj, 1024, &text, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "message.a"));
        json_object_put(obj);
        assert_int_equal(json_parse_object("{\"a\":\"\xff\"}", 9, &obj, &err), 0);
        assert_int_equal(sync_canon_write(obj, 1024, &text, NULL, &err), -EINVAL);
        json_object_put(obj);
        assert_int_equal(json_parse_object("{\"a\":\"xxxxxxxxxx\"}", 18, &obj, &err), 0);
        assert_int_equal(sync_canon_write(obj, 10, &text, NULL, &err), -E2BIG);
        assert_null(text);
}

static void test_utf8(void **state)
{
        (void)state;
        assert_true(sync_utf8_valid("a\xc3\xa9\xf0\x9f\x98\x80", 7));
        assert_false(sync_utf8_valid("\xc0\xaf", 2));         /* overlong */
        assert_false(sync_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
        assert_false(sync_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
        assert_false(sync_utf8_valid("\xe2\x82", 2));         /* cut short */
}

static void test_handshake_and_counters(void **state)
{
        struct pair *p = *state;
        struct sync_msg m = { .kind = SYNC_EVENT_ACK, .seq = 3 }, *got = NULL;

        /* Each side counts its own authenticated messages from 1. */
        assert_int_equal(deliver(p->ledger, p->node, &m, &got), 0);
        assert_int_equal(got->n, 2); /* welcome was 1 */
        assert_int_equal(got->seq, 3);
        sync_msg_free(got);
        m = (struct sync_msg){ .kind = SYNC_COMMAND_ACK, .seq = 42 };
        strcpy(m.result, "applied");
        assert_int_equal(deliver(p->node, p->ledger, &m, &got), 0);
        assert_int_equal(got->n, 2); /* auth was 1 */
        sync_msg_free(got);
}

static void fill_command(struct sync_msg *m, enum sync_kind kind, int64_t seq)
{
        struct error err = { 0 };

        *m = (struct sync_msg){ .kind = kind, .seq = seq };
        strcpy(m->service, UUID);
        switch (kind) {
        case SYNC_PROVISION:
                assert_int_equal(sync_msg_set_json(&m->spec,
                                                   "{\"uuid\":\"" UUID "\",\"account_id\":\"acct-42\",\"hostname\":\"web1\","
                                                   "\"plan\":{\"vcpus\":2,\"traffic_gib\":null},\"paid_until\":1798761600}",
                                                   &err), 0);
                break;
        case SYNC_RENEW: m->paid_until = 1798761600; break;
        case SYNC_SUSPEND: strcpy(m->reason, "unpaid"); break;
        case SYNC_POWER: strcpy(m->action, "force-off"); break;
        case SYNC_REINSTALL:
                strcpy(m->template_name, "debian-12");
                assert_int_equal(sync_msg_add_ssh_key(m, "ssh-ed25519 AAAAC3Nza user@host", &err), 0);
                strcpy(m->root_password, "correct horse battery");
                break;
        case SYNC_RESIZE:
                assert_int_equal(sync_msg_set_json(&m->plan, "{\"vcpus\":4,\"disk_gib\":20}", &err), 0);
                m->confirm_disk_shrink = true;
                break;
        case SYNC_TRANSFER: strcpy(m->account_id, "acct 43"); break;
        case SYNC_SET_POLICY:
                m->service[0] = '\0';
                m->grace_seconds = 3600;
                m->retention_seconds = 3 * 86400;
                m->autonomous_removal = true;
                break;
        case SYNC_ISO_APPROVE: strcpy(m->iso, "netboot-xyz"); strcpy(m->account_id, "acct-42"); break;
        case SYNC_ISO_REJECT:
                m->service[0] = '\0';
                strcpy(m->iso, "netboot-xyz");
                strcpy(m->reason, "not an installer we allow");
                break;
        case SYNC_ISO_MOUNT: strcpy(m->iso, "netboot-xyz"); break;
        case SYNC_ISO_DELETE: m->service[0] = '\0'; strcpy(m->iso, "netboot-xyz"); break;
        default: break;
        }
}

static void fill_event(struct sync_msg *m, enum sync_kind kind, int64_t seq)
{
        *m = (struct sync_msg){ .kind = kind, .seq = seq, .at = 1798000000 };
        strcpy(m->service, UUID);
        switch (kind) {
        case SYNC_STATE: strcpy(m->state, "suspended"); strcpy(m->reason, "lease ended \xe2\x80\x94 unpaid"); break;
        case SYNC_RESULT:
                m->command_seq = 17;
                strcpy(m->op, "provision");
                m->ok = true;
                strcpy(m->root_password, "Xk3-fresh-one-time");
                break;
        case SYNC_USAGE:
                m->buckets = calloc(2, sizeof(*m->buckets));
                m->buckets[0] = (struct sync_bucket){ 1797998400, 3600, 10, 1, 20, 2 };
                m->buckets[1] = (struct sync_bucket){ 1797998700, 300, 0, 0, 9007199254740991, 5 };
                m->n_buckets = 2;
                break;
        case SYNC_REMOVAL_QUEUED: m->remove_after = 0; break;
        case SYNC_INVENTORY:
                m->service[0] = '\0';
                m->services = calloc(1, sizeof(*m->services));
                strcpy(m->services[0].service, UUID);
                strcpy(m->services[0].state, "running");
                m->services[0].paid_until = 1798761600;
                m->n_services = 1;
                break;
        case SYNC_ISO:
                strcpy(m->iso, "iso-0123456789abcdef0123");
                strcpy(m->account_id, "acct-42");
                strcpy(m->state, "uploaded");
                m->size = 4 << 20;
                memset(m->sha256, 'a', 64);
                strcpy(m->label, "Debian 12 netinst ../../etc/passwd");
                m->service[0] = '\0';
                break;
        default: break;
        }
}

/* The received message encodes to what was sent, field for field. */
static void assert_same(const struct sync_msg *sent, const struct sync_msg *got)
{
        cleanup_json struct json_object *a = NULL, *b = NULL;
        cleanup_free char *ta = NULL, *tb = NULL;
        struct error err = { 0 };

        assert_int_equal(got->kind, sent->kind);
        assert_int_equal(sync_msg_encode(sent, &a, &err), 0);
        assert_int_equal(sync_msg_encode(got, &b, &err), 0);
        assert_int_equal(sync_canon_write(a, SYNC_MSG_MAX, &ta, NULL, &err), 0);
        assert_int_equal(sync_canon_write(b, SYNC_MSG_MAX, &tb, NULL, &err), 0);
        assert_string_equal(ta, tb);
}

static void test_round_trip_commands(void **state)
{
        struct pair *p = *state;

        for (enum sync_kind k = SYNC_PROVISION; k <= SYNC_ISO_DELETE; k++) {
                struct sync_msg m, *got = NULL;

                fill_command(&m, k, 100 + k);
                assert_true(sync_kind_is_command(k));
                assert_int_equal(deliver(p->ledger, p->node, &m, &got), 0);
                assert_true(got->authenticated);
                assert_int_equal(got->seq, 100 + k);
                assert_same(&m, got);
                if (k == SYNC_REINSTALL) {
                        assert_int_equal(got->n_ssh_keys, 1);
                        assert_string_equal(got->root_password, "correct horse battery");
                }
                if (k == SYNC_PROVISION)
                        assert_non_null(strstr(got->spec, "\"traffic_gib\":null"));
                /* As a command journal keeps it, and back. */
                {
                        struct sync_msg back;
                        cleanup_free char *body = NULL;
                        struct error err = { 0 };

                        assert_int_equal(sync_msg_to_body(got, &body, &err), 0);
                        assert_null(strstr(body, "\"n\""));
                        assert_int_equal(sync_msg_from_body(body, &back, &err), 0);
                        back.n = got->n;
                        assert_same(got, &back);
                        sync_msg_clear(&back);
                }
                sync_msg_free(got);
                sync_msg_clear(&m);
        }
}

static void test_round_trip_events(void **state)
{
        struct pair *p = *state;

        for (enum sync_kind k = SYNC_STATE; k <= SYNC_ISO; k++) {
                struct sync_msg m, *got = NULL;

                fill_event(&m, k, 7 + k);
                assert_true(sync_kind_is_event(k));
                assert_int_equal(deliver(p->node, p->ledger, &m, &got), 0);
                assert_int_equal(got->at, 1798000000);
                assert_same(&m, got);
                if (k == SYNC_USAGE)
                        assert_int_equal(got->buckets[1].out_bytes, 9007199254740991);
                sync_msg_free(got);
                sync_msg_clear(&m);
        }
}

static void test_error_both_ways(void **state)
{
        struct pair *p = *state;
        struct sync_msg m = { .kind = SYNC_ERROR }, *got = NULL;

        strcpy(m.code, "out-of-order");
        strcpy(m.reason, "command seq 12 after 10");
        assert_int_equal(deliver(p->node, p->ledger, &m, &got), 0);
        assert_string_equal(got->code, "out-of-order");
        assert_true(got->authenticated);
        sync_msg_free(got);
        assert_int_equal(deliver(p->ledger, p->node, &m, NULL), 0);
}

static void test_replayed(void **state)
{
        struct pair *p = *state;
        struct sync_msg m;
        cleanup_free char *text = NULL;
        struct error err = { 0 };

        fill_command(&m, SYNC_RENEW, 5);
        text = build(p->ledger, &m);
        assert_int_equal(receive_text(p->node, text, strlen(text), &err), 0);
        assert_int_equal(receive_text(p->node, text, strlen(text), &err), -EALREADY);
        assert_string_equal(sync_reject_code(err.code), "replayed");
        assert_int_equal(sync_session_rejects(p->node), 1);
}

static void test_reordered(void **state)
{
        struct pair *p = *state;
        struct sync_msg m;
        cleanup_free char *first = NULL, *second = NULL;
        struct error err = { 0 };

        fill_command(&m, SYNC_SUSPEND, 5);
        first = build(p->ledger, &m);
        fill_command(&m, SYNC_UNSUSPEND, 6);
        second = build(p->ledger, &m);
        assert_int_equal(receive_text(p->node, second, strlen(second), &err), 0);
        assert_int_equal(receive_text(p->node, first, strlen(first), &err), -EALREADY);
        assert_non_null(strstr(err.msg, "reordered"));
}

static void test_replayed_from_old_session(void **state)
{
        struct pair *p = *state, q = { 0 };
        struct sync_msg m;
        cleanup_free char *text = NULL;
        struct error err = { 0 };

        fill_command(&m, SYNC_TERMINATE, 5);
        m.n = 0;
        text = build(p->ledger, &m);
        handshake(&q, key, key);
        /* Same key, same counter value (2), other nonces: another MAC key. */
        assert_int_equal(receive_text(q.node, text, strlen(text), &err), -EBADMSG);
        assert_string_equal(sync_reject_code(err.code), "bad-mac");
        sync_session_free(q.node);
        sync_session_free(q.ledger);
}

static void test_forged(void **state)
{
        struct pair *p = *state;
        struct sync_msg m;
        cleanup_free char *text = NULL;
        char *mac;
        struct error err = { 0 };

        fill_command(&m, SYNC_TERMINATE, 5);
        text = build(p->ledger, &m);
        mac = strstr(text, "\"mac\":\"") + 7;
        mac[0] = mac[0] == 'A' ? 'B' : 'A';
        assert_int_equal(receive_text(p->node, text, strlen(text), &err), -EBADMSG);
        /* Without any MAC at all. */
        strcpy(text, "{\"v\":1,\"kind\":\"terminate\",\"n\":9,\"seq\":5,\"service\":\"" UUID "\"}");
        assert_int_equal(receive_text(p->node, text, strlen(text), &err), -EBADMSG);
        /* A message the node sent, reflected back to it. */
        fill_event(&m, SYNC_REMOVAL_QUEUED, 3);
        free(text);
        text = build(p->node, &m);
        assert_int_equal(receive_text(p->node, text, strlen(text), &err), -EINVAL);
        assert_non_null(strstr(err.msg, "not sent by the ledger"));
        /* A ledger without the node's key cannot complete the handshake. */
        {
                struct pair q = { 0 };
                handshake(&q, key, other_key);
                assert_false(sync_session_established(q.node));
                sync_session_free(q.node);
                sync_session_free(q.ledger);
        }
}

static void test_tampered(void **state)
{
        struct pair *p = *state;
        struct sync_msg m;
        cleanup_free char *text = NULL;
        char *at;
        struct error err = { 0 };

        fill_command(&m, SYNC_RENEW, 5);
        text = build(p->ledger, &m);
        at = strstr(text, "1798761600");
        at[3] = '9'; /* a longer lease */
        assert_int_equal(receive_text(p->node, text, strlen(text), &err), -EBADMSG);
        /* The untouched one still goes through: refusals move nothing. */
        at[3] = '8';
        assert_int_equal(receive_text(p->node, text, strlen(text), &err), 0);
}

static void test_truncated(void **state)
{
        struct pair *p = *state;
        struct sync_msg m;
        cleanup_free char *text = NULL;
        size_t len;
        struct error err = { 0 };

        fill_command(&m, SYNC_PROVISION, 5);
        text = build(p->ledger, &m);
        sync_msg_clear(&m);
        len = strlen(text);
        for (size_t cut = 0; cut < len; cut += 7) {
                int r = receive_text(p->node, text, cut, &err);
                assert_true(r == -EINVAL || r == -ENOENT);
                assert_string_equal(sync_reject_code(r), "malformed");
        }
        assert_int_equal(receive_text(p->node, text, len, &err), 0);
}

static void test_oversized(void **state)
{
        struct pair *p = *state;
        size_t len = SYNC_MSG_MAX + 1;
        cleanup_free char *big = malloc(len);
        struct sync_msg m = { .kind = SYNC_PROVISION, .seq = 5 };
        cleanup_free char *spec = malloc(SYNC_MSG_MAX);
        struct error err = { 0 };
        char *text = NULL;

        memset(big, ' ', len);
        assert_int_equal(receive_text(p->node, big, len, &err), -E2BIG);
        assert_string_equal(sync_reject_code(err.code), "oversized");
        /* Nor is one built. */
        strcpy(m.service, UUID);
        snprintf(spec, SYNC_MSG_MAX, "{\"uuid\":\"%s\",\"x\":\"", UUID);
        memset(spec + strlen(spec), 'x', SYNC_MSG_MAX - 40 - strlen(spec));
        strcpy(spec + SYNC_MSG_MAX - 40, "\"}");
        assert_int_equal(sync_msg_set_json(&m.spec, spec, &err), 0);
        assert_int_equal(sync_session_build(p->ledger, &m, &text, NULL, &err), -E2BIG);
        assert_null(text);
        sync_msg_clear(&m);
}

static void test_unauthenticated(void **state)
{
        struct sync_session *node = NULL, *ledger = NULL;
        struct sync_msg m;
        cleanup_free char *text = NULL, *hello = NULL;
        struct error err = { 0 };

        (void)state;
        assert_int_equal(sync_session_new(SYNC_ROLE_NODE, NODE, key, &node, &err), 0);
        assert_int_equal(sync_session_new(SYNC_ROLE_LEDGER, NODE, key, &ledger, &err), 0);
        /* A command in clear before any handshake. */
        strcpy(m.service, UUID);
        text = strdup("{\"v\":1,\"kind\":\"terminate\",\"seq\":1,\"service\":\"" UUID "\"}");
        assert_int_equal(receive_text(node, text, strlen(text), &err), -EACCES);
        assert_true(sync_reject_is_fatal(err.code));
        assert_string_equal(sync_reject_code(err.code), "unauthenticated");
        /* A node may not send commands-acks before welcome either. */
        m = (struct sync_msg){ .kind = SYNC_COMMAND_ACK, .seq = 1 };
        strcpy(m.result, "applied");
        assert_int_equal(sync_session_build(node, &m, &text, NULL, &err), -EPROTO);
        /* A hello naming another node, and a second hello. */
        m = (struct sync_msg){ .kind = SYNC_HELLO };
        hello = build(node, &m);
        {
                struct sync_session *other = NULL;
                assert_int_equal(sync_session_new(SYNC_ROLE_LEDGER, "node-8", key, &other, &err), 0);
                assert_int_equal(receive_text(other, hello, strlen(hello), &err), -EACCES);
                assert_string_equal(err.msg, "authentication failed");
                sync_session_free(other);
        }
        assert_int_equal(receive_text(ledger, hello, strlen(hello), &err), 0);
        assert_int_equal(receive_text(ledger, hello, strlen(hello), &err), -EINVAL);
        /* A plain error is read before the keys exist, never as authenticated. */
        free(text);
        text = strdup("{\"v\":1,\"kind\":\"error\",\"code\":\"unauthenticated\",\"reason\":\"authentication failed\"}");
        {
                struct sync_msg *got = NULL;
                assert_int_equal(sync_session_receive(node, text, strlen(text), &got, &err), 0);
                assert_false(got->authenticated);
                sync_msg_free(got);
        }
        sync_session_free(node);
        sync_session_free(ledger);
}

static void test_plain_error_after_handshake(void **state)
{
        struct pair *p = *state;
        const char *text = "{\"v\":1,\"kind\":\"error\",\"code\":\"malformed\",\"reason\":\"x\"}";
        struct error err = { 0 };

        assert_int_equal(receive_text(p->node, text, strlen(text), &err), -EBADMSG);
}

static void expect_plain(const char *text, int want, const char *in_msg)
{
        struct sync_session *ledger = NULL;
        struct error err = { 0 };

        assert_int_equal(sync_session_new(SYNC_ROLE_LEDGER, NODE, key, &ledger, &err), 0);
        assert_int_equal(receive_text(ledger, text, strlen(text), &err), want);
        if (in_msg && !strstr(err.msg, in_msg))
                fail_msg("`%s`: `%s` has no `%s`", text, err.msg, in_msg);
        sync_session_free(ledger);
}

#define NONCE "\"nonce\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""

static void test_malformed(void **state)
{
        (void)state;
        expect_plain("{\"v\":1,\"kind\":\"hello\",\"node\":\"" NODE "\"," NONCE "}", 0, NULL);
        expect_plain("{\"v\":2,\"kind\":\"hello\",\"node\":\"" NODE "\"," NONCE "}", -EPROTONOSUPPORT, "version 2");
        expect_plain("{\"kind\":\"hello\",\"node\":\"" NODE "\"," NONCE "}", -ENOENT, "`v`");
        expect_plain("{\"v\":1,\"kind\":\"howdy\"}", -EINVAL, "unknown kind");
        expect_plain("{\"v\":1,\"kind\":\"hello\",\"node\":\"" NODE "\"," NONCE ",\"x\":1}", -EINVAL,
                     "unknown field `x`");
        expect_plain("{\"v\":1,\"kind\":\"hello\",\"node\":7," NONCE "}", -EINVAL, "`node` must be a string");
        expect_plain("{\"v\":1,\"kind\":\"hello\",\"node\":\"Node 7\"," NONCE "}", -EINVAL, "`node`");
        expect_plain("{\"v\":1,\"kind\":\"hello\",\"node\":\"" NODE "\",\"nonce\":\"AAAA\"}", -EINVAL, "`nonce`");
        expect_plain("{\"v\":1,\"kind\":\"hello\",\"node\":\"" NODE "\"," NONCE ",\"n\":1}", -EINVAL, "no `mac`");
        expect_plain("{\"v\":1,\"kind\":\"hello\",\"node\":\"" NODE "\"," NONCE "} x", -EINVAL, "unexpected bytes");
        expect_plain("[1]", -EINVAL, "expected a JSON object");
        expect_plain("{\"v\":1,\"kind\":\"challenge\"," NONCE ",\"proof\":\"x\"}", -EINVAL, "not sent by the node");
}

static void test_decode_strictness(void **state)
{
        static const struct {
                const char *json;
                const char *in_msg;
        } bad[] = {
                { "{\"v\":1,\"kind\":\"renew\",\"seq\":0,\"service\":\"" UUID "\",\"paid_until\":1}", "`seq`" },
                { "{\"v\":1,\"kind\":\"renew\",\"seq\":1,\"service\":\"" UUID "\",\"paid_until\":-1}", "`paid_until`" },
                { "{\"v\":1,\"kind\":\"renew\",\"seq\":1,\"service\":\"1B4E28BA-2FA1-41D2-883F-0016D3CCA427\",\"paid_until\":1}", "`service`" },
                { "{\"v\":1,\"kind\":\"renew\",\"seq\":1,\"service\":\"" UUID "\",\"paid_until\":1.0}", "`paid_until`" },
                { "{\"v\":1,\"kind\":\"suspend\",\"seq\":1,\"service\":\"" UUID "\",\"reason\":\"bored\"}", "`reason`" },
                { "{\"v\":1,\"kind\":\"power\",\"seq\":1,\"service\":\"" UUID "\",\"action\":\"\"}", "`action`" },
                { "{\"v\":1,\"kind\":\"resize\",\"seq\":1,\"service\":\"" UUID "\",\"plan\":{},\"confirm_disk_shrink\":1}", "confirm_disk_shrink" },
                { "{\"v\":1,\"kind\":\"resize\",\"seq\":1,\"service\":\"" UUID "\",\"plan\":{\"a\":0.5},\"confirm_disk_shrink\":true}", "plan" },
                { "{\"v\":1,\"kind\":\"provision\",\"seq\":1,\"service\":\"" UUID "\",\"spec\":{\"uuid\":\"0b4e28ba-2fa1-41d2-883f-0016d3cca427\"}}", "not the service's" },
                { "{\"v\":1,\"kind\":\"set-policy\",\"seq\":1,\"grace_seconds\":0,\"retention_seconds\":7776001,\"autonomous_removal\":false}", "retention_seconds" },
                { "{\"v\":1,\"kind\":\"usage\",\"seq\":1,\"at\":1,\"service\":\"" UUID "\",\"buckets\":[{\"start\":1,\"size\":300,\"in_bytes\":0,\"in_packets\":0,\"out_bytes\":0,\"out_packets\":0}]}", "buckets[0]" },
                { "{\"v\":1,\"kind\":\"usage\",\"seq\":1,\"at\":1,\"service\":\"" UUID "\",\"buckets\":[{\"start\":0,\"size\":300}]}", "buckets[0]" },
                { "{\"v\":1,\"kind\":\"inventory\",\"seq\":1,\"at\":1,\"services\":[{\"service\":\"" UUID "\",\"state\":\"running\",\"paid_until\":1,\"x\":0}]}", "services[0]" },
                { "{\"v\":1,\"kind\":\"state\",\"seq\":1,\"service\":\"" UUID "\",\"state\":\"running\"}", "`at`" },
                { "{\"v\":1,\"kind\":\"state\",\"seq\":1,\"at\":1,\"service\":\"" UUID "\",\"state\":\"running\",\"reason\":\"a\\nb\"}", "`reason`" },
                { "{\"v\":1,\"kind\":\"transfer\",\"seq\":1,\"service\":\"" UUID "\",\"account_id\":\"a\\u0000b\"}", "NUL" },
                { "{\"v\":1,\"kind\":\"reinstall\",\"seq\":1,\"service\":\"" UUID "\",\"template\":\"d\",\"ssh_keys\":[1]}", "ssh_keys[0]" },
        };
        struct error err = { 0 };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                cleanup_json struct json_object *obj = NULL;
                struct sync_msg m;

                assert_int_equal(json_parse_object(bad[i].json, strlen(bad[i].json), &obj, &err), 0);
                if (sync_msg_decode(obj, &m, &err) >= 0)
                        fail_msg("accepted: %s", bad[i].json);
                if (!strstr(err.msg, bad[i].in_msg))
                        fail_msg("`%s`: `%s` has no `%s`", bad[i].json, err.msg, bad[i].in_msg);
        }
}

/* The iso event's optional fields: absent when empty, refused when bad. */
static void test_iso_event_fields(void **state)
{
        static const char *const bad[] = {
                "{\"v\":1,\"kind\":\"iso\",\"seq\":1,\"at\":1,\"iso\":\"a\",\"account_id\":\"x\",\"state\":\"lost\"}",
                "{\"v\":1,\"kind\":\"iso\",\"seq\":1,\"at\":1,\"iso\":\"A/b\",\"account_id\":\"x\",\"state\":\"approved\"}",
                "{\"v\":1,\"kind\":\"iso\",\"seq\":1,\"at\":1,\"iso\":\"a\",\"account_id\":\"x\",\"state\":\"approved\","
                "\"size\":0}",
                "{\"v\":1,\"kind\":\"iso\",\"seq\":1,\"at\":1,\"iso\":\"a\",\"account_id\":\"x\",\"state\":\"approved\","
                "\"sha256\":\"ABC\"}",
        };
        struct sync_msg m = { .kind = SYNC_ISO, .seq = 3, .at = 5 }, back;
        cleanup_free char *body = NULL;
        struct error err = { 0 };

        (void)state;
        strcpy(m.iso, "iso-1");
        strcpy(m.account_id, "acct-42");
        strcpy(m.state, "approved");
        assert_int_equal(sync_msg_to_body(&m, &body, &err), 0);
        assert_null(strstr(body, "size"));
        assert_null(strstr(body, "sha256"));
        assert_null(strstr(body, "service"));
        assert_int_equal(sync_msg_from_body(body, &back, &err), 0);
        assert_int_equal(back.size, 0);
        assert_string_equal(back.state, "approved");
        sync_msg_clear(&back);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_true(sync_msg_from_body(bad[i], &back, &err) < 0);
                assert_true(err.msg[0] != '\0');
        }
}

static void test_seq_check(void **state)
{
        struct error err = { 0 };

        (void)state;
        assert_int_equal(sync_seq_check(0, 1, &err), 0);
        assert_int_equal(sync_seq_check(10, 11, &err), 0);
        assert_int_equal(sync_seq_check(10, 10, &err), 1);
        assert_int_equal(sync_seq_check(10, 3, &err), 1);
        assert_int_equal(sync_seq_check(10, 12, &err), -ENOMSG);
        assert_string_equal(sync_reject_code(err.code), "out-of-order");
        assert_false(sync_reject_is_fatal(-ENOMSG));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hmac_rfc4231),
                cmocka_unit_test(test_canonical_form),
                cmocka_unit_test(test_utf8),
                cmocka_unit_test_setup_teardown(test_handshake_and_counters, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_trip_commands, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_trip_events, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_both_ways, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replayed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reordered, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replayed_from_old_session, setup, teardown),
                cmocka_unit_test_setup_teardown(test_forged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tampered, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
                cmocka_unit_test(test_unauthenticated),
                cmocka_unit_test_setup_teardown(test_plain_error_after_handshake, setup, teardown),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_decode_strictness),
                cmocka_unit_test(test_seq_check),
                cmocka_unit_test(test_iso_event_fields),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
