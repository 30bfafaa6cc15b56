// Switchboard Yjs provider: keeps a Y.Doc in sync between the members of a Switchboard room over
// their WebRTC data channels (see clients/js), with awareness (names, colours, cursors).
//
//   import * as Y from 'yjs';
//   import { Switchboard } from '/sdk/switchboard.js';
//   import { SwitchboardProvider } from './switchboard-yjs.js';
//   const room = await Switchboard.join({ url, roomId, userId });
//   const provider = new SwitchboardProvider(room, new Y.Doc(), { awareness: { name: 'Ada', colour: '#c33' } });
//
// Protocol, one binary data-channel message each: [0x59 'Y', kind, ...payload]
//   kind 1  sync step 1: the sender's state vector (Y.encodeStateVector)
//   kind 2  sync step 2: what the receiver lacks (Y.encodeStateAsUpdate(doc, stateVector))
//   kind 3  update: a local change, sent to every open channel
//   kind 4  awareness: UTF-8 JSON {clock, state} (state null = gone)
// Every channel that opens runs step 1 both ways, so a late joiner receives the whole document
// from whoever is there, and peers that edited while apart exchange exactly what they miss.
// String messages and binary messages without the 0x59 prefix are left to the application.
//
// OctateCode `presence` and `cursor-update` (relayed by the server) carry the awareness state to
// members whose data channel is not open yet (e.g. while a TURN relay is being set up), so the
// "who is here" list does not wait for WebRTC.
//
// `yjs` is a peer dependency: in a browser, resolve it with an import map; in Node, install it.
import * as Y from 'yjs';

export const MAGIC = 0x59;
export const SYNC_STEP1 = 1;
export const SYNC_STEP2 = 2;
export const UPDATE = 3;
export const AWARENESS = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Frames `payload` as a provider message. */
export function encode(kind, payload) {
  const out = new Uint8Array(payload.length + 2);
  out[0] = MAGIC;
  out[1] = kind;
  out.set(payload, 2);
  return out;
}

/** Returns {kind, payload} for a provider message, or null for anything else. */
export function decode(data) {
  let bytes;
  if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else return null;
  if (bytes.length < 2 || bytes[0] !== MAGIC) return null;
  return { kind: bytes[1], payload: bytes.subarray(2) };
}

class Emitter {
  constructor() { this._handlers = new Map(); }
  on(name, handler) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(handler);
    return () => this.off(name, handler);
  }
  off(name, handler) { this._handlers.get(name)?.delete(handler); }
  emit(name, ...args) {
    for (const h of [...(this._handlers.get(name) || [])]) {
      try { h(...args); } catch (e) { console.error(`[switchboard-yjs] '${name}' handler threw:`, e); }
    }
  }
}

/**
 * Who is here and where their cursor is: one JSON-able state per peer id (this peer's under
 * `clientId`), each with a clock so that older states never overwrite newer ones.
 * Events: `change` ({added, updated, removed}, origin) when states change, and `update` (same
 * arguments) whenever a state is set, changed or not.
 */
export class Awareness extends Emitter {
  constructor(clientId) {
    super();
    this.clientId = clientId;
    /** @type {Map<string, object>} */
    this.states = new Map();
    /** @type {Map<string, number>} */
    this.clocks = new Map([[clientId, 0]]);
  }
  getStates() { return this.states; }
  getLocalState() { return this.states.get(this.clientId) ?? null; }
  setLocalState(state) {
    const clock = (this.clocks.get(this.clientId) || 0) + 1;
    this._set(this.clientId, clock, state, 'local');
  }
  setLocalStateField(field, value) {
    const state = this.getLocalState();
    if (state) this.setLocalState({ ...state, [field]: value });
  }
  /** Applies a remote state if it is newer than what is known; returns whether it was. */
  applyRemote(peerId, clock, state, origin = 'remote') {
    if (peerId === this.clientId) return false;
    const known = this.clocks.get(peerId);
    if (known !== undefined && clock <= known) return false;
    this._set(peerId, clock, state, origin);
    return true;
  }
  /** Forgets a peer (it left). */
  remove(peerId, origin = 'remote') {
    if (peerId === this.clientId) return;
    this.clocks.delete(peerId);
    if (this.states.delete(peerId)) {
      const changes = { added: [], updated: [], removed: [peerId] };
      this.emit('change', changes, origin);
      this.emit('update', changes, origin);
    }
  }
  /** {clock, state} of this peer, as sent to others. */
  localMessage() {
    return { clock: this.clocks.get(this.clientId) || 0, state: this.getLocalState() };
  }
  _set(peerId, clock, state, origin) {
    const prev = this.states.get(peerId);
    this.clocks.set(peerId, clock);
    const changes = { added: [], updated: [], removed: [] };
    if (state === null || state === undefined) {
      if (prev !== undefined) { this.states.delete(peerId); changes.removed.push(peerId); }
    } else {
      this.states.set(peerId, state);
      if (prev === undefined) changes.added.push(peerId);
      else changes.updated.push(peerId);
    }
    const changed = changes.added.length || changes.removed.length
      || (changes.updated.length && JSON.stringify(prev) !== JSON.stringify(state));
    if (changed) this.emit('change', changes, origin);
    this.emit('update', changes, origin);
  }
}

/**
 * Syncs `doc` with every peer of `room` (a Switchboard SDK room, or anything with the same
 * `userId`, `peers`, `on`, `send`, `sendTo`, `signal` and `state`).
 *
 * Options: `awareness` (the initial local awareness state, e.g. {name, colour}), `refresh`
 * (ms between awareness re-broadcasts, default 15000), `signalThrottle` (ms between awareness
 * messages sent through the server, default 250).
 *
 * Events (`provider.on`): `synced` (peer) after a peer's sync step 2 was applied;
 * `update` (update, peer) for every remote update applied.
 */
export class SwitchboardProvider extends Emitter {
  constructor(room, doc, options = {}) {
    super();
    this.room = room;
    this.doc = doc;
    this.awareness = new Awareness(room.userId);
    /** Peers whose sync step 2 this side applied. */
    this.syncedPeers = new Set();
    /** True once the document was synced with at least one peer. */
    this.synced = false;
    this._signalThrottle = options.signalThrottle ?? 250;
    this._signalTimer = null;
    this._signalCursorOnly = true;
    this._destroyed = false;

    this._onDocUpdate = (update, origin) => {
      if (origin === this) return; // remote updates are not echoed: every peer sends its own
      this._broadcast(encode(UPDATE, update));
    };
    doc.on('update', this._onDocUpdate);

    this._onAwareness = (changes, origin) => {
      if (origin !== 'local') return;
      this._broadcast(this._awarenessMessage());
      this._signalAwareness(changes);
    };
    this.awareness.on('update', this._onAwareness);

    this._off = [
      room.on('open', (peer) => this._startSync(peer)),
      room.on('message', (peer, data) => this._onMessage(peer, data)),
      room.on('peer-left', (peer) => {
        this.syncedPeers.delete(peer.id);
        this.awareness.remove(peer.id);
      }),
      room.on('presence', (peer, data) => this._onSignaled(peer, data, false)),
      room.on('cursor-update', (peer, data) => this._onSignaled(peer, data, true)),
      room.on('state', (state) => { if (state === 'connected') this._signalAwareness({ updated: [] }); }),
    ];
    if (options.awareness) this.awareness.setLocalState(options.awareness);
    // Channels that opened before the provider existed.
    for (const peer of room.peers.values()) if (peer.open) this._startSync(peer);
    const refresh = options.refresh ?? 15000;
    this._refreshTimer = refresh > 0 ? setInterval(() => {
      if (this.awareness.getLocalState()) this._broadcast(this._awarenessMessage());
    }, refresh) : null;
  }

  _startSync(peer) {
    this._sendTo(peer.id, encode(SYNC_STEP1, Y.encodeStateVector(this.doc)));
    if (this.awareness.getLocalState()) this._sendTo(peer.id, this._awarenessMessage());
  }

  _onMessage(peer, data) {
    const msg = decode(data);
    if (!msg || this._destroyed) return;
    switch (msg.kind) {
      case SYNC_STEP1:
        this._sendTo(peer.id, encode(SYNC_STEP2, Y.encodeStateAsUpdate(this.doc, msg.payload)));
        break;
      case SYNC_STEP2:
        Y.applyUpdate(this.doc, msg.payload, this);
        if (!this.syncedPeers.has(peer.id)) {
          this.syncedPeers.add(peer.id);
          this.synced = true;
          this.emit('synced', peer);
        }
        break;
      case UPDATE:
        Y.applyUpdate(this.doc, msg.payload, this);
        this.emit('update', msg.payload, peer);
        break;
      case AWARENESS: {
        let m;
        try { m = JSON.parse(decoder.decode(msg.payload)); } catch { return; }
        if (m && typeof m.clock === 'number') this.awareness.applyRemote(peer.id, m.clock, m.state ?? null);
        break;
      }
      default:
        break; // a newer protocol's message: ignore
    }
  }

  _awarenessMessage() {
    return encode(AWARENESS, encoder.encode(JSON.stringify(this.awareness.localMessage())));
  }

  _sendTo(peerId, bytes) {
    try { this.room.sendTo(peerId, bytes); } catch (e) { console.error('[switchboard-yjs] send failed:', e); }
  }

  _broadcast(bytes) {
    try { this.room.send(bytes); } catch (e) { console.error('[switchboard-yjs] send failed:', e); }
  }

  /** Awareness through the server, throttled, while some member has no open data channel. */
  _signalAwareness(changes) {
    const onlyCursor = changes.updated && changes.updated.length > 0 && changes._cursorOnly;
    if (!onlyCursor) this._signalCursorOnly = false;
    if (this._signalTimer || this._destroyed) return;
    this._signalTimer = setTimeout(() => {
      this._signalTimer = null;
      const waiting = [...this.room.peers.values()].some((p) => !p.open);
      if (!waiting || this.room.state !== 'connected' || !this.awareness.getLocalState()) return;
      const { clock, state } = this.awareness.localMessage();
      if (this._signalCursorOnly) this.room.signal('cursor-update', { clock, cursor: state.cursor ?? null });
      else this.room.signal('presence', { clock, state });
      this._signalCursorOnly = true;
    }, this._signalThrottle);
  }

  _onSignaled(peer, data, cursorOnly) {
    if (!data || typeof data.clock !== 'number') return;
    if (cursorOnly) {
      const prev = this.awareness.getStates().get(peer.id);
      if (prev) this.awareness.applyRemote(peer.id, data.clock, { ...prev, cursor: data.cursor ?? null }, 'signaling');
    } else if (data.state && typeof data.state === 'object') {
      this.awareness.applyRemote(peer.id, data.clock, data.state, 'signaling');
    }
  }

  /** Moves this peer's cursor (awareness field `cursor`), sent as a cursor-only change. */
  setCursor(cursor) {
    const state = this.awareness.getLocalState();
    if (!state) return;
    const clock = (this.awareness.clocks.get(this.awareness.clientId) || 0) + 1;
    const next = { ...state, cursor };
    this.awareness.clocks.set(this.awareness.clientId, clock);
    this.awareness.states.set(this.awareness.clientId, next);
    const changes = { added: [], updated: [this.awareness.clientId], removed: [], _cursorOnly: true };
    this.awareness.emit('change', changes, 'local');
    this.awareness.emit('update', changes, 'local');
  }

  /** Stops syncing; tells peers this peer's awareness is gone. The room stays joined. */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    this.awareness.setLocalState(null);
    this.doc.off('update', this._onDocUpdate);
    this.awareness.off('update', this._onAwareness);
    for (const off of this._off) off();
    clearInterval(this._refreshTimer);
    clearTimeout(this._signalTimer);
  }
}
