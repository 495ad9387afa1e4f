/* Console tickets (common/ticket) and their base64url (common/base64url):
 * round trips, every kind of refusal, and that a ticket signed by a key
 * the node does not know is refused before its payload is read. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/base64url.h"
#include "common/ticket.h"

#define NOW 1800000000

static void test_base64url_vectors(void **state)
{
        /* RFC 4648 §10 vectors, unpadded, in the URL alphabet. */
        static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
        static const char *const coded[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
        char out[16];
        uint8_t back[16];

        (void)state;
        for (size_t i = 0; i < 7; i++) {
                assert_int_equal(base64url_encode(plain[i], strlen(plain[i]), out, sizeof(out)), 0);
                assert_string_equal(out, coded[i]);
                assert_int_equal(base64url_decode(coded[i], strlen(coded[i]), back, sizeof(back)),
                                 (int)strlen(plain[i]));
                assert_memory_equal(back, plain[i], strlen(plain[i]));
        }
        assert_int_equal(base64url_encode("\xfb\xff", 2, out, sizeof(out)), 0);
        assert_string_equal(out, "-_8");
}

static void test_base64url_refusals(void **state)
{
        uint8_t back[4];
        char small[4];

        (void)state;
        assert_int_equal(base64url_decode("Zm9v=", 5, back, sizeof(back)), -EINVAL);  /* padding */
        assert_int_equal(base64url_decode("Zm+v", 4, back, sizeof(back)), -EINVAL);   /* standard alphabet */
        assert_int_equal(base64url_decode("Z", 1, back, sizeof(back)), -EINVAL);      /* no such length */
        assert_int_equal(base64url_decode("Zh", 2, back, sizeof(back)), -EINVAL);     /* stray bits */
        assert_int_equal(base64url_decode("Zm9vYmFy", 8, back, 4), -ENOBUFS);
        assert_int_equal(base64url_encode("foo", 3, small, sizeof(small)), -ENOBUFS); /* no room for the NUL */
        assert_string_equal(small, "");
}

struct keys {
        struct ed25519_key *ledger, *other;
};

static int setup(void **state)
{
        static struct keys k;

        if (ed25519_key_generate(&k.ledger, NULL) < 0 || ed25519_key_generate(&k.other, NULL) < 0)
                return -1;
        *state = &k;
        return 0;
}

static int teardown(void **state)
{
        struct keys *k = *state;

        ed25519_key_free(k->ledger);
        ed25519_key_free(k->other);
        return 0;
}

static struct ticket sample(void)
{
        struct ticket t = { .service = "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
                            .account = "acct 42",
                            .kind = CONSOLE_SERIAL,
                            .issued_at = NOW,
                            .expires_at = NOW + 60 };

        assert_int_equal(ticket_nonce_new(&t, NULL), 0);
        return t;
}

static int verify_at(struct keys *k, const char *text, int64_t now, struct ticket *out, struct error *err)
{
        struct ed25519_key *keys[] = { NULL, k->ledger };

        return ticket_verify(text, strlen(text), keys, 2, now, out, err);
}

static void test_round_trip(void **state)
{
        struct keys *k = *state;
        struct ticket t = sample(), back;
        char text[EDGE_TICKET_MAX + 1];
        struct error err = { 0 };

        assert_int_equal(strlen(t.nonce), TICKET_NONCE_LEN);
        assert_int_equal(ticket_sign(&t, k->ledger, text, sizeof(text), &err), 0);
        assert_non_null(strchr(text, '.'));
        assert_int_equal(verify_at(k, text, NOW, &back, &err), 0);
        assert_string_equal(back.service, t.service);
        assert_string_equal(back.account, t.account);
        assert_int_equal(back.kind, CONSOLE_SERIAL);
        assert_int_equal(back.issued_at, NOW);
        assert_int_equal(back.expires_at, NOW + 60);
        assert_string_equal(back.nonce, t.nonce);
}

static void expect_refused(struct keys *k, const char *text, int64_t now, int code, const char *why)
{
        struct ticket back;
        struct error err = { 0 };

        assert_int_equal(verify_at(k, text, now, &back, &err), code);
        if (!strstr(err.msg, why))
                fail_msg("`%s` does not say `%s`", err.msg, why);
}

static void test_times(void **state)
{
        struct keys *k = *state;
        struct ticket t = sample(), back;
        char text[EDGE_TICKET_MAX + 1];

        assert_int_equal(ticket_sign(&t, k->ledger, text, sizeof(text), NULL), 0);
        /* The signer's clock may be TICKET_CLOCK_SKEW ahead or behind. */
        assert_int_equal(verify_at(k, text, NOW - TICKET_CLOCK_SKEW, &back, NULL), 0);
        assert_int_equal(verify_at(k, text, NOW + 60 + TICKET_CLOCK_SKEW - 1, &back, NULL), 0);
        expect_refused(k, text, NOW - TICKET_CLOCK_SKEW - 1, -ETIME, "in the future");
        expect_refused(k, text, NOW + 60 + TICKET_CLOCK_SKEW, -ETIME, "expired");

        t.expires_at = NOW + 61;
        assert_int_equal(ticket_sign(&t, k->ledger, text, sizeof(text), NULL), 0);
        expect_refused(k, text, NOW, -EINVAL, "lifetime");
        t.expires_at = NOW;
        assert_int_equal(ticket_sign(&t, k->ledger, text, sizeof(text), NULL), 0);
        expect_refused(k, text, NOW, -EINVAL, "lifetime");
}

static void test_forged_and_tampered(void **state)
{
        struct keys *k = *state;
        struct ticket t = sample();
        char text[EDGE_TICKET_MAX + 1], copy[EDGE_TICKET_MAX + 1];

        assert_int_equal(ticket_sign(&t, k->other, text, sizeof(text), NULL), 0);
        expect_refused(k, text, NOW, -EPERM, "bad signature");

        assert_int_equal(ticket_sign(&t, k->ledger, text, sizeof(text), NULL), 0);
        /* One changed character anywhere: payload or signature. */
        for (size_t i = 0; i < strlen(text); i++) {
                if (text[i] == '.')
                        continue;
                strcpy(copy, text);
                copy[i] = copy[i] == 'A' ? 'B' : 'A';
                struct ticket back;
                assert_int_not_equal(verify_at(k, copy, NOW, &back, NULL), 0);
        }
        expect_refused(k, "", NOW, -EINVAL, "no signature");
        expect_refused(k, "abc.def", NOW, -EINVAL, "malformed");
        strcpy(copy, text);
        copy[strlen(copy) - 1] = '\0';
        expect_refused(k, copy, NOW, -EINVAL, "malformed");
}

/* A ticket whose payload is signed but not in the form: refused by form. */
static void test_signed_garbage(void **state)
{
        struct keys *k = *state;
#define PAYLOAD(text) { text, sizeof(text) - 1 }
        static const struct {
                const char *bytes;
                size_t len;
        } payloads[] = {
                PAYLOAD("vpsd-console-ticket-2\n"),
                PAYLOAD("vpsd-console-ticket-1\nservice=nope\n"),
                PAYLOAD("vpsd-console-ticket-1\nservice=1b4e28ba-2fa1-41d2-883f-0016d3cca427\naccount=a\nkind=ssh\n"),
                PAYLOAD("vpsd-console-ticket-1\nservice=1b4e28ba-2fa1-41d2-883f-0016d3cca427\naccount=a\nkind=vnc\n"
                        "iat=01\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAAA\n"),
                PAYLOAD("vpsd-console-ticket-1\nservice=1b4e28ba-2fa1-41d2-883f-0016d3cca427\naccount=a\nkind=vnc\n"
                        "iat=1\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAAA\nextra=1\n"),
                PAYLOAD("vpsd-console-ticket-1\nservice=1b4e28ba-2fa1-41d2-883f-0016d3cca427\naccount=a\nkind=vnc\n"
                        "iat=1\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAA\n"),
                /* A NUL inside a value (found by fuzz_ticket): no C string
                 * may cut a field short. */
                PAYLOAD("vpsd-console-ticket-1\nservice=1b4e28ba-2fa1-41d2-883f-0016d3cca427\naccount=a\0b\nkind=vnc\n"
                        "iat=1\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAAA\n"),
                /* ISO upload tickets: max_bytes from 1 to 2^53 - 1, a
                 * decimal without sign or leading zeros; no console field. */
                PAYLOAD("vpsd-iso-upload-ticket-1\naccount=a\nmax_bytes=0\niat=1\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAAA\n"),
                PAYLOAD("vpsd-iso-upload-ticket-1\naccount=a\nmax_bytes=01\niat=1\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAAA\n"),
                PAYLOAD("vpsd-iso-upload-ticket-1\naccount=a\nmax_bytes=-5\niat=1\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAAA\n"),
                PAYLOAD("vpsd-iso-upload-ticket-1\naccount=a\nmax_bytes=9007199254740992\niat=1\nexp=2\n"
                        "nonce=AAAAAAAAAAAAAAAAAAAAAA\n"),
                PAYLOAD("vpsd-iso-upload-ticket-1\nservice=1b4e28ba-2fa1-41d2-883f-0016d3cca427\naccount=a\n"
                        "max_bytes=1\niat=1\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAAA\n"),
                PAYLOAD("vpsd-iso-upload-ticket-1\naccount=a\niat=1\nexp=2\nnonce=AAAAAAAAAAAAAAAAAAAAAA\n"),
                PAYLOAD("vpsd-iso-upload-ticket-1"),
        };
#undef PAYLOAD
        for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
                uint8_t sig[ED25519_SIGNATURE_SIZE];
                char text[EDGE_TICKET_MAX + 1];
                size_t n;

                assert_int_equal(ed25519_sign(k->ledger, payloads[i].bytes, payloads[i].len, sig, NULL), 0);
                assert_int_equal(base64url_encode(payloads[i].bytes, payloads[i].len, text, sizeof(text)), 0);
                n = strlen(text);
                text[n++] = '.';
                assert_int_equal(base64url_encode(sig, sizeof(sig), text + n, sizeof(text) - n), 0);
                expect_refused(k, text, NOW, -EINVAL, "");
        }
}

static void test_iso_upload_round_trip(void **state)
{
        struct keys *k = *state;
        struct ticket t = { .type = TICKET_ISO_UPLOAD, .account = "acct 42", .max_bytes = TICKET_MAX_BYTES,
                            .issued_at = NOW, .expires_at = NOW + 60 },
                      back;
        char text[EDGE_TICKET_MAX + 1];
        uint8_t payload[512];
        int n;

        assert_int_equal(ticket_nonce_new(&t, NULL), 0);
        assert_int_equal(ticket_sign(&t, k->ledger, text, sizeof(text), NULL), 0);
        assert_int_equal(verify_at(k, text, NOW, &back, NULL), 0);
        assert_int_equal(back.type, TICKET_ISO_UPLOAD);
        assert_string_equal(back.account, "acct 42");
        assert_true(back.max_bytes == TICKET_MAX_BYTES);
        assert_string_equal(back.service, "");
        /* The payload is the documented one, byte for byte. */
        n = base64url_decode(text, (size_t)(strchr(text, '.') - text), payload, sizeof(payload));
        assert_true(n > 0);
        payload[n] = 0;
        assert_non_null(strstr((char *)payload, "vpsd-iso-upload-ticket-1\naccount=acct 42\n"
                                                "max_bytes=9007199254740991\niat=1800000000\nexp=1800000060\nnonce="));
        /* The same lifetime rules as a console ticket. */
        t.expires_at = NOW + 61;
        assert_int_equal(ticket_sign(&t, k->ledger, text, sizeof(text), NULL), 0);
        expect_refused(k, text, NOW, -EINVAL, "lifetime");
        /* And a console ticket is still a console ticket. */
        t = sample();
        assert_int_equal(ticket_sign(&t, k->ledger, text, sizeof(text), NULL), 0);
        assert_int_equal(verify_at(k, text, NOW, &back, NULL), 0);
        assert_int_equal(back.type, TICKET_CONSOLE);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64url_vectors),
                cmocka_unit_test(test_base64url_refusals),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_times),
                cmocka_unit_test(test_iso_upload_round_trip),
                cmocka_unit_test(test_forged_and_tampered),
                cmocka_unit_test(test_signed_garbage),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
