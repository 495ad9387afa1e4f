#!/usr/bin/env bash
# The demo behind `make demo` / `make demo-stop`: the whole story on
# embedded defaults. vps-ledger (the reference ledger) serves its API and
# sync endpoint on 127.0.0.1:8444; vpsd, with its state under ./var, joins
# it; libvirtd and virtlogd are started if they are not running; a bridge
# takes the guest ports; the tiny test guest is template `tiny`. A demo
# account is topped up and orders a service through the ledger's API, and
# the node runs it. `stop` turns the demo's guests off, stops vpsd and the
# ledger, and removes the bridge and the daemons only if the demo made them.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
var="$top/var"
conf="$var/vpsd.conf"
pidfile="$var/vpsd.pid"
libvirt_state="$var/libvirt-started.json"
bridge=vpsdemo0
bridge_mark="$var/bridge-created"
service_file="$var/demo-service"
vpsctl=("$top/build/vpsctl" --socket "$var/run/control.sock")
python=/usr/bin/python3
ledger_dir="$var/ledger"
ledger_pid="$ledger_dir/ledger.pid"
api="$var/ledger-api"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
ledger_running() { [ -f "$ledger_pid" ] && kill -0 "$(cat "$ledger_pid")" 2>/dev/null; }

# The ledger: a CA and a certificate for 127.0.0.1 (the node trusts that
# CA only), an API token, the database; then `vps-ledger serve`.
start_ledger() {
        mkdir -p "$ledger_dir/tls"
        chmod 700 "$ledger_dir"
        if [ ! -f "$ledger_dir/tls/ca.pem" ]; then
                (cd "$ledger_dir/tls" &&
                 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
                         -days 3650 -subj "/CN=vpsd demo CA" 2>/dev/null &&
                 openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
                         -subj "/CN=ledger" 2>/dev/null &&
                 printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > ext.cnf &&
                 openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
                         -days 3650 -extfile ext.cnf 2>/dev/null)
        fi
        [ -f "$ledger_dir/api-token" ] || (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ledger_dir/api-token")
        cat > "$api" <<API
#!/bin/sh
# The demo ledger's JSON API: $api METHOD PATH [JSON]
[ \$# -ge 2 ] || { echo "usage: \$0 METHOD PATH [JSON]" >&2; exit 2; }
curl -sS --cacert "$ledger_dir/tls/ca.pem" -H "Authorization: Bearer \$(cat "$ledger_dir/api-token")" \\
     -H 'Content-Type: application/json' -X "\$1" \${3:+-d "\$3"} "https://127.0.0.1:8444/api/v1/\$2"
echo
API
        chmod 700 "$api"
        if ledger_running; then
                echo "demo: the ledger is already running (pid $(cat "$ledger_pid"))"
                return 0
        fi
        nohup "$top/build/vps-ledger" --db "$ledger_dir/ledger.db" serve --listen 127.0.0.1:8444 \
                --cert "$ledger_dir/tls/server.pem" --key "$ledger_dir/tls/server.key" \
                --api-token-file "$ledger_dir/api-token" >>"$var/ledger.log" 2>&1 &
        echo $! > "$ledger_pid"
        for _ in $(seq 1 100); do
                "$api" GET plans >/dev/null 2>&1 && return 0
                ledger_running || { echo "demo: vps-ledger exited; its log:" >&2; tail -20 "$var/ledger.log" >&2; exit 1; }
                sleep 0.1
        done
        echo "demo: vps-ledger did not answer; see var/ledger.log" >&2
        exit 1
}

# Once: a plan, this node with an address pool, and the node's key.
ledger_setup() {
        [ -f "$var/ledger-node.key" ] && return 0
        "$api" POST plans '{"name":"tiny","price":500,"vcpus":1,"memory_mib":256,"disk_gib":1,"port_speed_mbit":100}' >/dev/null
        "$api" POST nodes '{"id":"demo-node","vcpus":4,"memory_mib":4096,"disk_gib":50,"pools":["192.0.2.0/24,192.0.2.1"],"console_url":"https://127.0.0.1:8443"}' |
                sed -n 's/.*"sync_key": *"\([^"]*\)".*/\1/p' > "$var/ledger-node.key.tmp"
        chmod 600 "$var/ledger-node.key.tmp"
        mv "$var/ledger-node.key.tmp" "$var/ledger-node.key"
        "$top/build/vps-ledger" --db "$ledger_dir/ledger.db" key public > "$var/ledger.pub"
}

api_field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" | head -1; }

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
# The web console on this machine only (docs/console.md), its tickets
# signed by the demo ledger.
console_listen = 127.0.0.1:8443
ledger_public_key = $var/ledger.pub
# The demo ledger (docs/sync-protocol.md).
ledger_url = wss://127.0.0.1:8444/sync
ledger_ca_file = $ledger_dir/tls/ca.pem
ledger_key_file = $var/ledger-node.key
ledger_node_id = demo-node
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
        local uuid state pw
        mkdir -p "$var"
        if ! ip link show "$bridge" >/dev/null 2>&1; then
                ip link add "$bridge" type bridge
                ip link set "$bridge" up
                touch "$bridge_mark"
        fi
        bash "$top/tests/guest/build-guest.sh" "$top/build/guest"
        start_ledger
        ledger_setup
        if running; then
                echo "demo: vpsd is already running (pid $(cat "$pidfile"))"
        else
                start_vpsd
        fi
        show status
        if ! "${vpsctl[@]}" --json template list | grep -q '"name": *"tiny"'; then
                show template import tiny "$top/build/guest/guest.qcow2" --os "vpsd test guest"
        fi
        for _ in $(seq 1 100); do
                "${vpsctl[@]}" --json ledger status | grep -q '"connected": *true' && break
                sleep 0.1
        done
        show ledger status

        # The customer: an account with one cycle's price in its wallet,
        # and an order through the ledger, as a portal would place it.
        uuid=$(cat "$service_file" 2>/dev/null || true)
        state=$([ -n "$uuid" ] && "$api" GET "services/$uuid" | api_field state || true)
        if [ -z "$uuid" ] || [ "$state" = terminated ] || [ -z "$state" ]; then
                echo
                echo "\$ var/ledger-api POST accounts '{\"id\":\"demo-customer\"}'"
                "$api" POST accounts '{"id":"demo-customer"}'
                echo "\$ var/ledger-api POST accounts/demo-customer/top-up '{\"amount\":500}'"
                "$api" POST accounts/demo-customer/top-up '{"amount":500}'
                echo "\$ var/ledger-api POST orders '{\"account\":\"demo-customer\",\"plan\":\"tiny\",\"hostname\":\"demo1\",\"template\":\"tiny\"}'"
                uuid=$("$api" POST orders '{"account":"demo-customer","plan":"tiny","hostname":"demo1","template":"tiny"}' |
                       tee /dev/stderr | api_field uuid)
                echo "$uuid" > "$service_file"
        fi
        echo
        echo "Waiting for the node to run it and the guest to boot (its serial console, /run/vpsd-demo/$uuid/console.log) ..."
        for _ in $(seq 1 600); do
                grep -q VPSD-GUEST-READY "/run/vpsd-demo/$uuid/console.log" 2>/dev/null && break
                sleep 0.2
        done
        grep -a 'VPSD-GUEST-READY\|VPSD-SEED' "/run/vpsd-demo/$uuid/console.log" | tail -4 || true
        show service show "$uuid"
        echo
        echo "\$ var/ledger-api POST services/$uuid/root-password    # once: the node sent it only to the ledger"
        "$api" POST "services/$uuid/root-password"
        echo "\$ var/ledger-api GET accounts/demo-customer"
        "$api" GET accounts/demo-customer
        echo
        echo "Web console, tickets minted by the ledger for the owner (self-signed certificate: accept it"
        echo "once; each link works once, within 60 s):"
        for _ in $(seq 1 100); do grep -q "console ready" "$var/vpsd.log" && break; sleep 0.1; done
        for kind in vnc serial; do
                echo "  $kind: $("$api" POST "services/$uuid/console-ticket" \
                                 "{\"account\":\"demo-customer\",\"kind\":\"$kind\"}" | api_field url)"
        done
        demo_iso "$uuid"
        cat <<EOT

vps-ledger (log: var/ledger.log) and vpsd (log: var/vpsd.log, state: var/lib)
run in the background with one demo service, $uuid.
The lease and the money (var/ledger-api METHOD PATH [JSON] talks to the ledger):
  var/ledger-api GET services/$uuid
  # end the paid period in 20 s; the wallet cannot renew it, so at that
  # second the node suspends it by itself (ledger reachable or not):
  var/ledger-api POST services/$uuid/paid-until "{\"paid_until\":\$((\$(date +%s) + 20))}"
  build/vpsctl --socket var/run/control.sock service show $uuid     # state, suspended_at, next
  # funds during retention: renewed from the wallet, running again in place
  var/ledger-api POST accounts/demo-customer/top-up '{"amount":500}'
  var/ledger-api GET accounts/demo-customer                           # the credit log
  var/ledger-api POST services/$uuid/power '{"action":"restart"}'
  var/ledger-api POST services/$uuid/console-ticket '{"account":"demo-customer","kind":"serial"}'
On the node:
  build/vpsctl --socket var/run/control.sock ledger status
  build/vpsctl --socket var/run/control.sock service list
  build/vpsctl --socket var/run/control.sock service pause $uuid
  build/vpsctl --socket var/run/control.sock service resume $uuid
  build/vpsctl --socket var/run/control.sock traffic $uuid --period day
  build/vpsctl --socket var/run/control.sock iso list
  build/vpsctl --socket var/run/control.sock iso eject $uuid
  build/vpsctl --socket var/run/control.sock iso boot $uuid cdrom     # then: service restart
  T=\$(build/vpsctl --socket var/run/control.sock --json iso ticket demo-customer --max-bytes 100000000 |
      sed -n 's/.*"ticket": *"\([^"]*\)".*/\1/p')
  curl -k -T var/demo.iso -H 'Expect:' -H 'X-Label: my installer' "https://127.0.0.1:8443/iso/upload?ticket=\$T"
  sqlite3 var/lib/vpsd.db 'SELECT * FROM audit_log'
Stop it with: make demo-stop
EOT
}

# An example ISO (xorriso): a ticket the ledger mints for the owner, the
# upload through the node's edge as a customer's browser would make it,
# approval by the provider and the mount, both through the ledger.
demo_iso() {
        local uuid=$1 ticket answer id
        command -v xorriso >/dev/null || { echo "(no xorriso: the ISO example is skipped)"; return 0; }
        rm -rf "$var/demo-iso.d" && mkdir -p "$var/demo-iso.d"
        echo "hello from a customer ISO" > "$var/demo-iso.d/README.txt"
        xorriso -as mkisofs -quiet -V DEMOISO -o "$var/demo.iso" "$var/demo-iso.d"
        echo
        echo "Customer ISO: a ticket from the ledger, the upload through the edge, approval and mount:"
        echo "\$ var/ledger-api POST accounts/demo-customer/iso-upload-ticket '{\"node\":\"demo-node\",\"max_bytes\":100000000}'"
        ticket=$("$api" POST accounts/demo-customer/iso-upload-ticket '{"node":"demo-node","max_bytes":100000000}' |
                 api_field ticket)
        echo "\$ curl -k -T var/demo.iso -H 'Expect:' -H 'X-Label: demo installer' https://127.0.0.1:8443/iso/upload?ticket=…"
        answer=$(curl -sk -T "$var/demo.iso" -H 'Expect:' -H 'X-Label: demo installer' \
                 "https://127.0.0.1:8443/iso/upload?ticket=$ticket" || true)
        echo "$answer"
        id=$(echo "$answer" | api_field id)
        [ -n "$id" ] || return 0
        for _ in $(seq 1 100); do "$api" GET accounts/demo-customer/isos | grep -q "\"$id\"" && break; sleep 0.1; done
        echo "\$ var/ledger-api POST isos/$id/approve"
        "$api" POST "isos/$id/approve"
        for _ in $(seq 1 100); do
                "$api" GET accounts/demo-customer/isos | grep -q '"state": *"approved"' && break
                sleep 0.1
        done
        echo "\$ var/ledger-api POST isos/$id/mount '{\"account\":\"demo-customer\",\"service\":\"$uuid\"}'"
        "$api" POST "isos/$id/mount" "{\"account\":\"demo-customer\",\"service\":\"$uuid\"}"
        for _ in $(seq 1 100); do
                "${vpsctl[@]}" --json iso list 2>/dev/null | grep -q "$uuid" && break
                sleep 0.1
        done
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
        if ledger_running; then
                kill -TERM "$(cat "$ledger_pid")"
                for _ in $(seq 1 100); do ledger_running || break; sleep 0.1; done
                echo "demo: vps-ledger stopped"
        fi
        rm -f "$ledger_pid"
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
