"""What the console tests share: a ledger that mints tickets (Ed25519, the
format of docs/console.md), a websocket client that tells a session from a
refusal, and a bulk echo through a session."""

import asyncio
import base64
import os
import ssl
import time

import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REFUSED = 4001


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Ledger:
    """Holds the private key; the node gets the public half (PEM)."""

    def __init__(self):
        self.key = Ed25519PrivateKey.generate()

    def public_pem(self, path):
        path.write_bytes(self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return path

    @staticmethod
    def payload(service, account, kind="vnc", iat=None, exp=None, nonce=None):
        iat = int(time.time()) if iat is None else iat
        exp = iat + 60 if exp is None else exp
        nonce = nonce or b64(os.urandom(16))
        return (f"vpsd-console-ticket-1\nservice={service}\naccount={account}\nkind={kind}\n"
                f"iat={iat}\nexp={exp}\nnonce={nonce}\n").encode()

    def sign(self, payload: bytes) -> str:
        return b64(payload) + "." + b64(self.key.sign(payload))

    def ticket(self, service, account, **kw):
        return self.sign(self.payload(service, account, **kw))

    def iso_ticket(self, account, max_bytes, iat=None, exp=None):
        """An ISO upload ticket (docs/iso.md)."""
        iat = int(time.time()) if iat is None else iat
        exp = iat + 60 if exp is None else exp
        return self.sign((f"vpsd-iso-upload-ticket-1\naccount={account}\nmax_bytes={max_bytes}\n"
                          f"iat={iat}\nexp={exp}\nnonce={b64(os.urandom(16))}\n").encode())


def tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _session(url, origin, send=None, expect=None, timeout=15):
    """Opens url; returns ("open", bytes received until expect shows) or
    ("closed", code, reason)."""
    try:
        async with websockets.connect(url, ssl=tls(), origin=origin, open_timeout=timeout,
                                      max_size=None, compression=None) as ws:
            got = b""
            if send is not None:
                await ws.send(send)
            deadline = time.monotonic() + timeout
            while expect is None or expect not in got:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                data = await asyncio.wait_for(ws.recv(), left)
                got += data if isinstance(data, bytes) else data.encode()
                if expect is None:
                    break
            return ("open", got)
    except websockets.ConnectionClosed as e:
        return ("closed", e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None)
    except websockets.InvalidStatusCode as e:
        return ("http", e.status_code)
    except websockets.InvalidMessage:
        return ("dropped",)  # the handshake was cut without an answer


def session(url, origin, **kw):
    return asyncio.run(_session(url, origin, **kw))


async def _echo_bulk(url, origin, data, frame=65536, timeout=30):
    """Sends data in frames of frame bytes while reading what comes back;
    returns (the bytes received once as many as were sent, the largest
    frame received)."""
    async with websockets.connect(url, ssl=tls(), origin=origin, max_size=None, compression=None) as ws:
        async def send():
            for i in range(0, len(data), frame):
                await ws.send(data[i:i + frame])
        sender = asyncio.ensure_future(send())
        got, largest = bytearray(), 0
        while len(got) < len(data):
            piece = await asyncio.wait_for(ws.recv(), timeout)
            largest = max(largest, len(piece))
            got += piece
        await sender
        return bytes(got), largest


def echo_bulk(url, origin, data, **kw):
    return asyncio.run(_echo_bulk(url, origin, data, **kw))
