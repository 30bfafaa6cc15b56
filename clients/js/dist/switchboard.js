// Switchboard browser SDK. Generated from clients/js/src by `npm run build`; do not edit.
var __defProp = Object.defineProperty;
var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);

// src/switchboard.ts
var SwitchboardError = class extends Error {
  constructor(code, message, options = {}) {
    super(message);
    /** Server error code (`invalid_token`, `room_full`, …) or a client one (`timeout`, …). */
    __publicField(this, "code");
    /** True when the SDK gave up: the room is closed. */
    __publicField(this, "fatal");
    /** The peer the error concerns, when there is one. */
    __publicField(this, "peerId");
    this.name = "SwitchboardError";
    this.code = code;
    this.fatal = options.fatal ?? false;
    this.peerId = options.peerId;
  }
};
var CHANNEL_LABEL = "collaboration";
var CHANNEL_ID = 0;
var FATAL_CODES = /* @__PURE__ */ new Set([
  "missing_token",
  "invalid_token",
  "bad_signature",
  "token_expired",
  "user_mismatch",
  "room_mismatch",
  "missing_fields",
  "room_full",
  "room_closed",
  "closed"
]);
var TOKEN_CODES = /* @__PURE__ */ new Set(["missing_token", "invalid_token", "token_expired"]);
function randomId() {
  const a = new Uint8Array(6);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}
function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
var Peer = class {
  /** @internal */
  constructor(id, name, polite) {
    /** The peer's user id. */
    __publicField(this, "id");
    /** Its display name (its `userName`, or its id). */
    __publicField(this, "name");
    /** This side rolls back its own offer on a collision (decided by comparing ids). */
    __publicField(this, "polite");
    /** Negotiation counters. */
    __publicField(this, "stats", {
      offersSent: 0,
      offersReceived: 0,
      answersSent: 0,
      answersReceived: 0,
      collisions: 0,
      ignoredOffers: 0,
      rollbacks: 0,
      iceRestarts: 0,
      rebuilds: 0,
      staleSignals: 0
    });
    /** @internal */
    __publicField(this, "pc");
    /** @internal */
    __publicField(this, "channel");
    /** @internal this connection's id */
    __publicField(this, "cid", "");
    /** @internal the remote connection's id, once heard from */
    __publicField(this, "remoteCid", null);
    /** @internal */
    __publicField(this, "makingOffer", false);
    /** @internal */
    __publicField(this, "ignoreOffer", false);
    /** @internal */
    __publicField(this, "pendingCandidates", []);
    /** @internal serialises signal handling */
    __publicField(this, "queue", Promise.resolve());
    /** @internal */
    __publicField(this, "wasOpen", false);
    /** @internal ICE restart waiting for signaling */
    __publicField(this, "restartPending", false);
    /** @internal */
    __publicField(this, "timers", /* @__PURE__ */ new Set());
    this.id = id;
    this.name = name;
    this.polite = polite;
  }
  /** The current RTCPeerConnection (replaced when the connection is rebuilt); null until it exists. */
  get connection() {
    return this.pc || null;
  }
  /** Whether the data channel is open. */
  get open() {
    return !!this.channel && this.channel.readyState === "open";
  }
  /** The RTCPeerConnection's state. */
  get connectionState() {
    return this.pc ? this.pc.connectionState : "new";
  }
  /** The selected candidate pair (direct or relayed through TURN), or null before there is one. */
  async route() {
    if (!this.pc || this.pc.connectionState === "closed") return null;
    const stats = await this.pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) stats.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    });
    if (!pair) return null;
    const pick = (c) => ({
      type: c ? c.candidateType : "unknown",
      address: c ? c.address || c.ip : void 0,
      port: c ? c.port : void 0,
      protocol: c ? c.protocol : void 0
    });
    const local = pick(stats.get(pair.localCandidateId));
    const remote = pick(stats.get(pair.remoteCandidateId));
    const rtt = typeof pair.currentRoundTripTime === "number" ? Math.round(pair.currentRoundTripTime * 1e3) : void 0;
    return { local, remote, relayed: local.type === "relay" || remote.type === "relay", rttMs: rtt };
  }
};
var Room = class {
  /** @internal use `Switchboard.join` */
  constructor(opts) {
    __publicField(this, "roomId");
    __publicField(this, "userId");
    /** Every known peer, by id. */
    __publicField(this, "peers", /* @__PURE__ */ new Map());
    __publicField(this, "opts");
    __publicField(this, "handlers", /* @__PURE__ */ new Map());
    __publicField(this, "ws", null);
    __publicField(this, "_state", "connecting");
    __publicField(this, "members", /* @__PURE__ */ new Set());
    __publicField(this, "ice", []);
    __publicField(this, "waiter", null);
    __publicField(this, "heartbeatTimer", null);
    __publicField(this, "heartbeatSentAt", 0);
    __publicField(this, "lastFrameAt", 0);
    __publicField(this, "attempt", 0);
    __publicField(this, "reconnectTimer", null);
    __publicField(this, "closed", false);
    __publicField(this, "log");
    this.opts = opts;
    this.roomId = opts.roomId;
    this.userId = opts.userId;
    const d = opts.debug;
    this.log = typeof d === "function" ? d : d ? (...a) => console.debug("[switchboard]", ...a) : () => {
    };
  }
  /** Signaling state: `connecting`, `connected`, `reconnecting` or `closed`. */
  get state() {
    return this._state;
  }
  /** ICE servers in use (from the server's auth reply, `iceServersUrl`, or the options). */
  get iceServers() {
    return this.ice;
  }
  /** Subscribes to an event; returns a function that unsubscribes. */
  on(name, handler) {
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, set = /* @__PURE__ */ new Set());
    set.add(handler);
    return () => this.off(name, handler);
  }
  /** Unsubscribes a handler. */
  off(name, handler) {
    this.handlers.get(name)?.delete(handler);
  }
  /** Sends `data` to every peer whose data channel is open; returns how many. */
  send(data) {
    let n = 0;
    for (const peer of this.peers.values()) {
      if (peer.open) {
        this.sendOn(peer, data);
        n++;
      }
    }
    return n;
  }
  /**
   * Sends `data` to one peer. Returns false when its data channel is not open (yet);
   * throws a `SwitchboardError` (`message_too_large`) when the message exceeds what the
   * connection accepts.
   */
  sendTo(peerId, data) {
    const peer = this.peers.get(peerId);
    if (!peer || !peer.open) return false;
    this.sendOn(peer, data);
    return true;
  }
  /**
   * Sends an OctateCode `presence` or `cursor-update` message through the server (to one peer,
   * or to everyone), for peers whose data channel is not open. Returns false while signaling is
   * down.
   */
  signal(type, data, to) {
    if (this._state !== "connected") return false;
    this.sendFrame({ type, roomId: this.roomId, userId: this.userId, data: to ? { ...data, peer: to } : data });
    return true;
  }
  /** Leaves the room: tells the server, closes every connection, and stops reconnecting. */
  async leave() {
    if (this.closed) return;
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN && this._state === "connected") {
      this.sendFrame({ type: "leave-room", roomId: this.roomId, userId: this.userId });
      await Promise.race([this.waitFor(["peer-left"], 1e3).catch(() => null), delay(1e3)]);
    }
    this.shutdown(null);
  }
  // ------------------------------------------------------------------------------------------
  // Events
  emit(name, ...args) {
    for (const h of [...this.handlers.get(name) || []]) {
      try {
        h(...args);
      } catch (e) {
        console.error(`[switchboard] a '${name}' handler threw:`, e);
      }
    }
  }
  fail(error) {
    this.log("error", error.code, error.message);
    this.emit("error", error);
  }
  setState(s) {
    if (this._state === s) return;
    this._state = s;
    this.log("state", s);
    this.emit("state", s);
  }
  // ------------------------------------------------------------------------------------------
  // Signaling
  /** @internal The first join: retried on transient failures until the deadline. */
  async start() {
    const deadline = Date.now() + (this.opts.timeout ?? 15e3);
    let last = null;
    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.shutdown(null);
        throw new SwitchboardError("timeout", `could not join room ${this.roomId} within ${this.opts.timeout ?? 15e3} ms${last ? `: ${last.message}` : ""}`, { fatal: true });
      }
      try {
        await this.connectOnce(left);
        return;
      } catch (e) {
        last = e instanceof SwitchboardError ? e : new SwitchboardError("connect_failed", String(e));
        if (last.fatal) {
          this.shutdown(null);
          throw last;
        }
        this.log("join attempt failed, retrying", last.code, last.message);
        await delay(Math.min(this.backoff(attempt), Math.max(0, deadline - Date.now())));
      }
    }
  }
  backoff(attempt) {
    const min = this.opts.reconnect?.minDelay ?? 500;
    const max = this.opts.reconnect?.maxDelay ?? 1e4;
    const base = Math.min(max, min * 2 ** Math.min(attempt, 20));
    return base / 2 + Math.random() * base / 2;
  }
  /** Opens the socket, authenticates and joins. Throws a SwitchboardError. */
  async connectOnce(budget) {
    const deadline = Date.now() + budget;
    const left = () => Math.max(1, deadline - Date.now());
    const ws = await this.openSocket(Math.min(left(), 1e4));
    let tokenRetried = false;
    for (; ; ) {
      const token = await this.fetchToken();
      this.sendFrame({ type: "auth", userId: this.userId, roomId: this.roomId, data: token ? { token } : {} });
      const auth = await this.waitFor(["auth", "error"], left());
      if (auth.type === "error") {
        const err = this.serverError(auth);
        if (TOKEN_CODES.has(err.code) && !tokenRetried && (this.opts.tokenUrl || typeof this.opts.token === "function")) {
          tokenRetried = true;
          continue;
        }
        ws.close(1e3);
        throw err;
      }
      await this.useIceServers(auth.data && auth.data.iceServers);
      break;
    }
    await this.joinOrCreate(left);
    this.attempt = 0;
    this.startHeartbeat();
    this.setState("connected");
  }
  openSocket(ms) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.opts.url);
      } catch (e) {
        reject(new SwitchboardError("connect_failed", `cannot open ${this.opts.url}: ${e}`, { fatal: true }));
        return;
      }
      const timer = setTimeout(() => {
        ws.close();
        reject(new SwitchboardError("timeout", `connecting to ${this.opts.url} took over ${ms} ms`));
      }, ms);
      ws.onopen = () => {
        clearTimeout(timer);
        this.ws = ws;
        this.lastFrameAt = Date.now();
        ws.onmessage = (ev) => this.onFrame(ev.data);
        ws.onclose = (ev) => this.onSocketClosed(ws, ev.code, ev.reason);
        ws.onerror = null;
        resolve(ws);
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new SwitchboardError("connect_failed", `cannot connect to ${this.opts.url}`));
      };
    });
  }
  /** `join-room`, or `create-room` when the room is missing; a lost creation race joins. */
  async joinOrCreate(left) {
    let create = false;
    for (let i = 0; i < 4; i++) {
      const data = { userName: this.opts.userName || this.userId };
      if (create) data.roomName = this.opts.roomName || this.roomId;
      this.sendFrame({ type: create ? "create-room" : "join-room", roomId: this.roomId, userId: this.userId, data });
      const reply = await this.waitFor(["room-joined", "room-created", "error"], left());
      if (reply.type !== "error") {
        const room = reply.data && reply.data.room;
        const list = room && room.peers || [];
        this.members = new Set(list.map((p) => p.userId).filter((id) => id !== this.userId));
        setTimeout(() => this.onMembers(list), 0);
        return;
      }
      const err = this.serverError(reply);
      if (err.code === "room_not_found" && !create) create = true;
      else if (err.code === "room_exists" && create) create = false;
      else {
        this.ws?.close(1e3);
        throw err;
      }
    }
    this.ws?.close(1e3);
    throw new SwitchboardError("room_not_found", `room ${this.roomId}: join and create kept racing`);
  }
  serverError(frame) {
    const code = frame.data && frame.data.code || "unknown";
    const text = frame.data && frame.data.error || "server error";
    return new SwitchboardError(code, text, { fatal: FATAL_CODES.has(code) });
  }
  async fetchToken() {
    const t = this.opts.token;
    if (typeof t === "function") {
      try {
        return await t();
      } catch (e) {
        throw new SwitchboardError("token_fetch_failed", `token function failed: ${e}`);
      }
    }
    if (typeof t === "string") return t;
    if (!this.opts.tokenUrl) return void 0;
    let res;
    try {
      res = await fetch(this.opts.tokenUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...this.opts.tokenHeaders || {} },
        body: JSON.stringify({ userId: this.userId, roomId: this.roomId })
      });
    } catch (e) {
      throw new SwitchboardError("token_fetch_failed", `POST ${this.opts.tokenUrl} failed: ${e}`);
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok || typeof body.token !== "string") {
      const fatal = res.status === 401 || res.status === 403;
      throw new SwitchboardError("token_fetch_failed", `POST ${this.opts.tokenUrl} answered ${res.status}${body.error ? `: ${body.error}` : ""}`, { fatal });
    }
    return body.token;
  }
  async useIceServers(fromAuth) {
    let servers = null;
    if (this.opts.iceServers) servers = this.opts.iceServers;
    else if (this.opts.iceServersUrl) {
      try {
        const res = await fetch(this.opts.iceServersUrl);
        const body = await res.json();
        if (!res.ok || !Array.isArray(body.iceServers)) throw new Error(`answered ${res.status}`);
        servers = body.iceServers;
      } catch (e) {
        this.fail(new SwitchboardError("ice_servers_failed", `GET ${this.opts.iceServersUrl}: ${e}`));
      }
    } else if (Array.isArray(fromAuth)) servers = fromAuth;
    if (!servers) servers = this.ice;
    this.ice = servers;
    for (const peer of this.peers.values()) {
      if (!peer.pc) continue;
      try {
        peer.pc.setConfiguration({ ...peer.pc.getConfiguration(), iceServers: servers });
      } catch (e) {
        this.log("setConfiguration failed", peer.id, e);
      }
    }
  }
  /** Resolves with the next frame of one of `types`; rejects on timeout or a closed socket. */
  waitFor(types, ms) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new SwitchboardError("timeout", `no ${types.join("/")} reply within ${ms} ms`));
      }, ms);
      this.waiter = {
        types: new Set(types),
        resolve: (f) => {
          clearTimeout(timer);
          this.waiter = null;
          if (f.type === "closed") reject(new SwitchboardError("connection_lost", "signaling connection closed during the handshake"));
          else resolve(f);
        }
      };
    });
  }
  sendFrame(frame) {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }
  startHeartbeat() {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const every = this.opts.heartbeatInterval ?? 2e4;
    this.heartbeatSentAt = 0;
    this.heartbeatTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (this.heartbeatSentAt && this.lastFrameAt < this.heartbeatSentAt && Date.now() - this.heartbeatSentAt >= every) {
        this.log("no heartbeat reply; reconnecting");
        ws.close(4e3, "heartbeat timeout");
        this.onSocketClosed(ws, 4e3, "heartbeat timeout");
        return;
      }
      this.heartbeatSentAt = Date.now();
      this.sendFrame({ type: "heartbeat", roomId: this.roomId, userId: this.userId });
    }, every);
  }
  onSocketClosed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    ws.onmessage = null;
    ws.onclose = null;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (this.waiter) this.waiter.resolve({ type: "closed" });
    if (this.closed || this._state === "connecting") return;
    this.log("signaling closed", code, reason);
    this.setState("reconnecting");
    this.scheduleReconnect();
  }
  scheduleReconnect() {
    if (this.closed || this.reconnectTimer) return;
    const wait = this.backoff(this.attempt++);
    this.log(`reconnecting in ${Math.round(wait)} ms`);
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectTimer = null;
      if (this.closed) return;
      try {
        await this.connectOnce(15e3);
        this.afterRejoin();
      } catch (e) {
        const err = e instanceof SwitchboardError ? e : new SwitchboardError("connect_failed", String(e));
        this.ws?.close();
        this.ws = null;
        if (err.fatal) {
          this.fail(new SwitchboardError(err.code, `rejoining room ${this.roomId}: ${err.message}`, { fatal: true }));
          this.shutdown(null);
          return;
        }
        this.log("reconnect failed", err.code, err.message);
        this.scheduleReconnect();
      }
    }, wait);
  }
  /** After a reconnect: connections that did not survive the outage are restarted. */
  afterRejoin() {
    for (const peer of this.peers.values()) {
      if (!peer.pc) {
        if (this.members.has(peer.id)) this.connect(peer);
        continue;
      }
      const s = peer.pc.connectionState;
      if (peer.restartPending || s === "failed" || s === "disconnected") {
        this.restartIce(peer);
      } else if (s !== "connected" && this.members.has(peer.id)) {
        this.rebuild(peer, "negotiation interrupted by a signaling outage");
      }
    }
    const grace = (this.opts.reconnect?.maxDelay ?? 1e4) * 2;
    for (const peer of this.peers.values()) {
      if (this.members.has(peer.id)) continue;
      this.peerTimer(peer, grace, () => {
        if (!this.members.has(peer.id) && !peer.open) this.removePeer(peer.id, "did not rejoin after a signaling outage");
      });
    }
  }
  onFrame(raw) {
    this.lastFrameAt = Date.now();
    let f;
    try {
      f = JSON.parse(String(raw));
    } catch {
      this.log("ignoring a frame that is not JSON", raw);
      return;
    }
    if (!f || typeof f.type !== "string") return;
    if (this.waiter && this.waiter.types.has(f.type)) {
      this.waiter.resolve(f);
      return;
    }
    const from = f.userId || "";
    switch (f.type) {
      case "peer-joined": {
        const id = f.data && f.data.peer && f.data.peer.userId || from;
        if (!id || id === this.userId) return;
        this.members.add(id);
        this.ensurePeer(id, f.data && f.data.peer && f.data.peer.userName, "later");
        return;
      }
      case "peer-left":
        if (!from || from === this.userId) return;
        this.members.delete(from);
        this.removePeer(from, "left the room");
        return;
      case "sdp-offer":
      case "sdp-answer":
      case "ice-candidate":
        if (from && from !== this.userId) this.onSignal(from, f.type, f.data || {});
        return;
      case "presence":
      case "cursor-update": {
        const peer = from && this.peers.get(from);
        if (peer) this.emit(f.type, peer, f.data);
        return;
      }
      case "room-closed":
        this.fail(new SwitchboardError("room_closed", `room ${this.roomId} was closed (${f.data && f.data.reason || "by the server"})`, { fatal: true }));
        this.shutdown(null);
        return;
      case "error": {
        const err = this.serverError(f);
        if (err.code === "peer_not_found") {
          const id = /Peer (\S+) not found/.exec(err.message);
          if (id && this.peers.has(id[1]) && !this.members.has(id[1])) this.removePeer(id[1], "not in the room");
        }
        this.fail(new SwitchboardError(err.code, err.message, { fatal: false }));
        return;
      }
      default:
        return;
    }
  }
  // ------------------------------------------------------------------------------------------
  // Peers and connections
  onMembers(list) {
    if (this.closed) return;
    for (const p of list) {
      if (p.userId === this.userId || !this.members.has(p.userId)) continue;
      this.ensurePeer(p.userId, p.userName, "now");
    }
  }
  /**
   * Creates the peer, or revives a connection that is not healthy. `now`: connect (and offer)
   * at once, as the newcomer does for the members it finds; `later`: a member that just joined
   * is expected to offer, so connect only if it has not within a few seconds; `none`: the caller
   * connects.
   */
  ensurePeer(id, name, initiate) {
    let peer = this.peers.get(id);
    if (peer) {
      if (name) peer.name = name;
      const s = peer.pc ? peer.pc.connectionState : "new";
      if (peer.pc && initiate !== "none" && (s === "failed" || s === "closed")) this.rebuild(peer, `connection ${s}`);
      else if (!peer.pc && initiate === "now") this.connect(peer);
      return peer;
    }
    peer = new Peer(id, name || id, this.userId < id);
    this.peers.set(id, peer);
    this.log("peer", id, peer.polite ? "(polite)" : "(impolite)", initiate);
    if (initiate === "now") this.connect(peer);
    else if (initiate === "later") {
      const p = peer;
      this.peerTimer(peer, 3e3, () => {
        if (!p.pc && this._state === "connected") {
          this.log("no offer from", p.id, "yet: offering");
          this.connect(p);
        }
      });
    }
    this.emit("peer-joined", peer);
    return peer;
  }
  peerTimer(peer, ms, fn) {
    const t = setTimeout(() => {
      peer.timers.delete(t);
      if (!this.closed && this.peers.get(peer.id) === peer) fn();
    }, ms);
    peer.timers.add(t);
  }
  /** A new RTCPeerConnection and data channel for `peer`. */
  connect(peer) {
    const pc = new RTCPeerConnection({ iceServers: this.ice, iceTransportPolicy: this.opts.iceTransportPolicy || "all" });
    const channel = pc.createDataChannel(CHANNEL_LABEL, { negotiated: true, id: CHANNEL_ID, ordered: true });
    channel.binaryType = "arraybuffer";
    peer.pc = pc;
    peer.channel = channel;
    peer.cid = randomId();
    peer.remoteCid = null;
    peer.makingOffer = false;
    peer.ignoreOffer = false;
    peer.pendingCandidates = [];
    peer.wasOpen = false;
    peer.restartPending = false;
    peer.queue = Promise.resolve();
    const current = () => this.peers.get(peer.id) === peer && peer.pc === pc;
    this.peerTimer(peer, this.opts.connectTimeout ?? 15e3, () => {
      if (peer.pc === pc && pc.connectionState !== "connected" && this._state === "connected" && this.members.has(peer.id)) {
        const why = `not connected after ${this.opts.connectTimeout ?? 15e3} ms (${pc.connectionState}, ${pc.signalingState})`;
        this.fail(new SwitchboardError("connect_failed", `connection to ${peer.id} ${why}; trying a new one`, { peerId: peer.id }));
        this.rebuild(peer, why);
      }
    });
    pc.onnegotiationneeded = async () => {
      if (!current()) return;
      if (this._state !== "connected") {
        peer.restartPending = true;
        return;
      }
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        if (!current() || !pc.localDescription || pc.localDescription.type !== "offer") return;
        peer.stats.offersSent++;
        this.log("offering to", peer.id, peer.stats.rebuilds ? `(connection ${peer.stats.rebuilds + 1})` : "");
        this.sendSignal(peer, "sdp-offer", { offer: pc.localDescription.toJSON() });
      } catch (e) {
        this.fail(new SwitchboardError("webrtc", `creating an offer for ${peer.id}: ${e}`, { peerId: peer.id }));
      } finally {
        peer.makingOffer = false;
      }
    };
    pc.onicecandidate = (ev) => {
      if (ev.candidate && current()) this.sendSignal(peer, "ice-candidate", { candidate: ev.candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => {
      if (!current()) return;
      const s = pc.connectionState;
      this.log("connection", peer.id, s);
      this.emit("connection-state", peer, s);
      const wait = (s === "failed" ? 0 : 5e3) + (peer.polite ? 3e3 : 0);
      if (s === "failed" || s === "disconnected") {
        this.peerTimer(peer, wait, () => {
          if (peer.pc === pc && ["failed", "disconnected"].includes(pc.connectionState) && pc.signalingState === "stable") this.restartIce(peer);
        });
      }
    };
    channel.onopen = () => {
      if (!current()) return;
      peer.wasOpen = true;
      this.log("channel open", peer.id);
      this.emit("open", peer);
    };
    channel.onmessage = (ev) => {
      if (current()) this.emit("message", peer, ev.data);
    };
    channel.onclose = () => {
      if (!current()) return;
      this.channelClosed(peer);
      this.peerTimer(peer, 1500, () => {
        if (peer.pc !== pc) return;
        if (this.members.has(peer.id) && this._state === "connected") this.rebuild(peer, "data channel closed");
        else if (!this.members.has(peer.id)) this.removePeer(peer.id, "connection closed");
      });
    };
  }
  channelClosed(peer) {
    if (!peer.wasOpen) return;
    peer.wasOpen = false;
    this.log("channel closed", peer.id);
    this.emit("close", peer);
  }
  closeConnection(peer) {
    for (const t of peer.timers) clearTimeout(t);
    peer.timers.clear();
    const { pc, channel } = peer;
    if (!pc) return;
    this.channelClosed(peer);
    try {
      channel.close();
      pc.close();
    } catch {
    }
  }
  /** Replaces the connection to `peer` with a new one (and a new connection id). */
  rebuild(peer, why) {
    this.log("rebuilding connection to", peer.id, why);
    this.closeConnection(peer);
    peer.stats.rebuilds++;
    this.connect(peer);
    this.emit("connection-state", peer, peer.pc.connectionState);
  }
  restartIce(peer) {
    if (!peer.pc) return;
    if (this._state !== "connected") {
      peer.restartPending = true;
      return;
    }
    peer.restartPending = false;
    peer.stats.iceRestarts++;
    this.log("ICE restart", peer.id);
    peer.pc.restartIce();
    const pc = peer.pc;
    this.peerTimer(peer, 2e4, () => {
      if (peer.pc === pc && pc.connectionState !== "connected" && this.members.has(peer.id)) this.rebuild(peer, "ICE restart did not recover");
    });
  }
  removePeer(id, why) {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.log("peer gone", id, why);
    this.peers.delete(id);
    this.closeConnection(peer);
    this.emit("peer-left", peer);
  }
  sendSignal(peer, type, body) {
    if (this._state !== "connected") {
      if (type !== "ice-candidate") peer.restartPending = true;
      return;
    }
    this.sendFrame({
      type,
      roomId: this.roomId,
      userId: this.userId,
      data: { peer: peer.id, cid: peer.cid, rcid: peer.remoteCid, ...body }
    });
  }
  onSignal(from, type, data) {
    const cid = typeof data.cid === "string" ? data.cid : void 0;
    const rcid = typeof data.rcid === "string" ? data.rcid : void 0;
    let peer = this.peers.get(from);
    if (peer && rcid && rcid !== peer.cid) {
      peer.stats.staleSignals++;
      this.log("stale signal from", from, type);
      return;
    }
    if (!peer || !peer.pc) {
      peer = this.ensurePeer(from, void 0, "none");
      this.connect(peer);
      if (rcid) {
        peer.stats.staleSignals++;
        return;
      }
    } else if (type === "sdp-offer" && cid && peer.remoteCid && cid !== peer.remoteCid) {
      this.rebuild(peer, "the peer has a new connection");
    }
    const target = peer;
    const pc = peer.pc;
    target.queue = target.queue.then(() => this.handleSignal(target, pc, type, data, cid)).catch((e) => {
      this.fail(new SwitchboardError("webrtc", `handling ${type} from ${from}: ${e}`, { peerId: from }));
    });
  }
  async handleSignal(peer, pc, type, data, cid) {
    if (type === "ice-candidate") {
      const c = data.candidate;
      const current = peer.pc;
      if (!c || !current || current.signalingState === "closed" || this.peers.get(peer.id) !== peer) return;
      if (peer.remoteCid && cid && cid !== peer.remoteCid) {
        peer.stats.staleSignals++;
        return;
      }
      if (!current.remoteDescription || !peer.remoteCid) {
        peer.pendingCandidates.push({ candidate: c, cid });
        return;
      }
      try {
        await current.addIceCandidate(c);
      } catch (e) {
        this.log("addIceCandidate failed", peer.id, e);
      }
      return;
    }
    if (peer.pc !== pc || pc.signalingState === "closed") return;
    const description = type === "sdp-offer" ? data.offer : data.answer;
    if (!description || !description.type) return;
    const isOffer = description.type === "offer";
    if (isOffer) peer.stats.offersReceived++;
    else peer.stats.answersReceived++;
    const collision = isOffer && (peer.makingOffer || pc.signalingState !== "stable");
    this.log(`${description.type} from ${peer.id} (${pc.signalingState}${peer.makingOffer ? ", making an offer" : ""})`);
    if (collision) peer.stats.collisions++;
    peer.ignoreOffer = !peer.polite && collision;
    if (peer.ignoreOffer) {
      peer.stats.ignoredOffers++;
      this.log("glare: ignoring the offer of", peer.id);
      return;
    }
    if (!isOffer && pc.signalingState !== "have-local-offer") {
      this.log("ignoring an answer in state", pc.signalingState);
      return;
    }
    if (!isOffer && peer.remoteCid && cid && cid !== peer.remoteCid) {
      peer.stats.staleSignals++;
      return;
    }
    if (collision && !pc.remoteDescription) {
      peer.stats.rollbacks++;
      this.log("glare before the first connection: answering", peer.id, "on a new connection");
      this.rebuild(peer, "offer collision before the first negotiation");
      peer.remoteCid = cid ?? null;
      return this.handleSignal(peer, peer.pc, type, data, cid);
    }
    if (collision) {
      peer.stats.rollbacks++;
      this.log("glare: rolling back our offer to", peer.id);
    }
    if (!peer.remoteCid && cid) peer.remoteCid = cid;
    await pc.setRemoteDescription(description);
    if (peer.pc !== pc) return;
    for (const { candidate, cid: from } of peer.pendingCandidates.splice(0)) {
      if (from && peer.remoteCid && from !== peer.remoteCid) continue;
      await pc.addIceCandidate(candidate).catch((e) => this.log("queued candidate refused", peer.id, e));
    }
    if (isOffer) {
      await pc.setLocalDescription();
      if (peer.pc !== pc || !pc.localDescription) return;
      this.log("answering", peer.id);
      peer.stats.answersSent++;
      this.sendSignal(peer, "sdp-answer", { answer: pc.localDescription.toJSON() });
    }
  }
  sendOn(peer, data) {
    const max = peer.pc && peer.pc.sctp && peer.pc.sctp.maxMessageSize;
    const size = typeof data === "string" ? new TextEncoder().encode(data).length : data instanceof Blob ? data.size : data.byteLength;
    if (max && size > max) {
      throw new SwitchboardError("message_too_large", `message of ${size} bytes exceeds the connection's limit of ${max} bytes`, { peerId: peer.id });
    }
    peer.channel.send(data);
  }
  shutdown(error) {
    if (this.closed) return;
    this.closed = true;
    if (error) this.fail(error);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close(1e3, "leaving");
      } catch {
      }
    }
    for (const peer of this.peers.values()) this.closeConnection(peer);
    this.peers.clear();
    this.members.clear();
    this.setState("closed");
  }
};
var Switchboard = class {
  /**
   * Connects to the server, authenticates, joins `roomId` (creating it when needed) and starts
   * connecting to every member. Resolves once the room is joined; peers connect afterwards
   * (listen for `open`). Rejects with a `SwitchboardError` when the server refuses (bad token,
   * full room) or nothing worked within `timeout`.
   */
  static async join(options) {
    for (const k of ["url", "roomId", "userId"]) {
      if (!options || typeof options[k] !== "string" || !options[k]) {
        throw new SwitchboardError("bad_options", `Switchboard.join: '${k}' is required`, { fatal: true });
      }
    }
    const room = new Room(options);
    await room.start();
    return room;
  }
};
var switchboard_default = Switchboard;
export {
  Peer,
  Room,
  Switchboard,
  SwitchboardError,
  switchboard_default as default
};
