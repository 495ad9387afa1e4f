/* node/template: names, the verdict on `qemu-img info` output (what may
 * become a template), and the store on a real database and folder: the
 * sweep at open, list, lookup and remove (refused while a service uses
 * the template). Imports, which need qemu-img, are in
 * tests/integration/test_template.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "node/template.h"

static void test_names(void **state)
{
        char longest[TEMPLATE_NAME_MAX + 2];

        (void)state;
        assert_true(template_name_valid("debian-12"));
        assert_true(template_name_valid("ubuntu-24.04_lts"));
        assert_true(template_name_valid("0"));
        assert_false(template_name_valid(""));
        assert_false(template_name_valid("../x"));
        assert_false(template_name_valid("a/b"));
        assert_false(template_name_valid(".hidden"));
        assert_false(template_name_valid("-x"));
        assert_false(template_name_valid("_x"));
        assert_false(template_name_valid("UPPER"));
        assert_false(template_name_valid("sp ace"));
        assert_false(template_name_valid("caf\xc3\xa9"));
        memset(longest, 'a', TEMPLATE_NAME_MAX);
        longest[TEMPLATE_NAME_MAX] = '\0';
        assert_true(template_name_valid(longest));
        longest[TEMPLATE_NAME_MAX] = 'a';
        longest[TEMPLATE_NAME_MAX + 1] = '\0';
        assert_false(template_name_valid(longest));

        assert_true(template_os_name_valid("Debian 12 (bookworm)"));
        assert_false(template_os_name_valid(""));
        assert_false(template_os_name_valid("tab\there"));
        assert_false(template_os_name_valid("esc\x1b[31m"));
        assert_false(template_os_name_valid("caf\xc3\xa9"));
        memset(longest, 'A', TEMPLATE_OS_NAME_MAX + 1);
        longest[TEMPLATE_OS_NAME_MAX + 1] = '\0';
        assert_false(template_os_name_valid(longest));
        longest[TEMPLATE_OS_NAME_MAX] = '\0';
        assert_true(template_os_name_valid(longest));
}

/* What qemu-img 7.2 prints for the test guest. */
static const char guest_info[] =
        "{\n"
        "    \"virtual-size\": 67108864,\n"
        "    \"filename\": \"/dev/fd/3\",\n"
        "    \"cluster-size\": 65536,\n"
        "    \"format\": \"qcow2\",\n"
        "    \"actual-size\": 16654336,\n"
        "    \"format-specific\": {\n"
        "        \"type\": \"qcow2\",\n"
        "        \"data\": {\n"
        "            \"compat\": \"1.1\",\n"
        "            \"compression-type\": \"zlib\",\n"
        "            \"lazy-refcounts\": false,\n"
        "            \"refcount-bits\": 16,\n"
        "            \"corrupt\": false,\n"
        "            \"extended-l2\": false\n"
        "        }\n"
        "    },\n"
        "    \"dirty-flag\": false\n"
        "}\n";

static void expect_image(const char *json, uint64_t file_size, const char *format, uint64_t vsize)
{
        struct template_image image = { 0 };
        struct error err = { 0 };

        assert_int_equal(template_image_check(json, strlen(json), file_size, &image, &err), 0);
        assert_string_equal(image.format, format);
        assert_int_equal(image.virtual_size, vsize);
}

static void expect_refused(const char *json, uint64_t file_size, const char *message)
{
        struct template_image image = { .format = "keep" };
        struct error err = { 0 };

        assert_int_equal(template_image_check(json, strlen(json), file_size, &image, &err), -EINVAL);
        assert_string_equal(err.msg, message);
        assert_string_equal(image.format, "keep");
}

static void test_image_accepted(void **state)
{
        (void)state;
        expect_image(guest_info, 16654336, "qcow2", 67108864);
        expect_image("{\"virtual-size\": 2147483648, \"filename\": \"r.raw\", \"format\": \"raw\","
                     " \"actual-size\": 0, \"dirty-flag\": false}",
                     2147483648ULL, "raw", 2147483648ULL);
        /* Internal snapshots and unknown fields are no reason to refuse. */
        expect_image("{\"virtual-size\": 1048576, \"format\": \"qcow2\", \"snapshots\": [{\"id\": \"1\"}],"
                     " \"new-field\": {\"x\": [1, 2]}}",
                     200000, "qcow2", 1048576);
        expect_image("{\"virtual-size\": 17592186044416, \"format\": \"qcow2\"}", 1, "qcow2", 17592186044416ULL);
}

static void test_image_refused(void **state)
{
        (void)state;
        expect_refused("{\"virtual-size\": 1048576, \"format\": \"vmdk\"}", 1048576,
                       "format `vmdk` is not supported (qcow2 or raw)");
        expect_refused("{\"virtual-size\": 1048576, \"format\": \"qcow2\", \"backing-filename\": \"/etc/shadow\","
                       " \"backing-filename-format\": \"raw\"}",
                       1048576, "the image has a backing file (`/etc/shadow`): a template must stand alone");
        expect_refused("{\"virtual-size\": 1048576, \"format\": \"qcow2\", \"full-backing-filename\": \"/x\"}",
                       1048576, "the image has a backing file (`/x`): a template must stand alone");
        expect_refused("{\"virtual-size\": 1048576, \"format\": \"qcow2\", \"format-specific\": {\"type\": \"qcow2\","
                       " \"data\": {\"data-file\": \"/dev/sda\", \"data-file-raw\": true}}}",
                       1048576, "the image has an external data file (`/dev/sda`): a template must stand alone");
        expect_refused("{\"virtual-size\": 1048576, \"format\": \"qcow2\", \"encrypted\": true}", 1048576,
                       "the image is encrypted");
        expect_refused("{\"virtual-size\": 1048576, \"format\": \"qcow2\", \"format-specific\": {\"type\": \"qcow2\","
                       " \"data\": {\"encrypt\": {\"format\": \"luks\"}}}}",
                       1048576, "the image is encrypted");
        expect_refused("{\"virtual-size\": 1048576, \"format\": \"qcow2\", \"format-specific\": {\"type\": \"qcow2\","
                       " \"data\": {\"corrupt\": true}}}",
                       1048576, "the image is marked corrupt");
        expect_refused("{\"virtual-size\": 1048576, \"format\": \"qcow2\", \"dirty-flag\": true}", 1048576,
                       "the image is marked dirty (repair it with `qemu-img check -r all`)");
        expect_refused("{\"virtual-size\": 0, \"format\": \"qcow2\"}", 1048576,
                       "virtual size 0 bytes is out of range (1 MiB to 16 TiB)");
        expect_refused("{\"virtual-size\": 17592186044417, \"format\": \"qcow2\"}", 1048576,
                       "virtual size 17592186044417 bytes is out of range (1 MiB to 16 TiB)");
        /* What qemu-img says of a text file: raw, of its length. */
        expect_refused("{\"virtual-size\": 1536, \"format\": \"raw\"}", 1536,
                       "not a disk image: qemu-img calls it raw, but a raw image must be a whole number of "
                       "512-byte sectors and at least 1 MiB (this is 1536 bytes)");
        expect_refused("{\"virtual-size\": 1048577, \"format\": \"raw\"}", 1048577,
                       "not a disk image: qemu-img calls it raw, but a raw image must be a whole number of "
                       "512-byte sectors and at least 1 MiB (this is 1048577 bytes)");
}

static void test_image_bad_answer(void **state)
{
        (void)state;
        expect_refused("", 0, "qemu-img info gave no usable answer: JSON text ends early");
        expect_refused("{\"format\": \"qcow2\"", 0, "qemu-img info gave no usable answer: JSON text ends early");
        expect_refused("[]", 0, "qemu-img info gave no usable answer: expected a JSON object");
        expect_refused("{\"virtual-size\": 1048576}", 0, "qemu-img info: field `format` is missing");
        expect_refused("{\"format\": \"raw\", \"virtual-size\": \"big\"}", 0,
                       "qemu-img info: field `virtual-size` must be an integer");
        expect_refused("{\"format\": 7, \"virtual-size\": 1048576}", 0,
                       "qemu-img info: field `format` must be a string");
}

/* --- the store --- */

struct fixture {
        char dir[64];
        char templates[128];
        uv_loop_t loop;
        struct store *store;
        struct template_store *ts;
};

static int fixture_setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        char db[160];

        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/test-template-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->templates, sizeof(f->templates), "%s/templates", f->dir);
        snprintf(db, sizeof(db), "%s/vpsd.db", f->dir);
        if (mkdir(f->templates, 0755) < 0 || uv_loop_init(&f->loop) < 0 || store_open(db, &f->store, NULL) < 0)
                return -1;
        *state = f;
        return 0;
}

static void rm_dir(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *e;
        char p[512];

        if (!d)
                return;
        while ((e = readdir(d))) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
                if (unlink(p) < 0)
                        rm_dir(p);
        }
        closedir(d);
        rmdir(path);
}

static int fixture_teardown(void **state)
{
        struct fixture *f = *state;

        template_store_shutdown(f->ts);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        template_store_free(f->ts);
        store_close(f->store);
        assert_int_equal(uv_loop_close(&f->loop), 0);
        rm_dir(f->dir);
        free(f);
        return 0;
}

static void exec_sql(struct fixture *f, const char *sql)
{
        assert_int_equal(sqlite3_exec(store_db(f->store), sql, NULL, NULL, NULL), SQLITE_OK);
}

static void put_file(struct fixture *f, const char *name, const char *content)
{
        char path[256];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s", f->templates, name);
        fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(content, fp);
        fclose(fp);
}

static bool file_exists(struct fixture *f, const char *name)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", f->templates, name);
        return access(path, F_OK) == 0;
}

static void insert_template(struct fixture *f, const char *name, const char *format)
{
        char sql[1024];

        snprintf(sql, sizeof(sql),
                 "INSERT INTO templates (name, os_name, format, virtual_size, min_disk_gib, sha256, size_bytes,"
                 " imported_at, path) VALUES ('%s', 'OS %s', '%s', 1073741824, 1, '%064d', 4, 1700000000,"
                 " '%s/%s.%s')",
                 name, name, format, 7, f->templates, name, format);
        exec_sql(f, sql);
        snprintf(sql, sizeof(sql), "%s.%s", name, format);
        put_file(f, sql, "data");
}

static void insert_service(struct fixture *f, const char *uuid, const char *state, const char *template)
{
        char sql[1024];

        snprintf(sql, sizeof(sql),
                 "INSERT INTO services (uuid, account_id, hostname, state, vcpus, memory_mib, disk_gib,"
                 " port_speed_mbit, template, mac, created_at, updated_at) VALUES ('%s', 'a', 'h', '%s', 1, 512,"
                 " 10, 100, '%s', 'mac-%s', 0, 0)",
                 uuid, state, template, uuid);
        exec_sql(f, sql);
}

static void open_store(struct fixture *f)
{
        struct error err = { 0 };

        assert_int_equal(template_store_open(&f->loop, f->store, f->templates, "/usr/bin/qemu-img", &f->ts, &err), 0);
}

static void test_sweep_at_open(void **state)
{
        struct fixture *f = *state;

        insert_template(f, "kept", "qcow2");
        put_file(f, "kept.qcow2.tmp", "an interrupted import");
        put_file(f, "half.raw.tmp", "an interrupted import");
        put_file(f, "orphan.raw", "renamed, never recorded");
        put_file(f, "kept.raw", "a row names kept, as qcow2");
        put_file(f, "README", "not ours to remove");
        open_store(f);
        assert_true(file_exists(f, "kept.qcow2"));
        assert_false(file_exists(f, "kept.qcow2.tmp"));
        assert_false(file_exists(f, "half.raw.tmp"));
        assert_false(file_exists(f, "orphan.raw"));
        assert_false(file_exists(f, "kept.raw"));
        assert_true(file_exists(f, "README"));
}

static void test_open_missing_dir(void **state)
{
        struct fixture *f = *state;
        struct error err = { 0 };
        struct template_store *ts = NULL;
        char path[160];

        snprintf(path, sizeof(path), "%s/none", f->dir);
        assert_int_equal(template_store_open(&f->loop, f->store, path, "/usr/bin/qemu-img", &ts, &err), -ENOENT);
        assert_null(ts);
        assert_non_null(strstr(err.msg, "open template dir"));
}

static void test_list_and_lookup(void **state)
{
        struct fixture *f = *state;
        struct json_object *list = NULL, *t;
        struct template_info info;
        struct error err = { 0 };

        open_store(f);
        assert_int_equal(template_list_json(f->ts, &list, &err), 0);
        assert_int_equal(json_object_array_length(list), 0);
        json_object_put(list);

        insert_template(f, "zeta", "raw");
        insert_template(f, "alpha", "qcow2");
        assert_int_equal(template_list_json(f->ts, &list, &err), 0);
        assert_int_equal(json_object_array_length(list), 2);
        t = json_object_array_get_idx(list, 0);
        assert_string_equal(json_object_get_string(json_object_object_get(t, "name")), "alpha");
        assert_string_equal(json_object_get_string(json_object_object_get(t, "os_name")), "OS alpha");
        assert_string_equal(json_object_get_string(json_object_object_get(t, "format")), "qcow2");
        assert_int_equal(json_object_get_int64(json_object_object_get(t, "virtual_size")), 1073741824);
        assert_int_equal(json_object_get_int64(json_object_object_get(t, "min_disk_gib")), 1);
        assert_int_equal(json_object_get_int64(json_object_object_get(t, "imported_at")), 1700000000);
        assert_int_equal(strlen(json_object_get_string(json_object_object_get(t, "sha256"))), 64);
        json_object_put(list);

        assert_int_equal(template_lookup(f->store, "zeta", &info, &err), 0);
        assert_string_equal(info.format, "raw");
        assert_int_equal(info.min_disk_gib, 1);
        assert_non_null(strstr(info.path, "/templates/zeta.raw"));
        assert_int_equal(template_lookup(f->store, "nope", &info, &err), -ENOENT);
        assert_string_equal(err.msg, "template nope: not found");
}

struct removed {
        unsigned calls;
        int r;
};

static void on_removed(int r, const struct error *err, void *userdata)
{
        struct removed *rm = userdata;

        (void)err;
        rm->calls++;
        rm->r = r;
}

static void test_remove(void **state)
{
        struct fixture *f = *state;
        struct removed rm = { 0 };
        struct template_info info;
        struct error err = { 0 };

        open_store(f);
        insert_template(f, "debian-12", "qcow2");
        insert_service(f, "11111111-1111-4111-8111-111111111111", "running", "debian-12");
        insert_service(f, "22222222-2222-4222-8222-222222222222", "suspended", "debian-12");
        insert_service(f, "33333333-3333-4333-8333-333333333333", "terminated", "debian-12");

        assert_int_equal(template_remove(f->ts, "debian-12", on_removed, &rm, &err), -EBUSY);
        assert_string_equal(err.msg, "template debian-12: busy: used by 2 services "
                                     "(11111111-1111-4111-8111-111111111111, 22222222-2222-4222-8222-222222222222)");
        assert_int_equal(template_lookup(f->store, "debian-12", &info, &err), 0);
        assert_true(file_exists(f, "debian-12.qcow2"));

        /* Terminated services do not hold it. */
        exec_sql(f, "UPDATE services SET state = 'terminated'");
        assert_int_equal(template_remove(f->ts, "debian-12", on_removed, &rm, &err), 0);
        /* The row is gone at once; the file once the pool has run. */
        assert_int_equal(template_lookup(f->store, "debian-12", &info, &err), -ENOENT);
        assert_int_equal(template_remove(f->ts, "debian-12", on_removed, &rm, &err), -EBUSY);
        assert_string_equal(err.msg, "template debian-12: busy: removal in progress");
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(rm.calls, 1);
        assert_int_equal(rm.r, 0);
        assert_false(file_exists(f, "debian-12.qcow2"));

        assert_int_equal(template_remove(f->ts, "debian-12", on_removed, &rm, &err), -ENOENT);
        assert_string_equal(err.msg, "template debian-12: not found");
        assert_int_equal(template_remove(f->ts, "../etc", on_removed, &rm, &err), -EINVAL);
        assert_int_equal(rm.calls, 1);
}

static void on_imported(int r, const struct error *err, struct json_object *template, void *userdata)
{
        (void)r;
        (void)err;
        (void)template;
        (void)userdata;
        fail_msg("an import refused at once must not call back");
}

/* The refusals an import can tell before it runs anything. */
static void test_import_refused_at_once(void **state)
{
        struct fixture *f = *state;
        struct template_import_request req = { .name = "new", .path = "/nonexistent/image.qcow2" };
        struct error err = { 0 };
        char link[160];

        open_store(f);
        insert_template(f, "old", "qcow2");
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -ENOENT);
        assert_string_equal(err.msg, "template new: `/nonexistent/image.qcow2`: No such file or directory");
        req.path = "relative.qcow2";
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -EINVAL);
        assert_string_equal(err.msg, "template new: `relative.qcow2` is not an absolute path");
        req.path = f->dir;
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "is not a regular file (a directory)"));
        req.path = "/dev/null";
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -EINVAL);
        assert_string_equal(err.msg, "template new: `/dev/null` is not a regular file");
        snprintf(link, sizeof(link), "%s/link", f->dir);
        assert_int_equal(symlink("/etc/passwd", link), 0);
        req.path = link;
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "a symbolic link is in the path"));

        req.path = "/etc/passwd";
        req.name = "old";
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -EEXIST);
        assert_string_equal(err.msg, "template old: exists");
        req.name = "UPPER";
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -EINVAL);
        req.name = "new";
        req.os_name = "bad\nname";
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -EINVAL);
        req.os_name = NULL;
        req.min_disk_gib = TEMPLATE_MAX_MIN_DISK_GIB + 1;
        assert_int_equal(template_import(f->ts, &req, on_imported, NULL, &err), -EINVAL);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_false(file_exists(f, "new.qcow2.tmp"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_image_accepted),
                cmocka_unit_test(test_image_refused),
                cmocka_unit_test(test_image_bad_answer),
                cmocka_unit_test_setup_teardown(test_sweep_at_open, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_open_missing_dir, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_list_and_lookup, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_remove, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_import_refused_at_once, fixture_setup, fixture_teardown),
        };

        log_set_level(LOG_LEVEL_ERROR); /* the sweep's notes are expected here */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
