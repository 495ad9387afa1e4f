"""A helper that lives in one network namespace (started with `ip netns
exec NS python3 netns_agent.py`) and sends or captures raw Ethernet frames
there for the test process, over JSON lines on stdin/stdout:

  {"cmd": "sniff", "iface": "eth0"}        start capturing what iface receives
  {"cmd": "collect", "iface": "eth0"}      stop, reply {"frames": [hex, ...]}
  {"cmd": "send", "iface": "eth0", "frames": [hex, ...]}

Plain sockets only (no scapy), so it starts fast; the test builds and
parses frames with scapy in its own process. Frames this namespace sends
itself are not captured."""

import json
import socket
import sys
import threading

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class Capture:
    def __init__(self, iface):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((iface, 0))
        self.sock.settimeout(0.1)
        self.frames = []
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            if addr[2] != PACKET_OUTGOING:
                self.frames.append(data.hex())

    def stop(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()
        return self.frames


def main():
    captures = {}
    senders = {}
    for line in sys.stdin:
        req = json.loads(line)
        cmd, iface = req["cmd"], req.get("iface")
        reply = {"ok": True}
        try:
            if cmd == "sniff":
                if iface in captures:
                    captures.pop(iface).stop()
                captures[iface] = Capture(iface)
            elif cmd == "collect":
                reply["frames"] = captures.pop(iface).stop()
            elif cmd == "send":
                if iface not in senders:
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                    s.bind((iface, 0))
                    senders[iface] = s
                for frame in req["frames"]:
                    senders[iface].send(bytes.fromhex(frame))
            else:
                reply = {"ok": False, "error": f"unknown cmd {cmd}"}
        except Exception as e:  # reported to the test, which fails on it
            reply = {"ok": False, "error": repr(e)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
