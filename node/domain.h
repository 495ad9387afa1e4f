/* libvirt domain XML for a customer guest, built from what the service
 * needs. Pure: no libvirt calls, so it is unit-tested byte for byte. */
#pragma once

#include <stdbool.h>

#include "common/error.h"

struct domain_params {
        const char *name;      /* libvirt domain name: infrastructure, never shown to customers */
        const char *uuid;      /* the service's public UUID, also the domain's */
        bool kvm;              /* domain type kvm, else qemu (TCG) */
        unsigned vcpus;
        unsigned memory_mib;
        const char *disk_path; /* qcow2 overlay */
        const char *seed_path; /* NoCloud cidata image, attached read-only; may be NULL */
        const char *mac;
        const char *bridge;
        const char *tap;       /* the tap's name on the bridge */
        const char *run_dir;   /* holds vnc.sock, serial.sock, qmp.sock and console.log */
        const char *owner;     /* the vpsd instance's id, kept in the domain's metadata; may be NULL */
        const char *cdrom_path; /* the ISO in the CD drive (raw, read-only); NULL or empty: the drive is empty */
        bool boot_cdrom;       /* boot from the CD drive first (with an ISO in it), then the disk */
};

/* The namespace of vpsd's element in a domain's <metadata>: <vpsd:owner>
 * names the vpsd instance (its state dir's node id) that made the domain. */
#define DOMAIN_METADATA_URI "https://vpsd.dev/xmlns/domain/1"

/* The socket paths and console log in run_dir, as the XML names them. */
#define DOMAIN_VNC_SOCKET "vnc.sock"
#define DOMAIN_SERIAL_SOCKET "serial.sock"
#define DOMAIN_QMP_SOCKET "qmp.sock"
#define DOMAIN_CONSOLE_LOG "console.log"

/* Returns the XML in *ret_xml (caller frees). -EINVAL when a parameter is
 * missing or cannot be put in a unix socket path. */
int domain_xml(const struct domain_params *params, char **ret_xml, struct error *err);
