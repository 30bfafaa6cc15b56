// The Switchboard demo: a shared text edited peer to peer. The page joins a room with the SDK
// (served by the same server at /sdk/switchboard.js), syncs a Y.Text over the WebRTC data
// channels with the Yjs provider, and shows who is here, their cursors, and how each peer is
// reached: directly or relayed through TURN.
//
// URL hash parameters (kept after joining, so a reload or a copied link rejoins the room):
//   room=NAME   join this room at once        name=TEXT   display name
//   relay=1     TURN only (iceTransportPolicy "relay")     debug=1   SDK log in the console
import * as Y from 'yjs';
import { Switchboard } from '../sdk/switchboard.js';
import { SwitchboardProvider } from './switchboard-yjs.js';
import { bindTextarea } from './editor.js';

const $ = (id) => document.getElementById(id);
const NAMES = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Ken', 'Radia', 'Donald', 'Frances', 'Linus'];

const params = new URLSearchParams(location.hash.slice(1));
const state = { room: null, provider: null, binding: null, routes: new Map(), log: [] };
window.demo = state; // for the browser tests and for poking around in the console

function log(line) {
  state.log.push(`${new Date().toISOString().slice(11, 19)} ${line}`);
  if (state.log.length > 50) state.log.shift();
  $('log').textContent = state.log.slice(-4).join('\n');
}

/** A colour from the id: a hue on the whole circle, so two peers rarely share one. */
function colourFor(id) {
  let h = 2166136261;
  for (const ch of id) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return `hsl(${h % 360}, 65%, 42%)`;
}

/**
 * A colour a peer announced, if it is one: `#rrggbb` or `hsl(h, s%, l%)` and nothing else. A
 * peer's awareness reaches every page, so anything wider (`url(…)`, `var(…)`, `image-set(…)`)
 * would let one peer make every viewer fetch an address of its choosing.
 */
function safeColour(c) {
  if (typeof c !== 'string') return null;
  if (/^#[0-9a-f]{6}$/i.test(c)) return c;
  const n = '\\d{1,3}(?:\\.\\d{1,3})?';
  return new RegExp(`^hsl\\(\\s*${n}\\s*,\\s*${n}%\\s*,\\s*${n}%\\s*\\)$`).test(c) ? c : null;
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 24) || 'peer';
}

function randomHex(n) {
  const a = new Uint8Array(n);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

// --- room picker -------------------------------------------------------------------------------
$('room').value = params.get('room') || 'demo';
$('name').value = params.get('name') || localStorage.getItem('switchboard-demo-name') || NAMES[Math.floor(Math.random() * NAMES.length)];
$('relay').checked = params.get('relay') === '1';
$('picker').addEventListener('submit', (ev) => {
  ev.preventDefault();
  join().catch((e) => fail(e));
});
if (params.get('room')) join().catch((e) => fail(e));

function fail(e) {
  console.error(e);
  $('join').disabled = false;
  $('error').textContent = `Could not join: ${e.message}${e.code ? ` (${e.code})` : ''}`;
  setSignaling('closed');
}

async function join() {
  const roomId = $('room').value.trim();
  const name = $('name').value.trim() || 'Anonymous';
  const relay = $('relay').checked;
  const debug = params.get('debug') === '1';
  if (!roomId) throw new Error('pick a room name');
  localStorage.setItem('switchboard-demo-name', name);
  $('join').disabled = true;
  $('error').textContent = '';
  const hash = new URLSearchParams({ room: roomId, name });
  if (relay) hash.set('relay', '1');
  if (debug) hash.set('debug', '1');
  history.replaceState(null, '', `#${hash}`);

  const userId = `${slug(name)}-${randomHex(2)}`;
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/signaling`;
  setSignaling('connecting');
  const room = await Switchboard.join({
    url: wsUrl,
    roomId,
    userId,
    userName: name,
    tokenUrl: '/api/auth/token',
    iceTransportPolicy: relay ? 'relay' : 'all',
    debug,
  });
  state.room = room;
  log(`joined ${roomId} as ${userId}${relay ? ' (TURN only)' : ''}`);

  const doc = new Y.Doc();
  const ytext = doc.getText('text');
  const provider = new SwitchboardProvider(room, doc, { awareness: { name, colour: colourFor(userId) } });
  state.doc = doc;
  state.ytext = ytext;
  state.provider = provider;
  state.binding = bindTextarea(ytext, $('text'), $('overlay'), {
    onSelection: (cursor) => provider.setCursor(cursor),
  });

  $('picker').hidden = true;
  $('workspace').hidden = false;
  $('room-title').textContent = roomId;
  $('mode').textContent = relay ? 'TURN only' : '';
  $('text').focus();

  room.on('state', (s) => { setSignaling(s); log(`signaling ${s}`); render(); });
  room.on('peer-joined', (p) => { log(`${p.name} joined`); render(); });
  room.on('peer-left', (p) => { log(`${p.name} left`); state.routes.delete(p.id); render(); });
  room.on('open', (p) => { log(`data channel to ${p.name} open`); refreshRoutes(); render(); });
  room.on('close', (p) => { log(`data channel to ${p.name} closed`); state.routes.delete(p.id); render(); });
  room.on('connection-state', () => render());
  room.on('error', (e) => { log(`error ${e.code}: ${e.message}`); if (e.fatal) $('error').textContent = e.message; });
  provider.on('synced', (p) => { log(`synced with ${p.id}`); render(); });
  provider.awareness.on('change', () => render());
  setSignaling(room.state);
  render();
  setInterval(refreshRoutes, 1000);
}

function setSignaling(s) {
  const el = $('signaling');
  el.dataset.state = s;
  el.textContent = { connecting: 'connecting…', connected: 'signaling connected', reconnecting: 'signaling reconnecting…', closed: 'signaling closed' }[s] || s;
}

async function refreshRoutes() {
  const room = state.room;
  if (!room) return;
  let changed = false;
  for (const peer of room.peers.values()) {
    if (!peer.open) continue;
    const r = await peer.route().catch(() => null);
    const key = JSON.stringify(r);
    if (JSON.stringify(state.routes.get(peer.id)) !== key) { state.routes.set(peer.id, r); changed = true; }
  }
  if (changed) render();
}

function describeRoute(r) {
  if (!r) return { kind: 'none', text: 'finding a path…' };
  const ends = `${r.local.type} → ${r.remote.type}${r.rttMs !== undefined ? `, ${r.rttMs} ms` : ''}`;
  return r.relayed
    ? { kind: 'relay', text: `relayed via TURN (${ends})` }
    : { kind: 'direct', text: `direct (${ends})` };
}

/** The "who is here" list and the remote cursors. */
function render() {
  const { room, provider } = state;
  if (!room || !provider) return;
  const states = provider.awareness.getStates();
  const me = states.get(room.userId) || {};
  const items = [{ id: room.userId, self: true, name: me.name, colour: safeColour(me.colour) || colourFor(room.userId) }];
  const ids = new Set([...room.peers.keys(), ...[...states.keys()].filter((id) => id !== room.userId)]);
  for (const id of [...ids].sort()) {
    const a = states.get(id) || {};
    const peer = room.peers.get(id);
    const name = typeof a.name === 'string' && a.name ? a.name : (peer && peer.name) || id;
    items.push({ id, name, colour: safeColour(a.colour) || colourFor(id), cursor: a.cursor, peer });
  }
  const list = $('peers');
  list.textContent = '';
  for (const it of items) {
    const li = document.createElement('li');
    li.dataset.peer = it.id;
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.style.background = it.colour || '#999';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = it.self ? `${it.name} (you)` : it.name;
    const detail = document.createElement('span');
    detail.className = 'detail';
    if (it.self) {
      li.dataset.self = 'true';
      detail.textContent = room.state === 'connected' ? 'here' : room.state;
    } else {
      const open = !!(it.peer && it.peer.open);
      const route = describeRoute(open ? state.routes.get(it.id) : null);
      li.dataset.open = String(open);
      li.dataset.route = open ? route.kind : 'none';
      li.dataset.synced = String(provider.syncedPeers.has(it.id));
      const cs = it.peer ? it.peer.connectionState : 'new';
      detail.textContent = !it.peer ? 'via signaling only'
        : open ? route.text
        : cs === 'failed' ? 'connection failed, retrying…'
        : 'connecting…';
    }
    li.append(dot, name, detail);
    list.append(li);
  }
  $('count').textContent = String(items.length);
  state.binding.setCursors(items.filter((i) => !i.self));
}
