// Browser side of the Switchboard e2e suite. Every wait is bounded; every failure is thrown
// with the step that failed. The Node runner (../suite.mjs) calls these through page.evaluate.
'use strict';

(() => {
  const log = (...a) => console.log('[e2e]', ...a);

  function withTimeout(promise, ms, step) {
    let t;
    return Promise.race([
      promise,
      new Promise((_, reject) => {
        t = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${step}`)), ms);
      }),
    ]).finally(() => clearTimeout(t));
  }

  /** A queue of events with a bounded `next(pred, ms, step)`. */
  class Inbox {
    constructor() { this.items = []; this.waiters = []; }
    push(item) {
      for (let i = 0; i < this.waiters.length; i++) {
        const w = this.waiters[i];
        if (w.pred(item)) { this.waiters.splice(i, 1); w.resolve(item); return; }
      }
      this.items.push(item);
    }
    next(pred, ms, step) {
      const i = this.items.findIndex(pred);
      if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0]);
      return withTimeout(new Promise((resolve) => this.waiters.push({ pred, resolve })), ms, step);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Signaling adapters. Each returns { ice, peers: Inbox<{peer}>, signals: Inbox<{from, kind,
  // payload}>, send(to, kind, payload), close() } once joined. kind: offer | answer | candidate.

  function openWs(url) {
    const ws = new WebSocket(url);
    return withTimeout(new Promise((resolve, reject) => {
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error(`WebSocket error connecting ${url}`));
    }), 10000, `connect ${url}`);
  }

  async function octate({ url, room, me, create }) {
    const ws = await openWs(url);
    const frames = new Inbox();
    const peers = new Inbox();
    const signals = new Inbox();
    const kinds = { 'sdp-offer': ['offer', 'offer'], 'sdp-answer': ['answer', 'answer'], 'ice-candidate': ['candidate', 'candidate'] };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === 'peer-joined') peers.push({ peer: m.data && m.data.userId || m.userId });
      else if (kinds[m.type]) {
        const [kind, field] = kinds[m.type];
        signals.push({ from: m.userId, kind, payload: m.data[field] });
      } else frames.push(m);
    };
    ws.send(JSON.stringify({ type: 'auth', userId: me, roomId: room }));
    const auth = await frames.next((m) => m.type === 'auth' || m.type === 'error', 10000, 'octate auth reply');
    if (auth.type !== 'auth') throw new Error(`auth refused: ${JSON.stringify(auth)}`);
    ws.send(JSON.stringify({ type: create ? 'create-room' : 'join-room', roomId: room, userId: me, data: {} }));
    const want = create ? 'room-created' : 'room-joined';
    const joined = await frames.next((m) => m.type === want || m.type === 'error', 10000, `octate ${want}`);
    if (joined.type !== want) throw new Error(`${want} refused: ${JSON.stringify(joined)}`);
    const types = { offer: ['sdp-offer', 'offer'], answer: ['sdp-answer', 'answer'], candidate: ['ice-candidate', 'candidate'] };
    return {
      ice: auth.data.iceServers,
      peers, signals,
      send(to, kind, payload) {
        const [type, field] = types[kind];
        ws.send(JSON.stringify({ type, roomId: room, userId: me, data: { peer: to, [field]: payload } }));
      },
      close() { ws.close(); },
    };
  }

  async function socketio({ url, path, room, me }) {
    if (!window.io) throw new Error('socket.io client not loaded');
    const socket = window.io(url, { path: path || '/socket.io/', transports: ['websocket'], reconnection: false, timeout: 10000 });
    const peers = new Inbox();
    const signals = new Inbox();
    const frames = new Inbox();
    await withTimeout(new Promise((resolve, reject) => {
      socket.on('connect', resolve);
      socket.on('connect_error', (e) => reject(new Error(`socket.io connect_error: ${e.message}`)));
    }), 10000, 'socket.io connect');
    socket.on('user-joined', (m) => peers.push({ peer: m.userId }));
    socket.on('room-participants', (m) => frames.push({ type: 'room-participants', m }));
    socket.on('error', (m) => frames.push({ type: 'error', m }));
    for (const kind of ['offer', 'answer']) {
      socket.on(kind, (m) => { if (!m.targetUserId || m.targetUserId === me) signals.push({ from: m.userId, kind, payload: m[kind] }); });
    }
    socket.on('ice-candidate', (m) => { if (!m.targetUserId || m.targetUserId === me) signals.push({ from: m.userId, kind: 'candidate', payload: m.candidate }); });
    socket.emit('join-room', room, me);
    const r = await frames.next(() => true, 10000, 'socket.io room-participants');
    if (r.type !== 'room-participants') throw new Error(`join-room refused: ${JSON.stringify(r.m)}`);
    const events = { offer: 'offer', answer: 'answer', candidate: 'ice-candidate' };
    return {
      ice: null, peers, signals,
      send(to, kind, payload) {
        socket.emit(events[kind], { roomId: room, userId: me, targetUserId: to, [kind]: payload });
      },
      close() { socket.close(); },
    };
  }

  async function rendezvous({ url, room, me }) {
    const ws = await openWs(`${url}?room=${encodeURIComponent(room)}`);
    const frames = new Inbox();
    const peers = new Inbox();
    const signals = new Inbox();
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === 'peer-joined') peers.push({ peer: m.peerId });
      else if (m.type === 'signal') signals.push({ from: m.from, kind: m.data.kind, payload: m.data.payload });
      else frames.push(m);
    };
    ws.send(JSON.stringify({ type: 'join', peerId: me }));
    const ready = await frames.next((m) => m.type === 'ready' || m.type === 'error', 10000, 'rendezvous ready');
    if (ready.type !== 'ready') throw new Error(`join refused: ${JSON.stringify(ready)}`);
    const self = ready.selfId || me;
    return {
      ice: null, peers, signals, self,
      send(to, kind, payload) {
        ws.send(JSON.stringify({ type: 'signal', to, data: { kind, payload } }));
      },
      close() { ws.send(JSON.stringify({ type: 'leave' })); ws.close(); },
    };
  }

  const dialects = { octate, socketio, rendezvous };

  // ---------------------------------------------------------------------------------------------
  // WebRTC.

  /**
   * Chromium offers host candidates from every interface (loopback included, with
   * --allow-loopback-in-peer-connection) only to pages that were granted media capture; without
   * it, only the default route's address, which a namespace with only lo has none of. The fake
   * device flags grant it without hardware.
   */
  let unlocked = false;
  async function unlockHostCandidates() {
    if (unlocked) return;
    const stream = await withTimeout(navigator.mediaDevices.getUserMedia({ audio: true }), 10000, 'getUserMedia (fake device)');
    stream.getTracks().forEach((t) => t.stop());
    unlocked = true;
  }

  /** The selected candidate pair, from getStats. */
  async function selectedPair(pc) {
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    if (!pair) return null;
    const pick = (c) => c && { type: c.candidateType, address: c.address || c.ip, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol };
    return { state: pair.state, local: pick(stats.get(pair.localCandidateId)), remote: pick(stats.get(pair.remoteCandidateId)) };
  }

  /**
   * Joins through `dialect`, connects to the other page over an RTCDataChannel, sends one
   * message each way and reports the selected pair. The initiator waits for the other peer
   * to join and makes the offer.
   */
  async function connect(opts) {
    const t0 = performance.now();
    const steps = [];
    const step = (s) => { steps.push(`${Math.round(performance.now() - t0)}ms ${s}`); log(opts.me, s); };
    const sig = await dialects[opts.dialect](opts);
    step('joined');
    // The suite waits on this before it starts the other page (the joiner needs the room).
    window.e2eJoined = true;
    let iceServers = opts.iceServers || [];
    if (opts.iceServersUrl) {
      const r = await withTimeout(fetch(opts.iceServersUrl), 10000, 'GET /api/ice-servers');
      const body = await r.json();
      iceServers = body.iceServers;
      step(`ice servers: ${JSON.stringify(iceServers.map((s) => s.urls))}`);
    }
    await unlockHostCandidates();
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: opts.policy || 'all' });
    const candidateErrors = [];
    pc.onicecandidateerror = (e) => candidateErrors.push(`${e.errorCode} ${e.errorText} ${e.url}`);
    let peer = opts.peer || null;
    pc.onicecandidate = (e) => {
      step(e.candidate ? `local candidate ${e.candidate.candidate}` : 'gathering done');
      if (e.candidate && peer) sig.send(peer, 'candidate', e.candidate.toJSON());
    };
    pc.onconnectionstatechange = () => step(`connection ${pc.connectionState}`);
    const pending = [];
    let remoteSet = false;
    const gotChannel = new Inbox();
    let dc;
    if (opts.initiator) {
      const p = await sig.peers.next(() => true, 15000, 'peer joined');
      peer = peer || p.peer;
      step(`peer ${peer} joined`);
      dc = pc.createDataChannel('e2e');
      await pc.setLocalDescription(await pc.createOffer());
      sig.send(peer, 'offer', pc.localDescription.toJSON());
      step('offer sent');
    } else {
      pc.ondatachannel = (e) => gotChannel.push(e.channel);
    }
    // Signal pump: bounded by the overall deadline below.
    let pumping = true;
    const pump = (async () => {
      while (pumping) {
        let s;
        try { s = await sig.signals.next(() => true, 1000, 'signal'); } catch { continue; }
        if (s.kind === 'offer') {
          peer = peer || s.from;
          await pc.setRemoteDescription(s.payload);
          remoteSet = true;
          for (const c of pending.splice(0)) await pc.addIceCandidate(c);
          await pc.setLocalDescription(await pc.createAnswer());
          sig.send(peer, 'answer', pc.localDescription.toJSON());
          step(`offer from ${s.from} answered`);
        } else if (s.kind === 'answer') {
          await pc.setRemoteDescription(s.payload);
          remoteSet = true;
          for (const c of pending.splice(0)) await pc.addIceCandidate(c);
          step(`answer from ${s.from}`);
        } else if (s.kind === 'candidate') {
          step(`remote candidate ${s.payload && s.payload.candidate}`);
          if (remoteSet) await pc.addIceCandidate(s.payload); else pending.push(s.payload);
        }
      }
    })();
    try {
      if (!dc) dc = await gotChannel.next(() => true, 20000, 'datachannel from offerer');
      if (dc.readyState !== 'open') {
        await withTimeout(new Promise((resolve, reject) => {
          dc.onopen = resolve;
          dc.onerror = (e) => reject(new Error(`datachannel error ${e.error && e.error.message}`));
        }), 20000, `datachannel open (ice ${pc.iceConnectionState}, candidate errors: ${candidateErrors.join('; ')})`);
      }
      step('datachannel open');
      const received = new Inbox();
      dc.onmessage = (e) => received.push(e.data);
      dc.send(`hello from ${opts.me}`);
      const got = await received.next(() => true, 10000, 'message from the other peer');
      step(`received "${got}"`);
      // The pair is selected once the channel is open; poll a little for stats to settle.
      let pair = null;
      for (let i = 0; i < 20 && !pair; i++) {
        pair = await selectedPair(pc);
        if (!pair) await new Promise((r) => setTimeout(r, 100));
      }
      // Let the other side receive our message before anyone closes.
      await new Promise((r) => setTimeout(r, 300));
      return { got, pair, steps, candidateErrors, authIce: sig.ice };
    } finally {
      pumping = false;
      await pump.catch(() => {});
      pc.close();
      sig.close();
    }
  }

  /** Gathers candidates with `iceServers` and `policy`; reports types and errors. */
  async function gather({ iceServers, policy, ms }) {
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: policy || 'all' });
    const candidates = [];
    const errors = [];
    pc.onicecandidate = (e) => { if (e.candidate) candidates.push(e.candidate.type || e.candidate.candidate); };
    pc.onicecandidateerror = (e) => errors.push({ code: e.errorCode, text: e.errorText, url: e.url });
    pc.createDataChannel('probe');
    await pc.setLocalDescription(await pc.createOffer());
    try {
      await withTimeout(new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') resolve();
        pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(); };
      }), ms || 15000, 'ICE gathering complete');
    } finally { pc.close(); }
    return { candidates, errors };
  }

  // ---------------------------------------------------------------------------------------------
  // y-webrtc: the real yjs + y-webrtc packages (bundled as window.YW).

  const ydocs = {};

  async function yjoin({ url, room, name }) {
    await unlockHostCandidates();
    const { Y, WebrtcProvider } = window.YW;
    const doc = new Y.Doc();
    const provider = new WebrtcProvider(room, doc, { signaling: [url], peerOpts: { config: { iceServers: [] } } });
    ydocs[name] = { doc, provider, text: doc.getText('t') };
    return true;
  }

  /** Waits until this page has a connected WebRTC peer in y-webrtc; returns its selected pair. */
  async function yconnected({ name, ms }) {
    const { provider } = ydocs[name];
    const deadline = performance.now() + (ms || 20000);
    while (performance.now() < deadline) {
      const room = provider.room;
      const conns = room ? [...room.webrtcConns.values()] : [];
      const up = conns.find((c) => c.connected && c.peer && c.peer._pc);
      if (up) {
        const pair = await selectedPair(up.peer._pc);
        if (pair) return { peers: conns.length, pair, bcConns: room.bcConns.size };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timeout after ${ms || 20000} ms: y-webrtc WebRTC connection`);
  }

  function yinsert({ name, index, text }) { const t = ydocs[name].text; t.insert(Math.min(index, t.length), text); return t.toString(); }
  function ytext({ name }) { return ydocs[name].text.toString(); }
  async function ywait({ name, pred, ms }) {
    const f = new Function('s', `return (${pred})(s)`);
    const deadline = performance.now() + (ms || 10000);
    while (performance.now() < deadline) {
      const s = ydocs[name].text.toString();
      if (f(s)) return s;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timeout: text "${ydocs[name].text.toString()}" never matched ${pred}`);
  }
  function yclose({ name }) { ydocs[name].provider.destroy(); ydocs[name].doc.destroy(); return true; }

  window.e2e = { connect, gather, yjoin, yconnected, yinsert, ytext, ywait, yclose };
})();
