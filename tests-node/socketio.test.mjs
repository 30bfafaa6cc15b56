// Switchboard's Socket.io dialect (seed 003, the Vibe signaling server), tested with the
// real socket.io-client v4 against the real server binary on port 0.
//
//   cargo build -p switchboard && cd tests-node && npm install && npm test
//
// SWITCHBOARD_BIN overrides the binary (default ../target/debug/switchboard).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.SWITCHBOARD_BIN
  ? path.resolve(process.env.SWITCHBOARD_BIN)
  : path.resolve(here, '../target/debug/switchboard');
const PATIENCE = 5000;

/** Starts the server binary on port 0; resolves once it prints its addresses. */
function startServer(extraEnv = {}) {
  const proc = spawn(BIN, [], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      SIGNALING_PORT: '0',
      SOCKETIO_PORT: '0',
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not start: ${out}`));
    }, 15000);
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${out}`));
    });
    proc.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/listening http=(\S+) signaling=(\S+) socketio=(\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({
          proc,
          http: `http://${m[1]}`,
          signaling: `ws://${m[2]}/`,
          socketio: `http://${m[3]}`,
          async stop() {
            if (proc.exitCode !== null) return;
            const exited = new Promise((r) => proc.once('exit', r));
            process.kill(proc.pid, 'SIGTERM');
            const t = setTimeout(() => process.kill(proc.pid, 'SIGKILL'), 5000);
            await exited;
            clearTimeout(t);
          },
        });
      }
    });
  });
}

/** A server for one test, stopped (by PID) when the test ends, with its clients closed. */
async function setup(t, env) {
  const srv = await startServer(env);
  const sockets = [];
  t.after(async () => {
    for (const s of sockets) s.close();
    await srv.stop();
  });
  /** Closes `c` when the test ends. */
  srv.track = (c) => sockets.push(c);
  /** A socket that is tracked for closing but not waited on. */
  srv.socket = (opts = {}, base = srv.socketio) => {
    const s = io(base, { transports: ['websocket'], forceNew: true, reconnection: false, ...opts });
    sockets.push(s);
    return s;
  };
  srv.connect = async (opts = {}, base = srv.socketio) => {
    const s = srv.socket(opts, base);
    await new Promise((resolve, reject) => {
      s.once('connect', resolve);
      s.once('connect_error', reject);
    });
    return s;
  };
  srv.octate = async () => {
    const ws = new WebSocket(srv.signaling);
    sockets.push(ws);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const queue = [];
    const waiters = [];
    ws.on('message', (d) => {
      const msg = JSON.parse(d.toString());
      const w = waiters.shift();
      if (w) w(msg);
      else queue.push(msg);
    });
    ws.json = (v) => ws.send(JSON.stringify(v));
    ws.next = () =>
      queue.length
        ? Promise.resolve(queue.shift())
        : withTimeout(new Promise((r) => waiters.push(r)), 'an OctateCode frame');
    ws.nextOf = async (type) => {
      const m = await ws.next();
      assert.equal(m.type, type, `expected ${type}, got ${JSON.stringify(m)}`);
      return m;
    };
    return ws;
  };
  return srv;
}

function withTimeout(p, what, ms = PATIENCE) {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

/** The next `event` on `socket` (its first argument). */
function next(socket, event) {
  return withTimeout(new Promise((r) => socket.once(event, r)), `'${event}'`);
}

/** Asserts `event` does not arrive within `ms`. */
async function silence(socket, event, ms = 300) {
  let got;
  const h = (d) => {
    got = d;
  };
  socket.on(event, h);
  await new Promise((r) => setTimeout(r, ms));
  socket.off(event, h);
  assert.equal(got, undefined, `unexpected '${event}': ${JSON.stringify(got)}`);
}

async function api(base, method, p) {
  const res = await fetch(base + p, { method });
  return { status: res.status, body: await res.json() };
}

async function newRoom(srv) {
  const { status, body } = await api(srv.socketio, 'POST', '/api/rooms');
  assert.equal(status, 200);
  return body.roomId;
}

/** Joins in the original positional form and waits for room-participants. */
async function join(s, roomId, userId) {
  const p = next(s, 'room-participants');
  s.emit('join-room', roomId, userId);
  return p;
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('REST endpoints have the seed 003 shapes', async (t) => {
  const srv = await setup(t);
  const health = await api(srv.socketio, 'GET', '/health');
  assert.equal(health.status, 200);
  assert.equal(health.body.status, 'ok');
  assert.match(health.body.timestamp, ISO);

  const roomId = await newRoom(srv);
  assert.match(roomId, UUID4);
  const room = await api(srv.socketio, 'GET', `/api/rooms/${roomId}`);
  assert.equal(room.status, 200);
  assert.deepEqual(Object.keys(room.body).sort(), ['createdAt', 'id', 'participants']);
  assert.equal(room.body.id, roomId);
  assert.deepEqual(room.body.participants, []);
  assert.match(room.body.createdAt, ISO);

  const list = await api(srv.socketio, 'GET', '/api/rooms');
  assert.equal(list.status, 200);
  assert.ok(list.body.rooms.some((r) => r.id === roomId));

  const missing = await api(srv.socketio, 'GET', '/api/rooms/no-such-room');
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.body, { error: 'Room not found' });
});

test('join in positional and object form: room-users, room-participants, user-joined', async (t) => {
  const srv = await setup(t);
  const roomId = await newRoom(srv);
  const a = await srv.connect();
  const users = next(a, 'room-users');
  const first = await join(a, roomId, 'alice');
  assert.deepEqual(first.participants, []);
  assert.deepEqual((await users).participants, []);

  const b = await srv.connect();
  const joined = next(a, 'user-joined');
  const bUsers = next(b, 'room-users');
  const bParts = next(b, 'room-participants');
  b.emit('join-room', { roomId, userId: 'bob' });
  assert.deepEqual((await bParts).participants, ['alice']);
  assert.deepEqual((await bUsers).participants, ['alice']);
  assert.equal((await joined).userId, 'bob');

  const room = await api(srv.socketio, 'GET', `/api/rooms/${roomId}`);
  assert.deepEqual(room.body.participants.sort(), ['alice', 'bob']);
});

test('a join-room emitted from the connect callback is never missed', async (t) => {
  // Real clients join in their 'connect' callback. The server must have its handlers in
  // place before the client learns it is connected (socketioxide spawns connect handlers
  // after sending CONNECT; Switchboard sets sockets up in a middleware instead).
  const srv = await setup(t);
  const roomId = await newRoom(srv);
  const joins = Array.from({ length: 50 }, (_, i) => {
    const s = srv.socket();
    const parts = next(s, 'room-participants');
    s.on('connect', () => s.emit('join-room', roomId, `user-${i}`));
    return parts;
  });
  const got = await Promise.all(joins);
  assert.equal(got.length, 50);
  const room = await api(srv.socketio, 'GET', `/api/rooms/${roomId}`);
  assert.equal(room.body.participants.length, 50);
});

test('a disallowed Origin is refused with connect_error', async (t) => {
  const srv = await setup(t, { CORS_ORIGINS: 'http://good.example' });
  const s = srv.socket({ extraHeaders: { Origin: 'http://evil.example' } });
  const err = await withTimeout(
    new Promise((resolve) => s.once('connect_error', resolve)),
    "'connect_error'",
  );
  assert.equal(err.message, 'Origin not allowed');
  const ok = await srv.connect({ extraHeaders: { Origin: 'http://good.example' } });
  assert.ok(ok.connected);
});

test('join of an unknown room is an error event', async (t) => {
  const srv = await setup(t);
  const a = await srv.connect();
  const err = next(a, 'error');
  a.emit('join-room', 'no-such-room', 'alice');
  assert.deepEqual(await err, { message: 'Room not found' });
  const err2 = next(a, 'error');
  a.emit('join-room', { roomId: 'no-such-room', userId: 'alice' });
  assert.equal((await err2).message, 'Room not found');
});

test('offer, answer and ice-candidate: untargeted to the room, targeted to one user', async (t) => {
  const srv = await setup(t);
  const roomId = await newRoom(srv);
  const a = await srv.connect();
  const b = await srv.connect();
  const c = await srv.connect();
  await join(a, roomId, 'a');
  await join(b, roomId, 'b');
  await join(c, roomId, 'c');
  const offer = { type: 'offer', sdp: 'v=0 offer' };

  // Untargeted: everyone else, not the sender.
  const atB = next(b, 'offer');
  const atC = next(c, 'offer');
  a.emit('offer', { roomId, userId: 'a', offer });
  for (const got of [await atB, await atC]) {
    assert.equal(got.userId, 'a');
    assert.deepEqual(got.offer, offer);
    assert.equal(got.targetUserId, undefined);
  }
  await silence(a, 'offer');

  // Targeted with targetUserId (the original's field) and targetId (the seed's).
  const toB = next(b, 'offer');
  a.emit('offer', { roomId, userId: 'a', targetUserId: 'b', offer });
  const got = await toB;
  assert.deepEqual(got, { userId: 'a', targetUserId: 'b', roomId, offer });
  await silence(c, 'offer');

  const answer = { type: 'answer', sdp: 'v=0 answer' };
  const ans = next(a, 'answer');
  b.emit('answer', { roomId, targetId: 'a', answer });
  assert.deepEqual(await ans, { userId: 'b', targetUserId: 'a', roomId, answer });
  await silence(c, 'answer');

  const candidate = { candidate: 'candidate:1 1 UDP 1 127.0.0.1 9 typ host', sdpMid: '0' };
  const cand = next(b, 'ice-candidate');
  a.emit('ice-candidate', { roomId, targetUserId: 'b', candidate });
  assert.deepEqual(await cand, { userId: 'a', targetUserId: 'b', roomId, candidate });

  // Unknown target: error to the sender.
  const err = next(a, 'error');
  a.emit('offer', { roomId, targetUserId: 'nobody', offer });
  assert.match((await err).message, /not found/);
});

test('leave-room and disconnect tell the others; an emptied room is removed', async (t) => {
  const srv = await setup(t);
  const roomId = await newRoom(srv);
  const a = await srv.connect();
  const b = await srv.connect();
  await join(a, roomId, 'alice');
  await join(b, roomId, 'bob');

  const left = next(a, 'user-left');
  b.emit('leave-room', roomId, 'bob');
  assert.equal((await left).userId, 'bob');
  let room = await api(srv.socketio, 'GET', `/api/rooms/${roomId}`);
  assert.deepEqual(room.body.participants, ['alice']);

  // The seed's object form of leave-room works too; rejoin first.
  await join(b, roomId, 'bob');
  const left2 = next(a, 'user-left');
  b.emit('leave-room', { roomId });
  assert.equal((await left2).userId, 'bob');

  await join(b, roomId, 'bob');
  const gone = next(b, 'user-left');
  a.disconnect();
  assert.equal((await gone).userId, 'alice');
  b.disconnect();
  for (let i = 0; i < 50; i++) {
    room = await api(srv.socketio, 'GET', `/api/rooms/${roomId}`);
    if (room.status === 404) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(room.status, 404);
  assert.deepEqual(room.body, { error: 'Room not found' });
});

test('missing or malformed payloads get an error event and the server stays up', async (t) => {
  const srv = await setup(t);
  const roomId = await newRoom(srv);
  const a = await srv.connect();
  for (const [event, args] of [
    ['offer', []],
    ['answer', []],
    ['ice-candidate', []],
    ['offer', ['just a string']],
    ['offer', [{ roomId }]],
    ['join-room', []],
    ['join-room', [42]],
    ['join-room', [{ roomId }]],
    ['ice-candidate', [null]],
  ]) {
    const err = next(a, 'error');
    a.emit(event, ...args);
    const got = await err;
    assert.equal(typeof got.message, 'string', `${event} ${JSON.stringify(args)}`);
  }
  // Signalling in a room not joined is refused too.
  const err = next(a, 'error');
  a.emit('offer', { roomId, offer: { type: 'offer', sdp: 'x' } });
  assert.match((await err).message, /Not in room/);
  // leave-room of an unknown room is ignored, as in the original.
  a.emit('leave-room', 'nope', 'alice');
  await silence(a, 'error');

  assert.equal(a.connected, true);
  await join(a, roomId, 'alice');
  const health = await api(srv.socketio, 'GET', '/health');
  assert.equal(health.status, 200);
});

test('long-polling transport and the main HTTP port serve Socket.io too', async (t) => {
  const srv = await setup(t);
  const roomId = await newRoom(srv);
  const a = await srv.connect({ transports: ['polling'] });
  await join(a, roomId, 'poller');
  const b = await srv.connect({}, srv.http);
  const joined = next(a, 'user-joined');
  const parts = await join(b, roomId, 'main-port');
  assert.deepEqual(parts.participants, ['poller']);
  assert.equal((await joined).userId, 'main-port');
  const got = next(a, 'offer');
  b.emit('offer', { roomId, offer: { type: 'offer', sdp: 'p' } });
  assert.deepEqual((await got).offer, { type: 'offer', sdp: 'p' });
  // Default transports (polling, then upgrade to websocket) work as well.
  const c = await srv.connect({ transports: ['polling', 'websocket'] });
  await join(c, roomId, 'upgrader');
});

test('one room, two dialects: a Socket.io client and an OctateCode client signal each other', async (t) => {
  const srv = await setup(t);
  const roomId = await newRoom(srv);
  const s = await srv.connect();
  await join(s, roomId, 'sio');

  const oc = await srv.octate();
  oc.json({ type: 'auth', userId: 'oc', roomId });
  await oc.nextOf('auth');
  const joined = next(s, 'user-joined');
  oc.json({ type: 'join-room', roomId, userId: 'oc' });
  const rj = await oc.nextOf('room-joined');
  assert.deepEqual(rj.data.room.peers.map((p) => p.userId).sort(), ['oc', 'sio']);
  assert.equal((await joined).userId, 'oc');

  // Socket.io → OctateCode: OctateCode shapes, the body under data.<kind>.
  const offer = { type: 'offer', sdp: 'v=0 sio' };
  s.emit('offer', { roomId, userId: 'sio', targetUserId: 'oc', offer });
  const o = await oc.nextOf('sdp-offer');
  assert.equal(o.userId, 'sio');
  assert.equal(o.roomId, roomId);
  assert.equal(o.targetUserId, 'oc');
  assert.deepEqual(o.data, { offer });

  // OctateCode → Socket.io: Socket.io shapes, the body extracted from data.<kind>.
  const answer = { type: 'answer', sdp: 'v=0 oc' };
  const ans = next(s, 'answer');
  oc.json({ type: 'sdp-answer', roomId, userId: 'oc', targetUserId: 'sio', data: { answer } });
  assert.deepEqual(await ans, { userId: 'oc', targetUserId: 'sio', roomId, answer });

  const candidate = { candidate: 'candidate:2 1 UDP 2 10.0.0.1 9 typ host', sdpMLineIndex: 0 };
  const cand = next(s, 'ice-candidate');
  oc.json({ type: 'ice-candidate', roomId, userId: 'oc', data: { candidate } });
  const gotCand = await cand;
  assert.equal(gotCand.userId, 'oc');
  assert.deepEqual(gotCand.candidate, candidate);

  s.emit('ice-candidate', { roomId, candidate });
  const c2 = await oc.nextOf('ice-candidate');
  assert.equal(c2.userId, 'sio');
  assert.deepEqual(c2.data, { candidate });

  // Leaving is seen across dialects both ways.
  const left = next(s, 'user-left');
  oc.json({ type: 'leave-room', roomId, userId: 'oc' });
  await oc.nextOf('peer-left');
  assert.equal((await left).userId, 'oc');
  const rejoined = next(s, 'user-joined');
  oc.json({ type: 'join-room', roomId, userId: 'oc' });
  await oc.nextOf('room-joined');
  assert.equal((await rejoined).userId, 'oc');
  s.disconnect();
  const pl = await oc.nextOf('peer-left');
  assert.equal(pl.userId, 'sio');
});

test('MAX_MESSAGES_PER_SECOND applies to Socket.io events', async (t) => {
  const srv = await setup(t, { MAX_MESSAGES_PER_SECOND: '5' });
  const a = await srv.connect();
  const errors = [];
  a.on('error', (e) => errors.push(e.message));
  // The burst is twice the rate; past it, each event gets an error instead of handling.
  for (let i = 0; i < 20; i++) a.emit('leave-room', 'nope', 'x');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(errors.length >= 5, `errors: ${JSON.stringify(errors)}`);
  assert.ok(errors.every((m) => m === 'Too many messages; slow down'));
  assert.equal(a.connected, true);
});

// ---- Order: signals from one sender to one receiver arrive in the order sent ----------------

const N = 1000;
const ORDER_ENV = { MAX_MESSAGES_PER_SECOND: '0', OUTBOX_CAPACITY: '4096' };

const candidateFor = (n) => ({ candidate: `seq ${n} candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host`, sdpMid: '0', sdpMLineIndex: 0 });
const seqOf = (text) => {
  const m = /seq (\d+)/.exec(text);
  return m ? Number(m[1]) : null;
};

/** Collects sequence numbers from `subscribe(push)` until N arrived (or times out). */
function collect(subscribe, what) {
  const got = [];
  return withTimeout(
    new Promise((resolve) => {
      subscribe((text) => {
        const n = seqOf(text);
        if (n === null) return;
        got.push(n);
        if (got.length === N) resolve(got);
      });
    }),
    `${N} signals (${what})`,
    30000,
  ).catch((e) => {
    throw new Error(`${e.message}; got ${got.length}`);
  });
}

function assertInOrder(got, label) {
  const inversions = got.slice(1).filter((n, i) => n < got[i]).length;
  assert.equal(inversions, 0, `${label}: ${inversions} inversions`);
  assert.deepEqual(got, Array.from({ length: N }, (_, i) => i), label);
}

/** A raw WebSocket client (rendezvous or nt) whose text frames go to `push`. */
async function rawWs(srv, url) {
  const ws = new WebSocket(url);
  srv.track(ws);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.texts = [];
  ws.listeners_ = [];
  ws.on('message', (d) => {
    const t = d.toString();
    ws.texts.push(t);
    for (const l of ws.listeners_) l(t);
  });
  ws.json = (v) => ws.send(JSON.stringify(v));
  ws.waitFor = (pred, what) =>
    withTimeout(
      new Promise((resolve) => {
        const hit = ws.texts.find(pred);
        if (hit) return resolve(hit);
        ws.listeners_.push((t) => pred(t) && resolve(t));
      }),
      what,
    );
  return ws;
}

for (const [label, senderOpts, receiverOpts] of [
  ['websocket', { transports: ['websocket'] }, { transports: ['websocket'] }],
  ['polling upgraded to websocket', { transports: ['polling', 'websocket'] }, { transports: ['polling', 'websocket'] }],
  ['polling only', { transports: ['polling'] }, { transports: ['polling'] }],
]) {
  test(`Socket.io → Socket.io: ${N} candidates arrive in order (${label})`, async (t) => {
    const srv = await setup(t, ORDER_ENV);
    const roomId = await newRoom(srv);
    const rx = await srv.connect(receiverOpts);
    await join(rx, roomId, 'rx');
    const tx = await srv.connect(senderOpts);
    await join(tx, roomId, 'tx');
    const errors = [];
    tx.on('error', (e) => errors.push(e));
    const got = collect((push) => rx.on('ice-candidate', (d) => push(JSON.stringify(d))), label);
    // Back to back, from the connect: over polling these start before the upgrade.
    for (let n = 0; n < N; n++) tx.emit('ice-candidate', { roomId, targetUserId: 'rx', candidate: candidateFor(n) });
    assertInOrder(await got, label);
    assert.deepEqual(errors, []);
  });
}

test(`Socket.io ⇄ OctateCode: ${N} candidates each way, in order`, async (t) => {
  const srv = await setup(t, ORDER_ENV);
  const roomId = await newRoom(srv);
  const s = await srv.connect({ transports: ['polling', 'websocket'] });
  await join(s, roomId, 'sio');
  const oc = await srv.octate();
  oc.json({ type: 'auth', userId: 'oc', roomId });
  await oc.nextOf('auth');
  oc.json({ type: 'join-room', roomId });
  await oc.nextOf('room-joined');

  const toOc = collect((push) => {
    const pump = async () => {
      for (;;) {
        const m = await oc.next().catch(() => null);
        if (!m) return;
        push(JSON.stringify(m));
      }
    };
    pump();
  }, 'sio → oc');
  for (let n = 0; n < N; n++) s.emit('ice-candidate', { roomId, targetUserId: 'oc', candidate: candidateFor(n) });
  assertInOrder(await toOc, 'Socket.io → OctateCode');

  const toSio = collect((push) => s.on('ice-candidate', (d) => push(JSON.stringify(d))), 'oc → sio');
  for (let n = 0; n < N; n++) oc.json({ type: 'ice-candidate', roomId, userId: 'oc', data: { peer: 'sio', candidate: candidateFor(n) } });
  assertInOrder(await toSio, 'OctateCode → Socket.io');
});

test(`Socket.io ⇄ rendezvous and Socket.io ⇄ nt: ${N} candidates each way, in order`, async (t) => {
  const srv = await setup(t, ORDER_ENV);
  const base = srv.http.replace('http://', 'ws://');
  // rendezvous: its join creates the room the Socket.io client then joins.
  const rdv = await rawWs(srv, `${base}/ws?room=order-rdv`);
  rdv.json({ type: 'join', peerId: 'r' });
  await rdv.waitFor((t) => t.includes('"ready"'), 'ready');
  const s = await srv.connect();
  await join(s, 'order-rdv', 'sio');
  let got = collect((push) => rdv.listeners_.push(push), 'sio → rendezvous');
  for (let n = 0; n < N; n++) s.emit('ice-candidate', { roomId: 'order-rdv', targetUserId: 'r', candidate: candidateFor(n) });
  assertInOrder(await got, 'Socket.io → rendezvous');
  got = collect((push) => s.on('ice-candidate', (d) => push(JSON.stringify(d))), 'rendezvous → sio');
  for (let n = 0; n < N; n++) rdv.json({ type: 'signal', to: 'sio', data: candidateFor(n) });
  assertInOrder(await got, 'rendezvous → Socket.io');

  // nt: side A's connection creates the room (named by its appID).
  const appId = '3f2b8c4d-5e6f-4a1b-8c9d-0e1f2a3b4c5d';
  const nt = await rawWs(srv, `${base}/ws?appID=${appId}&side=A`);
  const s2 = await srv.connect({ transports: ['polling', 'websocket'] });
  await join(s2, appId, 'B');
  await nt.waitFor((t) => t.includes('room_full'), 'room_full');
  got = collect((push) => nt.listeners_.push(push), 'sio → nt');
  for (let n = 0; n < N; n++) s2.emit('ice-candidate', { roomId: appId, targetUserId: 'A', candidate: candidateFor(n) });
  assertInOrder(await got, 'Socket.io → nt');
  got = collect((push) => s2.on('ice-candidate', (d) => push(JSON.stringify(d))), 'nt → sio');
  for (let n = 0; n < N; n++) nt.json({ type: 'ice', cand: candidateFor(n) });
  assertInOrder(await got, 'nt → Socket.io');
});

test('over the critical memory threshold a Socket.io connect gets connect_error', async (t) => {
  const srv = await setup(t, { MEMORY_WARNING_THRESHOLD: '1', MEMORY_CRITICAL_THRESHOLD: '1', MEMORY_CHECK_INTERVAL: '20ms' });
  // The first sample is taken at start; wait until the health endpoint reports it.
  for (let i = 0; i < 100; i++) {
    const h = await api(srv.http, 'GET', '/api/health');
    if (h.body.memory.pressure === 'critical') break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const s = srv.socket();
  const err = await next(s, 'connect_error');
  assert.match(err.message, /memory critical/);
  assert.equal(s.connected, false);
});

// ---- Security: tokens through the handshake's auth ---------------------------------------

const PROD = {
  NODE_ENV: 'production',
  AUTH_SECRET: 'a-production-secret-of-some-length',
  ADMIN_API_KEY: 'admin-key',
  LOG_FORMAT: 'text',
};
const ADMIN = { Authorization: 'Bearer admin-key' };

async function tokenFor(srv, userId, roomId) {
  const res = await fetch(`${srv.http}/api/auth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...ADMIN },
    body: JSON.stringify({ userId, roomId }),
  });
  assert.equal(res.status, 200);
  return (await res.json()).token;
}

test('in production a Socket.io client needs a token for its room, and joins as its user', async (t) => {
  const srv = await setup(t, PROD);
  // Creating a room on the Socket.io port needs the admin key when Socket.io needs tokens.
  assert.equal((await fetch(`${srv.socketio}/api/rooms`, { method: 'POST' })).status, 401);
  const res = await fetch(`${srv.socketio}/api/rooms`, { method: 'POST', headers: ADMIN });
  const { roomId } = await res.json();

  const anon = srv.socket();
  const refused = await next(anon, 'connect_error');
  assert.match(refused.message, /requires a token/);
  const forged = srv.socket({ auth: { token: 'not.a.jwt' } });
  assert.match((await next(forged, 'connect_error')).message, /Invalid or expired token/);

  const alice = await srv.connect({ auth: { token: await tokenFor(srv, 'alice', roomId) } });
  const errs = [];
  alice.on('error', (e) => errs.push(e.message));
  alice.emit('join-room', roomId, 'bob'); // not her id
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(errs, ['User ID mismatch: userId must be the authenticated user']);
  await join(alice, roomId, 'alice');
  const bob = await srv.connect({ auth: { token: await tokenFor(srv, 'bob', roomId) } });
  const joined = next(alice, 'user-joined');
  await join(bob, roomId, 'bob');
  assert.equal((await joined).userId, 'bob');
  // A token is for one room.
  const elsewhere = await srv.connect({ auth: { token: await tokenFor(srv, 'carol', 'other') } });
  const e = next(elsewhere, 'error');
  elsewhere.emit('join-room', roomId, 'carol');
  assert.match((await e).message, /Token is for room other/);
  // The room's details name nobody without the admin key.
  const detail = await (await fetch(`${srv.socketio}/api/rooms/${roomId}`)).json();
  assert.deepEqual(detail.participants, []);
  assert.equal(detail.participantCount, 2);
});

test('with Socket.io opened (REQUIRE_TOKEN without it), anonymous clients get anonymous rooms only', async (t) => {
  const srv = await setup(t, { ...PROD, REQUIRE_TOKEN: 'octate,rendezvous,nt,ywebrtc' });
  const { roomId } = await (await fetch(`${srv.socketio}/api/rooms`, { method: 'POST' })).json();
  const vibe = await srv.connect();
  await join(vibe, roomId, 'vibe-user');
  // An OctateCode token room is closed to anonymous Socket.io clients.
  const oc = await srv.octate();
  const t2 = await tokenFor(srv, 'alice', 'token-room');
  oc.json({ type: 'auth', userId: 'alice', roomId: 'token-room', data: { token: t2 } });
  await oc.nextOf('auth');
  oc.json({ type: 'create-room', roomId: 'token-room' });
  await oc.nextOf('room-created');
  const e = next(vibe, 'error');
  vibe.emit('join-room', 'token-room', 'mallory');
  assert.equal((await e).message, 'This room requires a token');
});
