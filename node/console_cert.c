#include "console_cert.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#include "common/util.h"

static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert, struct error *err)
{
        char tmp[4096];
        FILE *f;
        int fd, ok;

        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
                return error_set(err, -ENAMETOOLONG, "path too long: `%s`", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return error_set_errno(err, -errno, "create `%s`", tmp);
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                return error_set_errno(err, -errno, "create `%s`", tmp);
        }
        ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
        ok = fchmod(fd, mode) == 0 && ok && fflush(f) == 0 && fsync(fd) == 0;
        if (fclose(f) != 0 || !ok || rename(tmp, path) < 0) {
                unlink(tmp);
                return error_set(err, -EIO, "write `%s`", path);
        }
        return 0;
}

static X509 *self_signed(EVP_PKEY *key, const char *common_name)
{
        X509 *cert = X509_new();
        X509_NAME *name;
        X509_EXTENSION *ext;
        X509V3_CTX ctx;
        char san[300];

        if (!cert)
                return NULL;
        snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", common_name);
        X509_set_version(cert, 2);
        /* A random serial: a browser refuses two certificates by one
         * issuer with one serial. */
        if (!ASN1_INTEGER_set_int64(X509_get_serialNumber(cert), (int64_t)(time_now_wall() & 0x7fffffff)) ||
            !X509_gmtime_adj(X509_getm_notBefore(cert), -3600) ||
            !X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600) || !X509_set_pubkey(cert, key))
                goto fail;
        name = X509_get_subject_name(cert);
        if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1, 0) ||
            !X509_set_issuer_name(cert, name))
                goto fail;
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        if (!ext || !X509_add_ext(cert, ext, -1)) {
                X509_EXTENSION_free(ext);
                goto fail;
        }
        X509_EXTENSION_free(ext);
        if (!X509_sign(cert, key, EVP_sha256()))
                goto fail;
        return cert;
fail:
        X509_free(cert);
        return NULL;
}

int console_cert_ensure(const char *cert_path, const char *key_path, const char *common_name, struct error *err)
{
        EVP_PKEY *key;
        X509 *cert;
        int r;

        if (access(cert_path, F_OK) == 0 && access(key_path, F_OK) == 0)
                return 0;
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (!key) {
                ERR_clear_error();
                return error_set(err, -EIO, "console certificate: cannot make a key");
        }
        cert = self_signed(key, common_name);
        if (!cert) {
                ERR_clear_error();
                EVP_PKEY_free(key);
                return error_set(err, -EIO, "console certificate: cannot sign one");
        }
        r = write_pem(key_path, 0600, key, NULL, err);
        if (r == 0)
                r = write_pem(cert_path, 0644, NULL, cert, err);
        X509_free(cert);
        EVP_PKEY_free(key);
        return r;
}
