#include "domain.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "common/util.h"

/* Writes s with XML's five special characters escaped. Every value is
 * validated before it gets here; escaping is the second line of defence. */
static void put_escaped(FILE *f, const char *s)
{
        for (; *s; s++) {
                switch (*s) {
                case '&':
                        fputs("&amp;", f);
                        break;
                case '<':
                        fputs("&lt;", f);
                        break;
                case '>':
                        fputs("&gt;", f);
                        break;
                case '\'':
                        fputs("&apos;", f);
                        break;
                case '"':
                        fputs("&quot;", f);
                        break;
                default:
                        fputc(*s, f);
                }
        }
}

/* A tiny template language: "%s" takes the next string argument, escaped. */
static void put(FILE *f, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        for (const char *p = fmt; *p; p++) {
                if (p[0] == '%' && p[1] == 's') {
                        put_escaped(f, va_arg(ap, const char *));
                        p++;
                } else if (p[0] == '%' && p[1] == 'u') {
                        fprintf(f, "%u", va_arg(ap, unsigned));
                        p++;
                } else
                        fputc(*p, f);
        }
        va_end(ap);
}

static int check_socket_paths(const struct domain_params *p, struct error *err)
{
        static const char *const names[] = { DOMAIN_VNC_SOCKET, DOMAIN_SERIAL_SOCKET, DOMAIN_QMP_SOCKET };

        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (strlen(p->run_dir) + 1 + strlen(names[i]) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                        return error_set(err, -EINVAL, "run folder `%s` is too long for a unix socket path",
                                         p->run_dir);
        /* QEMU's -qmp option takes "unix:PATH,server=on": a comma in the
         * path would start another option. */
        if (strchr(p->run_dir, ','))
                return error_set(err, -EINVAL, "run folder `%s` contains a comma", p->run_dir);
        return 0;
}

int domain_xml(const struct domain_params *p, char **ret_xml, struct error *err)
{
        const char *required[] = { p->name, p->uuid, p->disk_path, p->mac, p->bridge, p->tap, p->run_dir };
        char *xml = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        for (size_t i = 0; i < ARRAY_SIZE(required); i++)
                if (!required[i] || !required[i][0])
                        return error_set(err, -EINVAL, "domain XML: parameter %zu is missing", i);
        if (p->owner && strspn(p->owner, "0123456789abcdef") != strlen(p->owner))
                return error_set(err, -EINVAL, "domain XML: owner `%.64s` is not lower-case hex", p->owner);
        if (p->vcpus == 0 || p->memory_mib == 0)
                return error_set(err, -EINVAL, "domain XML: no vCPU or no memory");
        r = check_socket_paths(p, err);
        if (r < 0)
                return r;
        f = open_memstream(&xml, &len);
        if (!f)
                return error_set(err, -ENOMEM, "out of memory");

        put(f, "<domain type='%s' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n",
            p->kvm ? "kvm" : "qemu");
        put(f, "  <name>%s</name>\n  <uuid>%s</uuid>\n", p->name, p->uuid);
        /* Whose domain this is: two vpsds on one libvirtd (tests, a demo
         * beside a node) each touch only their own. */
        if (p->owner && p->owner[0])
                put(f, "  <metadata>\n    <vpsd:owner xmlns:vpsd='" DOMAIN_METADATA_URI "'>%s</vpsd:owner>\n"
                       "  </metadata>\n",
                    p->owner);
        put(f, "  <memory unit='MiB'>%u</memory>\n  <currentMemory unit='MiB'>%u</currentMemory>\n", p->memory_mib,
            p->memory_mib);
        put(f, "  <vcpu placement='static'>%u</vcpu>\n", p->vcpus);
        put(f, "  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n");
        if (p->boot_cdrom && p->cdrom_path && p->cdrom_path[0])
                put(f, "    <boot dev='cdrom'/>\n");
        put(f, "    <boot dev='hd'/>\n  </os>\n");
        put(f, "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n");
        if (p->kvm)
                put(f, "  <cpu mode='host-passthrough'/>\n");
        /* ACPI shutdown and reboots from inside the guest behave as on real
         * hardware; a crashed guest stays off for vpsd to notice. */
        put(f, "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
               "  <on_crash>destroy</on_crash>\n");
        put(f, "  <devices>\n");
        put(f, "    <disk type='file' device='disk'>\n"
               "      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
               "      <source file='%s'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n",
            p->disk_path);
        if (p->seed_path && p->seed_path[0])
                put(f, "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n"
                       "      <source file='%s'/>\n      <target dev='vdb' bus='virtio'/>\n      <readonly/>\n"
                       "    </disk>\n",
                    p->seed_path);
        /* An empty CD drive on the SATA controller: customer ISOs are
         * inserted into it live (medium change), and installers find it
         * where real hardware has it. */
        put(f, "    <disk type='file' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n");
        if (p->cdrom_path && p->cdrom_path[0])
                put(f, "      <source file='%s'/>\n", p->cdrom_path);
        put(f, "      <target dev='sda' bus='sata'/>\n      <readonly/>\n    </disk>\n");
        put(f, "    <interface type='bridge'>\n      <source bridge='%s'/>\n      <mac address='%s'/>\n"
               "      <target dev='%s'/>\n      <model type='virtio'/>\n    </interface>\n",
            p->bridge, p->mac, p->tap);
        /* Consoles on unix sockets in the run folder, never on TCP. The
         * serial console is also logged, for the operator. */
        put(f, "    <serial type='unix'>\n      <source mode='bind' path='%s/" DOMAIN_SERIAL_SOCKET "'/>\n"
               "      <log file='%s/" DOMAIN_CONSOLE_LOG "' append='on'/>\n      <target port='0'/>\n"
               "    </serial>\n",
            p->run_dir, p->run_dir);
        put(f, "    <console type='unix'>\n      <source mode='bind' path='%s/" DOMAIN_SERIAL_SOCKET "'/>\n"
               "      <target type='serial' port='0'/>\n    </console>\n",
            p->run_dir);
        put(f, "    <graphics type='vnc' socket='%s/" DOMAIN_VNC_SOCKET "'/>\n", p->run_dir);
        put(f, "    <video>\n      <model type='vga'/>\n    </video>\n");
        put(f, "    <memballoon model='virtio'>\n      <stats period='10'/>\n    </memballoon>\n");
        put(f, "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n");
        put(f, "  </devices>\n");
        /* vpsd's own QMP monitor, besides libvirt's. */
        put(f, "  <qemu:commandline>\n    <qemu:arg value='-qmp'/>\n"
               "    <qemu:arg value='unix:%s/" DOMAIN_QMP_SOCKET ",server=on,wait=off'/>\n"
               "  </qemu:commandline>\n",
            p->run_dir);
        put(f, "</domain>\n");
        if (fclose(f) != 0 || !xml) {
                free(xml);
                return error_set(err, -ENOMEM, "out of memory");
        }
        *ret_xml = xml;
        return 0;
}
