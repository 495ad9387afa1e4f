"""The web console against real TCG guests of the tiny template: the VNC
console answers RFB through the edge, a command typed on the serial
console prints its output, and stop, terminate and suspend close open
sessions."""

import asyncio
import json
import time

import pytest
import websockets

import console_client as cc
import edge_harness
import libvirt_env
from test_guest_lifecycle import BOOT, spec


@pytest.fixture
def cnode(vpsd_factory, libvirt, bridge, test_guest):
    v = vpsd_factory()
    ledger = cc.Ledger()
    port = edge_harness.free_port()
    v.start(hypervisor="tcg", bridge=bridge, guest_run_dir=v.root / "guests", stop_timeout=30,
            console_listen=f"127.0.0.1:{port}", ledger_public_key=ledger.public_pem(v.root / "ledger.pub"))
    v.wait_log("console ready")
    v.ctl("template", "import", "tiny", str(test_guest / "guest.qcow2"))
    s = spec()
    path = v.root / "spec.json"
    path.write_text(json.dumps(s))
    v.ctl("service", "provision", str(path))
    libvirt_env.wait_console(str(v.root / "guests" / s["uuid"] / "console.log"), ["VPSD-GUEST-READY"], timeout=BOOT)
    libvirt_env.wait_shell(str(v.root / "guests" / s["uuid"] / "console.log"), timeout=BOOT)
    yield v, ledger, port, s
    libvirt_env.destroy_and_undefine(f"vpsd-{s['uuid']}")
    assert v.stop(timeout=60) == 0, v.log_text()


def url(port, kind, ticket):
    return f"wss://127.0.0.1:{port}/console/{kind}?ticket={ticket}"


def test_vnc_and_serial_reach_the_guest(cnode):
    v, ledger, port, s = cnode
    origin = f"https://127.0.0.1:{port}"
    t = ledger.ticket(s["uuid"], s["account_id"], kind="vnc")
    state, got = cc.session(url(port, "vnc", t), origin, expect=b"\n")
    assert state == "open" and got.startswith(b"RFB 003.00"), got
    t = ledger.ticket(s["uuid"], s["account_id"], kind="serial")
    state, got = cc.session(url(port, "serial", t), origin, send=b"\recho console-$((6*7))\r", expect=b"console-42",
                            timeout=30)
    assert state == "open" and b"console-42" in got, got


def held_session_closed_by(v, ledger, port, s, *ctl):
    """Opens a serial session, runs vpsctl ctl, and returns how the session ended."""
    async def run():
        t = ledger.ticket(s["uuid"], s["account_id"], kind="serial")
        async with websockets.connect(url(port, "serial", t), ssl=cc.tls(), origin=f"https://127.0.0.1:{port}") as ws:
            await ws.send(b"\r")
            await asyncio.wait_for(ws.recv(), 20)
            proc = await asyncio.create_subprocess_exec(str(v.ctl_path), "--socket", str(v.socket), *ctl)
            started = time.monotonic()
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 60)
            except websockets.ConnectionClosed as e:
                closed_after = time.monotonic() - started
                code = e.rcvd.code if e.rcvd else None
            await proc.wait()
            return closed_after, code

    return asyncio.run(run())


@pytest.mark.parametrize("operation", ["stop", "terminate", "suspend"])
def test_operation_closes_open_sessions(cnode, operation):
    v, ledger, port, s = cnode
    from conftest import VPSCTL
    v.ctl_path = VPSCTL
    after, code = held_session_closed_by(v, ledger, port, s, "service", operation, s["uuid"])
    assert code == 4000 and after < 10, (after, code)
    assert f'why="{operation}"' in v.log_text()
    # And no new session for a service that no longer runs.
    t = ledger.ticket(s["uuid"], s["account_id"], kind="serial")
    assert cc.session(url(port, "serial", t), f"https://127.0.0.1:{port}")[:2] == ("closed", cc.REFUSED)
