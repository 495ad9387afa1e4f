/* common/seal: a sealed text opens with its key and label only, and any
 * changed byte is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/seal.h"

static const uint8_t key[SEAL_KEY_SIZE] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };

static void test_round_trip(void **state)
{
        char *sealed = NULL, *plain = NULL;

        (void)state;
        assert_int_equal(seal_text(key, "root-password", "Hunter2-but-longer", &sealed, NULL), 0);
        assert_null(strstr(sealed, "Hunter2"));
        assert_int_equal(unseal_text(key, "root-password", sealed, &plain, NULL), 0);
        assert_string_equal(plain, "Hunter2-but-longer");
        free(plain);
        free(sealed);
}

static void test_fresh_nonce_each_time(void **state)
{
        char *a = NULL, *b = NULL;

        (void)state;
        assert_int_equal(seal_text(key, "x", "same", &a, NULL), 0);
        assert_int_equal(seal_text(key, "x", "same", &b, NULL), 0);
        assert_string_not_equal(a, b);
        free(a);
        free(b);
}

static void test_wrong_key_label_or_byte_refused(void **state)
{
        uint8_t other[SEAL_KEY_SIZE] = { 9 };
        char *sealed = NULL, *plain = NULL;
        struct error err = { 0 };

        (void)state;
        assert_int_equal(seal_text(key, "root-password", "secret", &sealed, NULL), 0);
        assert_int_equal(unseal_text(other, "root-password", sealed, &plain, &err), -EBADMSG);
        assert_int_equal(unseal_text(key, "other-label", sealed, &plain, &err), -EBADMSG);
        sealed[5] = sealed[5] == 'A' ? 'B' : 'A';
        assert_int_equal(unseal_text(key, "root-password", sealed, &plain, &err), -EBADMSG);
        sealed[3] = '\0';
        assert_int_equal(unseal_text(key, "root-password", sealed, &plain, &err), -EBADMSG);
        assert_int_equal(unseal_text(key, "root-password", "not base64 !", &plain, &err), -EBADMSG);
        assert_null(plain);
        free(sealed);
}

static void test_empty_and_too_long(void **state)
{
        char *sealed = NULL, *plain = NULL, *big = malloc(SEAL_PLAIN_MAX + 2);

        (void)state;
        assert_int_equal(seal_text(key, "l", "", &sealed, NULL), 0);
        assert_int_equal(unseal_text(key, "l", sealed, &plain, NULL), 0);
        assert_string_equal(plain, "");
        free(plain);
        free(sealed);
        memset(big, 'a', SEAL_PLAIN_MAX + 1);
        big[SEAL_PLAIN_MAX + 1] = '\0';
        sealed = NULL;
        assert_int_equal(seal_text(key, "l", big, &sealed, NULL), -E2BIG);
        assert_null(sealed);
        free(big);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_fresh_nonce_each_time),
                cmocka_unit_test(test_wrong_key_label_or_byte_refused),
                cmocka_unit_test(test_empty_and_too_long),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
