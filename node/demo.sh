#!/usr/bin/env bash
# The demo behind `make demo` / `make demo-stop`: vpsd with its state under
# ./var, libvirtd and virtlogd started if they are not running, a bridge for
# guest ports, the tiny test guest imported as template `tiny`, and one demo
# service provisioned and running. `stop` turns the demo's guests off, stops
# vpsd, and removes the bridge and the daemons only if the demo made them.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
var="$top/var"
conf="$var/vpsd.conf"
pidfile="$var/vpsd.pid"
libvirt_state="$var/libvirt-started.json"
bridge=vpsdemo0
bridge_mark="$var/bridge-created"
service_file="$var/demo-service.json"
vpsctl=("$top/build/vpsctl" --socket "$var/run/control.sock")
python=/usr/bin/python3

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# The demo's service: made once, then kept in var/ across demo runs.
demo_spec() {
        local uuid
        uuid=$(cat /proc/sys/kernel/random/uuid)
        cat > "$service_file" <<SPEC
{
  "uuid": "$uuid",
  "account_id": "demo-customer",
  "hostname": "demo1",
  "plan": {"vcpus": 1, "memory_mib": 256, "disk_gib": 1, "port_speed_mbit": 100, "traffic_gib": 500},
  "template": "tiny",
  "addresses": [{"address": "192.0.2.10", "prefix": 24, "gateway": "192.0.2.1"},
                {"address": "2001:db8::10", "prefix": 64, "gateway": "2001:db8::1"}],
  "ssh_keys": []
}
SPEC
}

start_vpsd() {
        cat > "$conf" <<CONF
# The demo's configuration: built-in defaults but for where state lives,
# the guests' bridge, their run folders (short: unix socket paths) and the
# filter's nftables table.
state_dir = $var/lib
control_socket = $var/run/control.sock
bridge = $bridge
guest_run_dir = /run/vpsd-demo
nft_table = vpsdemo
# The web console on this machine only (docs/console.md).
console_listen = 127.0.0.1:8443
CONF
        "$python" "$top/tests/lib/libvirt_env.py" start "$libvirt_state"
        nohup "$top/build/vpsd" -c "$conf" >>"$var/vpsd.log" 2>&1 &
        echo $! > "$pidfile"
        for _ in $(seq 1 600); do
                "${vpsctl[@]}" status >/dev/null 2>&1 && return 0
                running || { echo "demo: vpsd exited; its log:" >&2; tail -20 "$var/vpsd.log" >&2; exit 1; }
                sleep 0.1
        done
        echo "demo: vpsd did not answer within 60 s; see var/vpsd.log" >&2
        exit 1
}

show() {
        echo
        echo "\$ vpsctl $*"
        "${vpsctl[@]}" "$@"
}

start() {
        mkdir -p "$var"
        if ! ip link show "$bridge" >/dev/null 2>&1; then
                ip link add "$bridge" type bridge
                ip link set "$bridge" up
                touch "$bridge_mark"
        fi
        bash "$top/tests/guest/build-guest.sh" "$top/build/guest"
        if running; then
                echo "demo: vpsd is already running (pid $(cat "$pidfile"))"
        else
                start_vpsd
        fi
        show status
        if ! "${vpsctl[@]}" --json template list | grep -q '"name": *"tiny"'; then
                show template import tiny "$top/build/guest/guest.qcow2" --os "vpsd test guest"
        fi
        [ -f "$service_file" ] || demo_spec
        uuid=$(sed -n 's/.*"uuid": *"\([0-9a-f-]*\)".*/\1/p' "$service_file")
        state=$({ "${vpsctl[@]}" --json service show "$uuid" 2>/dev/null || true; } |
                sed -n 's/.*"state": *"\([a-z-]*\)".*/\1/p' | head -1)
        case "$state" in
        "" | terminated)
                [ "$state" = terminated ] && { demo_spec; uuid=$(sed -n 's/.*"uuid": *"\([0-9a-f-]*\)".*/\1/p' "$service_file"); }
                show service provision "$service_file" ;;
        stopped) show service start "$uuid" ;;
        esac
        show service show "$uuid"
        echo
        echo "Waiting for the guest to boot (its serial console, /run/vpsd-demo/$uuid/console.log) ..."
        for _ in $(seq 1 600); do
                grep -q VPSD-GUEST-READY "/run/vpsd-demo/$uuid/console.log" 2>/dev/null && break
                sleep 0.2
        done
        grep -a 'VPSD-GUEST-READY\|VPSD-SEED' "/run/vpsd-demo/$uuid/console.log" | tail -4 || true
        echo
        echo "Web console (self-signed certificate: accept it once; each link works once, within 60 s):"
        for _ in $(seq 1 100); do grep -q "console ready" "$var/vpsd.log" && break; sleep 0.1; done
        echo "  VNC:    $("${vpsctl[@]}" --json console ticket "$uuid" --kind vnc | sed -n 's/.*"url": *"\([^"]*\)".*/\1/p')"
        echo "  serial: $("${vpsctl[@]}" --json console ticket "$uuid" --kind serial | sed -n 's/.*"url": *"\([^"]*\)".*/\1/p')"
        demo_iso "$uuid"
        cat <<EOT

vpsd runs in the background (log: var/vpsd.log, state: var/lib) with one
demo service, $uuid. Try:
  build/vpsctl --socket var/run/control.sock service list
  build/vpsctl --socket var/run/control.sock service pause $uuid
  build/vpsctl --socket var/run/control.sock service resume $uuid
  build/vpsctl --socket var/run/control.sock service restart $uuid
  build/vpsctl --socket var/run/control.sock service resize $uuid memory_mib=512
  build/vpsctl --socket var/run/control.sock service reinstall $uuid
  build/vpsctl --socket var/run/control.sock --json service show $uuid
  build/vpsctl --socket var/run/control.sock console ticket $uuid --kind serial
  build/vpsctl --socket var/run/control.sock iso list
  build/vpsctl --socket var/run/control.sock iso eject $uuid
  build/vpsctl --socket var/run/control.sock iso boot $uuid cdrom     # then: service restart
  T=\$(build/vpsctl --socket var/run/control.sock --json iso ticket demo-customer --max-bytes 100000000 |
      sed -n 's/.*"ticket": *"\([^"]*\)".*/\1/p')
  curl -k -T var/demo.iso -H 'Expect:' -H 'X-Label: my installer' "https://127.0.0.1:8443/iso/upload?ticket=\$T"
  build/vpsctl --socket var/run/control.sock service terminate $uuid
  sqlite3 var/lib/vpsd.db 'SELECT * FROM audit_log'
Stop it with: make demo-stop
EOT
}

# An example ISO (xorriso), uploaded through the edge with a ticket as a
# customer would, approved as the operator, and mounted into the guest.
demo_iso() {
        local uuid=$1 ticket answer id
        command -v xorriso >/dev/null || { echo "(no xorriso: the ISO example is skipped)"; return 0; }
        rm -rf "$var/demo-iso.d" && mkdir -p "$var/demo-iso.d"
        echo "hello from a customer ISO" > "$var/demo-iso.d/README.txt"
        xorriso -as mkisofs -quiet -V DEMOISO -o "$var/demo.iso" "$var/demo-iso.d"
        echo
        echo "Customer ISO: upload through the edge with a ticket, approve, mount:"
        ticket=$("${vpsctl[@]}" --json iso ticket demo-customer --max-bytes 100000000 |
                 sed -n 's/.*"ticket": *"\([^"]*\)".*/\1/p')
        echo "\$ curl -k -T var/demo.iso -H 'Expect:' -H 'X-Label: demo installer' https://127.0.0.1:8443/iso/upload?ticket=…"
        answer=$(curl -sk -T "$var/demo.iso" -H 'Expect:' -H 'X-Label: demo installer' \
                 "https://127.0.0.1:8443/iso/upload?ticket=$ticket" || true)
        echo "$answer"
        id=$(echo "$answer" | sed -n 's/.*"id":"\([a-z0-9-]*\)".*/\1/p')
        [ -n "$id" ] || return 0
        show iso approve "$id" || true
        show iso mount "$uuid" "$id" || true
        show iso list || true
}

stop() {
        local uuid
        if running; then
                # Guests keep running when vpsd stops (a restart must not
                # touch customers); the demo's are turned off.
                for uuid in $("${vpsctl[@]}" --json service list | sed -n 's/.*"uuid": *"\([0-9a-f-]*\)".*/\1/p'); do
                        "${vpsctl[@]}" service force-off "$uuid" || true
                done
                kill -TERM "$(cat "$pidfile")"
                for _ in $(seq 1 100); do running || break; sleep 0.1; done
                echo "demo: vpsd stopped"
        else
                echo "demo: vpsd was not running"
        fi
        rm -f "$pidfile"
        # The demo's guests are off: its filter table goes too.
        nft delete table bridge vpsdemo 2>/dev/null || true
        if [ -f "$bridge_mark" ]; then
                ip link del "$bridge" 2>/dev/null || true
                rm -f "$bridge_mark"
        fi
        [ -f "$libvirt_state" ] && "$python" "$top/tests/lib/libvirt_env.py" stop "$libvirt_state"
        return 0
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
