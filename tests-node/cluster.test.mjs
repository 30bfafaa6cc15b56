// Cluster mode with the real socket.io-client: Debian's redis-server on a free loopback port,
// two switchboard processes sharing it, Socket.io clients on different nodes (and an
// OctateCode client on the other node): joins, targeted and room-wide signals, a thousand
// signals in order across nodes, leave and disconnect.
//
//   cargo build -p switchboard && cd tests-node && npm ci && npm test
//
// SWITCHBOARD_BIN overrides the binary (default ../target/debug/switchboard); REDIS_SERVER the
// redis-server binary (default: on PATH, /usr/bin/redis-server).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import path from 'node:path';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.SWITCHBOARD_BIN
  ? path.resolve(process.env.SWITCHBOARD_BIN)
  : path.resolve(here, '../target/debug/switchboard');
const REDIS = process.env.REDIS_SERVER
  || ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find(existsSync)
  || 'redis-server';
const PATIENCE = 5000;

function withTimeout(p, what, ms = PATIENCE) {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Spawns `cmd`, resolves with the first match of `re` in its output; stopped by PID later. */
function startProcess(name, cmd, args, env, re) {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return withTimeout(new Promise((resolve, reject) => {
    const check = (chunk) => {
      out += chunk;
      const m = out.match(re);
      if (m) resolve({
        proc,
        match: m,
        async stop() {
          if (proc.exitCode !== null || proc.signalCode !== null) return;
          const exited = new Promise((r) => proc.once('exit', r));
          process.kill(proc.pid, 'SIGTERM');
          const t = setTimeout(() => process.kill(proc.pid, 'SIGKILL'), 5000);
          await exited;
          clearTimeout(t);
        },
      });
    };
    proc.stdout.on('data', check);
    proc.stderr.on('data', check);
    proc.on('error', reject);
    proc.on('exit', (code) => reject(new Error(`${name} exited with ${code}: ${out}`)));
  }), `${name} to start`, 20000);
}

/** Redis and two nodes for one test, all stopped by PID when it ends. */
async function cluster(t) {
  const port = await freePort();
  const redis = await startProcess('redis-server', REDIS,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
    {}, /Ready to accept connections/);
  const nodes = [];
  const clients = [];
  t.after(async () => {
    for (const c of clients) c.close();
    for (const n of nodes) await n.stop();
    await redis.stop();
  });
  for (const id of ['n1', 'n2']) {
    const n = await startProcess(id, BIN, [], {
      HOST: '127.0.0.1', PORT: '0', SIGNALING_PORT: '0', SOCKETIO_PORT: '0', NODE_ENV: 'development',
      LOG_LEVEL: 'warn', REDIS_URL: `redis://127.0.0.1:${port}`, NODE_ID: id,
      MAX_MESSAGES_PER_SECOND: '0', OUTBOX_CAPACITY: '4096',
    }, /listening http=(\S+) signaling=(\S+) socketio=(\S+)/);
    nodes.push(n);
    n.http = `http://${n.match[1]}`;
    n.signaling = `ws://${n.match[2]}/`;
    n.socketio = `http://${n.match[3]}`;
    // Ready once it reaches Redis.
    for (let i = 0; i < 200; i++) {
      const r = await fetch(`${n.http}/readyz`).catch(() => null);
      if (r && r.status === 200) break;
      assert.ok(i < 199, `${id} ready`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const connect = async (node) => {
    const s = io(node.socketio, { transports: ['websocket'], forceNew: true, reconnection: false });
    clients.push(s);
    await withTimeout(new Promise((resolve, reject) => {
      s.once('connect', resolve);
      s.once('connect_error', reject);
    }), 'connect');
    return s;
  };
  const octate = async (node) => {
    const ws = new WebSocket(node.signaling);
    clients.push(ws);
    await withTimeout(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), 'open');
    const queue = [];
    const waiters = [];
    ws.on('message', (d) => {
      const msg = JSON.parse(d.toString());
      const w = waiters.shift();
      if (w) w(msg); else queue.push(msg);
    });
    ws.json = (v) => ws.send(JSON.stringify(v));
    ws.next = () => (queue.length ? Promise.resolve(queue.shift()) : withTimeout(new Promise((r) => waiters.push(r)), 'an OctateCode frame'));
    ws.nextOf = async (type) => {
      for (let i = 0; i < 20; i++) {
        const m = await ws.next();
        if (m.type === type) return m;
      }
      throw new Error(`no ${type}`);
    };
    return ws;
  };
  return { nodes, connect, octate };
}

function next(socket, event) {
  return withTimeout(new Promise((r) => socket.once(event, r)), `'${event}'`);
}

async function join(s, roomId, userId) {
  const p = next(s, 'room-participants');
  s.emit('join-room', roomId, userId);
  return p;
}

test('Socket.io peers on two nodes share a room: joins, signals, leave', async (t) => {
  const { nodes: [n1, n2], connect } = await cluster(t);
  // A room created through one node's REST API is joined through the other's.
  const { roomId } = await (await fetch(`${n1.socketio}/api/rooms`, { method: 'POST' })).json();
  const alice = await connect(n1);
  const bob = await connect(n2);
  assert.deepEqual(await join(alice, roomId, 'alice'), { participants: [], roomId });
  const joined = next(alice, 'user-joined');
  assert.deepEqual(await join(bob, roomId, 'bob'), { participants: ['alice'], roomId });
  assert.deepEqual(await joined, { userId: 'bob', roomId });

  const offer = next(bob, 'offer');
  alice.emit('offer', { roomId, targetUserId: 'bob', offer: { type: 'offer', sdp: 'v=0 cross' } });
  assert.deepEqual(await offer, { userId: 'alice', targetUserId: 'bob', roomId, offer: { type: 'offer', sdp: 'v=0 cross' } });
  const answer = next(alice, 'answer');
  bob.emit('answer', { roomId, targetUserId: 'alice', answer: { type: 'answer', sdp: 'v=0 back' } });
  assert.equal((await answer).answer.sdp, 'v=0 back');
  const cand = next(bob, 'ice-candidate');
  alice.emit('ice-candidate', { roomId, candidate: { candidate: 'c1' } }); // untargeted: the room
  assert.equal((await cand).candidate.candidate, 'c1');

  // The Vibe REST API on either node lists both participants.
  const room = await (await fetch(`${n2.socketio}/api/rooms/${roomId}`)).json();
  assert.deepEqual([...room.participants].sort(), ['alice', 'bob']);

  const left = next(alice, 'user-left');
  bob.disconnect();
  assert.deepEqual(await left, { userId: 'bob', roomId });
});

const N = 1000;

test(`Socket.io ⇄ OctateCode across nodes: ${N} candidates each way, in order`, async (t) => {
  const { nodes: [n1, n2], connect, octate } = await cluster(t);
  const ws = await octate(n2);
  ws.json({ type: 'auth', userId: 'oct', roomId: 'mixed' });
  await ws.nextOf('auth');
  ws.json({ type: 'create-room', roomId: 'mixed' });
  await ws.nextOf('room-created');
  const sio = await connect(n1);
  await join(sio, 'mixed', 'sio');
  await ws.nextOf('peer-joined');

  // Socket.io → OctateCode.
  const got = [];
  const done = new Promise((resolve) => {
    ws.on('message', function onMsg(d) {
      const m = JSON.parse(d.toString());
      if (m.type === 'ice-candidate') got.push(m.data.candidate.n);
      if (got.length === N) { ws.off('message', onMsg); resolve(); }
    });
  });
  for (let n = 0; n < N; n++) sio.emit('ice-candidate', { roomId: 'mixed', targetUserId: 'oct', candidate: { n } });
  await withTimeout(done, `${N} candidates at the OctateCode client`, 20000);
  assert.deepEqual(got, [...Array(N).keys()]);

  // OctateCode → Socket.io.
  const back = [];
  const doneBack = new Promise((resolve) => {
    sio.on('ice-candidate', (m) => {
      back.push(m.candidate.n);
      if (back.length === N) resolve();
    });
  });
  for (let n = 0; n < N; n++) ws.json({ type: 'ice-candidate', roomId: 'mixed', data: { peer: 'sio', candidate: { n } } });
  await withTimeout(doneBack, `${N} candidates at the Socket.io client`, 20000);
  assert.deepEqual(back, [...Array(N).keys()]);
});

test('Socket.io: a signal to a peer whose node was killed is an error, not a silent drop', async (t) => {
  const { nodes: [n1, n2], connect, octate } = await cluster(t);
  const ws = await octate(n2);
  ws.json({ type: 'auth', userId: 'gone', roomId: 'killed' });
  await ws.nextOf('auth');
  ws.json({ type: 'create-room', roomId: 'killed' });
  await ws.nextOf('room-created');
  const sio = await connect(n1);
  await join(sio, 'killed', 'sio');
  await ws.nextOf('peer-joined');
  const exited = new Promise((r) => n2.proc.once('exit', r));
  process.kill(n2.proc.pid, 'SIGKILL');
  await withTimeout(exited, 'node n2 to exit');
  // Until n2's lease runs out, 'gone' is still in the room, but its node's inbox has no
  // subscriber: the relay is answered at once and the error follows. Redis may take a
  // moment to notice the dead subscriber, so probe every 200 ms (at most 10 times).
  let error = null;
  sio.on('error', (e) => { error = e; });
  for (let n = 0; n < 10 && !error; n++) {
    sio.emit('offer', { roomId: 'killed', targetUserId: 'gone', offer: { type: 'offer', sdp: `v=0 ${n}` } });
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(error, 'an error event within 2 s');
  assert.match(error.message, /the node holding gone is unreachable/);
});
