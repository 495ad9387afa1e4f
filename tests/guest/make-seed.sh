#!/bin/bash
# make-seed.sh OUTFILE --hostname H [options] - write a NoCloud "cidata" seed
# for the vpsd test guest (see docs/test-guest.md).  vpsd writes its own seeds;
# this script is only for tests of the guest itself.
#
#   --hostname H           meta-data local-hostname and user-data hostname
#   --instance-id ID       meta-data instance-id (default: iid-H)
#   --fqdn F               user-data fqdn
#   --ssh-key 'KEY'        user-data ssh_authorized_keys item (repeatable)
#   --password P           root password, plain text (chpasswd.users, type text)
#   --password-hash H      root password, crypt hash (chpasswd.users, type hash)
#   --mac MAC              start a network-config ethernet matched by MAC; the
#                          interfaces are named eth0, eth1, ... (set-name)
#   --address CIDR         address of the current ethernet (repeatable)
#   --gateway4 IP          default IPv4 route of the current ethernet
#   --gateway6 IP          default IPv6 route of the current ethernet
#   --route TO,VIA         extra route of the current ethernet (repeatable)
#   --dns IP               nameserver of the current ethernet (repeatable)
#   --vfat                 write a FAT image labelled CIDATA instead of an ISO
#
# deps: genisoimage (ISO), dosfstools + mtools (--vfat)
set -euo pipefail

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "make-seed: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
OUTFILE=$1; shift
case "$OUTFILE" in -*) usage ;; esac

HOSTNAME_="" IID="" FQDN="" PW="" PWTYPE="" VFAT=0
KEYS=() NIC_MAC=() NIC_LINES=()
cur=-1
need_nic() { [ "$cur" -ge 0 ] || die "$1 needs a preceding --mac"; }
yq() { # quote a YAML scalar (double quotes, escapes \ and ")
    local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"
}
while [ $# -gt 0 ]; do
    opt=$1
    case "$opt" in
        --vfat) VFAT=1; shift; continue ;;
        -h|--help) usage ;;
    esac
    [ $# -ge 2 ] || die "$opt needs a value"
    val=$2; shift 2
    case "$opt" in
        --hostname) HOSTNAME_=$val ;;
        --instance-id) IID=$val ;;
        --fqdn) FQDN=$val ;;
        --ssh-key) KEYS+=("$val") ;;
        --password) PW=$val; PWTYPE=text ;;
        --password-hash) PW=$val; PWTYPE="hash" ;;
        --mac) cur=$((cur + 1)); NIC_MAC[cur]=$val; NIC_LINES[cur]="" ;;
        --address) need_nic "$opt"; NIC_LINES[cur]+="A $val"$'\n' ;;
        --gateway4) need_nic "$opt"; NIC_LINES[cur]+="G4 $val"$'\n' ;;
        --gateway6) need_nic "$opt"; NIC_LINES[cur]+="G6 $val"$'\n' ;;
        --route) need_nic "$opt"; NIC_LINES[cur]+="R $val"$'\n' ;;
        --dns) need_nic "$opt"; NIC_LINES[cur]+="D $val"$'\n' ;;
        *) die "unknown option $opt" ;;
    esac
done
[ -n "$HOSTNAME_" ] || die "--hostname is required"
[ -n "$IID" ] || IID="iid-$HOSTNAME_"

D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT

{
    echo "instance-id: $(yq "$IID")"
    echo "local-hostname: $(yq "$HOSTNAME_")"
} > "$D/meta-data"

{
    echo "#cloud-config"
    echo "hostname: $(yq "$HOSTNAME_")"
    [ -n "$FQDN" ] && echo "fqdn: $(yq "$FQDN")"
    if [ ${#KEYS[@]} -gt 0 ]; then
        echo "ssh_authorized_keys:"
        for k in "${KEYS[@]}"; do echo "  - $(yq "$k")"; done
    fi
    if [ -n "$PW" ]; then
        echo "ssh_pwauth: true"
        echo "chpasswd:"
        echo "  expire: false"
        echo "  users:"
        echo "    - name: root"
        echo "      password: $(yq "$PW")"
        echo "      type: $PWTYPE"
    fi
} > "$D/user-data"

{
    echo "network:"
    echo "  version: 2"
    if [ "$cur" -ge 0 ]; then
        echo "  ethernets:"
        for i in $(seq 0 "$cur"); do
            addrs="" g4="" g6="" routes="" dns=""
            while read -r kind v; do
                case "$kind" in
                    A) addrs+="        - $(yq "$v")"$'\n' ;;
                    G4) g4=$v ;;
                    G6) g6=$v ;;
                    R) routes+="        - to: $(yq "${v%%,*}")"$'\n'"          via: $(yq "${v#*,}")"$'\n' ;;
                    D) dns+="          - $(yq "$v")"$'\n' ;;
                esac
            done <<<"${NIC_LINES[i]}"
            echo "    eth$i:"
            echo "      match:"
            echo "        macaddress: $(yq "${NIC_MAC[i],,}")"
            echo "      set-name: eth$i"
            [ -n "$addrs" ] && { echo "      addresses:"; printf '%s' "$addrs"; }
            [ -n "$g4" ] && echo "      gateway4: $(yq "$g4")"
            [ -n "$g6" ] && echo "      gateway6: $(yq "$g6")"
            [ -n "$routes" ] && { echo "      routes:"; printf '%s' "$routes"; }
            [ -n "$dns" ] && { echo "      nameservers:"; echo "        addresses:"; printf '%s' "$dns"; }
        done
    fi
} > "$D/network-config"

rm -f "$OUTFILE"
if [ "$VFAT" = 1 ]; then
    mkfs.vfat -C -n CIDATA "$OUTFILE" 1024 >/dev/null
    MTOOLS_SKIP_CHECK=1 mcopy -i "$OUTFILE" "$D/meta-data" "$D/user-data" "$D/network-config" ::/
else
    genisoimage -quiet -output "$OUTFILE" -volid cidata -joliet -rock \
        "$D/meta-data" "$D/user-data" "$D/network-config"
fi
chmod 644 "$OUTFILE"
