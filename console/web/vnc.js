// The VNC console: noVNC's RFB client on the edge's websocket. The ticket
// travels in the page's fragment (#ticket=…), which no server or log sees,
// and goes to the edge once, in the websocket's query.
import RFB from './novnc/core/rfb.js';

const status = document.getElementById('status');
const ticket = new URLSearchParams(location.hash.slice(1)).get('ticket') || '';
history.replaceState(null, '', location.pathname); // a ticket is single use: keep it out of history

const url = `wss://${location.host}/console/vnc?ticket=${encodeURIComponent(ticket)}`;
const rfb = new RFB(document.getElementById('screen'), url, { shared: true });
rfb.scaleViewport = true;
rfb.addEventListener('connect', () => { status.textContent = 'connected'; document.body.dataset.state = 'connected'; });
rfb.addEventListener('disconnect', (e) => {
    status.textContent = e.detail.clean ? 'disconnected' : 'refused or lost: ask for a new console link';
    document.body.dataset.state = 'disconnected';
});
