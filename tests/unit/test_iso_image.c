/* iso/iso_image: the volume descriptors of ISO 9660 and UDF images
 * accepted, and every disguise refused: qcow2, QED, VMDK, VHD (header and
 * footer), VHDX, VDI, LUKS, raw bytes, a broken primary volume descriptor,
 * a volume larger than its file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "iso/iso_image.h"

#define SECTORS 64
#define SIZE (SECTORS * ISO_IMAGE_SECTOR)

static uint8_t image[SIZE];

static void descriptor(unsigned sector, uint8_t type, const char *id)
{
        uint8_t *d = image + sector * ISO_IMAGE_SECTOR;

        d[0] = type;
        memcpy(d + 1, id, 5);
        d[6] = 1;
}

/* A primary volume descriptor of blocks 2048-byte blocks, both-endian. */
static void pvd(unsigned sector, uint32_t blocks)
{
        uint8_t *d = image + sector * ISO_IMAGE_SECTOR;

        descriptor(sector, 1, "CD001");
        for (int i = 0; i < 4; i++) {
                d[80 + i] = (uint8_t)(blocks >> (8 * i));
                d[87 - i] = (uint8_t)(blocks >> (8 * i));
        }
        d[128] = 0x00, d[129] = 0x08, d[130] = 0x08, d[131] = 0x00;
}

static void iso9660(void)
{
        memset(image, 0, sizeof(image));
        pvd(16, SECTORS);
        descriptor(17, 255, "CD001");
}

static int check(size_t size, enum iso_image_kind *kind, struct error *err)
{
        size_t head = size < ISO_IMAGE_HEAD_SIZE ? size : ISO_IMAGE_HEAD_SIZE;

        return iso_image_check(image, head, image + size - ISO_IMAGE_TAIL_SIZE, ISO_IMAGE_TAIL_SIZE, size, kind, err);
}

static void expect_refused(const char *why)
{
        enum iso_image_kind kind;
        struct error err = { 0 };

        assert_int_equal(check(SIZE, &kind, &err), -EMEDIUMTYPE);
        if (!strstr(err.msg, why))
                fail_msg("refused with \"%s\", expected \"%s\"", err.msg, why);
}

static void test_iso9660(void **state)
{
        enum iso_image_kind kind = ISO_IMAGE_UDF;

        (void)state;
        iso9660();
        assert_int_equal(check(SIZE, &kind, NULL), 0);
        assert_int_equal(kind, ISO_IMAGE_ISO9660);
        /* A boot record and a supplementary descriptor before the end. */
        memset(image + 17 * ISO_IMAGE_SECTOR, 0, ISO_IMAGE_SECTOR);
        descriptor(17, 0, "CD001");
        descriptor(18, 2, "CD001");
        descriptor(19, 255, "CD001");
        assert_int_equal(check(SIZE, &kind, NULL), 0);
        assert_string_equal(iso_image_kind_name(kind), "iso9660");
}

static void test_udf(void **state)
{
        enum iso_image_kind kind = ISO_IMAGE_ISO9660;

        (void)state;
        /* A bridge: ISO 9660 set, then the UDF recognition sequence. */
        iso9660();
        descriptor(18, 0, "BEA01");
        descriptor(19, 0, "NSR02");
        descriptor(20, 0, "TEA01");
        assert_int_equal(check(SIZE, &kind, NULL), 0);
        assert_int_equal(kind, ISO_IMAGE_UDF);
        /* Pure UDF, NSR03. */
        memset(image, 0, sizeof(image));
        descriptor(16, 0, "BEA01");
        descriptor(17, 0, "NSR03");
        descriptor(18, 0, "TEA01");
        assert_int_equal(check(SIZE, &kind, NULL), 0);
        assert_string_equal(iso_image_kind_name(kind), "udf");
        /* No NSR: not UDF, and nothing else. */
        descriptor(17, 0, "BOOT2");
        expect_refused("no volume descriptors");
}

static void test_disguises(void **state)
{
        static const struct {
                size_t offset;
                const char *magic;
                size_t len;
                const char *name;
        } heads[] = {
                { 0, "QFI\xfb", 4, "qcow2" },       { 0, "QED\0", 4, "QED" },
                { 0, "KDMV", 4, "VMDK" },           { 0, "# Disk DescriptorFile", 21, "VMDK" },
                { 0, "conectix", 8, "VHD" },        { 0, "vhdxfile", 8, "VHDX" },
                { 0x40, "\x7f\x10\xda\xbe", 4, "VDI" }, { 0, "LUKS\xba\xbe", 6, "LUKS" },
        };

        (void)state;
        /* Each magic on an otherwise valid ISO 9660 image: a qcow2 header
         * on top of an ISO is a qcow2 image to anything that probes. */
        for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
                iso9660();
                memcpy(image + heads[i].offset, heads[i].magic, heads[i].len);
                expect_refused(heads[i].name);
        }
        iso9660();
        memcpy(image + SIZE - ISO_IMAGE_TAIL_SIZE, "conectix", 8);
        expect_refused("VHD");
}

static void test_not_iso(void **state)
{
        enum iso_image_kind kind;
        struct error err = { 0 };

        (void)state;
        memset(image, 0xa5, sizeof(image)); /* raw bytes */
        expect_refused("no volume descriptors");
        memset(image, 0, sizeof(image));
        expect_refused("no volume descriptors");
        iso9660();
        image[16 * ISO_IMAGE_SECTOR + 84] ^= 1; /* both-endian fields disagree */
        expect_refused("does not hold together");
        iso9660();
        pvd(16, SECTORS + 1);
        expect_refused("larger than the file");
        iso9660();
        memset(image + 17 * ISO_IMAGE_SECTOR, 0, ISO_IMAGE_SECTOR); /* no terminator */
        expect_refused("no volume descriptors");
        iso9660();
        assert_int_equal(check(SIZE - 1, &kind, &err), -EMEDIUMTYPE); /* not whole sectors */
        assert_non_null(strstr(err.msg, "sectors"));
        assert_int_equal(check(16 * ISO_IMAGE_SECTOR, &kind, &err), -EMEDIUMTYPE);
        assert_non_null(strstr(err.msg, "too small"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_iso9660),
                cmocka_unit_test(test_udf),
                cmocka_unit_test(test_disguises),
                cmocka_unit_test(test_not_iso),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
