// Switchboard end-to-end suite: real headless Chromium pages connect through Switchboard's
// signaling dialects and through a real coturn. Run it through run.sh, which puts this
// process (and everything it starts) in a network namespace that has only `lo`.
//
// Environment: SWITCHBOARD_BIN (default ../target/debug/switchboard), CHROMIUM
// (default /usr/bin/chromium), TURNSERVER (default /usr/sbin/turnserver or PATH),
// E2E_ONLY (comma list; a scenario runs when its name contains one of them, e.g. "octate,y-webrtc"), E2E_ALLOW_NETWORK=1 to skip the loopback-only check.

import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, extname, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import {
  say, elapsed, withTimeout, checkLoopbackOnly, children, start, stop, stopAll, killAllSync, waitForLine,
  startCoturn, launchChromium, freePort,
} from './procs.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const SERVER_BIN = process.env.SWITCHBOARD_BIN || join(repo, 'target/debug/switchboard');
const ONLY = (process.env.E2E_ONLY || '').split(',').filter(Boolean);
const SUITE_DEADLINE_MS = 8 * 60 * 1000;
const SCENARIO_MS = 60 * 1000;
const t0 = Date.now();

// --- static pages ------------------------------------------------------------------------------
async function buildBundle(outDir) {
  const esbuild = await import('esbuild');
  const out = join(outDir, 'yjs-webrtc.js');
  await withTimeout(esbuild.build({
    stdin: { contents: 'export * as Y from "yjs"; export { WebrtcProvider } from "y-webrtc";', resolveDir: here },
    bundle: true, format: 'iife', globalName: 'YW', platform: 'browser', outfile: out, logLevel: 'error',
  }), 60000, 'esbuild bundle of yjs + y-webrtc');
  return out;
}
function startStatic(files) {
  const types = { '.html': 'text/html', '.js': 'text/javascript' };
  const server = createServer((req, res) => {
    const path = normalize(new URL(req.url, 'http://x').pathname);
    const file = files[path === '/' ? '/index.html' : path];
    if (!file) { res.writeHead(404); res.end('not found'); return; }
    res.writeHead(200, { 'content-type': types[extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// --- scenarios ---------------------------------------------------------------------------------
const results = [];
const pages = [];
let browser;

async function newPage(label, origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const rec = { label, page, context, console: [] };
  page.on('console', (m) => rec.console.push(`${label} ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => rec.console.push(`${label} pageerror: ${e.message}`));
  pages.push(rec);
  await withTimeout(page.goto(`${origin}/`), 15000, `${label} load page`);
  await withTimeout(page.waitForFunction(() => !!window.e2e), 10000, `${label} harness ready`);
  return rec;
}
async function closePages() {
  for (const p of pages.splice(0)) await p.context.close().catch(() => {});
}
function evaluate(rec, fn, arg, step) {
  return withTimeout(rec.page.evaluate(fn, arg), SCENARIO_MS, `${rec.label}: ${step}`).catch((e) => {
    throw new Error(`${rec.label}: ${step}: ${e.message}`);
  });
}
function assert(cond, what) { if (!cond) throw new Error(`assertion failed: ${what}`); }
/**
 * Both pages selected a direct pair: each local candidate is `host` on 127.0.0.1, and each
 * page's remote port is the other page's local port. The remote side shows as `prflx` (with its
 * address hidden by Chromium) when its connectivity check arrived before its candidate was
 * signaled; the port cross-check still proves it is the other browser's own socket.
 */
function assertDirect(ra, rb) {
  for (const [r, l] of [[ra, 'A'], [rb, 'B']]) {
    assert(r.pair, `${l}: a selected candidate pair in getStats`);
    const { local, remote } = r.pair;
    assert(local.type === 'host' && local.address === '127.0.0.1', `${l}: local candidate host 127.0.0.1, got ${local.type} ${local.address}`);
    assert(['host', 'prflx'].includes(remote.type), `${l}: remote candidate host (or prflx), got ${remote.type}`);
    assert(!remote.address || remote.address === '127.0.0.1', `${l}: remote address 127.0.0.1, got ${remote.address}`);
  }
  assert(ra.pair.remote.port === rb.pair.local.port && rb.pair.remote.port === ra.pair.local.port,
    `the pairs point at each other (A ${fmt(ra)}, B ${fmt(rb)})`);
}

async function scenario(name, fn) {
  if (ONLY.length && !ONLY.some((o) => name.includes(o))) return;
  if (Date.now() - t0 > SUITE_DEADLINE_MS) { results.push({ name, status: 'failed', why: 'suite deadline passed' }); return; }
  // One retry: the browsers' own WebRTC transport on this VM (ICE consent, TURN allocations)
  // fails a scenario now and then after signaling has completed, with this build and with
  // older ones alike (about one suite run in eight). A scenario must still pass; a retried
  // one says so in the summary, with why its first attempt failed. E2E_NO_RETRY=1 turns
  // this off.
  const attempts = process.env.E2E_NO_RETRY ? 1 : 2;
  let firstFailure = null;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const started = Date.now();
    say(`RUN  ${name}${attempt > 1 ? ' (retry)' : ''}`);
    try {
      const detail = await withTimeout(fn(), SCENARIO_MS, name);
      const retried = firstFailure ? ` (passed on retry; first attempt: ${firstFailure})` : '';
      results.push({ name, status: 'passed', ms: Date.now() - started, why: retried.trim() || undefined });
      say(`PASS ${name} (${Date.now() - started} ms)${detail ? ` ${detail}` : ''}${retried}`);
      return;
    } catch (e) {
      say(`FAIL ${name}: ${e.message}`);
      say('--- browser console ---');
      for (const p of pages) for (const l of p.console) console.log(`  ${l}`);
      say('--- last switchboard/coturn output ---');
      for (const c of children) for (const l of c.out.slice(-40)) console.log(`  ${c.name}: ${l}`);
      if (attempt === attempts) {
        results.push({ name, status: 'failed', why: firstFailure ? `${e.message} (and first: ${firstFailure})` : e.message });
      }
      firstFailure = firstFailure || e.message;
    } finally {
      await closePages();
    }
  }
}

/** Two pages connect through `dialect`; returns both results. */
async function pair(origin, dialect, base, extra = () => ({})) {
  const a = await newPage(`${dialect}-A`, origin);
  const b = await newPage(`${dialect}-B`, origin);
  const room = `room-${randomBytes(4).toString('hex')}`;
  const optsA = { dialect, room, me: 'alice', initiator: true, create: true, ...base, ...extra('alice') };
  const optsB = { dialect, room, me: 'bob', initiator: false, create: false, ...base, ...extra('bob') };
  const pa = evaluate(a, (o) => window.e2e.connect(o), optsA, 'connect (offerer)');
  pa.catch(() => {}); // reported by Promise.all below, not as an unhandled rejection
  // A has joined (and for OctateCode created the room) before B starts: wait for A's page to
  // say so, or for A to fail.
  await Promise.race([pa, evaluate(a, () => new Promise((resolve) => {
    const check = () => (window.e2eJoined ? resolve(true) : setTimeout(check, 20));
    check();
  }), null, 'joined (offerer)')]);
  const pb = evaluate(b, (o) => window.e2e.connect(o), optsB, 'connect (answerer)');
  const [ra, rb] = await Promise.all([pa, pb]);
  assert(ra.got === 'hello from bob', `A received bob's message (got ${ra.got})`);
  assert(rb.got === 'hello from alice', `B received alice's message (got ${rb.got})`);
  return [ra, rb];
}
const fmt = (r) => `${r.pair.local.type} ${r.pair.local.address}:${r.pair.local.port} -> ${r.pair.remote.type} ${r.pair.remote.address || '(hidden)'}:${r.pair.remote.port}`;

/**
 * Asserts the server serves `url`'s route: a missing route is a failure, never a skip (a
 * WebSocket route answers a plain GET with a status other than 404).
 */
async function assertServed(url) {
  const r = await withTimeout(fetch(url), 5000, `probe ${url}`);
  assert(r.status !== 404, `the server serves ${new URL(url).pathname} (GET answered ${r.status})`);
}

async function main() {
  checkLoopbackOnly();
  const work = mkdtempSync(join(tmpdir(), 'switchboard-e2e-'));
  try {
    // 1. Pages and bundles.
    const bundle = await buildBundle(work);
    const statics = await startStatic({
      '/index.html': join(here, 'www/index.html'),
      '/harness.js': join(here, 'www/harness.js'),
      '/lib/yjs-webrtc.js': bundle,
      '/lib/socket.io.min.js': join(here, 'node_modules/socket.io-client/dist/socket.io.min.js'),
    });
    const origin = `http://127.0.0.1:${statics.address().port}`;
    say(`static pages at ${origin}`);

    // 2. coturn with a fresh shared secret.
    const { coturn, turnSecret, turnPort } = await startCoturn(work);

    // 3. Switchboard on free ports with the same secret.
    const sb = start('switchboard', SERVER_BIN, [], {
      HOST: '127.0.0.1', PORT: '0', SIGNALING_PORT: '0', SOCKETIO_PORT: '0', LOG_LEVEL: process.env.LOG_LEVEL || 'info',
      TURN_SECRET: turnSecret, TURN_URLS: `turn:127.0.0.1:${turnPort}?transport=udp,turn:127.0.0.1:${turnPort}?transport=tcp`,
      STUN_URLS: `stun:127.0.0.1:${turnPort}`, TURN_TTL: '600s',
    });
    const line = await waitForLine(sb, /listening (http=\S+.*)$/, 20000);
    const addrs = Object.fromEntries(line[1].trim().split(/\s+/).map((kv) => kv.split('=')));
    say(`switchboard (pid ${sb.child.pid}): ${line[0]}`);
    const http = `http://${addrs.http}`;
    const wsHttp = `ws://${addrs.http}`;

    // 4. Chromium, loopback only (this whole process runs in a namespace with only lo).
    browser = await launchChromium();
    say(`chromium ${browser.version()}`);

    // 5. Scenarios.
    await scenario('octate: datachannel over a direct host pair on 127.0.0.1', async () => {
      const [ra, rb] = await pair(origin, 'octate', { url: `ws://${addrs.signaling}/` });
      assertDirect(ra, rb);
      const turn = (ra.authIce || []).find((s) => s.credential);
      assert(turn && /^\d+:alice$/.test(turn.username), `auth reply iceServers carry TURN REST credentials for alice (got ${JSON.stringify(ra.authIce)})`);
      return fmt(ra);
    });

    await scenario('octate: relay-only through coturn with /api/ice-servers credentials', async () => {
      // Each page fetches its own credentials from GET /api/ice-servers?userId=<me>.
      const [ra, rb] = await pair(origin, 'octate', { url: `ws://${addrs.signaling}/`, policy: 'relay' },
        (me) => ({ iceServersUrl: `${http}/api/ice-servers?userId=${me}` }));
      for (const [r, l] of [[ra, 'A'], [rb, 'B']]) {
        assert(r.pair, `${l}: a selected pair`);
        assert(r.pair.local.type === 'relay', `${l}: local candidate is relay, got ${r.pair.local.type}`);
        assert(r.pair.remote.type === 'relay', `${l}: remote candidate is relay, got ${r.pair.remote.type}`);
      }
      assert(coturn.out.some((l) => /ALLOCATE processed, success/.test(l)), 'coturn logged successful ALLOCATEs');
      return fmt(ra);
    });

    await scenario('coturn: wrong TURN credential is refused', async () => {
      const p = await newPage('turn-bad', origin);
      const good = await (await fetch(`${http}/api/ice-servers?userId=mallory`)).json();
      const turn = good.iceServers.find((s) => s.credential);
      assert(turn, `GET /api/ice-servers has a TURN entry (got ${JSON.stringify(good)})`);
      assert(good.ttl === 600, `ttl 600 (got ${good.ttl})`);
      const bad = [{ urls: turn.urls.filter((u) => u.includes('udp')), username: turn.username, credential: `x${turn.credential.slice(1)}` }];
      const okay = [{ ...bad[0], credential: turn.credential }];
      const rGood = await evaluate(p, (o) => window.e2e.gather(o), { iceServers: okay, policy: 'relay', ms: 15000 }, 'gather with the right credential');
      assert(rGood.candidates.includes('relay'), `right credential yields a relay candidate (got ${JSON.stringify(rGood)})`);
      const rBad = await evaluate(p, (o) => window.e2e.gather(o), { iceServers: bad, policy: 'relay', ms: 15000 }, 'gather with a wrong credential');
      assert(!rBad.candidates.includes('relay'), `wrong credential yields no relay candidate (got ${JSON.stringify(rBad)})`);
      const expired = [{ ...okay[0], username: `1000000000:${turn.username.split(':')[1]}` }];
      expired[0].credential = (await import('node:crypto')).createHmac('sha1', turnSecret).update(expired[0].username).digest('base64');
      const rExp = await evaluate(p, (o) => window.e2e.gather(o), { iceServers: expired, policy: 'relay', ms: 15000 }, 'gather with an expired username');
      assert(!rExp.candidates.includes('relay'), `expired username yields no relay candidate (got ${JSON.stringify(rExp)})`);
      return `bad credential errors: ${JSON.stringify(rBad.errors.map((e) => e.code))}`;
    });

    await scenario('socketio: datachannel over a direct host pair on 127.0.0.1', async () => {
      await assertServed(`http://${addrs.socketio || addrs.http}/socket.io/?EIO=4&transport=polling`);
      // As in Vibe, rooms exist only after POST /api/rooms on the Socket.io listener.
      const url = addrs.socketio ? `http://${addrs.socketio}` : http;
      const created = await withTimeout(fetch(`${url}/api/rooms`, { method: 'POST' }), 5000, 'POST /api/rooms');
      const { roomId } = await created.json();
      assert(roomId, `POST /api/rooms returned a roomId (status ${created.status})`);
      const [ra, rb] = await pair(origin, 'socketio', { url, path: '/socket.io/', room: roomId });
      assertDirect(ra, rb);
      return fmt(ra);
    });

    await scenario('rendezvous: datachannel over a direct host pair on 127.0.0.1', async () => {
      await assertServed(`${http}/ws?room=probe`);
      const [ra, rb] = await pair(origin, 'rendezvous', { url: `${wsHttp}/ws` });
      assertDirect(ra, rb);
      return fmt(ra);
    });

    await scenario('y-webrtc: real yjs docs sync over WebRTC and concurrent edits converge', async () => {
      await assertServed(`${http}/y-webrtc`);
      const a = await newPage('yjs-A', origin);
      const b = await newPage('yjs-B', origin);
      const room = `yroom-${randomBytes(4).toString('hex')}`;
      const url = `${wsHttp}/y-webrtc`;
      await evaluate(a, (o) => window.e2e.yjoin(o), { url, room, name: 'a' }, 'y-webrtc provider');
      await evaluate(b, (o) => window.e2e.yjoin(o), { url, room, name: 'b' }, 'y-webrtc provider');
      const ca = await evaluate(a, (o) => window.e2e.yconnected(o), { name: 'a', ms: 25000 }, 'WebRTC peer via y-webrtc');
      const cb = await evaluate(b, (o) => window.e2e.yconnected(o), { name: 'b', ms: 25000 }, 'WebRTC peer via y-webrtc');
      assertDirect(ca, cb);
      assert(ca.bcConns === 0 && cb.bcConns === 0, 'no BroadcastChannel shortcut between the pages');
      await evaluate(a, (o) => window.e2e.yinsert(o), { name: 'a', index: 0, text: 'hello from A' }, 'type text');
      await evaluate(b, (o) => window.e2e.ywait(o), { name: 'b', pred: '(s) => s === "hello from A"', ms: 10000 }, 'text typed in A appears');
      // Concurrent edits: both pages insert at index 0 at the same time (neither waits for the other).
      await Promise.all([
        evaluate(a, (o) => window.e2e.yinsert(o), { name: 'a', index: 0, text: '[a1]' }, 'concurrent edit'),
        evaluate(b, (o) => window.e2e.yinsert(o), { name: 'b', index: 0, text: '[b1]' }, 'concurrent edit'),
      ]);
      const pred = '(s) => s.includes("[a1]") && s.includes("[b1]") && s.includes("hello from A")';
      const ta = await evaluate(a, (o) => window.e2e.ywait(o), { name: 'a', pred, ms: 10000 }, 'both edits arrive');
      const tb = await evaluate(b, (o) => window.e2e.ywait(o), { name: 'b', pred, ms: 10000 }, 'both edits arrive');
      assert(ta === tb, `documents converge ("${ta}" vs "${tb}")`);
      await evaluate(a, (o) => window.e2e.yclose(o), { name: 'a' }, 'close');
      await evaluate(b, (o) => window.e2e.yclose(o), { name: 'b' }, 'close');
      return `"${ta}" ${fmt(ca)}`;
    });

    await scenario('cluster: two pages on two nodes (Redis) open a data channel', async () => {
      // Debian's redis-server and two more Switchboard nodes sharing it, in this namespace.
      const redisBin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find(existsSync);
      assert(redisBin, 'redis-server is installed (scripts/test-all.sh installs it)');
      const redisPort = await freePort();
      const redis = start('redis', redisBin, ['--port', String(redisPort), '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--protected-mode', 'no']);
      const nodes = [];
      try {
        await waitForLine(redis, /Ready to accept connections/, 15000);
        for (const id of ['node-a', 'node-b']) {
          const n = start(id, SERVER_BIN, [], {
            HOST: '127.0.0.1', PORT: '0', SIGNALING_PORT: '0', SOCKETIO_PORT: '0', LOG_LEVEL: 'info',
            REDIS_URL: `redis://127.0.0.1:${redisPort}`, NODE_ID: id,
          });
          const l = await waitForLine(n, /listening (http=\S+.*)$/, 20000);
          n.addrs = Object.fromEntries(l[1].trim().split(/\s+/).map((kv) => kv.split('=')));
          await waitForLine(n, /cluster: connected to Redis/, 10000);
          nodes.push(n);
        }
        const [a, b] = nodes;
        const [ra, rb] = await pair(origin, 'octate', { url: `ws://${a.addrs.signaling}/` },
          (me) => (me === 'bob' ? { url: `ws://${b.addrs.signaling}/` } : {}));
        assertDirect(ra, rb);
        // Each node held one of them.
        const info = async (n) => (await (await fetch(`http://${n.addrs.http}/api/info`)).json()).node;
        assert(await info(a) === 'node-a' && await info(b) === 'node-b', 'two distinct nodes');
        return `${fmt(ra)} (alice on node-a, bob on node-b)`;
      } finally {
        for (const n of nodes.reverse()) await stop(n);
        await stop(redis);
      }
    });
  } finally {
    if (browser) await withTimeout(browser.close(), 10000, 'close chromium').catch((e) => say(e.message));
    await stopAll();
    rmSync(work, { recursive: true, force: true });
  }
}

let fatal = null;
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, async () => { say(`got ${sig}`); await stopAll(); process.exit(130); });
for (const ev of ['uncaughtException', 'unhandledRejection']) {
  process.on(ev, async (e) => { say(`FAIL ${ev}: ${e && e.stack || e}`); await stopAll(); process.exit(1); });
}
// Last resort, synchronous: nothing this suite started outlives it.
process.on('exit', killAllSync);
const hard = setTimeout(async () => { say('suite deadline (10 min) passed'); await stopAll(); process.exit(124); }, 10 * 60 * 1000);
try {
  await main();
} catch (e) {
  fatal = e;
  say(`FAIL setup: ${e.message}`);
  for (const c of children) for (const l of c.out.slice(-40)) console.log(`  ${c.name}: ${l}`);
  await stopAll();
}
clearTimeout(hard);
const n = (s) => results.filter((r) => r.status === s).length;
console.log('');
for (const r of results) console.log(`${r.status.padEnd(7)} ${r.name}${r.why ? ` — ${r.why}` : ''}`);
const failed = n('failed') + (fatal ? 1 : 0);
console.log(`e2e suite took ${elapsed()}`);
const retried = results.filter((r) => r.status === 'passed' && r.why).length;
console.log(`e2e: ${n('passed')} passed${retried ? ` (${retried} on retry)` : ''}, ${failed} failed`);
process.exit(failed ? 1 : 0);
