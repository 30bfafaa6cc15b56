// Helpers shared by the e2e suites (suite.mjs, demo.mjs): bounded waits, the loopback-only
// check, child processes stopped by PID, free ports, coturn, and Chromium with the suite's flags.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import dgram from 'node:dgram';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const TURNSERVER = process.env.TURNSERVER || ['/usr/bin/turnserver', '/usr/sbin/turnserver'].find(existsSync) || 'turnserver';

const t0 = Date.now();
export const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
export const say = (...a) => console.log(`[${elapsed()}]`, ...a);

export function withTimeout(promise, ms, step) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${step}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

// --- loopback only -----------------------------------------------------------------------------
export function checkLoopbackOnly() {
  const bad = Object.entries(networkInterfaces())
    .flatMap(([name, addrs]) => (addrs || []).filter((a) => !a.internal).map((a) => `${name} ${a.address}`));
  if (bad.length && process.env.E2E_ALLOW_NETWORK !== '1') {
    throw new Error(`refusing to run: non-loopback addresses present (${bad.join(', ')}); run through e2e/run.sh, which uses a network namespace with only lo`);
  }
}

// --- processes -----------------------------------------------------------------------------------
export const children = [];
export function start(name, cmd, args, env) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const rec = { name, child, out: [], exited: null };
  const keep = (chunk) => {
    for (const line of chunk.toString().split('\n')) if (line) { rec.out.push(line); if (rec.out.length > 400) rec.out.shift(); }
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('exit', (code, sig) => { rec.exited = { code, sig }; });
  child.on('error', (e) => { rec.exited = { error: e.message }; });
  children.push(rec);
  return rec;
}
/** Stops one process this suite started, by its PID: `sig`, then SIGKILL after 5 s. */
export async function stop(rec, sig = 'SIGTERM') {
  if (rec.exited || !rec.child.pid) return;
  const exited = new Promise((r) => rec.child.once('exit', () => r(true)));
  rec.child.kill(sig);
  const done = await withTimeout(exited, 5000, `stop ${rec.name}`).catch(() => false);
  if (!done) {
    rec.child.kill('SIGKILL');
    await withTimeout(exited, 5000, `kill ${rec.name}`).catch(() => {});
  }
  say(`stopped ${rec.name} (pid ${rec.child.pid}, ${sig})`);
}
export async function stopAll() {
  for (const rec of [...children].reverse()) await stop(rec);
}
/** Nothing this suite started outlives it (synchronous, for process 'exit'). */
export function killAllSync() {
  for (const c of children) if (!c.exited && c.child.pid) try { c.child.kill('SIGKILL'); } catch {}
}
export function waitForLine(rec, re, ms) {
  return withTimeout(new Promise((resolve, reject) => {
    const check = () => {
      const hit = rec.out.map((l) => l.match(re)).find(Boolean);
      if (hit) return resolve(hit);
      if (rec.exited) return reject(new Error(`${rec.name} exited ${JSON.stringify(rec.exited)}:\n${rec.out.join('\n')}`));
      setTimeout(check, 50);
    };
    check();
  }), ms, `${rec.name} to print ${re}`);
}
export async function freePort() {
  // A port that is free for both TCP and UDP on 127.0.0.1 (coturn listens on both).
  for (let i = 0; i < 20; i++) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    });
    const udpFree = await new Promise((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port');
}

/** coturn on 127.0.0.1 with a static-auth-secret (TURN REST credentials); `port`/`secret` to restart it. */
export async function startCoturn(work, { port, secret, name = 'coturn' } = {}) {
  const turnSecret = secret || randomBytes(18).toString('base64url');
  const turnPort = port || await freePort();
  const coturn = start(name, TURNSERVER, [
    '-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${turnPort}`,
    '--use-auth-secret', `--static-auth-secret=${turnSecret}`, '--realm=switchboard.e2e',
    '--no-tls', '--no-dtls', '--allow-loopback-peers', '--no-cli', '--log-file=stdout', '--simple-log', '--verbose',
    '--fingerprint', `--pidfile=${join(work, `${name}.pid`)}`, `--userdb=${join(work, `${name}.db`)}`,
    '--min-port=40000', '--max-port=40999', '--no-software-attribute',
  ]);
  await waitForLine(coturn, /listener opened on|Total General servers|IPv4. UDP listener opened/i, 15000)
    .catch((e) => { throw new Error(`coturn start: ${e.message}\n${coturn.out.join('\n')}`); });
  say(`${name} on 127.0.0.1:${turnPort} (pid ${coturn.child.pid})`);
  return { coturn, turnSecret, turnPort };
}

/** Debian's Chromium through playwright-core, loopback only (see README.md for the flags). */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return withTimeout(chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
      '--allow-loopback-in-peer-connection',
      // A fake microphone, granted without a prompt: pages with capture permission get host
      // candidates from every interface (here: lo), see unlockHostCandidates in harness.js.
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      // Host candidates as plain IPs (not mDNS .local names) so the pair can be checked.
      '--disable-features=WebRtcHideLocalIpsWithMdns'],
  }), 30000, 'launch chromium');
}
