/* domain_xml(): the whole document for a typical guest, escaping, and
 * refusals. The document itself is validated against libvirt's schema by
 * the integration tests that define it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node/domain.h"

static struct domain_params typical(void)
{
        return (struct domain_params){
                .name = "vpsd-1b4e28ba-2fa1-41d2-883f-0016d3cca427",
                .uuid = "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
                .kvm = false,
                .vcpus = 2,
                .memory_mib = 256,
                .disk_path = "/var/lib/vpsd/disks/1b4e.qcow2",
                .seed_path = "/var/lib/vpsd/seeds/1b4e.iso",
                .mac = "52:54:00:12:34:56",
                .bridge = "vpsbr0",
                .tap = "vps1",
                .run_dir = "/run/vpsd/guests/1b4e",
                .owner = "0123456789abcdef0123456789abcdef",
        };
}

static const char expected_tcg[] =
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
        "  <name>vpsd-1b4e28ba-2fa1-41d2-883f-0016d3cca427</name>\n"
        "  <uuid>1b4e28ba-2fa1-41d2-883f-0016d3cca427</uuid>\n"
        "  <metadata>\n"
        "    <vpsd:owner xmlns:vpsd='https://vpsd.dev/xmlns/domain/1'>0123456789abcdef0123456789abcdef</vpsd:owner>\n"
        "  </metadata>\n"
        "  <memory unit='MiB'>256</memory>\n"
        "  <currentMemory unit='MiB'>256</currentMemory>\n"
        "  <vcpu placement='static'>2</vcpu>\n"
        "  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n"
        "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n"
        "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n"
        "  <devices>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
        "      <source file='/var/lib/vpsd/disks/1b4e.qcow2'/>\n"
        "      <target dev='vda' bus='virtio'/>\n"
        "    </disk>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='raw'/>\n"
        "      <source file='/var/lib/vpsd/seeds/1b4e.iso'/>\n"
        "      <target dev='vdb' bus='virtio'/>\n"
        "      <readonly/>\n"
        "    </disk>\n"
        "    <disk type='file' device='cdrom'>\n"
        "      <driver name='qemu' type='raw'/>\n"
        "      <target dev='sda' bus='sata'/>\n"
        "      <readonly/>\n"
        "    </disk>\n"
        "    <interface type='bridge'>\n"
        "      <source bridge='vpsbr0'/>\n"
        "      <mac address='52:54:00:12:34:56'/>\n"
        "      <target dev='vps1'/>\n"
        "      <model type='virtio'/>\n"
        "    </interface>\n"
        "    <serial type='unix'>\n"
        "      <source mode='bind' path='/run/vpsd/guests/1b4e/serial.sock'/>\n"
        "      <log file='/run/vpsd/guests/1b4e/console.log' append='on'/>\n"
        "      <target port='0'/>\n"
        "    </serial>\n"
        "    <console type='unix'>\n"
        "      <source mode='bind' path='/run/vpsd/guests/1b4e/serial.sock'/>\n"
        "      <target type='serial' port='0'/>\n"
        "    </console>\n"
        "    <graphics type='vnc' socket='/run/vpsd/guests/1b4e/vnc.sock'/>\n"
        "    <video>\n      <model type='vga'/>\n    </video>\n"
        "    <memballoon model='virtio'>\n      <stats period='10'/>\n    </memballoon>\n"
        "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n"
        "  </devices>\n"
        "  <qemu:commandline>\n"
        "    <qemu:arg value='-qmp'/>\n"
        "    <qemu:arg value='unix:/run/vpsd/guests/1b4e/qmp.sock,server=on,wait=off'/>\n"
        "  </qemu:commandline>\n"
        "</domain>\n";

static void test_typical_tcg(void **state)
{
        struct domain_params p = typical();
        struct error err = { 0 };
        char *xml = NULL;

        (void)state;
        assert_int_equal(domain_xml(&p, &xml, &err), 0);
        assert_string_equal(xml, expected_tcg);
        free(xml);
}

static void test_kvm(void **state)
{
        struct domain_params p = typical();
        struct error err = { 0 };
        char *xml = NULL;

        (void)state;
        p.kvm = true;
        assert_int_equal(domain_xml(&p, &xml, &err), 0);
        assert_non_null(strstr(xml, "<domain type='kvm'"));
        assert_non_null(strstr(xml, "<cpu mode='host-passthrough'/>"));
        free(xml);
}

static void test_no_seed(void **state)
{
        struct domain_params p = typical();
        struct error err = { 0 };
        char *xml = NULL;

        (void)state;
        p.seed_path = NULL;
        p.owner = NULL;
        assert_int_equal(domain_xml(&p, &xml, &err), 0);
        assert_null(strstr(xml, "vdb"));
        assert_null(strstr(xml, "<metadata>"));
        free(xml);
}

static void test_escaping(void **state)
{
        struct domain_params p = typical();
        struct error err = { 0 };
        char *xml = NULL;

        (void)state;
        p.disk_path = "/srv/a'b\"c<d>&e.qcow2";
        assert_int_equal(domain_xml(&p, &xml, &err), 0);
        assert_non_null(strstr(xml, "<source file='/srv/a&apos;b&quot;c&lt;d&gt;&amp;e.qcow2'/>"));
        free(xml);
}

static void expect_refused(struct domain_params p, const char *msg)
{
        struct error err = { 0 };
        char *xml = (char *)0x1;

        assert_int_equal(domain_xml(&p, &xml, &err), -EINVAL);
        assert_string_equal(err.msg, msg);
        assert_ptr_equal(xml, (char *)0x1);
}

static void test_refusals(void **state)
{
        struct domain_params p;
        char longdir[120];

        (void)state;
        p = typical();
        p.name = NULL;
        expect_refused(p, "domain XML: parameter 0 is missing");
        p = typical();
        p.tap = "";
        expect_refused(p, "domain XML: parameter 5 is missing");
        p = typical();
        p.vcpus = 0;
        expect_refused(p, "domain XML: no vCPU or no memory");
        p = typical();
        memset(longdir, 'd', sizeof(longdir) - 1);
        longdir[0] = '/';
        longdir[sizeof(longdir) - 1] = '\0';
        p.run_dir = longdir;
        {
                char msg[256];
                snprintf(msg, sizeof(msg), "run folder `%s` is too long for a unix socket path", longdir);
                expect_refused(p, msg);
        }
        p = typical();
        p.run_dir = "/run/a,b";
        expect_refused(p, "run folder `/run/a,b` contains a comma");
        p = typical();
        p.owner = "abc'/><x";
        expect_refused(p, "domain XML: owner `abc'/><x` is not lower-case hex");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_typical_tcg), cmocka_unit_test(test_kvm),     cmocka_unit_test(test_no_seed),
                cmocka_unit_test(test_escaping),    cmocka_unit_test(test_refusals),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
