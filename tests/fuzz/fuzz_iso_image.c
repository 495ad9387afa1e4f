/* libFuzzer target: iso_image_check() on arbitrary bytes taken as a whole
 * file (head and tail from the same bytes): it never reads past what it is
 * given, and a refusal always says why. */
#include <stdint.h>
#include <stdlib.h>

#include "iso/iso_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t head = size < ISO_IMAGE_HEAD_SIZE ? size : ISO_IMAGE_HEAD_SIZE;
        size_t tail = size < ISO_IMAGE_TAIL_SIZE ? size : ISO_IMAGE_TAIL_SIZE;
        enum iso_image_kind kind;
        struct error err = { 0 };
        int r = iso_image_check(data, head, data + size - tail, tail, size, &kind, &err);

        if (r < 0 && (err.code != r || err.msg[0] == '\0'))
                abort();
        if (r == 0 && kind != ISO_IMAGE_ISO9660 && kind != ISO_IMAGE_UDF)
                abort();
        return 0;
}
