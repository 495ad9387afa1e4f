#!/usr/bin/env bash
# The demo behind `make demo` / `make demo-stop`: vpsd on built-in defaults
# with its state under ./var, libvirtd and virtlogd started if they are not
# running (and stopped again by `stop` only if the demo started them).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
var="$top/var"
conf="$var/vpsd.conf"
pidfile="$var/vpsd.pid"
libvirt_state="$var/libvirt-started.json"
vpsctl=("$top/build/vpsctl" --socket "$var/run/control.sock")
python=/usr/bin/python3

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
        mkdir -p "$var"
        if running; then
                echo "demo: vpsd is already running (pid $(cat "$pidfile"))"
        else
                cat > "$conf" <<CONF
# The demo's configuration: built-in defaults but for where state lives.
state_dir = $var/lib
control_socket = $var/run/control.sock
CONF
                "$python" "$top/tests/lib/libvirt_env.py" start "$libvirt_state"
                nohup "$top/build/vpsd" -c "$conf" >>"$var/vpsd.log" 2>&1 &
                echo $! > "$pidfile"
                for _ in $(seq 1 300); do
                        "${vpsctl[@]}" status >/dev/null 2>&1 && break
                        running || { echo "demo: vpsd exited; its log:" >&2; tail -20 "$var/vpsd.log" >&2; exit 1; }
                        sleep 0.1
                done
        fi
        echo
        echo "\$ vpsctl status"
        "${vpsctl[@]}" status
        cat <<EOT

vpsd runs in the background (log: var/vpsd.log, state: var/lib). Try:
  build/vpsctl --socket var/run/control.sock status --json
  build/vpsctl --socket var/run/control.sock service list
Stop it with: make demo-stop
EOT
}

stop() {
        if running; then
                kill -TERM "$(cat "$pidfile")"
                for _ in $(seq 1 100); do running || break; sleep 0.1; done
                echo "demo: vpsd stopped"
        else
                echo "demo: vpsd was not running"
        fi
        rm -f "$pidfile"
        [ -f "$libvirt_state" ] && "$python" "$top/tests/lib/libvirt_env.py" stop "$libvirt_state"
        return 0
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
