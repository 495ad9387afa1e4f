#include "iso_image.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/util.h"

struct magic {
        size_t offset;
        const char *bytes;
        size_t len;
        const char *name;
};

#define MAGIC(off, lit, name) { off, lit, sizeof(lit) - 1, name }

/* Formats whose header at the start of a file would make it something
 * other than a plain sequence of sectors. */
static const struct magic head_magics[] = {
        MAGIC(0, "QFI\xfb", "a qcow2 image"),
        MAGIC(0, "QED\0", "a QED image"),
        MAGIC(0, "KDMV", "a VMDK image"),
        MAGIC(0, "COWD", "a VMDK image"),
        MAGIC(0, "# Disk DescriptorFile", "a VMDK descriptor"),
        MAGIC(0, "conectix", "a VHD image"),
        MAGIC(0, "vhdxfile", "a VHDX image"),
        MAGIC(0x40, "\x7f\x10\xda\xbe", "a VDI image"),
        MAGIC(0, "WithoutFreeSpace", "a Parallels image"),
        MAGIC(0, "WithouFreSpacExt", "a Parallels image"),
        MAGIC(0, "LUKS\xba\xbe", "a LUKS volume"),
        MAGIC(0, "#!/bin/sh\n#V2.0 Format", "a cloop image"),
};

/* Footers: a fixed VHD and a DMG keep theirs in the last 512 bytes. */
static const struct magic tail_magics[] = {
        MAGIC(0, "conectix", "a VHD image"),
        MAGIC(0, "koly", "a DMG image"),
};

static const char *magic_find(const struct magic *magics, size_t n, const uint8_t *buf, size_t len)
{
        for (size_t i = 0; i < n; i++)
                if (len >= magics[i].offset + magics[i].len &&
                    memcmp(buf + magics[i].offset, magics[i].bytes, magics[i].len) == 0)
                        return magics[i].name;
        return NULL;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[0] << 24; }

/* What the descriptors after the system area say. */
struct descriptors {
        bool pvd;        /* an ISO 9660 primary volume descriptor, and it holds */
        bool terminator; /* the ISO 9660 set ends where it should */
        bool bea, nsr, tea; /* UDF: BEA01, NSR02|NSR03, TEA01 in that order */
        const char *bad; /* why the primary volume descriptor does not hold */
};

/* ECMA-119 8.4: the primary volume descriptor's both-endian fields agree,
 * its logical block is 2048 bytes and its volume fits in the file. */
static void pvd_check(const uint8_t *d, uint64_t size, struct descriptors *out)
{
        uint32_t blocks = le32(d + 80);

        if (blocks != be32(d + 84) || d[128] != d[131] || d[129] != d[130])
                out->bad = "its volume descriptor does not hold together";
        else if ((d[128] | d[129] << 8) != ISO_IMAGE_SECTOR)
                out->bad = "its logical block is not 2048 bytes";
        else if (blocks < 18 || (uint64_t)blocks * ISO_IMAGE_SECTOR > size)
                out->bad = "its volume is larger than the file";
        else
                out->pvd = true;
}

static void descriptors_read(const uint8_t *head, size_t head_len, uint64_t size, struct descriptors *out)
{
        bool iso_open = true;

        for (size_t off = 16 * ISO_IMAGE_SECTOR; off + ISO_IMAGE_SECTOR <= head_len; off += ISO_IMAGE_SECTOR) {
                const uint8_t *d = head + off;
                const char *id = (const char *)d + 1;

                if (d[6] != 1)
                        break;
                if (memcmp(id, "CD001", 5) == 0 && iso_open && !out->bea) {
                        if (d[0] == 1 && !out->pvd && !out->bad)
                                pvd_check(d, size, out);
                        if (d[0] == 255) {
                                out->terminator = true;
                                iso_open = false;
                        }
                } else if (memcmp(id, "BEA01", 5) == 0 && d[0] == 0 && !out->bea) {
                        out->bea = true;
                } else if ((memcmp(id, "NSR02", 5) == 0 || memcmp(id, "NSR03", 5) == 0) && d[0] == 0 && out->bea) {
                        out->nsr = true;
                } else if (memcmp(id, "TEA01", 5) == 0 && d[0] == 0 && out->bea) {
                        out->tea = true;
                        break;
                } else if ((memcmp(id, "BOOT2", 5) == 0 || memcmp(id, "CDW02", 5) == 0) && out->bea) {
                        continue;
                } else {
                        break;
                }
        }
}

int iso_image_check(const uint8_t *head, size_t head_len, const uint8_t *tail, size_t tail_len, uint64_t size,
                    enum iso_image_kind *ret_kind, struct error *err)
{
        struct descriptors d = { 0 };
        const char *other;

        if (head_len > size || tail_len > size || head_len > ISO_IMAGE_HEAD_SIZE || tail_len > ISO_IMAGE_TAIL_SIZE)
                return error_set(err, -EINVAL, "the check was given more bytes than the file has");
        other = magic_find(head_magics, ARRAY_SIZE(head_magics), head, head_len);
        if (!other && tail_len == ISO_IMAGE_TAIL_SIZE)
                other = magic_find(tail_magics, ARRAY_SIZE(tail_magics), tail, tail_len);
        if (other)
                return error_set(err, -EMEDIUMTYPE, "%s, not an ISO image", other);
        if (size < 18 * ISO_IMAGE_SECTOR)
                return error_set(err, -EMEDIUMTYPE, "too small for an ISO image");
        if (size % ISO_IMAGE_SECTOR != 0)
                return error_set(err, -EMEDIUMTYPE, "not an ISO image: its size is not a whole number of sectors");
        descriptors_read(head, head_len, size, &d);
        if (d.bea && d.nsr && d.tea) {
                *ret_kind = ISO_IMAGE_UDF;
                return 0;
        }
        if (d.bad)
                return error_set(err, -EMEDIUMTYPE, "not an ISO image: %s", d.bad);
        if (d.pvd && d.terminator) {
                *ret_kind = ISO_IMAGE_ISO9660;
                return 0;
        }
        return error_set(err, -EMEDIUMTYPE, "not an ISO 9660 or UDF image: no volume descriptors where they belong");
}

const char *iso_image_kind_name(enum iso_image_kind kind) { return kind == ISO_IMAGE_UDF ? "udf" : "iso9660"; }
