// Browser tests of the SDK (clients/js), the Yjs provider (clients/yjs) and the demo editor that
// the server serves at /demo/: real headless Chromium pages, the real server binary, real coturn,
// real Yjs. Run through run.sh (after suite.mjs), inside a network namespace that has only `lo`.
//
// Yjs is loaded by the demo through its import map: the server's default DEMO_YJS_URL,
// /demo/yjs.js, the pinned build embedded in the binary. Every browser context records each
// request and WebSocket its pages open that is not for the server's own host and port (the last
// step fails on any), and aborts any that is not for 127.0.0.1, so nothing leaves loopback.
//
// Environment: SWITCHBOARD_BIN, CHROMIUM, TURNSERVER, E2E_ONLY (as suite.mjs), E2E_SCREENSHOT
// (where to save the three-peer screenshot; default e2e/out/demo.png; docs/demo.png is made with
// E2E_SCREENSHOT=docs/demo.png).
import { mkdtempSync, mkdirSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import {
  say, elapsed, withTimeout, checkLoopbackOnly, children, start, stop, stopAll, killAllSync,
  waitForLine, startCoturn, launchChromium,
} from './procs.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const SERVER_BIN = process.env.SWITCHBOARD_BIN || join(repo, 'target/debug/switchboard');
const ONLY = (process.env.E2E_ONLY || '').split(',').filter(Boolean);
const SCREENSHOT = resolve(repo, process.env.E2E_SCREENSHOT || 'e2e/out/demo.png');
const STEP_MS = 60 * 1000;
/** The server's PEER_HEARTBEAT_TIMEOUT in these tests (its default is 60 s). */
const HEARTBEAT_TIMEOUT_MS = 3000;

// --- steps ---------------------------------------------------------------------------------------
const results = [];
const failedSteps = new Set();
const pages = [];
let browser;

function assert(cond, what) { if (!cond) throw new Error(`assertion failed: ${what}`); }

/** One named check. A step that needs a failed one fails too (it cannot run), with the reason. */
async function step(name, fn, { needs = [] } = {}) {
  if (ONLY.length && !ONLY.some((o) => name.includes(o))) return;
  const missing = needs.filter((n) => failedSteps.has(n) || !results.some((r) => r.name === n));
  if (missing.length) {
    results.push({ name, status: 'failed', why: `cannot run: needs ${missing.join(', ')}` });
    failedSteps.add(name);
    say(`FAIL ${name}: cannot run: needs ${missing.join(', ')}`);
    return;
  }
  const t = Date.now();
  say(`RUN  ${name}`);
  try {
    const detail = await withTimeout(fn(), STEP_MS, name);
    results.push({ name, status: 'passed' });
    say(`PASS ${name} (${Date.now() - t} ms)${detail ? ` ${detail}` : ''}`);
  } catch (e) {
    results.push({ name, status: 'failed', why: e.message });
    failedSteps.add(name);
    say(`FAIL ${name}: ${e.message}`);
    say('--- browser console (last lines per page) ---');
    for (const p of pages) for (const l of p.console.slice(-40)) console.log(`  ${l}`);
    say('--- last switchboard/coturn output ---');
    for (const c of children) for (const l of c.out.slice(-25)) console.log(`  ${c.name}: ${l}`);
  }
}

// --- pages ---------------------------------------------------------------------------------------
/** Requests aborted because they were not for 127.0.0.1. */
const external = [];
/** Requests and WebSockets for anything but the server's own host and port. */
const offServer = [];

/** A fresh browser context and page: off-box requests aborted, off-server ones recorded. */
async function newPage(label, origin, { beforeLoad } = {}) {
  const context = await browser.newContext({ viewport: { width: 1180, height: 640 } });
  // Capture permission: Chromium then gathers host candidates on every interface (here: lo).
  await context.grantPermissions(['microphone'], { origin });
  await context.route((url) => url.hostname !== '127.0.0.1', (route) => {
    external.push(route.request().url());
    return route.abort();
  });
  const server = new URL(origin).host;
  const offTheServer = (url) => {
    const u = new URL(url);
    return !['data:', 'blob:'].includes(u.protocol) && u.host !== server;
  };
  context.on('request', (r) => { if (offTheServer(r.url())) offServer.push(`${label}: ${r.url()}`); });
  if (beforeLoad) await beforeLoad(context);
  const page = await context.newPage();
  page.on('websocket', (ws) => { if (offTheServer(ws.url())) offServer.push(`${label}: ${ws.url()}`); });
  const rec = { label, page, context, console: [] };
  page.on('console', (m) => rec.console.push(`${label} ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => rec.console.push(`${label} pageerror: ${e.message}`));
  pages.push(rec);
  return rec;
}

/** Fake microphone once: Chromium then offers host candidates from lo (see harness.js). */
async function unlockHostCandidates(rec) {
  await withTimeout(rec.page.evaluate(async () => {
    const s = await navigator.mediaDevices.getUserMedia({ audio: true });
    s.getTracks().forEach((t) => t.stop());
  }), 10000, `${rec.label}: getUserMedia`);
}

/** Opens the demo and joins `room` through its form, as a person would. */
async function openDemo(label, origin, { room, name, relay = false, beforeLoad } = {}) {
  const rec = await newPage(label, origin, { beforeLoad });
  await withTimeout(rec.page.goto(`${origin}/demo/#debug=1`), 15000, `${label}: load /demo/`);
  await unlockHostCandidates(rec);
  await rec.page.fill('#room', room);
  await rec.page.fill('#name', name || label);
  if (relay) await rec.page.check('#relay');
  await rec.page.click('#join');
  await waitFor(rec, () => window.demo.room && window.demo.room.state === 'connected', null, 15000, 'joined (signaling connected)');
  rec.userId = await rec.page.evaluate(() => window.demo.room.userId);
  return rec;
}

function waitFor(rec, fn, arg, ms, what) {
  return rec.page.waitForFunction(fn, arg, { timeout: ms, polling: 50 }).catch((e) => {
    throw new Error(`${rec.label}: ${what}: ${e.message.split('\n')[0]}`);
  });
}

/** The "who is here" list as the page shows it. */
function shown(rec) {
  return rec.page.evaluate(() => [...document.querySelectorAll('#peers li')].map((li) => ({
    id: li.dataset.peer, self: li.dataset.self === 'true', open: li.dataset.open === 'true', route: li.dataset.route,
    detail: li.querySelector('.detail').textContent,
  })));
}

/** Every page lists exactly the others, each with an open channel over `route` (direct|relay). */
async function waitMesh(recs, route, ms = 25000) {
  for (const rec of recs) {
    const others = recs.filter((r) => r !== rec).map((r) => r.userId).sort();
    await waitFor(rec, ({ others, route }) => {
      const lis = [...document.querySelectorAll('#peers li')].filter((li) => li.dataset.self !== 'true');
      const ids = lis.map((li) => li.dataset.peer).sort();
      return JSON.stringify(ids) === JSON.stringify(others) && lis.every((li) => li.dataset.open === 'true' && li.dataset.route === route);
    }, { others, route }, ms, `shows ${others.join(', ')} connected ${route}`).catch(async (e) => {
      throw new Error(`${e.message}; it shows ${JSON.stringify(await shown(rec).catch(() => '?'))}`);
    });
  }
}

const text = (rec) => rec.page.evaluate(() => window.demo.ytext.toString());
const textarea = (rec) => rec.page.evaluate(() => document.getElementById('text').value);

/** Waits until every page's text satisfies `pred` and all are equal; returns the text. */
async function waitConverged(recs, pred, ms, what) {
  const deadline = Date.now() + ms;
  let last = [];
  while (Date.now() < deadline) {
    last = await Promise.all(recs.map(text));
    if (last.every((t) => t === last[0] && pred(t))) {
      const shownText = await Promise.all(recs.map(textarea));
      assert(shownText.every((t) => t === last[0]), `the textareas show the document (${JSON.stringify(shownText)})`);
      return last[0];
    }
    await recs[0].page.waitForTimeout(100);
  }
  throw new Error(`timeout after ${ms} ms: ${what}; texts: ${JSON.stringify(last)}`);
}

/** Types at the end of the document, key by key. */
async function typeAtEnd(rec, s, delay = 15) {
  await rec.page.click('#text');
  await rec.page.keyboard.press('Control+End');
  await rec.page.keyboard.type(s, { delay });
}

async function closePage(rec) {
  const i = pages.indexOf(rec);
  if (i >= 0) pages.splice(i, 1);
  await rec.context.close().catch(() => {});
}

// --- setup ---------------------------------------------------------------------------------------
async function startServer(name, env) {
  const sb = start(name, SERVER_BIN, [], env);
  const line = await waitForLine(sb, /listening (http=\S+.*)$/, 20000);
  const addrs = Object.fromEntries(line[1].trim().split(/\s+/).map((kv) => kv.split('=')));
  say(`${name} (pid ${sb.child.pid}): ${line[0]}`);
  return { sb, addrs };
}

async function main() {
  checkLoopbackOnly();
  const work = mkdtempSync(join(tmpdir(), 'switchboard-demo-e2e-'));
  try {
    let { coturn, turnSecret, turnPort } = await startCoturn(work);
    const env = {
      HOST: '127.0.0.1', PORT: '0', SIGNALING_PORT: '0', SOCKETIO_PORT: '0', LOG_LEVEL: process.env.LOG_LEVEL || 'info',
      TURN_SECRET: turnSecret, TURN_URLS: `turn:127.0.0.1:${turnPort}?transport=udp,turn:127.0.0.1:${turnPort}?transport=tcp`,
      STUN_URLS: `stun:127.0.0.1:${turnPort}`, TURN_TTL: '600s',
      // Short timeouts so a vanished peer is noticed within seconds.
      PEER_HEARTBEAT_TIMEOUT: `${HEARTBEAT_TIMEOUT_MS}ms`, PING_INTERVAL: '1s', HEARTBEAT: '1s',
    };
    let { sb, addrs } = await startServer('switchboard', env);
    const origin = `http://${addrs.http}`;
    // The binary embeds the SDK and the demo at compile time: refuse to test a stale one.
    for (const [path, file] of [['/sdk/switchboard.js', 'clients/js/dist/switchboard.js'], ['/demo/app.js', 'demo/app.js'],
      ['/demo/editor.js', 'demo/editor.js'], ['/demo/switchboard-yjs.js', 'clients/yjs/src/index.js'],
      ['/demo/yjs.js', 'clients/js/dist/yjs.js']]) {
      const served = Buffer.from(await (await withTimeout(fetch(`${origin}${path}`), 5000, `GET ${path}`)).arrayBuffer());
      if (!served.equals(readFileSync(join(repo, file)))) {
        throw new Error(`${SERVER_BIN} serves a ${path} that differs from ${file}: rebuild the server (cargo build -p switchboard)`);
      }
    }
    browser = await launchChromium();
    say(`chromium ${browser.version()}; demo at ${origin}/demo/`);

    const room = `demo-${randomBytes(3).toString('hex')}`;
    let A, B, C, D;
    let turnPages = [];
    let restartServer = null;

    await step('demo: three pages join and connect directly', async () => {
      A = await openDemo('A', origin, { room, name: 'Ada' });
      B = await openDemo('B', origin, { room, name: 'Barbara' });
      C = await openDemo('C', origin, { room, name: 'Claude' });
      await waitMesh([A, B, C], 'direct');
      const r = (await shown(A)).find((p) => !p.self);
      return `A shows "${r.detail}"`;
    });

    await step('demo: three pages type at once and converge, nothing lost', async () => {
      const words = { A: 'Ada types this line quickly. ', B: 'Barbara writes here too! ', C: 'Claude adds a third one. ' };
      // All three carets at the same place (the empty end), then all type at once.
      for (const p of [A, B, C]) { await p.page.click('#text'); await p.page.keyboard.press('Control+End'); }
      await Promise.all([A, B, C].map((p) => p.page.keyboard.type(words[p.label], { delay: 20 })));
      const t = await waitConverged([A, B, C], (s) => Object.values(words).every((w) => s.includes(w)), 15000, 'all three lines on all pages');
      assert(t.length === Object.values(words).join('').length, `nothing more, nothing less (${JSON.stringify(t)})`);
      // Every page shows the others' cursors.
      for (const p of [A, B, C]) {
        await waitFor(p, () => document.querySelectorAll('#overlay .caret').length === 2, null, 5000, 'two remote cursors drawn');
      }
      mkdirSync(dirname(SCREENSHOT), { recursive: true });
      await A.page.screenshot({ path: SCREENSHOT });
      assert(readFileSync(SCREENSHOT).subarray(1, 4).toString() === 'PNG', 'screenshot is a PNG');
      return `${JSON.stringify(t)}; screenshot ${SCREENSHOT}`;
    }, { needs: ['demo: three pages join and connect directly'] });

    await step('demo: a late fourth page receives the whole document', async () => {
      const before = await text(A);
      D = await openDemo('D', origin, { room, name: 'Dijkstra' });
      await waitMesh([A, B, C, D], 'direct');
      await waitConverged([A, B, C, D], (s) => s === before, 10000, 'D has the whole document');
      const synced = await D.page.evaluate(() => [...window.demo.provider.syncedPeers]);
      assert(synced.length === 3, `D synced with all three (${synced})`);
      return `D synced with ${synced.length} peers`;
    }, { needs: ['demo: three pages type at once and converge, nothing lost'] });

    await step('demo: a hostile peer\'s colour and cursor change nothing in the other pages', async () => {
      // A trap on loopback: a colour such as url(http://…/colour) would make every viewer fetch it.
      let trapped = 0;
      const trap = createServer((req, res) => { trapped += 1; res.end(); });
      await new Promise((r) => trap.listen(0, '127.0.0.1', r));
      const trapUrl = `http://127.0.0.1:${trap.address().port}`;
      try {
        const errorsBefore = A.console.filter((l) => /pageerror/.test(l)).length;
        await D.page.evaluate((trapUrl) => {
          const p = window.demo.provider;
          p.awareness.setLocalStateField('colour', `url(${trapUrl}/colour)`);
          p.awareness.setLocalStateField('name', { toString: null });
          p.setCursor({ anchor: {}, head: {} });
        }, trapUrl);
        // A sees D's new state (its cursor field changed), then B moves: A must still draw B's caret.
        await waitFor(A, (d) => {
          const s = window.demo.provider.awareness.getStates().get(d);
          return s && s.cursor && s.cursor.head && Object.keys(s.cursor.head).length === 0;
        }, D.userId, 10000, 'D\'s hostile awareness arrived');
        await typeAtEnd(B, 'still here ', 10);
        await waitFor(A, (b) => !!document.querySelector(`#overlay .caret[data-peer="${b}"]`), B.userId, 5000, 'B\'s caret drawn');
        const dot = await A.page.evaluate((d) => {
          const li = document.querySelector(`#peers li[data-peer="${d}"]`);
          return li && li.querySelector('.dot').style.background;
        }, D.userId);
        assert(dot && !/url/i.test(dot), `D's dot shows its derived colour, not the url (${dot})`);
        const carets = await A.page.evaluate(() => [...document.querySelectorAll('#overlay .caret')].map((c) => c.style.getPropertyValue('--colour')));
        assert(carets.every((c) => !/url/i.test(c)), `no caret styled with a url (${carets})`);
        const errors = A.console.filter((l) => /pageerror/.test(l)).length;
        assert(errors === errorsBefore, `no exception in A (${A.console.slice(-3)})`);
        await A.page.waitForTimeout(300);
        assert(trapped === 0, `no page fetched the hostile colour's address (${trapped} requests)`);
        return `D's dot: ${dot}`;
      } finally {
        trap.close();
        await D.page.evaluate(() => {
          const p = window.demo.provider;
          p.awareness.setLocalStateField('colour', '#3366cc');
          p.awareness.setLocalStateField('name', 'Dijkstra');
        }).catch(() => {});
      }
    }, { needs: ['demo: a late fourth page receives the whole document'] });

    await step('demo: a page reloads, rejoins and resyncs', async () => {
      const oldId = B.userId;
      await withTimeout(B.page.reload(), 15000, 'reload B');
      // Edits while B is away: B must get them after rejoining.
      await typeAtEnd(A, 'Edited while B reloads. ', 5);
      await unlockHostCandidates(B);
      await waitFor(B, () => window.demo.room && window.demo.room.state === 'connected', null, 15000, 'B rejoined from the URL');
      B.userId = await B.page.evaluate(() => window.demo.room.userId);
      assert(B.userId !== oldId, 'a reloaded page is a new peer');
      await waitMesh([A, B, C, D], 'direct');
      const t = await waitConverged([A, B, C, D], (s) => s.includes('Edited while B reloads. '), 10000, 'B resynced');
      return `B rejoined as ${B.userId}; ${t.length} chars everywhere`;
    }, { needs: ['demo: a late fourth page receives the whole document'] });

    await step('demo: a closed page is gone from the others within the heartbeat timeout', async () => {
      const gone = D.userId;
      const t0 = Date.now();
      await closePage(D);
      await Promise.all([A, B, C].map((p) => waitFor(p, (id) => !document.querySelector(`#peers li[data-peer="${id}"]`), gone,
        HEARTBEAT_TIMEOUT_MS, `${gone} gone from the list`)));
      const ms = Date.now() - t0;
      await waitMesh([A, B, C], 'direct', 5000);
      return `gone everywhere after ${ms} ms (PEER_HEARTBEAT_TIMEOUT ${HEARTBEAT_TIMEOUT_MS} ms)`;
    }, { needs: ['demo: a page reloads, rejoins and resyncs'] });

    await step('demo: signaling server restarted mid-session: channels keep working, signaling reconnects, a new page meets everyone', async () => {
      const port = addrs.http.split(':').pop();
      await stop(sb, 'SIGKILL');
      restartServer = async () => { ({ sb, addrs } = await startServer('switchboard-restarted', { ...env, PORT: port })); };
      await Promise.all([A, B, C].map((p) => waitFor(p, () => document.getElementById('signaling').dataset.state === 'reconnecting', null, 5000, 'shows signaling reconnecting')));
      // Peer to peer while the server is down.
      await typeAtEnd(C, 'Typed while the server was down. ', 5);
      await waitConverged([A, B, C], (s) => s.includes('Typed while the server was down. '), 10000, 'edit reached A and B over the data channels');
      for (const p of [A, B, C]) assert((await shown(p)).filter((x) => !x.self).every((x) => x.open), `${p.label}: channels still open`);
      await restartServer();
      restartServer = null;
      assert(addrs.http.endsWith(`:${port}`), `restarted on the same port (${addrs.http})`);
      const t0 = Date.now();
      await Promise.all([A, B, C].map((p) => waitFor(p, () => document.getElementById('signaling').dataset.state === 'connected', null, 25000, 'signaling reconnected by itself')));
      const reconnectMs = Date.now() - t0;
      const E = await openDemo('E', origin, { room, name: 'Emmy' });
      await waitMesh([A, B, C, E], 'direct');
      const t = await waitConverged([A, B, C, E], (s) => s.includes('Typed while the server was down. '), 10000, 'E has the document');
      await typeAtEnd(E, 'E was here. ', 5);
      await waitConverged([A, B, C, E], (s) => s.includes('E was here. '), 10000, "E's edit reached everyone");
      const rebuilds = await A.page.evaluate(() => [...window.demo.room.peers.values()].map((p) => `${p.id}:${p.stats.rebuilds}`));
      assert(rebuilds.every((r) => r.endsWith(':0')), `the connections that were open through the outage are the same ones (${rebuilds})`);
      await closePage(E);
      return `signaling back after ${reconnectMs} ms; ${t.length} chars; A's rebuilds ${rebuilds.join(' ')}`;
    }, { needs: ['demo: three pages join and connect directly'] });

    // Later steps need a server even if the restart step failed half-way.
    if (restartServer) await restartServer();
    for (const p of [A, B, C]) if (p) await closePage(p);

    await step('demo: glare: both pages offer at once and end with one working connection each way', async () => {
      // Hold every relayed sdp-offer until both pages have sent theirs, so each receives the
      // other's offer while its own is outstanding.
      const glareRoom = `glare-${randomBytes(3).toString('hex')}`;
      const sent = new Set();
      const held = [];
      const release = () => { if (sent.size === 2) for (const f of held.splice(0)) f(); };
      const intercept = (label) => async (context) => {
        await context.routeWebSocket(/\/signaling$/, (ws) => {
          const server = ws.connectToServer();
          ws.onMessage((m) => {
            if (typeof m === 'string' && JSON.parse(m).type === 'sdp-offer') { sent.add(label); setTimeout(release, 0); }
            server.send(m);
          });
          server.onMessage((m) => {
            if (typeof m === 'string' && JSON.parse(m).type === 'sdp-offer' && sent.size < 2) { held.push(() => ws.send(m)); return; }
            ws.send(m);
          });
        });
      };
      const G1 = await openDemo('G1', origin, { room: glareRoom, name: 'Grace', beforeLoad: intercept('G1') });
      const G2 = await openDemo('G2', origin, { room: glareRoom, name: 'Hopper', beforeLoad: intercept('G2') });
      await waitMesh([G1, G2], 'direct');
      assert(sent.size === 2, 'both pages sent an offer');
      const stats = await Promise.all([G1, G2].map((p) => p.page.evaluate(() => {
        const peers = [...window.demo.room.peers.values()];
        return { n: peers.length, polite: peers[0].polite, ...peers[0].stats, pcs: peers.map((x) => x.connection.connectionState) };
      })));
      for (const [s, l] of [[stats[0], 'G1'], [stats[1], 'G2']]) {
        assert(s.n === 1 && s.pcs[0] === 'connected', `${l}: exactly one connection, connected (${JSON.stringify(s)})`);
        assert(s.offersSent >= 1 && s.collisions >= 1, `${l}: offered and saw the collision (${JSON.stringify(s)})`);
      }
      const polite = stats.find((s) => s.polite);
      const impolite = stats.find((s) => !s.polite);
      assert(polite && impolite, 'one polite and one impolite side');
      // The polite side yields (before a first negotiation it answers on a fresh connection:
      // Chromium does not reliably recover from rolling back a first offer); the impolite side
      // ignores the colliding offer and keeps its connection.
      assert(polite.rollbacks >= 1 && impolite.ignoredOffers >= 1, `polite yielded, impolite ignored (${JSON.stringify(stats)})`);
      assert(impolite.rebuilds === 0 && polite.rebuilds <= 1, `no connection replaced but the polite side's yielded offer (${JSON.stringify(stats)})`);
      await typeAtEnd(G1, 'one way. ', 5);
      await typeAtEnd(G2, 'other way. ', 5);
      const t = await waitConverged([G1, G2], (s) => s.includes('one way. ') && s.includes('other way. '), 10000, 'text both ways');
      await closePage(G1);
      await closePage(G2);
      return `${JSON.stringify(t)}; polite ${JSON.stringify({ rollbacks: polite.rollbacks })}, impolite ${JSON.stringify({ ignoredOffers: impolite.ignoredOffers })}`;
    });

    await step('sdk: two creators racing for a new room both join and connect', async () => {
      // Hold room_not_found replies until both pages have had theirs, so both then create.
      const raceRoom = `race-${randomBytes(3).toString('hex')}`;
      const notFound = new Set();
      const frames = { R1: [], R2: [] };
      const held = [];
      const intercept = (label) => async (context) => {
        await context.routeWebSocket(/\/signaling$/, (ws) => {
          const server = ws.connectToServer();
          ws.onMessage((m) => { frames[label].push(JSON.parse(m).type); server.send(m); });
          server.onMessage((m) => {
            const f = typeof m === 'string' ? JSON.parse(m) : {};
            if (f.type === 'error' && f.data && f.data.code === 'room_not_found') {
              notFound.add(label);
              held.push(() => ws.send(m));
              if (notFound.size === 2) for (const h of held.splice(0)) h();
              return;
            }
            ws.send(m);
          });
        });
      };
      const [R1, R2] = await Promise.all(['R1', 'R2'].map(async (l) => {
        const r = await newPage(l, origin, { beforeLoad: intercept(l) });
        await r.page.goto(`${origin}/demo/`);
        await unlockHostCandidates(r);
        return r;
      }));
      const join = (r) => r.page.evaluate(async ({ url, roomId, userId }) => {
        const { Switchboard } = await import('/sdk/switchboard.js');
        const room = await Switchboard.join({ url, roomId, userId });
        window.sdkRoom = room;
        await new Promise((resolve) => { room.on('open', resolve); });
        return room.peers.size;
      }, { url: `ws://${addrs.http}/signaling`, roomId: raceRoom, userId: r.label.toLowerCase() });
      const sizes = await withTimeout(Promise.all([join(R1), join(R2)]), 20000, 'both joined and opened a channel');
      assert(sizes.every((n) => n === 1), `one peer each (${sizes})`);
      const creates = [frames.R1, frames.R2].map((f) => f.filter((t) => t === 'create-room').length);
      const joins = [frames.R1, frames.R2].map((f) => f.filter((t) => t === 'join-room').length);
      assert(creates.every((n) => n === 1), `both tried to create (${JSON.stringify(frames)})`);
      assert(joins.some((n) => n === 2), `the loser of the race joined (${JSON.stringify(frames)})`);
      await closePage(R1);
      await closePage(R2);
      return `frames R1 ${frames.R1.join(',')} / R2 ${frames.R2.join(',')}`;
    });

    await step('sdk: heartbeats at the configured period, and server errors as typed errors', async () => {
      const sentTypes = [];
      const H = await newPage('H', origin, {
        beforeLoad: (context) => context.routeWebSocket(/\/signaling$/, (ws) => {
          const server = ws.connectToServer();
          ws.onMessage((m) => { sentTypes.push(JSON.parse(m).type); server.send(m); });
          server.onMessage((m) => ws.send(m));
        }),
      });
      await H.page.goto(`${origin}/demo/`);
      const r = await H.page.evaluate(async ({ url }) => {
        const { Switchboard, SwitchboardError } = await import('/sdk/switchboard.js');
        const out = {};
        try {
          await Switchboard.join({ url, roomId: 'typed-errors', userId: 'mallory', token: 'not-a-jwt', timeout: 5000 });
          out.bad = 'joined with a bad token';
        } catch (e) {
          out.bad = { isTyped: e instanceof SwitchboardError, code: e.code, fatal: e.fatal, message: e.message };
        }
        const room = await Switchboard.join({ url, roomId: 'heartbeat-room', userId: 'hb', heartbeatInterval: 300 });
        const errors = [];
        room.on('error', (e) => errors.push({ code: e.code, typed: e instanceof SwitchboardError }));
        await new Promise((res) => setTimeout(res, 1600)); // count heartbeats over a fixed window
        // A refused signal (no such peer) comes back as a typed error event.
        room.signal('presence', { hello: 1 }, 'nobody');
        await new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error('no error event')), 3000);
          room.on('error', () => { clearTimeout(t); res(); });
        });
        await room.leave();
        out.errors = errors;
        out.state = room.state;
        return out;
      }, { url: `ws://${addrs.http}/signaling` });
      assert(r.bad.isTyped && r.bad.code === 'invalid_token' && r.bad.fatal, `bad token rejects with a typed invalid_token (${JSON.stringify(r.bad)})`);
      const hb = sentTypes.filter((t) => t === 'heartbeat').length;
      assert(hb >= 4, `at least 4 heartbeats in 1.6 s at 300 ms (sent ${hb}: ${sentTypes.join(',')})`);
      assert(r.errors.some((e) => e.code === 'peer_not_found' && e.typed), `peer_not_found as a typed error event (${JSON.stringify(r.errors)})`);
      assert(sentTypes.includes('leave-room') && r.state === 'closed', 'leave() sends leave-room and closes');
      await closePage(H);
      return `${hb} heartbeats; errors ${JSON.stringify(r.errors)}`;
    });

    await step('demo: TURN only: the demo connects relayed and says so', async () => {
      const turnRoom = `turn-${randomBytes(3).toString('hex')}`;
      const T1 = await openDemo('T1', origin, { room: turnRoom, name: 'Turing', relay: true });
      const T2 = await openDemo('T2', origin, { room: turnRoom, name: 'Liskov', relay: true });
      await waitMesh([T1, T2], 'relay');
      const detail = (await shown(T1)).find((p) => !p.self).detail;
      assert(/relayed via TURN \(relay → relay/.test(detail), `the page says it is relayed (${detail})`);
      assert(coturn.out.some((l) => /ALLOCATE processed, success/.test(l)), 'coturn logged successful ALLOCATEs');
      await typeAtEnd(T1, 'through the relay', 5);
      await waitConverged([T1, T2], (s) => s === 'through the relay', 10000, 'text over the relayed channel');
      turnPages = [T1, T2];
      return `T1 shows "${detail}"`;
    });

    await step('sdk: ICE restart: TURN restarted under a relayed connection, the same channel recovers', async () => {
      const [T1, T2] = turnPages;
      await stop(coturn, 'SIGKILL');
      await Promise.all([T1, T2].map((p) => waitFor(p, () => [...window.demo.room.peers.values()].some((x) => ['disconnected', 'failed'].includes(x.connectionState)),
        null, 25000, 'ICE noticed the relay is gone')));
      ({ coturn } = await startCoturn(work, { port: turnPort, secret: turnSecret, name: 'coturn-restarted' }));
      // One side (the impolite one) restarts ICE; the other answers the restart offer.
      await Promise.all([T1, T2].map((p) => waitFor(p, () => [...window.demo.room.peers.values()].every((x) => x.connectionState === 'connected' && x.open),
        null, 30000, 'connected again')));
      const stats = await Promise.all([T1, T2].map((p) => p.page.evaluate(() => [...window.demo.room.peers.values()].map((x) => ({ polite: x.polite, iceRestarts: x.stats.iceRestarts, rebuilds: x.stats.rebuilds, offersReceived: x.stats.offersReceived }))[0])));
      assert(stats.some((x) => x.iceRestarts >= 1) && stats.every((x) => x.rebuilds === 0), `recovered by an ICE restart on the same connection (${JSON.stringify(stats)})`);
      await typeAtEnd(T2, ' and back', 5);
      await waitConverged([T1, T2], (s) => s === 'through the relay and back', 10000, 'text after the restart');
      return JSON.stringify(stats);
    }, { needs: ['demo: TURN only: the demo connects relayed and says so'] });

    await step('loopback only: no page requested anything off this machine', async () => {
      assert(external.length === 0, `requests aborted: ${external.join(', ')}`);
    });

    await step('offline demo: no page requested anything but the server (Yjs included)', async () => {
      assert(offServer.length === 0, `requests off the server: ${offServer.join(', ')}`);
    });
  } finally {
    for (const p of pages.splice(0)) await p.context.close().catch(() => {});
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
process.on('exit', killAllSync);
const hard = setTimeout(async () => { say('demo suite deadline (8 min) passed'); await stopAll(); process.exit(124); }, 8 * 60 * 1000);
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
console.log(`demo e2e took ${elapsed()}`);
console.log(`e2e: ${n('passed')} passed, ${failed} failed, ${n('skipped')} skipped`);
process.exit(failed ? 1 : 0);
