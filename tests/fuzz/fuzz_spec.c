/* libFuzzer target: spec_parse() on arbitrary bytes. Beyond "does not
 * crash or leak": a refusal says why and leaves the output alone; an
 * accepted spec re-validates part by part, survives the round trip through
 * spec_to_json() unchanged, and renders a seed whose every line is printable
 * ASCII (validation let nothing through that YAML could misread). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "node/seed.h"
#include "node/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s)
{
        for (; *s; s++)
                if (*s != '\n' && ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e))
                        abort();
}

static void check_round_trip(const struct service_spec *spec)
{
        struct json_object *o = NULL;
        struct service_spec *again = NULL;
        struct error err = { 0 };
        const char *text;

        if (spec_to_json(spec, &o, &err) < 0)
                abort();
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        if (spec_parse(text, strlen(text), &again, &err) < 0)
                abort();
        if (strcmp(again->uuid, spec->uuid) || strcmp(again->hostname, spec->hostname) ||
            strcmp(again->account_id, spec->account_id) || strcmp(again->template_name, spec->template_name) ||
            strcmp(again->mac, spec->mac) || memcmp(&again->plan, &spec->plan, sizeof(spec->plan)) ||
            again->n_addresses != spec->n_addresses || again->n_ssh_keys != spec->n_ssh_keys ||
            again->paid_until != spec->paid_until ||
            memcmp(again->addresses, spec->addresses, spec->n_addresses * sizeof(spec->addresses[0])))
                abort();
        for (size_t i = 0; i < spec->n_ssh_keys; i++)
                if (strcmp(again->ssh_keys[i].public_key, spec->ssh_keys[i].public_key) ||
                    strcmp(again->ssh_keys[i].fingerprint, spec->ssh_keys[i].fingerprint))
                        abort();
        spec_free(again);
        json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char hash[] = "$6$saltsaltsaltsalt$yFt3OZ1L77kfUmw7eEZm6YC6/8CKS3G45iRUWYUluvfSLcmsdcYJBTXxX"
                                   "3pcdOnUt4CaXJeJOoPxMOc8724/Q.";
        struct service_spec *spec = (struct service_spec *)0x1;
        struct seed_params params = { "iid-fuzz", hash, NULL, 0 };
        struct seed_files files = { 0 };
        struct error err = { 0 };
        int r;

        r = spec_parse((const char *)data, size, &spec, &err);
        if (r < 0) {
                if (spec != (struct service_spec *)0x1 || err.code != r || err.msg[0] == '\0')
                        abort();
                return 0;
        }
        if (r != 0 || spec_hostname_check("h", spec->hostname, NULL) < 0 ||
            spec_plan_check("p", &spec->plan, NULL) < 0 || spec_template_check("t", spec->template_name, NULL) < 0 ||
            (spec->has_root_password && spec_root_password_check("r", spec->root_password, NULL) < 0))
                abort();
        for (size_t i = 0; i < spec->n_ssh_keys; i++)
                if (strncmp(spec->ssh_keys[i].fingerprint, "SHA256:", 7) != 0 ||
                    strlen(spec->ssh_keys[i].fingerprint) != SPEC_FINGERPRINT_SIZE - 1)
                        abort();
        check_round_trip(spec);
        if (seed_render(spec, &params, &files, &err) < 0)
                abort();
        check_text(files.meta_data);
        check_text(files.user_data);
        check_text(files.network_config);
        seed_files_clear(&files);
        spec_free(spec);
        return 0;
}
