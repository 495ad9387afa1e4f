/* node/secret: generated passwords use only the unambiguous alphabet and
 * differ; hashes are SHA-512-crypt with a 16-character salt that differs
 * every time, verify against the password and against a hash made by
 * another implementation (busybox's, as in the test guest). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "node/secret.h"

static void test_generate(void **state)
{
        char a[SECRET_PASSWORD_SIZE], b[SECRET_PASSWORD_SIZE];
        unsigned seen[256] = { 0 };
        struct error err = { 0 };

        (void)state;
        assert_int_equal(secret_password_generate(a, &err), 0);
        assert_int_equal(secret_password_generate(b, &err), 0);
        assert_int_equal(strlen(a), SECRET_PASSWORD_LENGTH);
        assert_int_equal(strlen(b), SECRET_PASSWORD_LENGTH);
        assert_string_not_equal(a, b);

        /* Over 500 passwords (10000 characters), every character is from the
         * alphabet, and each of the 55 turns up (expected ~180 times each). */
        for (int i = 0; i < 500; i++) {
                assert_int_equal(secret_password_generate(a, &err), 0);
                for (int j = 0; j < SECRET_PASSWORD_LENGTH; j++)
                        seen[(unsigned char)a[j]]++;
        }
        for (int c = 0; c < 256; c++) {
                bool allowed = (c >= '2' && c <= '9') || (c >= 'a' && c <= 'z' && !strchr("ilo", c)) ||
                               (c >= 'A' && c <= 'Z' && !strchr("IO", c));
                if (allowed)
                        assert_true(seen[c] > 50);
                else
                        assert_int_equal(seen[c], 0);
        }
}

static void expect_hash_format(const char *hash)
{
        assert_int_equal(strlen(hash), 3 + 16 + 1 + 86);
        assert_memory_equal(hash, "$6$", 3);
        for (int i = 3; i < 19; i++)
                assert_non_null(strchr("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", hash[i]));
        assert_int_equal(hash[19], '$');
        for (int i = 20; i < 106; i++)
                assert_non_null(strchr("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", hash[i]));
}

static void test_hash_verify(void **state)
{
        char password[SECRET_PASSWORD_SIZE], h1[SECRET_HASH_SIZE], h2[SECRET_HASH_SIZE];
        struct error err = { 0 };

        (void)state;
        assert_int_equal(secret_password_generate(password, &err), 0);
        assert_int_equal(secret_password_hash(password, h1, &err), 0);
        assert_int_equal(secret_password_hash(password, h2, &err), 0);
        expect_hash_format(h1);
        expect_hash_format(h2);
        /* Salts differ, so do the hashes of one password. */
        assert_memory_not_equal(h1 + 3, h2 + 3, 16);
        assert_string_not_equal(h1, h2);
        assert_null(strstr(h1, password));

        assert_int_equal(secret_password_verify(password, h1), 0);
        assert_int_equal(secret_password_verify(password, h2), 0);
        password[0] = password[0] == 'a' ? 'b' : 'a';
        assert_int_equal(secret_password_verify(password, h1), -EACCES);
        assert_int_equal(secret_password_verify("", h1), -EACCES);

        /* A chosen password with every printable character. */
        assert_int_equal(secret_password_hash(" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", h1, &err), 0);
        assert_int_equal(secret_password_verify(" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", h1), 0);
}

static void test_verify_foreign_hash(void **state)
{
        /* busybox mkpasswd -m sha512 -S saltsaltsaltsalt "correct horse battery"
         * (the test guest's implementation; Python's crypt agrees). */
        static const char hash[] = "$6$saltsaltsaltsalt$yFt3OZ1L77kfUmw7eEZm6YC6/8CKS3G45iRUWYUluvfSLcmsdcYJBTXxX"
                                   "3pcdOnUt4CaXJeJOoPxMOc8724/Q.";

        (void)state;
        assert_int_equal(secret_password_verify("correct horse battery", hash), 0);
        assert_int_equal(secret_password_verify("correct horse batterY", hash), -EACCES);
        assert_int_equal(secret_password_verify("x", "not a hash"), -EINVAL);
        assert_int_not_equal(secret_password_verify("x", "$6$"), 0);
        assert_int_equal(secret_password_verify("x", "$9$unknown$method"), -EINVAL);
        assert_int_equal(secret_password_verify("x", ""), -EINVAL);
}

static void test_wipe(void **state)
{
        char buf[32] = "a secret that must go away";

        (void)state;
        secret_wipe(buf, sizeof(buf));
        for (size_t i = 0; i < sizeof(buf); i++)
                assert_int_equal(buf[i], 0);
        secret_wipe(NULL, 10);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_generate),
                cmocka_unit_test(test_hash_verify),
                cmocka_unit_test(test_verify_foreign_hash),
                cmocka_unit_test(test_wipe),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
