#!/bin/bash
# build-guest.sh OUTDIR - build the vpsd tiny test guest (see docs/test-guest.md).
#
# Outputs, in OUTDIR:
#   guest.qcow2   BIOS-bootable disk template (MBR + syslinux on a FAT partition,
#                 64 MiB virtual); use it as the read-only backing file of overlays.
#   vmlinuz       Debian cloud kernel (for direct kernel boot)
#   initrd.img    busybox initramfs (gzip'ed newc cpio) that reads a NoCloud seed
#   cmdline       kernel command line used by the boot disk
#   manifest      kernel package/version and module list that went in
#   .stamp        sha256 of this script: a second run with the same script exits at once
#   cache/        the downloaded kernel .deb (reused when the script changes)
#
# Made from Debian packages only, without loop devices, mounts or root-only
# tricks except mknod of /dev/console (skipped when not root; the kernel's
# built-in initramfs has one anyway).  Set VPSD_GUEST_KERNEL_DEB=/path/x.deb to
# use a given linux-image-*-cloud-amd64 package instead of asking apt.
#
# deps: busybox-static cpio gzip syslinux syslinux-common mtools dosfstools fdisk genisoimage qemu-utils util-linux apt dpkg
set -euo pipefail

if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
OUT=$(readlink -m "$1")
mkdir -p "$OUT"

STAMP="script $(sha256sum "$SCRIPT" | cut -d' ' -f1)
kernel-deb ${VPSD_GUEST_KERNEL_DEB:-apt:linux-image-cloud-amd64}"
OUTPUTS="guest.qcow2 vmlinuz initrd.img cmdline manifest"

up_to_date() {
    [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$STAMP" ] || return 1
    for f in $OUTPUTS; do [ -s "$OUT/$f" ] || return 1; done
}
if up_to_date; then
    echo "build-guest: $OUT is up to date"
    exit 0
fi

# One builder at a time per OUTDIR; a waiter re-checks after getting the lock.
exec 9>"$OUT/.lock"
flock 9
if up_to_date; then
    echo "build-guest: $OUT is up to date"
    exit 0
fi
rm -f "$OUT/.stamp"

log() { echo "build-guest: $*" >&2; }
die() { echo "build-guest: error: $*" >&2; exit 1; }

missing=""
for c in apt-get apt-cache dpkg busybox cpio gzip sfdisk mkfs.vfat mcopy syslinux qemu-img flock sha256sum; do
    command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
done
[ -z "$missing" ] || die "missing commands:$missing (see the '# deps:' line of $SCRIPT)"

T0=$(date +%s.%N)
WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- kernel
mkdir -p "$OUT/cache"
if [ -n "${VPSD_GUEST_KERNEL_DEB:-}" ]; then
    DEB=$(readlink -f "$VPSD_GUEST_KERNEL_DEB")
    [ -f "$DEB" ] || die "VPSD_GUEST_KERNEL_DEB=$VPSD_GUEST_KERNEL_DEB does not exist"
else
    KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
           awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ { print $2; exit }')
    if [ -z "$KPKG" ]; then
        log "apt does not know linux-image-cloud-amd64; running apt-get update"
        apt-get update -qq || die "apt-get update failed"
        KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
               awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ { print $2; exit }')
    fi
    [ -n "$KPKG" ] || die "cannot resolve the package linux-image-cloud-amd64 depends on"
    KVERS=$(apt-cache policy "$KPKG" | awk '$1 == "Candidate:" { print $2; exit }')
    DEB=$(ls "$OUT/cache/${KPKG}_${KVERS//:/%3a}_amd64.deb" 2>/dev/null || true)
    if [ -z "$DEB" ]; then
        log "downloading $KPKG $KVERS"
        dl() { (cd "$OUT/cache" && apt-get download -q -o APT::Sandbox::User=root "$KPKG=$KVERS"); }
        if ! dl; then
            log "download failed; running apt-get update and retrying"
            apt-get update -qq || die "apt-get update failed"
            KVERS=$(apt-cache policy "$KPKG" | awk '$1 == "Candidate:" { print $2; exit }')
            dl || die "apt-get download $KPKG failed"
        fi
        DEB=$(ls "$OUT/cache/${KPKG}"_*_amd64.deb | tail -n 1)
        # keep only this one in the cache
        for f in "$OUT/cache/"*.deb; do [ "$f" = "$DEB" ] || rm -f "$f"; done
    fi
fi
log "kernel package: $(basename "$DEB")"
dpkg -x "$DEB" "$WORK/kernel"
KVER=$(ls "$WORK/kernel/lib/modules" | head -n 1)
KDIR=$WORK/kernel/lib/modules/$KVER
KCONFIG=$WORK/kernel/boot/config-$KVER
[ -f "$WORK/kernel/boot/vmlinuz-$KVER" ] || die "no vmlinuz in $(basename "$DEB")"
[ -f "$KCONFIG" ] || die "no config-$KVER in $(basename "$DEB")"

# ---------------------------------------------------------------- modules
# module:CONFIG_SYMBOL:required.  "=y" in the config means built in (nothing
# to load), "=m" means we ship the .ko plus what its .modinfo "depends=" names.
# ahci is optional: Debian's cloud kernel has no SATA, so a q35 machine's SATA
# cdrom is invisible to it - attach the seed as virtio disk, IDE (pc machine)
# or virtio-scsi cdrom instead.
WANTED="
virtio_pci:VIRTIO_PCI:1
virtio_blk:VIRTIO_BLK:1
virtio_net:VIRTIO_NET:1
virtio_console:VIRTIO_CONSOLE:0
virtio_scsi:SCSI_VIRTIO:0
sd_mod:BLK_DEV_SD:0
sr_mod:BLK_DEV_SR:1
ata_piix:ATA_PIIX:1
ata_generic:ATA_GENERIC:0
ahci:SATA_AHCI:0
isofs:ISO9660_FS:1
vfat:VFAT_FS:1
nls_cp437:NLS_CODEPAGE_437:1
nls_ascii:NLS_ASCII:0
nls_utf8:NLS_UTF8:0
nls_iso8859-1:NLS_ISO8859_1:0
"
declare -A KO=()      # module name (with _) -> path of its .ko
while IFS= read -r -d '' f; do
    n=${f##*/}; n=${n%.ko}; KO[${n//-/_}]=$f
done < <(find "$KDIR/kernel" -name '*.ko' -print0)
[ ${#KO[@]} -gt 0 ] || die "no uncompressed .ko modules in $(basename "$DEB")"

declare -A SEEN=()
ORDER=()
modinfo_depends() { tr '\0' '\n' < "$1" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '; }
visit() {
    local m=${1//-/_} d
    [ -n "${SEEN[$m]:-}" ] && return 0
    SEEN[$m]=1
    [ -n "${KO[$m]:-}" ] || die "module $m is needed but not in the package"
    for d in $(modinfo_depends "${KO[$m]}"); do visit "$d"; done
    ORDER+=("$m")
}
BUILTIN=""
for w in $WANTED; do
    IFS=: read -r mod sym req <<<"$w"
    val=$(sed -n "s/^CONFIG_${sym}=//p" "$KCONFIG")
    case "$val" in
        y) BUILTIN="$BUILTIN $mod" ;;
        m) visit "$mod" ;;
        *) [ "$req" = 1 ] && die "CONFIG_$sym is not set in $KVER; $mod is required"
           log "note: CONFIG_$sym is not set in $KVER ($mod unavailable)" ;;
    esac
done

# ---------------------------------------------------------------- initramfs
S=$WORK/stage
mkdir -p "$S"/{bin,dev,etc,lib/modules,lib/vpsd,proc,root,run,seed,sys,tmp,var/log}
ln -s bin "$S/sbin"; mkdir -p "$S/usr"; ln -s ../bin "$S/usr/bin"; ln -s ../bin "$S/usr/sbin"
BB=$(dpkg -L busybox-static 2>/dev/null | grep -E '/bin/busybox$' | head -n 1 || true)
[ -n "$BB" ] && [ -x "$BB" ] || die "busybox-static is not installed"
if LC_ALL=C ldd "$BB" 2>&1 | grep -q '=>'; then die "$BB is not static"; fi
cp "$BB" "$S/bin/busybox"
# Only "sh" is linked here; /init runs "busybox --install -s /bin" for the
# other applets (one fork per symlink is slow on small build machines).
ln -s busybox "$S/bin/sh"
APPLETS=" $("$BB" --list | tr '\n' ' ') "
for a in sh awk ip insmod mount dd tr sed grep cut mkpasswd ipcalc hostname init stty; do
    [[ "$APPLETS" == *" $a "* ]] || die "busybox lacks the applet $a"
done
chmod 700 "$S/root"
chmod 1777 "$S/tmp"
if [ "$(id -u)" = 0 ]; then
    mknod -m 600 "$S/dev/console" c 5 1
    mknod -m 666 "$S/dev/null" c 1 3
fi

: > "$S/lib/modules/load.list"
for m in "${ORDER[@]}"; do
    b=$(basename "${KO[$m]}")
    cp "${KO[$m]}" "$S/lib/modules/$b"
    echo "$b" >> "$S/lib/modules/load.list"
done

cat > "$S/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat > "$S/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
EOF
chmod 600 "$S/etc/shadow"
cat > "$S/etc/group" <<'EOF'
root:x:0:
tty:x:5:
EOF
echo vpsd-guest > "$S/etc/hostname"
cat > "$S/etc/inittab" <<'EOF'
# busybox init: /init already did the boot work; keep root shells on the
# serial console and on the first VT (VGA).
ttyS0::respawn:/bin/vpsd-shell ttyS0
tty1::respawn:/bin/vpsd-shell tty1
::ctrlaltdel:/bin/reboot
::shutdown:/bin/umount -a -r
EOF
cat > "$S/bin/vpsd-shell" <<'EOF'
#!/bin/sh
# Root login shell for a console; busybox init respawns it when it exits.
# Throttle respawns so a console without hardware does not spin.
mark=/run/vpsd-shell.$1
[ -e "$mark" ] && sleep 1
: > "$mark"
cd /root
exec /bin/sh -l
EOF
chmod 755 "$S/bin/vpsd-shell"
cat > "$S/etc/profile" <<'EOF'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=${TERM:-linux}
PS1='\h:\w# '
echo "vpsd test guest $(hostname) - root shell on $(tty)"
EOF

# ---------------------------------------------------------------- seed reader
# YAML flattener used by /init (awk program, busybox awk compatible)
cat > "$S/lib/vpsd/yflat.awk" <<'YFLAT_EOF'
# yflat.awk - flatten the small subset of YAML that cloud-init seeds use
# into "path<TAB>value" lines.  Mapping keys are joined with ".", sequence
# items get their 0-based index: "ethernets.eth0.addresses.1<TAB>2001:db8::10/64".
# Supported: block mappings and sequences (also "key:" followed by "- item"
# at the same indent), "- key: value" items, flow collections [..] and {..}
# (nested, may span lines), '..' and ".." scalars, comments, block scalars
# (| and >, each line is emitted as an item: path.0, path.1, ...).
# Not supported: anchors/aliases, tags, multi-document streams, complex keys.
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function strip_comment(s,    i, c, q, out) {
    q = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q != "") { if (c == q) q = "" }
        else if (c == "\"" || c == "'") { if (i == 1 || substr(s, i - 1, 1) ~ /[ \t\[{,:]/) q = c }
        else if (c == "#" && (i == 1 || substr(s, i - 1, 1) ~ /[ \t]/)) return substr(s, 1, i - 1)
    }
    return s
}
function unquote(s,    c, out, i, ch) {
    s = trim(s)
    c = substr(s, 1, 1)
    if (c == "'" && substr(s, length(s), 1) == "'" && length(s) >= 2) {
        s = substr(s, 2, length(s) - 2); gsub(/''/, "'", s); return s
    }
    if (c == "\"" && substr(s, length(s), 1) == "\"" && length(s) >= 2) {
        s = substr(s, 2, length(s) - 2); out = ""
        for (i = 1; i <= length(s); i++) {
            ch = substr(s, i, 1)
            if (ch == "\\" && i < length(s)) {
                i++; ch = substr(s, i, 1)
                if (ch == "n") ch = " "; else if (ch == "t") ch = " "
            }
            out = out ch
        }
        return out
    }
    if (s == "~" || s == "null") return ""
    return s
}
function emit(path, val) { gsub(/[\t\r\n]/, " ", val); print path "\t" val }
function join(p, k) { return (p == "") ? k : p "." k }
# split "key: value" / "key:" outside quotes; sets KEY and VAL, returns 1 if it is one
function splitkv(s,    i, c, q, k) {
    q = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q != "") { if (c == q) q = ""; continue }
        if ((c == "\"" || c == "'") && i == 1) { q = c; continue }
        if (c == ":" && (i == length(s) || substr(s, i + 1, 1) ~ /[ \t]/)) {
            k = unquote(substr(s, 1, i - 1))
            if (k == "" || (substr(s, 1, 1) != "\"" && substr(s, 1, 1) != "'" && k !~ /^[A-Za-z0-9_.\/@-]+$/)) return 0
            KEY = k; VAL = trim(substr(s, i + 1)); return 1
        }
        if (c == "[" || c == "{") return 0
    }
    return 0
}
# ---- flow collections: recursive descent over FS_ (string) at FP (position)
function fskip() { while (FP <= length(FS_) && substr(FS_, FP, 1) ~ /[ \t\n]/) FP++ }
function fscalar(term,    c, q, start, s) {
    fskip(); c = substr(FS_, FP, 1)
    if (c == "\"" || c == "'") {
        q = c; start = FP; FP++
        while (FP <= length(FS_)) {
            c = substr(FS_, FP, 1)
            if (q == "\"" && c == "\\") { FP += 2; continue }
            if (c == q) { if (q == "'" && substr(FS_, FP + 1, 1) == "'") { FP += 2; continue } FP++; break }
            FP++
        }
        return unquote(substr(FS_, start, FP - start))
    }
    start = FP
    while (FP <= length(FS_)) {
        c = substr(FS_, FP, 1)
        if (index(term, c)) break
        FP++
    }
    return unquote(substr(FS_, start, FP - start))
}
function fvalue(path, term,    c) {
    fskip(); c = substr(FS_, FP, 1)
    if (c == "[") { fseq(path); return }
    if (c == "{") { fmap(path); return }
    emit(path, fscalar(term))
}
function fseq(path,    n, c) {
    FP++; n = 0
    while (FP <= length(FS_)) {
        fskip(); c = substr(FS_, FP, 1)
        if (c == "]") { FP++; return }
        if (c == ",") { FP++; continue }
        fvalue(join(path, n), ",]"); n++
    }
}
function fmap(path,    c, k, save) {
    FP++
    while (FP <= length(FS_)) {
        fskip(); c = substr(FS_, FP, 1)
        if (c == "}") { FP++; return }
        if (c == ",") { FP++; continue }
        k = fkey()
        fskip()
        if (substr(FS_, FP, 1) == ":") { FP++; fvalue(join(path, k), ",}") }
        else emit(join(path, k), "")
    }
}
function fkey(    c, q, start) {
    fskip(); c = substr(FS_, FP, 1)
    if (c == "\"" || c == "'") return fscalar(":,}")
    start = FP
    while (FP <= length(FS_)) {
        c = substr(FS_, FP, 1)
        if (c == "," || c == "}") break
        if (c == ":" && (FP == length(FS_) || substr(FS_, FP + 1, 1) ~ /[ \t\n]/)) break
        FP++
    }
    return trim(substr(FS_, start, FP - start))
}
function depth(s,    i, c, q, d) {
    q = ""; d = 0
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q != "") { if (c == q) q = ""; continue }
        if (c == "\"" || c == "'") q = c
        else if (c == "[" || c == "{") d++
        else if (c == "]" || c == "}") d--
    }
    return d
}
# ---- value dispatch for block context
function value(path, v, ind) {
    if (v == "") { PEND = path; PIND = ind; return }
    if (v ~ /^[|>][-+0-9]*$/) { BPATH = path; BIND = ind; BN = 0; BMIN = -1; return }
    if (v ~ /^[\[{]/) {
        if (depth(v) > 0) { FLOWBUF = v; FLOWPATH = path; return }
        FS_ = v; FP = 1; fvalue(path, ""); return
    }
    emit(path, unquote(v))
}
function push(ind, path, kind) { SP++; SIND[SP] = ind; SPATH[SP] = path; SKIND[SP] = kind; SCNT[SP] = 0 }
function handle(ind, c,    item, rest, off) {
    if (SP == 0) push(ind, "", (c ~ /^-( |$)/) ? "seq" : "map")
    if (ind > SIND[SP]) return
    while (SP > 1 && (SIND[SP] > ind || (SIND[SP] == ind && SKIND[SP] == "seq" && c !~ /^-( |$)/))) SP--
    if (c ~ /^-( |$)/) {
        if (SKIND[SP] != "seq") { if (SIND[SP] == ind && SCNT[SP] == 0) SKIND[SP] = "seq"; else return }
        item = join(SPATH[SP], SCNT[SP]); SCNT[SP]++
        rest = substr(c, 2); off = match(rest, /[^ ]/)
        if (off == 0) { PEND = item; PIND = ind; return }
        rest = substr(rest, off)
        if (splitkv(rest)) {
            push(ind + off, item, "map")
            value(join(item, KEY), VAL, ind + off)
            return
        }
        if (rest ~ /^-( |$)/) { push(ind + off, item, "seq"); handle(ind + off, rest); return }
        value(item, rest, ind)
        return
    }
    if (splitkv(c)) { if (SKIND[SP] == "map") value(join(SPATH[SP], KEY), VAL, ind) }
}
BEGIN { SP = 0; PEND = ""; BPATH = ""; FLOWBUF = "" }
{
    line = $0; sub(/\r$/, "", line)
    if (BPATH != "") {
        if (line ~ /^[ \t]*$/) { if (BMIN >= 0) emit(join(BPATH, BN++), ""); next }
        match(line, /^ */); ind = RLENGTH
        if (ind > BIND) {
            if (BMIN < 0) BMIN = ind
            emit(join(BPATH, BN++), substr(line, BMIN + 1)); next
        }
        BPATH = ""
    }
    if (FLOWBUF != "") {
        FLOWBUF = FLOWBUF " " strip_comment(line)
        if (depth(FLOWBUF) <= 0) { FS_ = FLOWBUF; FP = 1; fvalue(FLOWPATH, ""); FLOWBUF = "" }
        next
    }
    if (line ~ /^[ \t]*(#.*)?$/ || line ~ /^(---|\.\.\.)[ \t]*$/) next
    line = strip_comment(line); sub(/[ \t]+$/, "", line)
    match(line, /^ */); ind = RLENGTH; c = substr(line, ind + 1)
    # a document that is one flow collection (JSON meta-data, for example)
    if (SP == 0 && PEND == "" && c ~ /^[\[{]/) { value("", c, ind); next }
    if (PEND != "") {
        if (ind > PIND || (ind == PIND && c ~ /^-( |$)/)) {
            push(ind, PEND, (c ~ /^-( |$)/) ? "seq" : "map")
            PEND = ""; handle(ind, c); next
        }
        emit(PEND, ""); PEND = ""
    }
    handle(ind, c)
}
END { if (PEND != "") emit(PEND, ""); if (FLOWBUF != "") { FS_ = FLOWBUF; FP = 1; fvalue(FLOWPATH, "") } }
YFLAT_EOF

# ---------------------------------------------------------------- /init
cat > "$S/init" <<'INIT_EOF'
#!/bin/sh
# /init of the vpsd test guest (busybox ash, PID 1).  Generated by
# tests/guest/build-guest.sh - edit it there.  It must never exit: at the end
# it execs busybox init, which keeps root shells on ttyS0 and tty1.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
umask 022

/bin/busybox mkdir -p /proc /sys /dev /run /tmp /seed
/bin/busybox mount -t proc proc /proc 2>/dev/null
/bin/busybox --install -s /bin          # applet symlinks (needs /proc)
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=0755 tmpfs /run 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp 2>/dev/null

# Print a line on every active console.  /dev/console (our stdout) is the
# last console= of the command line; the other ones get a direct copy so the
# markers show on the VGA console and on the serial log alike.
CONSOLES=$(cat /sys/class/tty/console/active 2>/dev/null)
say() {
    echo "$*"
    last=""
    for t in $CONSOLES; do last=$t; done
    for t in $CONSOLES; do
        [ "$t" = "$last" ] && continue
        echo "$*" > "/dev/$t" 2>/dev/null
    done
}
seed() { say "VPSD-SEED $*"; }

say "VPSD-GUEST-BOOTING $(uname -r)"

# kernel command line options: vpsd.seedwait=SECONDS (default 10)
SEEDWAIT=10
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vpsd.seedwait=*) SEEDWAIT=${arg#vpsd.seedwait=} ;;
    esac
done

# ---- kernel modules, in dependency order (computed at build time)
if [ -f /lib/modules/load.list ]; then
    while read -r ko; do
        [ -n "$ko" ] || continue
        insmod "/lib/modules/$ko" 2>/dev/null
    done < /lib/modules/load.list
fi

hostname vpsd-guest

# ---- find the NoCloud seed: a filesystem labelled "cidata" (any case)
# Labels are read from the raw superblock (busybox has no blkid):
#   ISO 9660: primary volume descriptor at 32768, "CD001" at +1, volume id at +40 (32 bytes)
#   FAT12/16: fs type at 54, label at 43 (11 bytes); FAT32: fs type at 82, label at 71
rawread() { dd if="$1" bs=1 skip="$2" count="$3" 2>/dev/null | tr -d '\000' ; }
fslabel() {
    if [ "$(rawread "$1" 32769 5)" = "CD001" ]; then
        echo "iso9660 $(rawread "$1" 32808 32)"
        return
    fi
    case "$(rawread "$1" 54 5)" in FAT12|FAT16) echo "vfat $(rawread "$1" 43 11)"; return ;; esac
    case "$(rawread "$1" 82 5)" in FAT32) echo "vfat $(rawread "$1" 71 11)"; return ;; esac
}
find_seed() {
    for dev in /dev/vd* /dev/sr* /dev/sd* /dev/hd*; do
        [ -b "$dev" ] || continue
        # shellcheck disable=SC2046 # split "fstype label" into words
        set -- $(fslabel "$dev")
        [ $# -ge 2 ] || continue
        fstype=$1; shift
        lbl=$(echo "$*" | tr 'A-Z' 'a-z' | sed 's/ *$//')
        if [ "$lbl" = "cidata" ]; then
            if mount -t "$fstype" -o ro "$dev" /seed 2>/dev/null; then
                SEEDDEV=$dev
                return 0
            fi
        fi
    done
    return 1
}

SEEDDEV=""
tries=$((SEEDWAIT * 4))
while :; do
    find_seed && break
    tries=$((tries - 1))
    [ $tries -gt 0 ] || break
    sleep 0.25
done

# ---- YAML flattening: "path<TAB>value" lines (see /lib/vpsd/yflat.awk)
flat() { [ -f "$1" ] && awk -f /lib/vpsd/yflat.awk "$1"; }
TAB=$(printf '\t')
yget() { # yget FLATFILE PATH -> value of exactly PATH
    awk -F '\t' -v p="$2" '$1 == p { sub(/^[^\t]*\t/, ""); print; exit }' "$1"
}
yidx() { # yidx FLATFILE PREFIX -> distinct next path components after PREFIX.
    awk -F '\t' -v p="$2." 'index($1, p) == 1 { r = substr($1, length(p) + 1); sub(/\..*/, "", r); if (!(r in s)) { s[r] = 1; print r } }' "$1"
}

mkdir -p /run/vpsd-seed
chmod 700 /run/vpsd-seed
MD=/run/vpsd-seed/meta-data.flat
UD=/run/vpsd-seed/user-data.flat
NC=/run/vpsd-seed/network-config.flat
: > $MD; : > $UD; : > $NC

if [ -z "$SEEDDEV" ]; then
    seed "none"
else
    seed "source=$SEEDDEV"
    flat /seed/meta-data > $MD
    if [ -f /seed/user-data ]; then
        if head -n 1 /seed/user-data | grep -q '^#cloud-config'; then
            flat /seed/user-data > $UD
        else
            seed "user-data=unsupported (not #cloud-config)"
        fi
    fi
    # network-config may be wrapped in "network:" or not
    flat /seed/network-config | sed 's/^network\.//' > $NC
    cp /seed/meta-data /seed/user-data /seed/network-config /run/vpsd-seed/ 2>/dev/null
    umount /seed 2>/dev/null
fi

# ---- identity
IID=$(yget $MD instance-id)
[ -n "$IID" ] && seed "instance-id=$IID"
HN=$(yget $UD hostname)
FQDN=$(yget $UD fqdn)
[ -n "$HN" ] || HN=${FQDN%%.*}
[ -n "$HN" ] || HN=$(yget $MD local-hostname)
[ -n "$HN" ] || HN=$(yget $MD hostname)
if [ -n "$HN" ]; then
    HN=${HN%%.*}
    [ -n "$FQDN" ] || { FQDN=$(yget $MD local-hostname); case "$FQDN" in *.*) ;; *) FQDN="" ;; esac; }
    seed "hostname=$HN"
    [ -n "$FQDN" ] && seed "fqdn=$FQDN"
    hostname "$HN"
else
    HN=vpsd-guest
fi
echo "$HN" > /etc/hostname
{
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    if [ -n "$FQDN" ]; then echo "127.0.1.1 $FQDN $HN"; else echo "127.0.1.1 $HN"; fi
} > /etc/hosts

# ---- ssh keys: everything goes to root (the only user of this guest)
mkdir -p /root/.ssh
chmod 700 /root/.ssh
KEYS=/run/vpsd-seed/keys
: > $KEYS
{
    grep -E "^ssh_authorized_keys\.[0-9]+$TAB" $UD
    grep -E "^users\.[0-9]+\.ssh_authorized_keys\.[0-9]+$TAB" $UD
    grep -E "^users\.[0-9]+\.ssh-authorized-keys\.[0-9]+$TAB" $UD
    grep -E "^public-keys(\.[^$TAB]+)?$TAB" $MD
} | cut -f 2- | while IFS= read -r key; do
    [ -n "$key" ] || continue
    grep -qxF "$key" $KEYS && continue
    echo "$key" >> $KEYS
    seed "ssh-key=$key"
done
cp $KEYS /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys

# ---- root password (never printed).  Sources, last one wins:
#   password: P (default user = root), chpasswd.list ("root:P" lines or items),
#   chpasswd.users[{name: root, password: P, type: text|hash}],
#   users[{name: root, passwd|hashed_passwd: HASH | plain_text_passwd: P}]
PWKIND=""; PWVAL=""
setpw() { PWKIND=$1; PWVAL=$2; }
v=$(yget $UD password); [ -n "$v" ] && setpw text "$v"
for i in $(yidx $UD chpasswd.list); do
    l=$(yget $UD "chpasswd.list.$i")
    case "$l" in root:*) setpw auto "${l#root:}" ;; esac
done
for i in $(yidx $UD chpasswd.users); do
    [ "$(yget $UD "chpasswd.users.$i.name")" = root ] || continue
    t=$(yget $UD "chpasswd.users.$i.type")
    v=$(yget $UD "chpasswd.users.$i.password")
    [ -n "$v" ] && setpw "${t:-auto}" "$v"
done
for i in $(yidx $UD users); do
    [ "$(yget $UD "users.$i.name")" = root ] || continue
    v=$(yget $UD "users.$i.hashed_passwd"); [ -n "$v" ] && setpw hash "$v"
    v=$(yget $UD "users.$i.passwd"); [ -n "$v" ] && setpw hash "$v"
    v=$(yget $UD "users.$i.plain_text_passwd"); [ -n "$v" ] && setpw text "$v"
done
if [ -n "$PWKIND" ]; then
    if [ "$PWKIND" = auto ]; then
        case "$PWVAL" in '$'[0-9a-z]*'$'*) PWKIND="hash" ;; *) PWKIND="text" ;; esac
    fi
    case "$PWKIND" in
        hash) HASH=$PWVAL ;;
        text) if [ "$PWVAL" = RANDOM ]; then HASH='!'; else HASH=$(mkpasswd -m sha512 "$PWVAL"); fi ;;
        *) HASH='!' ;;
    esac
    sed -i "/^root:/d" /etc/shadow
    printf 'root:%s:19000:0:99999:7:::\n' "$HASH" >> /etc/shadow
    seed "password=root ($PWKIND)"
fi
PWVAL=""; HASH=""

# ---- network (netplan v2 "ethernets"; a minimal network v1 "physical" too)
ip link set lo up
RESOLV=/run/vpsd-seed/resolv.conf
: > $RESOLV
dev_by_mac() {
    want=$(echo "$1" | tr 'A-F' 'a-f')
    for d in /sys/class/net/*; do
        [ "$(cat "$d/address" 2>/dev/null)" = "$want" ] && { basename "$d"; return 0; }
    done
    return 1
}
dev_by_name() {
    for d in /sys/class/net/*; do
        n=$(basename "$d")
        # shellcheck disable=SC2254 # netplan match.name is a glob
        case "$n" in $1) echo "$n"; return 0 ;; esac
    done
    return 1
}
add_addr() { # DEV CIDR
    seed "address=$1 $2"
    case "$2" in
        *:*) # no duplicate address detection: the address is usable at once
             # (busybox ip has no "nodad")
             echo 0 > "/proc/sys/net/ipv6/conf/$1/accept_dad" 2>/dev/null
             ip -6 addr add "$2" dev "$1" || seed "error=ip -6 addr add $2 dev $1 failed" ;;
        *)   ip addr add "$2" dev "$1" || seed "error=ip addr add $2 dev $1 failed" ;;
    esac
}
add_route() { # DEV TO VIA [METRIC]
    fam=-4
    case "$2$3" in *:*) fam=-6 ;; esac
    to=$2
    case "$to" in default|0.0.0.0/0|::/0) to=default; seed "gateway=$1 $3" ;; *) seed "route=$1 $to via $3" ;; esac
    m=""; [ -n "$4" ] && m="metric $4"
    # "replace": a static route wins over one learned from a router advertisement
    ip $fam route replace "$to" via "$3" dev "$1" $m 2>/dev/null ||
        ip $fam route replace "$to" via "$3" dev "$1" $m onlink ||
        seed "error=ip route add $to via $3 dev $1 failed"
}
add_dns() { # list of servers / search domains from a flat file prefix
    for s in $1; do grep -qx "nameserver $s" $RESOLV || echo "nameserver $s" >> $RESOLV; seed "dns=$s"; done
    [ -n "$2" ] && { echo "search $2" >> $RESOLV; seed "dns-search=$2"; }
}
values() { # values FLATFILE PREFIX -> values of PREFIX.N, space separated
    for i in $(yidx "$1" "$2"); do yget "$1" "$2.$i"; done | tr '\n' ' ' | sed 's/ *$//'
}

NCVER=$(yget $NC version)
if [ "$NCVER" = 1 ]; then
    for i in $(yidx $NC config); do
        p=config.$i
        case "$(yget $NC $p.type)" in
        physical)
            mac=$(yget $NC $p.mac_address); name=$(yget $NC $p.name)
            dev=""
            [ -n "$mac" ] && dev=$(dev_by_mac "$mac")
            [ -z "$dev" ] && [ -n "$name" ] && dev=$(dev_by_name "$name")
            if [ -z "$dev" ]; then seed "error=no interface for ${name:-$mac}"; continue; fi
            if [ -n "$name" ] && [ "$name" != "$dev" ]; then
                ip link set dev "$dev" down; ip link set dev "$dev" name "$name" && dev=$name
            fi
            seed "link=$dev $(cat /sys/class/net/$dev/address)"
            mtu=$(yget $NC $p.mtu); [ -n "$mtu" ] && ip link set dev "$dev" mtu "$mtu"
            echo 0 > "/proc/sys/net/ipv6/conf/$dev/accept_dad" 2>/dev/null
            ip link set dev "$dev" up
            for j in $(yidx $NC $p.subnets); do
                s=$p.subnets.$j
                case "$(yget $NC $s.type)" in
                static|static6)
                    a=$(yget $NC $s.address); nm=$(yget $NC $s.netmask)
                    case "$a" in */*) ;; *) if [ -n "$nm" ]; then
                        case "$nm" in *.*) a="$a/$(ipcalc -p "$a" "$nm" | sed 's/.*=//')" ;; *) a="$a/$nm" ;; esac
                        else case "$a" in *:*) a="$a/64" ;; *) a="$a/32" ;; esac; fi ;; esac
                    add_addr "$dev" "$a"
                    gw=$(yget $NC $s.gateway); [ -n "$gw" ] && add_route "$dev" default "$gw"
                    add_dns "$(values $NC $s.dns_nameservers)" "$(values $NC $s.dns_search)"
                    ;;
                *) seed "error=unsupported subnet type $(yget $NC $s.type)" ;;
                esac
            done
            ;;
        nameserver)
            add_dns "$(values $NC $p.address)" "$(values $NC $p.search)" ;;
        *) seed "error=unsupported network v1 entry $(yget $NC $p.type)" ;;
        esac
    done
elif [ -n "$NCVER" ] && [ "$NCVER" != 2 ]; then
    seed "error=unsupported network-config version $NCVER"
else
    for id in $(yidx $NC ethernets); do
        p=ethernets.$id
        mac=$(yget $NC $p.match.macaddress); mname=$(yget $NC $p.match.name)
        setname=$(yget $NC $p.set-name)
        dev=""
        if [ -n "$mac" ]; then dev=$(dev_by_mac "$mac")
        elif [ -n "$mname" ]; then dev=$(dev_by_name "$mname")
        else dev=$(dev_by_name "$id")
        fi
        if [ -z "$dev" ]; then seed "error=no interface for $id${mac:+ mac $mac}"; continue; fi
        if [ -n "$setname" ] && [ "$setname" != "$dev" ]; then
            ip link set dev "$dev" down
            ip link set dev "$dev" name "$setname" && dev=$setname
        fi
        seed "link=$dev $(cat /sys/class/net/$dev/address)"
        mtu=$(yget $NC $p.mtu); [ -n "$mtu" ] && ip link set dev "$dev" mtu "$mtu"
        case "$(yget $NC $p.accept-ra)" in false|no|off) echo 0 > /proc/sys/net/ipv6/conf/$dev/accept_ra ;; esac
        echo 0 > "/proc/sys/net/ipv6/conf/$dev/accept_dad" 2>/dev/null
        ip link set dev "$dev" up
        for d in dhcp4 dhcp6; do
            case "$(yget $NC $p.$d)" in true|yes|on) seed "error=$d is not supported by the test guest" ;; esac
        done
        for i in $(yidx $NC $p.addresses); do
            a=$(yget $NC $p.addresses.$i)
            # (the mapping form "- 192.0.2.10/24: {lifetime: 0}" is not supported)
            [ -n "$a" ] || { seed "error=unsupported address entry on $dev"; continue; }
            add_addr "$dev" "$a"
        done
        gw=$(yget $NC $p.gateway4); [ -n "$gw" ] && add_route "$dev" default "$gw"
        gw=$(yget $NC $p.gateway6); [ -n "$gw" ] && add_route "$dev" default "$gw"
        for i in $(yidx $NC $p.routes); do
            r=$p.routes.$i
            to=$(yget $NC $r.to); via=$(yget $NC $r.via)
            [ -n "$via" ] || { seed "error=route without via on $dev"; continue; }
            add_route "$dev" "${to:-default}" "$via" "$(yget $NC $r.metric)"
        done
        add_dns "$(values $NC $p.nameservers.addresses)" "$(values $NC $p.nameservers.search)"
    done
fi
[ -s $RESOLV ] && cp $RESOLV /etc/resolv.conf

say "VPSD-GUEST-READY hostname=$(hostname)"

# Hand PID 1 to busybox init: it respawns a root shell on ttyS0 and tty1
# (/etc/inittab).  Should exec fail, keep a shell loop - init must not exit.
# shellcheck disable=SC2093 # the loop runs only if exec fails
exec /bin/busybox init
while :; do /bin/sh -l < /dev/console > /dev/console 2>&1; sleep 1; done
INIT_EOF
chmod 755 "$S/init"

# ---------------------------------------------------------------- pack
cat > "$S/lib/modules/builtin.list" <<EOF
# built into $KVER (nothing to load):$BUILTIN
EOF
find "$S" -exec touch -h -d @0 {} +          # reproducible archive
(cd "$S" && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc --owner=0:0 --reproducible --quiet) | gzip -9 -n > "$WORK/initrd.img"
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# ---------------------------------------------------------------- boot disk
# 64 MiB raw disk: MBR (syslinux mbr.bin) + one bootable FAT16 partition from
# 1 MiB to the end holding ldlinux.sys/ldlinux.c32, syslinux.cfg, vmlinuz and
# initrd.img.  Everything is written into the image file with sfdisk,
# mkfs.vfat --offset, mtools and the mtools-based syslinux installer.
CMDLINE="console=tty0 console=ttyS0,115200 panic=0"
DISK_MIB=64
PART_START=2048                                   # sectors
PART_SECTORS=$(( DISK_MIB * 2048 - PART_START ))
RAW=$WORK/disk.raw
MBR=""
for f in /usr/lib/SYSLINUX/mbr.bin /usr/lib/syslinux/mbr/mbr.bin /usr/lib/syslinux/mbr.bin; do
    [ -f "$f" ] && { MBR=$f; break; }
done
[ -n "$MBR" ] || die "syslinux mbr.bin not found (packages syslinux, syslinux-common)"
truncate -s "${DISK_MIB}M" "$RAW"
printf 'label: dos\nstart=%s, size=%s, type=e, bootable\n' "$PART_START" "$PART_SECTORS" |
    sfdisk --quiet --no-reread --no-tell-kernel "$RAW" >/dev/null
mkfs.vfat -F 16 -n VPSDBOOT -h "$PART_START" --offset="$PART_START" "$RAW" $(( PART_SECTORS / 2 )) >/dev/null
dd if="$MBR" of="$RAW" bs=440 count=1 conv=notrunc status=none
cat > "$WORK/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT vpsd
PROMPT 0
TIMEOUT 1
LABEL vpsd
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE
EOF
export MTOOLS_SKIP_CHECK=1
IMG="$RAW@@$(( PART_START * 512 ))"
mcopy -i "$IMG" "$WORK/vmlinuz" ::/vmlinuz
mcopy -i "$IMG" "$WORK/initrd.img" ::/initrd.img
mcopy -i "$IMG" "$WORK/syslinux.cfg" ::/syslinux.cfg
syslinux --install --offset $(( PART_START * 512 )) "$RAW"
for f in ldlinux.sys ldlinux.c32 vmlinuz initrd.img syslinux.cfg; do
    mdir -i "$IMG" -a -b "::/$f" >/dev/null 2>&1 || die "$f missing on the boot partition"
done
qemu-img convert -f raw -O qcow2 "$RAW" "$WORK/guest.qcow2"
rm -f "$RAW"

echo "$CMDLINE" > "$WORK/cmdline"
{
    echo "kernel-package $(dpkg-deb -f "$DEB" Package) $(dpkg-deb -f "$DEB" Version)"
    echo "kernel-release $KVER"
    echo "busybox $(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null)"
    echo "syslinux $(dpkg-query -W -f '${Version}' syslinux 2>/dev/null)"
    echo "modules-builtin$BUILTIN"
    echo "modules-loaded ${ORDER[*]}"
    echo "cmdline $CMDLINE"
} > "$WORK/manifest"

for f in $OUTPUTS; do mv -f "$WORK/$f" "$OUT/$f"; done
chmod 644 "$OUT/guest.qcow2" "$OUT/vmlinuz" "$OUT/initrd.img"
echo "$STAMP" > "$OUT/.stamp"
log "built $OUT/guest.qcow2 ($KVER, $(du -k "$OUT/initrd.img" | cut -f1) KiB initrd) in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
