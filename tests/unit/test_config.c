/* node/config: the key = value parser, its error messages, and that a
 * refused text leaves the configuration exactly as it was. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "node/config.h"

static int parse_str(struct config *cfg, const char *text, struct error *err)
{
        return config_parse(cfg, "t.conf", text, strlen(text), err);
}

/* Parses text on top of the defaults, expects code and the exact message,
 * and checks that the configuration did not change by a single byte. */
static void expect_refused_len(const char *text, size_t len, int code, const char *msg)
{
        struct config cfg, before;
        struct error err = { 0 };

        config_init(&cfg);
        /* Something not a default, to see it survive the refusal. */
        cfg.control_max_clients = 7;
        before = cfg;
        assert_int_equal(config_parse(&cfg, "t.conf", text, len, &err), code);
        assert_int_equal(err.code, code);
        assert_string_equal(err.msg, msg);
        assert_memory_equal(&cfg, &before, sizeof(cfg));
}

static void expect_refused(const char *text, int code, const char *msg)
{
        expect_refused_len(text, strlen(text), code, msg);
}

static void test_defaults(void **state)
{
        struct config cfg, defaults;
        struct error err = { 0 };

        (void)state;
        config_init(&cfg);
        assert_string_equal(cfg.state_dir, "/var/lib/vpsd");
        assert_string_equal(cfg.control_socket, "/run/vpsd/control.sock");
        assert_string_equal(cfg.control_group, "vpsd");
        assert_int_equal(cfg.control_max_clients, 64);
        assert_int_equal(cfg.control_max_request, 64 * 1024);
        assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
        assert_int_equal(cfg.hypervisor, HYPERVISOR_AUTO);
        assert_string_equal(cfg.kvm_device, "/dev/kvm");
        assert_string_equal(cfg.kvm_probe_kernel, "");
        assert_int_equal(cfg.kvm_probe_timeout, 20);
        assert_string_equal(cfg.qemu_binary, "/usr/bin/qemu-system-x86_64");
        assert_string_equal(cfg.qemu_img, "/usr/bin/qemu-img");
        assert_string_equal(cfg.template_dir, "");

        defaults = cfg;
        assert_int_equal(config_parse(&cfg, "t.conf", "", 0, &err), 0);
        assert_memory_equal(&cfg, &defaults, sizeof(cfg));
        assert_int_equal(parse_str(&cfg, "\n\n# only a comment\n   \n\t\n", &err), 0);
        assert_memory_equal(&cfg, &defaults, sizeof(cfg));
}

static void test_every_key(void **state)
{
        struct config cfg;
        struct error err = { 0 };
        const char *text = "state_dir = /srv/vpsd\n"
                           "control_socket = /run/x/ctl.sock\n"
                           "control_group = ops_team-1.b\n"
                           "control_max_clients = 4096\n"
                           "control_max_request = 1024\n"
                           "log_level = debug\n"
                           "hypervisor = tcg\n"
                           "kvm_device = /dev/kvm0\n"
                           "kvm_probe_kernel = /boot/vmlinuz-6.1.0\n"
                           "kvm_probe_timeout = 600\n"
                           "qemu_binary = /opt/qemu/bin/qemu-system-x86_64\n"
                           "qemu_img = /opt/qemu/bin/qemu-img\n"
                           "template_dir = /srv/templates\n";

        (void)state;
        config_init(&cfg);
        assert_int_equal(parse_str(&cfg, text, &err), 0);
        assert_string_equal(cfg.state_dir, "/srv/vpsd");
        assert_string_equal(cfg.control_socket, "/run/x/ctl.sock");
        assert_string_equal(cfg.control_group, "ops_team-1.b");
        assert_int_equal(cfg.control_max_clients, 4096);
        assert_int_equal(cfg.control_max_request, 1024);
        assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
        assert_int_equal(cfg.hypervisor, HYPERVISOR_TCG);
        assert_string_equal(cfg.kvm_device, "/dev/kvm0");
        assert_string_equal(cfg.kvm_probe_kernel, "/boot/vmlinuz-6.1.0");
        assert_int_equal(cfg.kvm_probe_timeout, 600);
        assert_string_equal(cfg.qemu_binary, "/opt/qemu/bin/qemu-system-x86_64");
        assert_string_equal(cfg.qemu_img, "/opt/qemu/bin/qemu-img");
        assert_string_equal(cfg.template_dir, "/srv/templates");
}

static void test_template_dir(void **state)
{
        struct config cfg;
        struct error err = { 0 };
        char dir[PATH_MAX];

        (void)state;
        config_init(&cfg);
        assert_int_equal(config_template_dir(&cfg, dir, sizeof(dir)), 0);
        assert_string_equal(dir, "/var/lib/vpsd/templates");
        assert_int_equal(parse_str(&cfg, "state_dir = /srv/vpsd\n", &err), 0);
        assert_int_equal(config_template_dir(&cfg, dir, sizeof(dir)), 0);
        assert_string_equal(dir, "/srv/vpsd/templates");
        /* Empty is the default, not an error; relative is refused. */
        assert_int_equal(parse_str(&cfg, "template_dir =\n", &err), 0);
        assert_int_equal(config_template_dir(&cfg, dir, sizeof(dir)), 0);
        assert_string_equal(dir, "/srv/vpsd/templates");
        assert_int_equal(parse_str(&cfg, "template_dir = /data/t\n", &err), 0);
        assert_int_equal(config_template_dir(&cfg, dir, sizeof(dir)), 0);
        assert_string_equal(dir, "/data/t");
        assert_int_equal(config_template_dir(&cfg, dir, 7), -ENAMETOOLONG);
        assert_string_equal(dir, "");
        config_init(&cfg);
        assert_int_equal(config_template_dir(&cfg, dir, 10), -ENAMETOOLONG);
        assert_string_equal(dir, "");
}

static void test_enum_values(void **state)
{
        static const struct {
                const char *text;
                enum log_level level;
        } levels[] = {
                { "log_level = debug", LOG_LEVEL_DEBUG },
                { "log_level = info", LOG_LEVEL_INFO },
                { "log_level = warn", LOG_LEVEL_WARN },
                { "log_level = error", LOG_LEVEL_ERROR },
        };
        static const struct {
                const char *text;
                enum hypervisor_mode mode;
        } modes[] = {
                { "hypervisor = auto", HYPERVISOR_AUTO },
                { "hypervisor = kvm", HYPERVISOR_KVM },
                { "hypervisor = tcg", HYPERVISOR_TCG },
        };
        struct config cfg;
        struct error err = { 0 };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(levels); i++) {
                config_init(&cfg);
                cfg.log_level = (enum log_level)99;
                assert_int_equal(parse_str(&cfg, levels[i].text, &err), 0);
                assert_int_equal(cfg.log_level, levels[i].level);
        }
        for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
                config_init(&cfg);
                cfg.hypervisor = (enum hypervisor_mode)99;
                assert_int_equal(parse_str(&cfg, modes[i].text, &err), 0);
                assert_int_equal(cfg.hypervisor, modes[i].mode);
                assert_string_equal(hypervisor_mode_name(cfg.hypervisor), modes[i].text + strlen("hypervisor = "));
        }
        assert_string_equal(hypervisor_mode_name((enum hypervisor_mode)3), "?");
        assert_string_equal(hypervisor_mode_name((enum hypervisor_mode)-1), "?");
}

static void test_number_bounds(void **state)
{
        struct config cfg;
        struct error err = { 0 };

        (void)state;
        config_init(&cfg);
        assert_int_equal(parse_str(&cfg, "control_max_clients = 1\n"
                                         "control_max_request = 16777216\n"
                                         "kvm_probe_timeout = 1\n",
                                   &err),
                         0);
        assert_int_equal(cfg.control_max_clients, 1);
        assert_int_equal(cfg.control_max_request, 16 * 1024 * 1024);
        assert_int_equal(cfg.kvm_probe_timeout, 1);
        /* Leading zeros are digits like any other. */
        config_init(&cfg);
        assert_int_equal(parse_str(&cfg, "control_max_clients = 0010", &err), 0);
        assert_int_equal(cfg.control_max_clients, 10);
}

/* Only the listed keys change; the rest keep what was there (not the
 * defaults): config_parse works on top of cfg. */
static void test_parse_on_top(void **state)
{
        struct config cfg;
        struct error err = { 0 };

        (void)state;
        config_init(&cfg);
        assert_int_equal(parse_str(&cfg, "log_level = warn\n", &err), 0);
        assert_int_equal(parse_str(&cfg, "hypervisor = kvm\n", &err), 0);
        assert_int_equal(cfg.log_level, LOG_LEVEL_WARN);
        assert_int_equal(cfg.hypervisor, HYPERVISOR_KVM);
        assert_string_equal(cfg.state_dir, "/var/lib/vpsd");
}

static void test_layout(void **state)
{
        struct config cfg;
        struct error err = { 0 };
        const char *text = "# vpsd.conf\r\n"
                           "\r\n"
                           "   # indented comment = with an equals sign\n"
                           "\t log_level\t=\twarn \t\r\n"
                           "state_dir=/srv/a b\r\n" /* inner blanks are the value's */
                           "qemu_binary = /usr/bin/q=x\n" /* the first `=` splits */
                           "kvm_probe_kernel =\n"          /* empty: the newest kernel */
                           "control_group = ops";           /* no final newline */

        (void)state;
        config_init(&cfg);
        str_copy(cfg.kvm_probe_kernel, sizeof(cfg.kvm_probe_kernel), "/boot/old");
        assert_int_equal(parse_str(&cfg, text, &err), 0);
        assert_int_equal(cfg.log_level, LOG_LEVEL_WARN);
        assert_string_equal(cfg.state_dir, "/srv/a b");
        assert_string_equal(cfg.qemu_binary, "/usr/bin/q=x");
        assert_string_equal(cfg.kvm_probe_kernel, "");
        assert_string_equal(cfg.control_group, "ops");
}

static void test_line_limit(void **state)
{
        char *text = malloc(CONFIG_MAX_LINE + 64);
        struct config cfg;
        struct error err = { 0 };

        (void)state;
        assert_non_null(text);
        /* A comment exactly CONFIG_MAX_LINE bytes long, then a key. */
        memset(text, '#', CONFIG_MAX_LINE);
        strcpy(text + CONFIG_MAX_LINE, "\nlog_level = error\n");
        config_init(&cfg);
        assert_int_equal(parse_str(&cfg, text, &err), 0);
        assert_int_equal(cfg.log_level, LOG_LEVEL_ERROR);

        /* One byte more. */
        memset(text, '#', CONFIG_MAX_LINE + 1);
        strcpy(text + CONFIG_MAX_LINE + 1, "\n");
        expect_refused(text, -EINVAL, "t.conf:1: line longer than 4096 bytes");
        /* The same on the last line with no newline, after good lines. */
        strcpy(text, "log_level = warn\n\n");
        memset(text + strlen(text), 'x', CONFIG_MAX_LINE + 1);
        text[strlen("log_level = warn\n\n") + CONFIG_MAX_LINE + 1] = '\0';
        expect_refused(text, -EINVAL, "t.conf:3: line longer than 4096 bytes");
        free(text);
}

/* The longest path a line can hold fits: the line limit (4096) is below
 * PATH_MAX, so the "path longer than" refusal cannot be reached from a
 * file today; this pins the boundary that is reachable. */
static void test_longest_path(void **state)
{
        const char *prefix = "state_dir=";
        size_t n = CONFIG_MAX_LINE - strlen(prefix);
        char *text = malloc(CONFIG_MAX_LINE + 1);
        struct config cfg;
        struct error err = { 0 };

        (void)state;
        assert_non_null(text);
        strcpy(text, prefix);
        text[strlen(prefix)] = '/';
        memset(text + strlen(prefix) + 1, 'p', n - 1);
        text[CONFIG_MAX_LINE] = '\0';
        config_init(&cfg);
        assert_int_equal(parse_str(&cfg, text, &err), 0);
        assert_int_equal(strlen(cfg.state_dir), n);
        assert_int_equal(cfg.state_dir[0], '/');
        free(text);
}

static void test_refused_syntax(void **state)
{
        (void)state;
        expect_refused("log_level = info\nnot_a_key = 1\n", -EINVAL, "t.conf:2: key `not_a_key`: unknown key");
        /* Keys are case-sensitive. */
        expect_refused("Log_Level = info", -EINVAL, "t.conf:1: key `Log_Level`: unknown key");
        expect_refused("\n\nlog_level info\n", -EINVAL, "t.conf:3: expected `key = value`");
        expect_refused("= info\n", -EINVAL, "t.conf:1: missing key before `=`");
        expect_refused("  \t = info\n", -EINVAL, "t.conf:1: missing key before `=`");
        expect_refused("log_level = debug\n# again:\nlog_level = error\n", -EINVAL,
                       "t.conf:3: key `log_level`: set twice (first on line 1)");
        /* Even when the second value is the same. */
        expect_refused("\nstate_dir = /a\nstate_dir = /a\n", -EINVAL,
                       "t.conf:3: key `state_dir`: set twice (first on line 2)");
        /* No inline comments: the `#` is part of the value. */
        expect_refused("log_level = debug # chatty", -EINVAL,
                       "t.conf:1: key `log_level`: `debug # chatty` must be one of debug, info, warn, error");
}

static void test_refused_unknown_key_long(void **state)
{
        char text[200], msg[300];

        (void)state;
        /* The key is cut at 64 bytes in the message. */
        memset(text, 'k', 100);
        strcpy(text + 100, " = 1");
        snprintf(msg, sizeof(msg), "t.conf:1: key `%.64s`: unknown key", text);
        expect_refused(text, -EINVAL, msg);
}

static void test_refused_paths(void **state)
{
        (void)state;
        expect_refused("state_dir = var/lib/vpsd", -EINVAL, "t.conf:1: key `state_dir`: `var/lib/vpsd` must be an absolute path");
        expect_refused("control_socket = ./ctl.sock", -EINVAL,
                       "t.conf:1: key `control_socket`: `./ctl.sock` must be an absolute path");
        expect_refused("kvm_device = ~/kvm", -EINVAL, "t.conf:1: key `kvm_device`: `~/kvm` must be an absolute path");
        expect_refused("kvm_probe_kernel = vmlinuz", -EINVAL,
                       "t.conf:1: key `kvm_probe_kernel`: `vmlinuz` must be an absolute path");
        expect_refused("qemu_binary = qemu", -EINVAL, "t.conf:1: key `qemu_binary`: `qemu` must be an absolute path");
        expect_refused("qemu_img = qemu-img", -EINVAL,
                       "t.conf:1: key `qemu_img`: `qemu-img` must be an absolute path");
        expect_refused("qemu_img =", -EINVAL, "t.conf:1: key `qemu_img`: `` must be an absolute path");
        expect_refused("template_dir = templates", -EINVAL,
                       "t.conf:1: key `template_dir`: `templates` must be an absolute path");
        /* Only kvm_probe_kernel may be empty. */
        expect_refused("state_dir =", -EINVAL, "t.conf:1: key `state_dir`: `` must be an absolute path");
        expect_refused("qemu_binary =   \r\n", -EINVAL, "t.conf:1: key `qemu_binary`: `` must be an absolute path");
}

static void test_refused_long_value_cut(void **state)
{
        char text[600], msg[512];

        (void)state;
        /* The value is quoted at most 128 bytes long. */
        strcpy(text, "state_dir = ");
        memset(text + strlen(text), 'v', 300);
        text[strlen("state_dir = ") + 300] = '\0';
        snprintf(msg, sizeof(msg), "t.conf:1: key `state_dir`: `%.128s` must be an absolute path",
                 text + strlen("state_dir = "));
        expect_refused(text, -EINVAL, msg);
}

static void test_refused_numbers(void **state)
{
        (void)state;
        expect_refused("control_max_clients = many", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `many` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = 12abc", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `12abc` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = 1.5", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `1.5` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = 0x10", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `0x10` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = 1 2", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `1 2` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients =", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = 0", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `0` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = 4097", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `4097` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = -1", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `-1` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = +5", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `+5` must be a whole number from 1 to 4096");
        /* Wraps a 32-bit unsigned to 1 and a 64-bit one to a small value:
         * must be refused, not reduced. */
        expect_refused("control_max_clients = 4294967297", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `4294967297` must be a whole number from 1 to 4096");
        expect_refused("control_max_clients = 18446744073709551617", -EINVAL,
                       "t.conf:1: key `control_max_clients`: `18446744073709551617` must be a whole number from 1 to "
                       "4096");
        expect_refused("control_max_request = 1023", -EINVAL,
                       "t.conf:1: key `control_max_request`: `1023` must be a whole number from 1024 to 16777216");
        expect_refused("control_max_request = 16777217", -EINVAL,
                       "t.conf:1: key `control_max_request`: `16777217` must be a whole number from 1024 to "
                       "16777216");
        expect_refused("kvm_probe_timeout = 601", -EINVAL,
                       "t.conf:1: key `kvm_probe_timeout`: `601` must be a whole number from 1 to 600");
        expect_refused("kvm_probe_timeout = 99999999999999999999999999999999", -EINVAL,
                       "t.conf:1: key `kvm_probe_timeout`: `99999999999999999999999999999999` must be a whole "
                       "number from 1 to 600");
}

static void test_refused_enums(void **state)
{
        (void)state;
        expect_refused("log_level = verbose", -EINVAL,
                       "t.conf:1: key `log_level`: `verbose` must be one of debug, info, warn, error");
        expect_refused("log_level = INFO", -EINVAL,
                       "t.conf:1: key `log_level`: `INFO` must be one of debug, info, warn, error");
        expect_refused("log_level =", -EINVAL, "t.conf:1: key `log_level`: `` must be one of debug, info, warn, error");
        expect_refused("hypervisor = xen", -EINVAL, "t.conf:1: key `hypervisor`: `xen` must be one of auto, kvm, tcg");
        expect_refused("hypervisor = kvm2", -EINVAL, "t.conf:1: key `hypervisor`: `kvm2` must be one of auto, kvm, tcg");
}

static void test_refused_group(void **state)
{
        char text[128], msg[256];
        struct config cfg;
        struct error err = { 0 };

        (void)state;
        expect_refused("control_group =", -EINVAL,
                       "t.conf:1: key `control_group`: `` must be a name of 1 to 63 characters");
        expect_refused("control_group = -wheel", -EINVAL,
                       "t.conf:1: key `control_group`: `-wheel` must be a name of 1 to 63 characters");
        expect_refused("control_group = vpsd admins", -EINVAL,
                       "t.conf:1: key `control_group`: `vpsd admins` may contain only letters, digits, '_', '-' and "
                       "'.'");
        expect_refused("control_group = ops/x", -EINVAL,
                       "t.conf:1: key `control_group`: `ops/x` may contain only letters, digits, '_', '-' and '.'");
        expect_refused("control_group = gr\xc3\xbcn", -EINVAL,
                       "t.conf:1: key `control_group`: `gr\xc3\xbcn` may contain only letters, digits, '_', '-' and "
                       "'.'");

        /* 63 characters fit, 64 do not. */
        strcpy(text, "control_group = ");
        memset(text + strlen(text), 'g', 63);
        text[strlen("control_group = ") + 63] = '\0';
        config_init(&cfg);
        assert_int_equal(parse_str(&cfg, text, &err), 0);
        assert_int_equal(strlen(cfg.control_group), 63);
        strcat(text, "g");
        snprintf(msg, sizeof(msg), "t.conf:1: key `control_group`: `%s` must be a name of 1 to 63 characters",
                 text + strlen("control_group = "));
        expect_refused(text, -EINVAL, msg);
}

static void test_refused_bytes(void **state)
{
        static const char nul_text[] = "log_level = info\nstate_dir = /a\0b\n";
        char *big;

        (void)state;
        expect_refused_len(nul_text, sizeof(nul_text) - 1, -EINVAL, "t.conf:2: line contains a NUL byte");
        /* A NUL in a comment is refused all the same. */
        expect_refused_len("# a\0b\n", 6, -EINVAL, "t.conf:1: line contains a NUL byte");

        big = malloc(CONFIG_MAX_FILE_SIZE + 1);
        assert_non_null(big);
        /* Exactly the limit is read (all newlines: empty lines). */
        memset(big, '\n', CONFIG_MAX_FILE_SIZE + 1);
        {
                struct config cfg;
                struct error err = { 0 };

                config_init(&cfg);
                assert_int_equal(config_parse(&cfg, "t.conf", big, CONFIG_MAX_FILE_SIZE, &err), 0);
        }
        expect_refused_len(big, CONFIG_MAX_FILE_SIZE + 1, -EFBIG, "t.conf: larger than 1048576 bytes");
        free(big);
}

/* An error on a late line leaves the values of the good lines before it
 * unapplied too. */
static void test_refused_after_good_lines(void **state)
{
        (void)state;
        expect_refused("log_level = debug\nstate_dir = /x\ncontrol_max_clients = 9\nhypervisor = bogus\n", -EINVAL,
                       "t.conf:4: key `hypervisor`: `bogus` must be one of auto, kvm, tcg");
}

/* A temporary directory for the load tests; removed by the teardown. */
struct tmp {
        char dir[64];
        char path[128];
};

static int tmp_setup(void **state)
{
        struct tmp *t = calloc(1, sizeof(*t));

        if (!t)
                return -1;
        strcpy(t->dir, "/tmp/test-config-XXXXXX");
        if (!mkdtemp(t->dir)) {
                free(t);
                return -1;
        }
        snprintf(t->path, sizeof(t->path), "%s/vpsd.conf", t->dir);
        *state = t;
        return 0;
}

static int tmp_teardown(void **state)
{
        struct tmp *t = *state;

        unlink(t->path);
        rmdir(t->dir);
        free(t);
        return 0;
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
}

static void test_load_missing(void **state)
{
        struct tmp *t = *state;
        struct config cfg, before;
        struct error err = { 0 };
        char msg[256];

        config_init(&cfg);
        before = cfg;
        assert_int_equal(config_load(&cfg, t->path, &err), -ENOENT);
        snprintf(msg, sizeof(msg), "open `%s`: No such file or directory", t->path);
        assert_string_equal(err.msg, msg);
        assert_memory_equal(&cfg, &before, sizeof(cfg));
}

static void test_load_directory(void **state)
{
        struct tmp *t = *state;
        struct config cfg, before;
        struct error err = { 0 };
        char msg[256];

        config_init(&cfg);
        before = cfg;
        assert_int_equal(config_load(&cfg, t->dir, &err), -EINVAL);
        snprintf(msg, sizeof(msg), "%s: not a regular file", t->dir);
        assert_string_equal(err.msg, msg);
        assert_memory_equal(&cfg, &before, sizeof(cfg));
}

static void test_load_file(void **state)
{
        struct tmp *t = *state;
        struct config cfg, before;
        struct error err = { 0 };
        char msg[256];

        write_file(t->path, "# test\nlog_level = error\nkvm_probe_timeout = 5\n");
        config_init(&cfg);
        assert_int_equal(config_load(&cfg, t->path, &err), 0);
        assert_int_equal(cfg.log_level, LOG_LEVEL_ERROR);
        assert_int_equal(cfg.kvm_probe_timeout, 5);

        /* Errors are named by the file's path. */
        write_file(t->path, "log_level = info\nhypervisor = vmware\n");
        before = cfg;
        assert_int_equal(config_load(&cfg, t->path, &err), -EINVAL);
        snprintf(msg, sizeof(msg), "%s:2: key `hypervisor`: `vmware` must be one of auto, kvm, tcg", t->path);
        assert_string_equal(err.msg, msg);
        assert_memory_equal(&cfg, &before, sizeof(cfg));

        /* An empty file is the defaults. */
        write_file(t->path, "");
        assert_int_equal(config_load(&cfg, t->path, &err), 0);
        assert_int_equal(cfg.log_level, LOG_LEVEL_ERROR); /* on top: untouched */
}

static void test_load_too_large(void **state)
{
        struct tmp *t = *state;
        struct config cfg, before;
        struct error err = { 0 };
        char msg[256];
        int fd;

        fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        /* Sparse: reads as NUL bytes, but the size check comes first. */
        assert_int_equal(ftruncate(fd, CONFIG_MAX_FILE_SIZE + 1), 0);
        close(fd);
        config_init(&cfg);
        before = cfg;
        assert_int_equal(config_load(&cfg, t->path, &err), -EFBIG);
        snprintf(msg, sizeof(msg), "%s: larger than 1048576 bytes", t->path);
        assert_string_equal(err.msg, msg);
        assert_memory_equal(&cfg, &before, sizeof(cfg));
}

static void collect_key(const char *key, void *userdata)
{
        char *keys = userdata;

        if (keys[0])
                strcat(keys, ",");
        strcat(keys, key);
}

static void test_diff(void **state)
{
        struct config a, b;
        char keys[512] = "";
        struct error err = { 0 };

        (void)state;
        config_init(&a);
        config_init(&b);
        config_diff(&a, &b, collect_key, keys);
        assert_string_equal(keys, "");

        assert_int_equal(parse_str(&b, "log_level = debug\nstate_dir = /srv\ncontrol_max_request = 2048\n"
                                       "hypervisor = kvm\nkvm_probe_kernel = /boot/k\n",
                                   &err),
                         0);
        config_diff(&a, &b, collect_key, keys);
        /* In the table's order, not the file's. */
        assert_string_equal(keys, "state_dir,control_max_request,log_level,hypervisor,kvm_probe_kernel");

        /* Bytes after a string's terminator mean nothing. */
        config_init(&b);
        memset(b.qemu_binary + strlen(b.qemu_binary) + 1, 'Z',
               sizeof(b.qemu_binary) - strlen(b.qemu_binary) - 1);
        memset(b.control_group + strlen(b.control_group) + 1, 'Z',
               sizeof(b.control_group) - strlen(b.control_group) - 1);
        keys[0] = '\0';
        config_diff(&a, &b, collect_key, keys);
        assert_string_equal(keys, "");

        /* Every key, each once. */
        assert_int_equal(parse_str(&b, "state_dir=/1\ncontrol_socket=/2\ncontrol_group=g\ncontrol_max_clients=1\n"
                                       "control_max_request=1024\nlog_level=warn\nhypervisor=tcg\nkvm_device=/3\n"
                                       "kvm_probe_kernel=/4\nkvm_probe_timeout=1\nqemu_binary=/5\nqemu_img=/6\n"
                                       "template_dir=/7\n",
                                   &err),
                         0);
        config_diff(&a, &b, collect_key, keys);
        assert_string_equal(keys, "state_dir,control_socket,control_group,control_max_clients,control_max_request,"
                                  "log_level,hypervisor,kvm_device,kvm_probe_kernel,kvm_probe_timeout,qemu_binary,"
                                  "qemu_img,template_dir");
}

static void test_reloadable(void **state)
{
        (void)state;
        assert_true(config_key_reloadable("control_group"));
        assert_true(config_key_reloadable("control_max_clients"));
        assert_true(config_key_reloadable("control_max_request"));
        assert_true(config_key_reloadable("log_level"));
        assert_false(config_key_reloadable("state_dir"));
        assert_false(config_key_reloadable("control_socket"));
        assert_false(config_key_reloadable("hypervisor"));
        assert_false(config_key_reloadable("kvm_device"));
        assert_false(config_key_reloadable("kvm_probe_kernel"));
        assert_false(config_key_reloadable("kvm_probe_timeout"));
        assert_false(config_key_reloadable("qemu_binary"));
        assert_false(config_key_reloadable("qemu_img"));
        assert_false(config_key_reloadable("template_dir"));
        assert_false(config_key_reloadable("no_such_key"));
        assert_false(config_key_reloadable(""));
        assert_false(config_key_reloadable("LOG_LEVEL"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_every_key),
                cmocka_unit_test(test_enum_values),
                cmocka_unit_test(test_template_dir),
                cmocka_unit_test(test_number_bounds),
                cmocka_unit_test(test_parse_on_top),
                cmocka_unit_test(test_layout),
                cmocka_unit_test(test_line_limit),
                cmocka_unit_test(test_longest_path),
                cmocka_unit_test(test_refused_syntax),
                cmocka_unit_test(test_refused_unknown_key_long),
                cmocka_unit_test(test_refused_paths),
                cmocka_unit_test(test_refused_long_value_cut),
                cmocka_unit_test(test_refused_numbers),
                cmocka_unit_test(test_refused_enums),
                cmocka_unit_test(test_refused_group),
                cmocka_unit_test(test_refused_bytes),
                cmocka_unit_test(test_refused_after_good_lines),
                cmocka_unit_test_setup_teardown(test_load_missing, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_load_directory, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_load_file, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_load_too_large, tmp_setup, tmp_teardown),
                cmocka_unit_test(test_diff),
                cmocka_unit_test(test_reloadable),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
