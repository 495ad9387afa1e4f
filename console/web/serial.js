// The serial console: xterm.js on the edge's websocket, bytes both ways.
// The ticket comes in the page's fragment (#ticket=…), as for VNC.
'use strict';
window.addEventListener('DOMContentLoaded', () => {
    const status = document.getElementById('status');
    const ticket = new URLSearchParams(location.hash.slice(1)).get('ticket') || '';
    history.replaceState(null, '', location.pathname);

    const term = new Terminal({ convertEol: false, cursorBlink: true, scrollback: 5000 });
    term.open(document.getElementById('terminal'));
    window.vpsdTerminal = term; // for tests and the curious: the screen's text

    const ws = new WebSocket(`wss://${location.host}/console/serial?ticket=${encodeURIComponent(ticket)}`);
    ws.binaryType = 'arraybuffer';
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    ws.onopen = () => { status.textContent = 'connected'; document.body.dataset.state = 'connected'; term.focus(); };
    ws.onmessage = (e) => term.write(decoder.decode(new Uint8Array(e.data), { stream: true }));
    ws.onclose = (e) => {
        status.textContent = e.code === 4001 ? 'refused: ask for a new console link' : 'disconnected';
        document.body.dataset.state = 'disconnected';
    };
    term.onData((data) => { if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data)); });
});
