/* What an uploaded file must be to become a customer ISO: an ISO 9660 or
 * UDF image, told by its volume descriptors, and nothing that another
 * image format would read differently (qcow2, QED, VMDK, VHD, VHDX, VDI,
 * LUKS …: formats that can name a backing file or hide a disk). QEMU is
 * always told the format (raw) and never probes it; this check is what
 * keeps a customer from handing the node a disk in disguise.
 *
 * Pure: it looks at the bytes it is given, no file, no store. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define ISO_IMAGE_SECTOR 2048
/* The system area (16 sectors) and up to 32 volume descriptors after it:
 * what the check reads from the start of the file. */
#define ISO_IMAGE_HEAD_SIZE (16 * ISO_IMAGE_SECTOR + 32 * ISO_IMAGE_SECTOR)
/* What it reads from the end (where VHD and DMG keep their footers). */
#define ISO_IMAGE_TAIL_SIZE 512

enum iso_image_kind {
        ISO_IMAGE_ISO9660,
        ISO_IMAGE_UDF,     /* UDF, with or without an ISO 9660 bridge */
};

/* Checks a file of size bytes from its first head_len bytes (all of it up
 * to ISO_IMAGE_HEAD_SIZE) and its last tail_len (up to
 * ISO_IMAGE_TAIL_SIZE). err says what the file is or lacks, in words fit
 * for the customer ("a qcow2 image, not an ISO"). */
int iso_image_check(const uint8_t *head, size_t head_len, const uint8_t *tail, size_t tail_len, uint64_t size,
                    enum iso_image_kind *ret_kind, struct error *err);

const char *iso_image_kind_name(enum iso_image_kind kind);
