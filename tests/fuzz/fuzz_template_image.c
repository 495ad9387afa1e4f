/* libFuzzer target: template_image_check() on arbitrary qemu-img output.
 * qemu-img is ours, but what it prints reflects the image's bytes (a
 * backing file name, a format). Beyond "does not crash": an accepted image
 * is qcow2 or raw within the size bounds, a refusal says why and leaves
 * the result untouched. The first 8 bytes are the file size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct template_image image, before;
        struct error err = { 0 };
        uint64_t file_size = 0;
        int r;

        if (size < sizeof(file_size))
                return 0;
        memcpy(&file_size, data, sizeof(file_size));
        memset(&image, 0xa5, sizeof(image));
        before = image;
        r = template_image_check((const char *)data + sizeof(file_size), size - sizeof(file_size), file_size,
                                 &image, &err);
        if (r < 0) {
                if (memcmp(&image, &before, sizeof(image)) != 0 || err.code != r || err.msg[0] == '\0')
                        abort();
                return 0;
        }
        if (strcmp(image.format, "qcow2") != 0 && strcmp(image.format, "raw") != 0)
                abort();
        if (image.virtual_size < TEMPLATE_MIN_VIRTUAL_SIZE || image.virtual_size > TEMPLATE_MAX_VIRTUAL_SIZE)
                abort();
        if (strcmp(image.format, "raw") == 0 && (file_size % 512 || file_size < TEMPLATE_MIN_VIRTUAL_SIZE))
                abort();
        return 0;
}
