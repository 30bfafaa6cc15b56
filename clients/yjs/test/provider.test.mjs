// Sync logic of the Yjs provider with real Y.Docs, over an in-memory stand-in for the SDK's room:
// messages are copied into fresh ArrayBuffers (as a data channel delivers them) and delivered
// asynchronously, in order per link, so edits really are concurrent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as Y from 'yjs';
import { SwitchboardProvider, Awareness, encode, decode, UPDATE, MAGIC } from '../src/index.js';

/** Rooms joined to one in-memory "server"; `link(a, b)` opens a data channel between two. */
class Network {
  constructor() { this.rooms = new Map(); this.inFlight = 0; this.signals = []; }
  join(userId) { const r = new FakeRoom(this, userId); this.rooms.set(userId, r); return r; }
  /** Both rooms learn of each other, then the channel opens on both sides. */
  link(a, b) {
    for (const [x, y] of [[a, b], [b, a]]) this.rooms.get(x)._add(y);
    this.later(() => { for (const [x, y] of [[a, b], [b, a]]) this.rooms.get(x)._open(y); });
  }
  /** Members of the room that are not (yet) connected peer to peer. */
  meet(a, b) { for (const [x, y] of [[a, b], [b, a]]) this.rooms.get(x)._add(y); }
  leave(id) {
    const gone = this.rooms.get(id);
    this.rooms.delete(id);
    for (const r of this.rooms.values()) if (r.peers.has(id)) this.later(() => r._remove(id));
    gone.peers.clear();
  }
  later(fn) {
    this.inFlight++;
    setImmediate(() => { this.inFlight--; fn(); });
  }
  deliver(from, to, data) {
    const copy = data.slice().buffer; // a data channel hands the receiver its own ArrayBuffer
    this.later(() => { const r = this.rooms.get(to); if (r && r.peers.get(from)?.open) r._emit('message', r.peers.get(from), copy); });
  }
  /** Resolves once no message is in flight. */
  async settle() {
    for (let i = 0; i < 10000; i++) {
      await new Promise((r) => setImmediate(r));
      if (this.inFlight === 0) return;
    }
    throw new Error('network did not settle');
  }
}

class FakeRoom {
  constructor(net, userId) {
    this.net = net; this.userId = userId; this.state = 'connected';
    this.peers = new Map(); this.handlers = new Map(); this.sent = 0;
  }
  on(name, h) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(h);
    return () => this.handlers.get(name).delete(h);
  }
  _emit(name, ...args) { for (const h of this.handlers.get(name) || []) h(...args); }
  _add(id) { if (!this.peers.has(id)) { const p = { id, open: false }; this.peers.set(id, p); this._emit('peer-joined', p); } }
  _open(id) { const p = this.peers.get(id); if (p && !p.open) { p.open = true; this._emit('open', p); } }
  _remove(id) { const p = this.peers.get(id); if (p) { this.peers.delete(id); if (p.open) this._emit('close', p); this._emit('peer-left', p); } }
  send(data) { let n = 0; for (const p of this.peers.values()) if (this.sendTo(p.id, data)) n++; return n; }
  sendTo(id, data) {
    const p = this.peers.get(id);
    if (!p || !p.open) return false;
    this.sent++;
    this.net.deliver(this.userId, id, data);
    return true;
  }
  signal(type, data) {
    this.net.signals.push({ from: this.userId, type, data });
    for (const r of this.net.rooms.values()) {
      if (r !== this && r.peers.has(this.userId)) this.net.later(() => r._emit(type, r.peers.get(this.userId), data));
    }
    return true;
  }
}

function peer(net, id, awareness) {
  const doc = new Y.Doc();
  const room = net.join(id);
  const provider = new SwitchboardProvider(room, doc, { awareness, refresh: 0, signalThrottle: 5 });
  return { id, doc, room, provider, text: doc.getText('t') };
}
const str = (p) => p.text.toString();

test('two docs: existing text reaches a new peer, then edits flow both ways', async () => {
  const net = new Network();
  const a = peer(net, 'a');
  const b = peer(net, 'b');
  a.text.insert(0, 'hello');
  net.link('a', 'b');
  await net.settle();
  assert.equal(str(b), 'hello');
  assert.ok(a.provider.synced && b.provider.synced, 'both sides completed sync step 2');
  b.text.insert(5, ' world');
  a.text.insert(0, '> ');
  await net.settle();
  assert.equal(str(a), '> hello world');
  assert.equal(str(b), str(a));
});

test('three docs typing at once converge with nothing lost', async () => {
  const net = new Network();
  const ps = ['a', 'b', 'c'].map((id) => peer(net, id));
  net.link('a', 'b'); net.link('a', 'c'); net.link('b', 'c');
  await net.settle();
  // Interleaved keystrokes, each delivered asynchronously: every insert is concurrent with others.
  for (let i = 0; i < 30; i++) {
    for (const p of ps) p.text.insert(p.text.length, `${p.id}${i % 10}`);
    if (i % 7 === 0) await new Promise((r) => setImmediate(r));
  }
  await net.settle();
  const [a, b, c] = ps.map(str);
  assert.equal(a, b);
  assert.equal(b, c);
  assert.equal(a.length, 3 * 30 * 2, 'every character typed is present');
  for (const p of ps) {
    const mine = [...a.matchAll(new RegExp(`${p.id}\\d`, 'g'))].map((m) => m[0]).join('');
    assert.equal(mine, Array.from({ length: 30 }, (_, i) => `${p.id}${i % 10}`).join(''), `${p.id}'s keystrokes all there, in order`);
  }
});

test('a late joiner receives the whole document from the peers already there', async () => {
  const net = new Network();
  const a = peer(net, 'a');
  const b = peer(net, 'b');
  net.link('a', 'b');
  a.text.insert(0, 'first line\n');
  await net.settle();
  b.text.insert(b.text.length, 'second line\n');
  a.doc.getMap('meta').set('title', 'notes');
  await net.settle();
  const c = peer(net, 'c');
  net.link('c', 'a'); net.link('c', 'b');
  await net.settle();
  assert.equal(str(c), 'first line\nsecond line\n');
  assert.equal(c.doc.getMap('meta').get('title'), 'notes');
  assert.deepEqual([...c.provider.syncedPeers].sort(), ['a', 'b']);
});

test('edits made while apart are exchanged when the channel opens', async () => {
  const net = new Network();
  const a = peer(net, 'a');
  const b = peer(net, 'b');
  net.link('a', 'b');
  a.text.insert(0, 'shared ');
  await net.settle();
  // The channel drops (both stay members); both edit concurrently at the same place.
  a.room.peers.get('b').open = false; b.room.peers.get('a').open = false;
  a.text.insert(7, 'AAA');
  b.text.insert(7, 'BBB');
  b.text.delete(0, 1);
  assert.notEqual(str(a), str(b));
  a.room._open('b'); b.room._open('a'); // the channel opens again: sync step 1/2 both ways
  await net.settle();
  assert.equal(str(a), str(b));
  assert.match(str(a), /^hared (AAABBB|BBBAAA)$/);
});

test('remote updates are applied, not echoed back', async () => {
  const net = new Network();
  const a = peer(net, 'a');
  const b = peer(net, 'b');
  net.link('a', 'b');
  await net.settle();
  const before = b.room.sent;
  a.text.insert(0, 'x');
  await net.settle();
  assert.equal(str(b), 'x');
  assert.equal(b.room.sent, before, 'b sent nothing in reply to an update');
});

test('awareness: names, colours and cursors reach peers and disappear when they leave', async () => {
  const net = new Network();
  const a = peer(net, 'a', { name: 'Ada', colour: '#c33' });
  const b = peer(net, 'b', { name: 'Bob', colour: '#33c' });
  net.link('a', 'b');
  await net.settle();
  assert.deepEqual(b.provider.awareness.getStates().get('a'), { name: 'Ada', colour: '#c33' });
  assert.deepEqual(a.provider.awareness.getStates().get('b'), { name: 'Bob', colour: '#33c' });
  a.provider.setCursor({ anchor: 1, head: 3 });
  await net.settle();
  assert.deepEqual(b.provider.awareness.getStates().get('a').cursor, { anchor: 1, head: 3 });
  const removed = [];
  b.provider.awareness.on('change', (c) => removed.push(...c.removed));
  net.leave('a');
  await net.settle();
  assert.equal(b.provider.awareness.getStates().has('a'), false);
  assert.deepEqual(removed, ['a']);
});

test('awareness travels as OctateCode presence/cursor-update while a data channel is not open', async () => {
  const net = new Network();
  const a = peer(net, 'a');
  const b = peer(net, 'b');
  net.meet('a', 'b'); // members, no channel yet (e.g. a TURN relay still being allocated)
  a.provider.awareness.setLocalState({ name: 'Ada', colour: '#c33' });
  await new Promise((r) => setTimeout(r, 30));
  await net.settle();
  assert.deepEqual(b.provider.awareness.getStates().get('a'), { name: 'Ada', colour: '#c33' });
  assert.equal(net.signals.at(-1).type, 'presence');
  a.provider.setCursor({ anchor: 2, head: 2 });
  await new Promise((r) => setTimeout(r, 30));
  await net.settle();
  assert.equal(net.signals.at(-1).type, 'cursor-update');
  assert.deepEqual(b.provider.awareness.getStates().get('a').cursor, { anchor: 2, head: 2 });
  // Older states never overwrite newer ones.
  assert.equal(b.provider.awareness.applyRemote('a', 1, { name: 'stale' }), false);
  assert.equal(b.provider.awareness.getStates().get('a').name, 'Ada');
});

test('messages that are not the provider\'s are left alone', async () => {
  const net = new Network();
  const a = peer(net, 'a');
  const b = peer(net, 'b');
  net.link('a', 'b');
  await net.settle();
  a.room.send(new TextEncoder().encode('plain binary'));
  a.room.send(new Uint8Array([MAGIC])); // too short to be a provider message
  await net.settle();
  assert.equal(decode('a string'), null);
  assert.equal(decode(new Uint8Array([1, 2, 3])), null);
  assert.deepEqual(decode(encode(UPDATE, new Uint8Array([9]))), { kind: UPDATE, payload: new Uint8Array([9]) });
  assert.equal(str(b), '');
});

test('destroy stops syncing and clears this peer\'s awareness for the others', async () => {
  const net = new Network();
  const a = peer(net, 'a', { name: 'Ada' });
  const b = peer(net, 'b', { name: 'Bob' });
  net.link('a', 'b');
  await net.settle();
  a.provider.destroy();
  await net.settle();
  assert.equal(b.provider.awareness.getStates().has('a'), false);
  a.text.insert(0, 'not sent');
  await net.settle();
  assert.equal(str(b), '');
  assert.ok(new Awareness('x').getLocalState() === null);
});
