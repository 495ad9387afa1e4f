/* An approved ISO into a service's CD drive, and out, through the guest
 * layer (node/guest_cdrom.c); the ledger hears of both. */
#include "iso_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

struct mount_call {
        struct iso_store *s;
        struct iso_record rec; /* mount; eject: the ISO it held (id empty if unknown) */
        char uuid[37];
        bool mount;
        guest_done_fn done;
        void *userdata;
};

static void mount_done(int status, const struct error *err, struct json_object *result, void *userdata)
{
        struct mount_call *c = userdata;

        if (status == 0 && c->rec.id[0])
                iso_event(c->s, &c->rec, c->mount ? "mounted" : "ejected", false, c->uuid);
        c->done(status, err, result, c->userdata);
        free(c);
}

int iso_mount(struct iso_store *s, const char *uuid, const char *id, const char *actor, guest_done_fn done,
              void *userdata, struct error *err)
{
        struct mount_call *c;
        char path[PATH_MAX];
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        r = iso_record_get(s, id, &c->rec, err);
        if (r == 0 && strcmp(c->rec.state, "approved") != 0)
                r = error_set(err, -EBADFD, "ISO %s is %s: only an approved ISO can be mounted", id, c->rec.state);
        if (r == 0 && iso_path(s, id, path, sizeof(path)) < 0)
                r = error_set(err, -ENAMETOOLONG, "ISO %s: path too long", id);
        /* QEMU opens the file itself, as its own user: read-only for its
         * group, nothing for others. */
        if (r == 0 && (chown(path, 0, s->qemu_gid) < 0 || chmod(path, 0440) < 0))
                r = error_set_errno(err, -errno, "ISO %s: make it readable for QEMU", id);
        if (r < 0) {
                free(c);
                return r;
        }
        c->s = s;
        c->mount = true;
        c->done = done;
        c->userdata = userdata;
        str_copy(c->uuid, sizeof(c->uuid), uuid);
        r = guest_cdrom_set(s->guests, uuid, c->rec.account, id, path, actor, mount_done, c, err);
        if (r < 0)
                free(c);
        return r;
}

int iso_eject(struct iso_store *s, const char *uuid, const char *actor, guest_done_fn done, void *userdata,
              struct error *err)
{
        struct mount_call *c;
        char held[ISO_ID_MAX + 1];
        int r;

        r = guest_cdrom_get(s->guests, uuid, held, sizeof(held), err);
        if (r < 0)
                return r;
        c = calloc(1, sizeof(*c));
        if (!c)
                return error_set(err, -ENOMEM, "out of memory");
        if (held[0] && iso_record_get(s, held, &c->rec, NULL) < 0)
                memset(&c->rec, 0, sizeof(c->rec));
        c->s = s;
        c->done = done;
        c->userdata = userdata;
        str_copy(c->uuid, sizeof(c->uuid), uuid);
        r = guest_cdrom_set(s->guests, uuid, NULL, NULL, NULL, actor, mount_done, c, err);
        if (r < 0)
                free(c);
        return r;
}

int iso_boot_set(struct iso_store *s, const char *uuid, bool from_iso, const char *actor, struct error *err)
{
        return guest_boot_iso_set(s->guests, uuid, from_iso, actor, err);
}
