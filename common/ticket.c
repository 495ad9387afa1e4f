#include "ticket.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "common/base64url.h"
#include "common/util.h"

#define TICKET_MAGIC "vpsd-console-ticket-1"
#define ISO_TICKET_MAGIC "vpsd-iso-upload-ticket-1"
#define PAYLOAD_MAX 512

static int payload_format(const struct ticket *t, char *buf, size_t size)
{
        int n;

        if (t->type == TICKET_ISO_UPLOAD)
                n = snprintf(buf, size,
                             ISO_TICKET_MAGIC "\naccount=%s\nmax_bytes=%" PRIu64 "\niat=%" PRId64 "\nexp=%" PRId64
                                              "\nnonce=%s\n",
                             t->account, t->max_bytes, t->issued_at, t->expires_at, t->nonce);
        else
                n = snprintf(buf, size,
                             TICKET_MAGIC "\nservice=%s\naccount=%s\nkind=%s\niat=%" PRId64 "\nexp=%" PRId64
                                          "\nnonce=%s\n",
                             t->service, t->account, console_kind_name(t->kind), t->issued_at, t->expires_at,
                             t->nonce);
        return n < 0 || (size_t)n >= size ? -ENOBUFS : n;
}

int ticket_sign(const struct ticket *t, const struct ed25519_key *key, char *out, size_t size, struct error *err)
{
        char payload[PAYLOAD_MAX];
        uint8_t sig[ED25519_SIGNATURE_SIZE];
        size_t used;
        int n, r;

        n = payload_format(t, payload, sizeof(payload));
        if (n < 0)
                return error_set(err, -EINVAL, "ticket payload too long");
        r = ed25519_sign(key, payload, (size_t)n, sig, err);
        if (r < 0)
                return r;
        if (base64url_encode(payload, (size_t)n, out, size) < 0)
                return error_set(err, -ENOBUFS, "ticket buffer too small");
        used = strlen(out);
        if (used + 1 >= size)
                return error_set(err, -ENOBUFS, "ticket buffer too small");
        out[used++] = '.';
        if (base64url_encode(sig, sizeof(sig), out + used, size - used) < 0)
                return error_set(err, -ENOBUFS, "ticket buffer too small");
        return 0;
}

int ticket_nonce_new(struct ticket *t, struct error *err)
{
        uint8_t raw[16];

        if (RAND_bytes(raw, sizeof(raw)) != 1)
                return error_set(err, -EIO, "no random bytes for a nonce");
        return base64url_encode(raw, sizeof(raw), t->nonce, sizeof(t->nonce));
}

/* "key=" then the value up to '\n'; *p moves past it. */
static int field(const char **p, const char *end, const char *key, char *out, size_t size)
{
        size_t klen = strlen(key);
        const char *nl;

        if ((size_t)(end - *p) < klen + 1 || memcmp(*p, key, klen) != 0 || (*p)[klen] != '=')
                return -EINVAL;
        *p += klen + 1;
        nl = memchr(*p, '\n', (size_t)(end - *p));
        if (!nl || (size_t)(nl - *p) >= size || nl == *p)
                return -EINVAL;
        /* Every byte printable, NUL included in the check: a value that
         * a C string would cut short has no one canonical form. */
        for (const char *c = *p; c < nl; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
                        return -EINVAL;
        memcpy(out, *p, (size_t)(nl - *p));
        out[nl - *p] = '\0';
        *p = nl + 1;
        return 0;
}

/* A decimal without sign or leading zeros, up to 2^53: what every JSON
 * and every language writes the same way. */
static int seconds_parse(const char *s, int64_t *ret)
{
        int64_t v = 0;

        if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 16)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                v = v * 10 + (*s - '0');
        }
        *ret = v;
        return 0;
}

/* The fields only a console ticket has, after its magic line. */
static int console_fields_parse(const char **p, const char *end, struct ticket *t, struct error *err)
{
        char kind[16];

        t->type = TICKET_CONSOLE;
        if (field(p, end, "service", t->service, sizeof(t->service)) < 0 || !uuid_valid(t->service))
                return error_set(err, -EINVAL, "malformed field `service`");
        if (field(p, end, "account", t->account, sizeof(t->account)) < 0)
                return error_set(err, -EINVAL, "malformed field `account`");
        if (field(p, end, "kind", kind, sizeof(kind)) < 0 || console_kind_parse(kind, &t->kind) < 0)
                return error_set(err, -EINVAL, "malformed field `kind`");
        return 0;
}

/* The fields only an ISO upload ticket has, after its magic line. */
static int iso_fields_parse(const char **p, const char *end, struct ticket *t, struct error *err)
{
        char max[24];
        int64_t v;

        t->type = TICKET_ISO_UPLOAD;
        if (field(p, end, "account", t->account, sizeof(t->account)) < 0)
                return error_set(err, -EINVAL, "malformed field `account`");
        if (field(p, end, "max_bytes", max, sizeof(max)) < 0 || seconds_parse(max, &v) < 0 || v < 1 ||
            (uint64_t)v > TICKET_MAX_BYTES)
                return error_set(err, -EINVAL, "malformed field `max_bytes`");
        t->max_bytes = (uint64_t)v;
        return 0;
}

/* The payload starts with its type's magic line. */
static bool magic_take(const char **p, const char *end, const char *magic)
{
        size_t n = strlen(magic);

        if ((size_t)(end - *p) <= n || memcmp(*p, magic, n) != 0 || (*p)[n] != '\n')
                return false;
        *p += n + 1;
        return true;
}

static int payload_parse(const char *buf, size_t len, struct ticket *t, struct error *err)
{
        const char *p = buf, *end = buf + len;
        char iat[24], exp[24];
        int r;

        if (magic_take(&p, end, TICKET_MAGIC))
                r = console_fields_parse(&p, end, t, err);
        else if (magic_take(&p, end, ISO_TICKET_MAGIC))
                r = iso_fields_parse(&p, end, t, err);
        else
                return error_set(err, -EINVAL, "not a version 1 ticket");
        if (r < 0)
                return r;
        if (field(&p, end, "iat", iat, sizeof(iat)) < 0 || seconds_parse(iat, &t->issued_at) < 0)
                return error_set(err, -EINVAL, "malformed field `iat`");
        if (field(&p, end, "exp", exp, sizeof(exp)) < 0 || seconds_parse(exp, &t->expires_at) < 0)
                return error_set(err, -EINVAL, "malformed field `exp`");
        if (field(&p, end, "nonce", t->nonce, sizeof(t->nonce)) < 0 || strlen(t->nonce) != TICKET_NONCE_LEN ||
            base64url_decode(t->nonce, TICKET_NONCE_LEN, (uint8_t[16]){ 0 }, 16) != 16)
                return error_set(err, -EINVAL, "malformed field `nonce`");
        if (p != end)
                return error_set(err, -EINVAL, "bytes after the last field");
        return 0;
}

int ticket_verify(const char *text, size_t len, struct ed25519_key *const *keys, size_t n_keys, int64_t now,
                  struct ticket *ret, struct error *err)
{
        uint8_t payload[PAYLOAD_MAX], sig[ED25519_SIGNATURE_SIZE + 1];
        const char *dot;
        struct ticket t = { 0 };
        bool signed_ok = false;
        int plen, slen;

        if (len > EDGE_TICKET_MAX)
                return error_set(err, -EINVAL, "longer than %d bytes", EDGE_TICKET_MAX);
        dot = memchr(text, '.', len);
        if (!dot)
                return error_set(err, -EINVAL, "malformed: no signature");
        plen = base64url_decode(text, (size_t)(dot - text), payload, sizeof(payload));
        slen = base64url_decode(dot + 1, len - (size_t)(dot + 1 - text), sig, sizeof(sig));
        if (plen <= 0 || slen != ED25519_SIGNATURE_SIZE)
                return error_set(err, -EINVAL, "malformed: not base64url payload.signature");
        for (size_t i = 0; i < n_keys && !signed_ok; i++)
                signed_ok = keys[i] && ed25519_verify(keys[i], payload, (size_t)plen, sig);
        if (!signed_ok)
                return error_set(err, -EPERM, "bad signature");
        if (payload_parse((const char *)payload, (size_t)plen, &t, err) < 0)
                return err ? err->code : -EINVAL;
        if (t.expires_at <= t.issued_at || t.expires_at - t.issued_at > TICKET_LIFETIME_MAX)
                return error_set(err, -EINVAL, "lifetime of %" PRId64 " s is not from 1 to %d s",
                                 t.expires_at - t.issued_at, TICKET_LIFETIME_MAX);
        if (t.issued_at > now + TICKET_CLOCK_SKEW)
                return error_set(err, -ETIME, "issued %" PRId64 " s in the future", t.issued_at - now);
        if (now >= t.expires_at + TICKET_CLOCK_SKEW)
                return error_set(err, -ETIME, "expired %" PRId64 " s ago", now - t.expires_at);
        *ret = t;
        return 0;
}
