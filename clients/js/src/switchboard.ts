/**
 * Switchboard browser SDK: joins a room on a Switchboard server (OctateCode dialect) and keeps
 * a full WebRTC mesh with the other members, one ordered, reliable `collaboration` data channel
 * per peer. No runtime dependencies: the browser's WebSocket, fetch and RTCPeerConnection.
 *
 * ```js
 * import { Switchboard } from '/sdk/switchboard.js';
 * const room = await Switchboard.join({ url: 'ws://localhost:3000/signaling', roomId: 'r1', userId: 'alice' });
 * room.on('message', (peer, data) => console.log(peer.id, data));
 * room.send('hello');
 * ```
 *
 * How it works:
 * - signaling: `auth`, then `join-room` (or `create-room` when the room does not exist; two
 *   creators racing each other both end up in the room), heartbeats, and on a lost connection
 *   a reconnect with jittered exponential backoff, re-authentication and rejoin. Open data
 *   channels are peer to peer and keep working while signaling is down;
 * - WebRTC: one RTCPeerConnection per peer with "perfect negotiation" (the peer with the smaller
 *   id is polite), ICE candidates queued until the remote description is set, ICE restart when a
 *   connection fails, and a data channel created on both sides with `negotiated: true, id: 0`, so
 *   that two peers that offer at the same time still end up with exactly one channel. To keep
 *   offer collisions rare, the newcomer offers and members already in the room answer (they offer
 *   themselves only if no offer came within a few seconds); a connection that is still not up
 *   after `connectTimeout` is replaced by a new one.
 * - every signal carries the sender's connection id (`cid`) and the id it believes the
 *   receiver's connection has (`rcid`), so a peer that reloaded or rebuilt its connection is
 *   recognised and stale signals for a connection that no longer exists are dropped.
 */

/** Signaling state of a room. */
export type SignalingState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** What `Switchboard.join` needs. */
export interface JoinOptions {
  /** Signaling WebSocket URL: `ws(s)://HOST:PORT/signaling` or `ws(s)://HOST:SIGNALING_PORT/`. */
  url: string;
  /** Room to join; created when it does not exist yet. */
  roomId: string;
  /** This peer's id, unique in the room. */
  userId: string;
  /** Display name sent with the join (default: `userId`). */
  userName?: string;
  /** Room name used when this peer creates the room (default: `roomId`). */
  roomName?: string;
  /**
   * A token from `POST /api/auth/token` (or minted by your backend with the same claims), or a
   * function returning one; called again on every reconnect. Optional in development.
   */
  token?: string | (() => string | Promise<string>);
  /**
   * URL to fetch a token from: `POST {userId, roomId}` as JSON, answering `{token}` (the shape of
   * Switchboard's `/api/auth/token`). Fetched again on every reconnect.
   */
  tokenUrl?: string;
  /** Extra headers for the `tokenUrl` request (e.g. your own session's authorization). */
  tokenHeaders?: Record<string, string>;
  /** ICE servers to use instead of the server's. */
  iceServers?: RTCIceServer[];
  /**
   * URL answering `{iceServers}` (Switchboard's `GET /api/ice-servers`). By default the ICE
   * servers come from the auth reply, which carries them.
   */
  iceServersUrl?: string;
  /** `'relay'` forces every connection through TURN. Default `'all'`. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Heartbeat period in ms (default 20000, under the server's default 60 s timeout). */
  heartbeatInterval?: number;
  /** Reconnect backoff in ms: the first retry waits about `minDelay`, doubling up to `maxDelay`. */
  reconnect?: { minDelay?: number; maxDelay?: number };
  /** Deadline in ms for the first join (connect, authenticate, join). Default 15000. */
  timeout?: number;
  /** A peer connection not connected after this many ms is replaced. Default 15000. */
  connectTimeout?: number;
  /** Log what the SDK does: `true` for `console.debug`, or your own function. */
  debug?: boolean | ((...args: unknown[]) => void);
}

/** Error codes: the server's (see docs/PROTOCOL.md) and these client-side ones. */
export type ErrorCode =
  | 'timeout'
  | 'connect_failed'
  | 'connection_lost'
  | 'token_fetch_failed'
  | 'ice_servers_failed'
  | 'room_closed'
  | 'message_too_large'
  | 'not_open'
  | 'webrtc'
  | 'closed'
  | string;

/** Every error the SDK reports, with a machine-readable `code`. */
export class SwitchboardError extends Error {
  /** Server error code (`invalid_token`, `room_full`, …) or a client one (`timeout`, …). */
  readonly code: ErrorCode;
  /** True when the SDK gave up: the room is closed. */
  readonly fatal: boolean;
  /** The peer the error concerns, when there is one. */
  readonly peerId?: string;
  constructor(code: ErrorCode, message: string, options: { fatal?: boolean; peerId?: string } = {}) {
    super(message);
    this.name = 'SwitchboardError';
    this.code = code;
    this.fatal = options.fatal ?? false;
    this.peerId = options.peerId;
  }
}

/** One end of a selected ICE candidate pair. */
export interface CandidateInfo {
  /** `host`, `srflx`, `prflx` or `relay`. */
  type: string;
  address?: string;
  port?: number;
  protocol?: string;
}

/** The path a peer connection took. */
export interface Route {
  local: CandidateInfo;
  remote: CandidateInfo;
  /** True when either end is a TURN relay candidate. */
  relayed: boolean;
  /** Current round-trip time in ms, when the browser reports it. */
  rttMs?: number;
}

/** Counters for one peer's negotiation, for diagnostics and tests. */
export interface NegotiationStats {
  offersSent: number;
  offersReceived: number;
  answersSent: number;
  answersReceived: number;
  /** Offers that arrived while this side was making or holding its own offer. */
  collisions: number;
  /** Collisions this (impolite) side resolved by ignoring the remote offer. */
  ignoredOffers: number;
  /** Collisions this (polite) side resolved by rolling its own offer back. */
  rollbacks: number;
  iceRestarts: number;
  /** Times the connection was replaced by a new RTCPeerConnection. */
  rebuilds: number;
  /** Signals dropped because they were meant for a connection that no longer exists. */
  staleSignals: number;
}

/** The events of a room and their handlers' arguments. */
export interface RoomEvents {
  /** A member joined (or was already there when this peer joined). */
  'peer-joined': (peer: Peer) => void;
  /** A member left, was closed or timed out. */
  'peer-left': (peer: Peer) => void;
  /** The data channel to `peer` opened. */
  open: (peer: Peer) => void;
  /** A data channel message: a string, or an ArrayBuffer for binary data. */
  message: (peer: Peer, data: string | ArrayBuffer) => void;
  /** The data channel to `peer` closed. */
  close: (peer: Peer) => void;
  /** Signaling state changed. */
  state: (state: SignalingState) => void;
  /** A server error or a client-side failure. */
  error: (error: SwitchboardError) => void;
  /** A peer's RTCPeerConnection state changed. */
  'connection-state': (peer: Peer, state: RTCPeerConnectionState) => void;
  /** An OctateCode `presence` message relayed by the server. */
  presence: (peer: Peer, data: unknown) => void;
  /** An OctateCode `cursor-update` message relayed by the server. */
  'cursor-update': (peer: Peer, data: unknown) => void;
}

type Handler = (...args: never[]) => void;
type Frame = { type: string; userId?: string; roomId?: string; data?: any; targetUserId?: string };

const CHANNEL_LABEL = 'collaboration';
const CHANNEL_ID = 0;
/** Codes after which retrying cannot help. */
const FATAL_CODES = new Set([
  'missing_token', 'invalid_token', 'bad_signature', 'token_expired', 'user_mismatch',
  'room_mismatch', 'missing_fields', 'room_full', 'room_closed', 'closed',
]);
const TOKEN_CODES = new Set(['missing_token', 'invalid_token', 'token_expired']);

function randomId(): string {
  const a = new Uint8Array(6);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A member of the room and the connection to it. */
export class Peer {
  /** The peer's user id. */
  readonly id: string;
  /** Its display name (its `userName`, or its id). */
  name: string;
  /** This side rolls back its own offer on a collision (decided by comparing ids). */
  readonly polite: boolean;
  /** Negotiation counters. */
  readonly stats: NegotiationStats = {
    offersSent: 0, offersReceived: 0, answersSent: 0, answersReceived: 0, collisions: 0,
    ignoredOffers: 0, rollbacks: 0, iceRestarts: 0, rebuilds: 0, staleSignals: 0,
  };
  /** @internal */ pc!: RTCPeerConnection;
  /** @internal */ channel!: RTCDataChannel;
  /** @internal this connection's id */ cid = '';
  /** @internal the remote connection's id, once heard from */ remoteCid: string | null = null;
  /** @internal */ makingOffer = false;
  /** @internal */ ignoreOffer = false;
  /** @internal */ pendingCandidates: { candidate: RTCIceCandidateInit; cid?: string }[] = [];
  /** @internal serialises signal handling */ queue: Promise<void> = Promise.resolve();
  /** @internal */ wasOpen = false;
  /** @internal ICE restart waiting for signaling */ restartPending = false;
  /** @internal */ timers = new Set<ReturnType<typeof setTimeout>>();

  /** @internal */
  constructor(id: string, name: string, polite: boolean) {
    this.id = id;
    this.name = name;
    this.polite = polite;
  }

  /** The current RTCPeerConnection (replaced when the connection is rebuilt); null until it exists. */
  get connection(): RTCPeerConnection | null {
    return this.pc || null;
  }

  /** Whether the data channel is open. */
  get open(): boolean {
    return !!this.channel && this.channel.readyState === 'open';
  }

  /** The RTCPeerConnection's state. */
  get connectionState(): RTCPeerConnectionState {
    return this.pc ? this.pc.connectionState : 'new';
  }

  /** The selected candidate pair (direct or relayed through TURN), or null before there is one. */
  async route(): Promise<Route | null> {
    if (!this.pc || this.pc.connectionState === 'closed') return null;
    const stats = await this.pc.getStats();
    let pair: any = null;
    stats.forEach((s: any) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) stats.forEach((s: any) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    if (!pair) return null;
    const pick = (c: any): CandidateInfo => ({
      type: c ? c.candidateType : 'unknown',
      address: c ? c.address || c.ip : undefined,
      port: c ? c.port : undefined,
      protocol: c ? c.protocol : undefined,
    });
    const local = pick(stats.get(pair.localCandidateId));
    const remote = pick(stats.get(pair.remoteCandidateId));
    const rtt = typeof pair.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : undefined;
    return { local, remote, relayed: local.type === 'relay' || remote.type === 'relay', rttMs: rtt };
  }
}

/** A joined room: signaling plus one connection per peer. Get one from `Switchboard.join`. */
export class Room {
  readonly roomId: string;
  readonly userId: string;
  /** Every known peer, by id. */
  readonly peers: Map<string, Peer> = new Map();

  private opts: JoinOptions;
  private handlers = new Map<keyof RoomEvents, Set<Handler>>();
  private ws: WebSocket | null = null;
  private _state: SignalingState = 'connecting';
  private members = new Set<string>();
  private ice: RTCIceServer[] = [];
  private waiter: { types: Set<string>; resolve: (f: Frame) => void } | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private heartbeatSentAt = 0;
  private lastFrameAt = 0;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private log: (...args: unknown[]) => void;

  /** @internal use `Switchboard.join` */
  constructor(opts: JoinOptions) {
    this.opts = opts;
    this.roomId = opts.roomId;
    this.userId = opts.userId;
    const d = opts.debug;
    this.log = typeof d === 'function' ? d : d ? (...a) => console.debug('[switchboard]', ...a) : () => {};
  }

  /** Signaling state: `connecting`, `connected`, `reconnecting` or `closed`. */
  get state(): SignalingState {
    return this._state;
  }

  /** ICE servers in use (from the server's auth reply, `iceServersUrl`, or the options). */
  get iceServers(): RTCIceServer[] {
    return this.ice;
  }

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<K extends keyof RoomEvents>(name: K, handler: RoomEvents[K]): () => void {
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, (set = new Set()));
    set.add(handler as Handler);
    return () => this.off(name, handler);
  }

  /** Unsubscribes a handler. */
  off<K extends keyof RoomEvents>(name: K, handler: RoomEvents[K]): void {
    this.handlers.get(name)?.delete(handler as Handler);
  }

  /** Sends `data` to every peer whose data channel is open; returns how many. */
  send(data: string | ArrayBuffer | ArrayBufferView | Blob): number {
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
  sendTo(peerId: string, data: string | ArrayBuffer | ArrayBufferView | Blob): boolean {
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
  signal(type: 'presence' | 'cursor-update', data: Record<string, unknown>, to?: string): boolean {
    if (this._state !== 'connected') return false;
    this.sendFrame({ type, roomId: this.roomId, userId: this.userId, data: to ? { ...data, peer: to } : data });
    return true;
  }

  /** Leaves the room: tells the server, closes every connection, and stops reconnecting. */
  async leave(): Promise<void> {
    if (this.closed) return;
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN && this._state === 'connected') {
      this.sendFrame({ type: 'leave-room', roomId: this.roomId, userId: this.userId });
      // Give the server a moment to read it before the close frame.
      await Promise.race([this.waitFor(['peer-left'], 1000).catch(() => null), delay(1000)]);
    }
    this.shutdown(null);
  }

  // ------------------------------------------------------------------------------------------
  // Events

  private emit<K extends keyof RoomEvents>(name: K, ...args: Parameters<RoomEvents[K]>): void {
    for (const h of [...(this.handlers.get(name) || [])]) {
      try {
        (h as (...a: unknown[]) => void)(...args);
      } catch (e) {
        console.error(`[switchboard] a '${name}' handler threw:`, e);
      }
    }
  }

  private fail(error: SwitchboardError): void {
    this.log('error', error.code, error.message);
    this.emit('error', error);
  }

  private setState(s: SignalingState): void {
    if (this._state === s) return;
    this._state = s;
    this.log('state', s);
    this.emit('state', s);
  }

  // ------------------------------------------------------------------------------------------
  // Signaling

  /** @internal The first join: retried on transient failures until the deadline. */
  async start(): Promise<void> {
    const deadline = Date.now() + (this.opts.timeout ?? 15000);
    let last: SwitchboardError | null = null;
    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.shutdown(null);
        throw new SwitchboardError('timeout', `could not join room ${this.roomId} within ${this.opts.timeout ?? 15000} ms${last ? `: ${last.message}` : ''}`, { fatal: true });
      }
      try {
        await this.connectOnce(left);
        return;
      } catch (e) {
        last = e instanceof SwitchboardError ? e : new SwitchboardError('connect_failed', String(e));
        if (last.fatal) {
          this.shutdown(null);
          throw last;
        }
        this.log('join attempt failed, retrying', last.code, last.message);
        await delay(Math.min(this.backoff(attempt), Math.max(0, deadline - Date.now())));
      }
    }
  }

  private backoff(attempt: number): number {
    const min = this.opts.reconnect?.minDelay ?? 500;
    const max = this.opts.reconnect?.maxDelay ?? 10000;
    const base = Math.min(max, min * 2 ** Math.min(attempt, 20));
    return base / 2 + (Math.random() * base) / 2;
  }

  /** Opens the socket, authenticates and joins. Throws a SwitchboardError. */
  private async connectOnce(budget: number): Promise<void> {
    const deadline = Date.now() + budget;
    const left = () => Math.max(1, deadline - Date.now());
    const ws = await this.openSocket(Math.min(left(), 10000));
    let tokenRetried = false;
    for (;;) {
      const token = await this.fetchToken();
      this.sendFrame({ type: 'auth', userId: this.userId, roomId: this.roomId, data: token ? { token } : {} });
      const auth = await this.waitFor(['auth', 'error'], left());
      if (auth.type === 'error') {
        const err = this.serverError(auth);
        if (TOKEN_CODES.has(err.code) && !tokenRetried && (this.opts.tokenUrl || typeof this.opts.token === 'function')) {
          tokenRetried = true;
          continue;
        }
        ws.close(1000);
        throw err;
      }
      await this.useIceServers(auth.data && auth.data.iceServers);
      break;
    }
    await this.joinOrCreate(left);
    this.attempt = 0;
    this.startHeartbeat();
    this.setState('connected');
  }

  private openSocket(ms: number): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(this.opts.url);
      } catch (e) {
        reject(new SwitchboardError('connect_failed', `cannot open ${this.opts.url}: ${e}`, { fatal: true }));
        return;
      }
      const timer = setTimeout(() => {
        ws.close();
        reject(new SwitchboardError('timeout', `connecting to ${this.opts.url} took over ${ms} ms`));
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
        reject(new SwitchboardError('connect_failed', `cannot connect to ${this.opts.url}`));
      };
    });
  }

  /** `join-room`, or `create-room` when the room is missing; a lost creation race joins. */
  private async joinOrCreate(left: () => number): Promise<void> {
    let create = false;
    for (let i = 0; i < 4; i++) {
      const data: Record<string, string> = { userName: this.opts.userName || this.userId };
      if (create) data.roomName = this.opts.roomName || this.roomId;
      this.sendFrame({ type: create ? 'create-room' : 'join-room', roomId: this.roomId, userId: this.userId, data });
      const reply = await this.waitFor(['room-joined', 'room-created', 'error'], left());
      if (reply.type !== 'error') {
        const room = reply.data && reply.data.room;
        const list: { userId: string; userName?: string }[] = (room && room.peers) || [];
        this.members = new Set(list.map((p) => p.userId).filter((id) => id !== this.userId));
        // Handlers attached right after `await Switchboard.join()` see these peers join.
        setTimeout(() => this.onMembers(list), 0);
        return;
      }
      const err = this.serverError(reply);
      if (err.code === 'room_not_found' && !create) create = true;
      else if (err.code === 'room_exists' && create) create = false;
      else {
        this.ws?.close(1000);
        throw err;
      }
    }
    this.ws?.close(1000);
    throw new SwitchboardError('room_not_found', `room ${this.roomId}: join and create kept racing`);
  }

  private serverError(frame: Frame): SwitchboardError {
    const code = (frame.data && frame.data.code) || 'unknown';
    const text = (frame.data && frame.data.error) || 'server error';
    return new SwitchboardError(code, text, { fatal: FATAL_CODES.has(code) });
  }

  private async fetchToken(): Promise<string | undefined> {
    const t = this.opts.token;
    if (typeof t === 'function') {
      try {
        return await t();
      } catch (e) {
        throw new SwitchboardError('token_fetch_failed', `token function failed: ${e}`);
      }
    }
    if (typeof t === 'string') return t;
    if (!this.opts.tokenUrl) return undefined;
    let res: Response;
    try {
      res = await fetch(this.opts.tokenUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...(this.opts.tokenHeaders || {}) },
        body: JSON.stringify({ userId: this.userId, roomId: this.roomId }),
      });
    } catch (e) {
      throw new SwitchboardError('token_fetch_failed', `POST ${this.opts.tokenUrl} failed: ${e}`);
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok || typeof body.token !== 'string') {
      const fatal = res.status === 401 || res.status === 403;
      throw new SwitchboardError('token_fetch_failed', `POST ${this.opts.tokenUrl} answered ${res.status}${body.error ? `: ${body.error}` : ''}`, { fatal });
    }
    return body.token;
  }

  private async useIceServers(fromAuth: unknown): Promise<void> {
    let servers: RTCIceServer[] | null = null;
    if (this.opts.iceServers) servers = this.opts.iceServers;
    else if (this.opts.iceServersUrl) {
      try {
        const res = await fetch(this.opts.iceServersUrl);
        const body = await res.json();
        if (!res.ok || !Array.isArray(body.iceServers)) throw new Error(`answered ${res.status}`);
        servers = body.iceServers;
      } catch (e) {
        this.fail(new SwitchboardError('ice_servers_failed', `GET ${this.opts.iceServersUrl}: ${e}`));
      }
    } else if (Array.isArray(fromAuth)) servers = fromAuth as RTCIceServer[];
    if (!servers) servers = this.ice;
    this.ice = servers;
    // Fresh TURN credentials for connections that already exist (they expire).
    for (const peer of this.peers.values()) {
      if (!peer.pc) continue;
      try {
        peer.pc.setConfiguration({ ...peer.pc.getConfiguration(), iceServers: servers });
      } catch (e) {
        this.log('setConfiguration failed', peer.id, e);
      }
    }
  }

  /** Resolves with the next frame of one of `types`; rejects on timeout or a closed socket. */
  private waitFor(types: string[], ms: number): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new SwitchboardError('timeout', `no ${types.join('/')} reply within ${ms} ms`));
      }, ms);
      this.waiter = {
        types: new Set(types),
        resolve: (f) => {
          clearTimeout(timer);
          this.waiter = null;
          if (f.type === 'closed') reject(new SwitchboardError('connection_lost', 'signaling connection closed during the handshake'));
          else resolve(f);
        },
      };
    });
  }

  private sendFrame(frame: Frame): void {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  private startHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const every = this.opts.heartbeatInterval ?? 20000;
    this.heartbeatSentAt = 0;
    this.heartbeatTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      // A heartbeat sent a whole period ago and nothing heard since: the server is gone.
      if (this.heartbeatSentAt && this.lastFrameAt < this.heartbeatSentAt && Date.now() - this.heartbeatSentAt >= every) {
        this.log('no heartbeat reply; reconnecting');
        ws.close(4000, 'heartbeat timeout');
        this.onSocketClosed(ws, 4000, 'heartbeat timeout');
        return;
      }
      this.heartbeatSentAt = Date.now();
      this.sendFrame({ type: 'heartbeat', roomId: this.roomId, userId: this.userId });
    }, every);
  }

  private onSocketClosed(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    ws.onmessage = null;
    ws.onclose = null;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (this.waiter) this.waiter.resolve({ type: 'closed' });
    if (this.closed || this._state === 'connecting') return;
    this.log('signaling closed', code, reason);
    this.setState('reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const wait = this.backoff(this.attempt++);
    this.log(`reconnecting in ${Math.round(wait)} ms`);
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectTimer = null;
      if (this.closed) return;
      try {
        await this.connectOnce(15000);
        this.afterRejoin();
      } catch (e) {
        const err = e instanceof SwitchboardError ? e : new SwitchboardError('connect_failed', String(e));
        this.ws?.close();
        this.ws = null;
        if (err.fatal) {
          this.fail(new SwitchboardError(err.code, `rejoining room ${this.roomId}: ${err.message}`, { fatal: true }));
          this.shutdown(null);
          return;
        }
        this.log('reconnect failed', err.code, err.message);
        this.scheduleReconnect();
      }
    }, wait);
  }

  /** After a reconnect: connections that did not survive the outage are restarted. */
  private afterRejoin(): void {
    for (const peer of this.peers.values()) {
      if (!peer.pc) {
        if (this.members.has(peer.id)) this.connect(peer);
        continue;
      }
      const s = peer.pc.connectionState;
      if (peer.restartPending || s === 'failed' || s === 'disconnected') {
        this.restartIce(peer);
      } else if (s !== 'connected' && this.members.has(peer.id)) {
        // Negotiation was cut off by the outage: start over.
        this.rebuild(peer, 'negotiation interrupted by a signaling outage');
      }
    }
    // Peers that have not come back and have no open channel are gone.
    const grace = (this.opts.reconnect?.maxDelay ?? 10000) * 2;
    for (const peer of this.peers.values()) {
      if (this.members.has(peer.id)) continue;
      this.peerTimer(peer, grace, () => {
        if (!this.members.has(peer.id) && !peer.open) this.removePeer(peer.id, 'did not rejoin after a signaling outage');
      });
    }
  }

  private onFrame(raw: unknown): void {
    this.lastFrameAt = Date.now();
    let f: Frame;
    try {
      f = JSON.parse(String(raw));
    } catch {
      this.log('ignoring a frame that is not JSON', raw);
      return;
    }
    if (!f || typeof f.type !== 'string') return;
    if (this.waiter && this.waiter.types.has(f.type)) {
      this.waiter.resolve(f);
      return;
    }
    const from = f.userId || '';
    switch (f.type) {
      case 'peer-joined': {
        const id = (f.data && f.data.peer && f.data.peer.userId) || from;
        if (!id || id === this.userId) return;
        this.members.add(id);
        this.ensurePeer(id, f.data && f.data.peer && f.data.peer.userName, 'later');
        return;
      }
      case 'peer-left':
        if (!from || from === this.userId) return;
        this.members.delete(from);
        this.removePeer(from, 'left the room');
        return;
      case 'sdp-offer':
      case 'sdp-answer':
      case 'ice-candidate':
        if (from && from !== this.userId) this.onSignal(from, f.type, f.data || {});
        return;
      case 'presence':
      case 'cursor-update': {
        const peer = from && this.peers.get(from);
        if (peer) this.emit(f.type, peer, f.data);
        return;
      }
      case 'room-closed':
        this.fail(new SwitchboardError('room_closed', `room ${this.roomId} was closed (${(f.data && f.data.reason) || 'by the server'})`, { fatal: true }));
        this.shutdown(null);
        return;
      case 'error': {
        const err = this.serverError(f);
        if (err.code === 'peer_not_found') {
          const id = /Peer (\S+) not found/.exec(err.message);
          if (id && this.peers.has(id[1]) && !this.members.has(id[1])) this.removePeer(id[1], 'not in the room');
        }
        this.fail(new SwitchboardError(err.code, err.message, { fatal: false }));
        return;
      }
      default:
        return; // heartbeat replies, and types this SDK does not use
    }
  }

  // ------------------------------------------------------------------------------------------
  // Peers and connections

  private onMembers(list: { userId: string; userName?: string }[]): void {
    if (this.closed) return;
    for (const p of list) {
      if (p.userId === this.userId || !this.members.has(p.userId)) continue;
      this.ensurePeer(p.userId, p.userName, 'now');
    }
  }

  /**
   * Creates the peer, or revives a connection that is not healthy. `now`: connect (and offer)
   * at once, as the newcomer does for the members it finds; `later`: a member that just joined
   * is expected to offer, so connect only if it has not within a few seconds; `none`: the caller
   * connects.
   */
  private ensurePeer(id: string, name: string | undefined, initiate: 'now' | 'later' | 'none'): Peer {
    let peer = this.peers.get(id);
    if (peer) {
      if (name) peer.name = name;
      const s = peer.pc ? peer.pc.connectionState : 'new';
      if (peer.pc && initiate !== 'none' && (s === 'failed' || s === 'closed')) this.rebuild(peer, `connection ${s}`);
      else if (!peer.pc && initiate === 'now') this.connect(peer);
      return peer;
    }
    peer = new Peer(id, name || id, this.userId < id);
    this.peers.set(id, peer);
    this.log('peer', id, peer.polite ? '(polite)' : '(impolite)', initiate);
    if (initiate === 'now') this.connect(peer);
    else if (initiate === 'later') {
      const p = peer;
      this.peerTimer(peer, 3000, () => {
        if (!p.pc && this._state === 'connected') {
          this.log('no offer from', p.id, 'yet: offering');
          this.connect(p);
        }
      });
    }
    this.emit('peer-joined', peer);
    return peer;
  }

  private peerTimer(peer: Peer, ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      peer.timers.delete(t);
      if (!this.closed && this.peers.get(peer.id) === peer) fn();
    }, ms);
    peer.timers.add(t);
  }

  /** A new RTCPeerConnection and data channel for `peer`. */
  private connect(peer: Peer): void {
    const pc = new RTCPeerConnection({ iceServers: this.ice, iceTransportPolicy: this.opts.iceTransportPolicy || 'all' });
    const channel = pc.createDataChannel(CHANNEL_LABEL, { negotiated: true, id: CHANNEL_ID, ordered: true });
    channel.binaryType = 'arraybuffer';
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
    this.peerTimer(peer, this.opts.connectTimeout ?? 15000, () => {
      if (peer.pc === pc && pc.connectionState !== 'connected' && this._state === 'connected' && this.members.has(peer.id)) {
        const why = `not connected after ${this.opts.connectTimeout ?? 15000} ms (${pc.connectionState}, ${pc.signalingState})`;
        this.fail(new SwitchboardError('connect_failed', `connection to ${peer.id} ${why}; trying a new one`, { peerId: peer.id }));
        this.rebuild(peer, why);
      }
    });

    pc.onnegotiationneeded = async () => {
      if (!current()) return;
      if (this._state !== 'connected') {
        peer.restartPending = true;
        return;
      }
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        if (!current() || !pc.localDescription || pc.localDescription.type !== 'offer') return;
        peer.stats.offersSent++;
        this.log('offering to', peer.id, peer.stats.rebuilds ? `(connection ${peer.stats.rebuilds + 1})` : '');
        this.sendSignal(peer, 'sdp-offer', { offer: pc.localDescription.toJSON() });
      } catch (e) {
        this.fail(new SwitchboardError('webrtc', `creating an offer for ${peer.id}: ${e}`, { peerId: peer.id }));
      } finally {
        peer.makingOffer = false;
      }
    };
    pc.onicecandidate = (ev) => {
      if (ev.candidate && current()) this.sendSignal(peer, 'ice-candidate', { candidate: ev.candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => {
      if (!current()) return;
      const s = pc.connectionState;
      this.log('connection', peer.id, s);
      this.emit('connection-state', peer, s);
      // The impolite side restarts ICE; the polite one only if that did not happen, so that
      // the two restart offers rarely collide.
      const wait = (s === 'failed' ? 0 : 5000) + (peer.polite ? 3000 : 0);
      if (s === 'failed' || s === 'disconnected') {
        this.peerTimer(peer, wait, () => {
          if (peer.pc === pc && ['failed', 'disconnected'].includes(pc.connectionState) && pc.signalingState === 'stable') this.restartIce(peer);
        });
      }
    };
    channel.onopen = () => {
      if (!current()) return;
      peer.wasOpen = true;
      this.log('channel open', peer.id);
      this.emit('open', peer);
    };
    channel.onmessage = (ev) => {
      if (current()) this.emit('message', peer, ev.data);
    };
    channel.onclose = () => {
      if (!current()) return;
      this.channelClosed(peer);
      // The other side closed its connection. If it is still a member it will reconnect (or we
      // do); if it left, signaling says so shortly.
      this.peerTimer(peer, 1500, () => {
        if (peer.pc !== pc) return;
        if (this.members.has(peer.id) && this._state === 'connected') this.rebuild(peer, 'data channel closed');
        else if (!this.members.has(peer.id)) this.removePeer(peer.id, 'connection closed');
      });
    };
  }

  private channelClosed(peer: Peer): void {
    if (!peer.wasOpen) return;
    peer.wasOpen = false;
    this.log('channel closed', peer.id);
    this.emit('close', peer);
  }

  private closeConnection(peer: Peer): void {
    for (const t of peer.timers) clearTimeout(t);
    peer.timers.clear();
    const { pc, channel } = peer;
    if (!pc) return;
    this.channelClosed(peer);
    try {
      channel.close();
      pc.close();
    } catch {
      /* already closed */
    }
  }

  /** Replaces the connection to `peer` with a new one (and a new connection id). */
  private rebuild(peer: Peer, why: string): void {
    this.log('rebuilding connection to', peer.id, why);
    this.closeConnection(peer);
    peer.stats.rebuilds++;
    this.connect(peer);
    this.emit('connection-state', peer, peer.pc.connectionState);
  }

  private restartIce(peer: Peer): void {
    if (!peer.pc) return;
    if (this._state !== 'connected') {
      peer.restartPending = true;
      return;
    }
    peer.restartPending = false;
    peer.stats.iceRestarts++;
    this.log('ICE restart', peer.id);
    peer.pc.restartIce();
    // If the restart does not bring it back, start over with a new connection.
    const pc = peer.pc;
    this.peerTimer(peer, 20000, () => {
      if (peer.pc === pc && pc.connectionState !== 'connected' && this.members.has(peer.id)) this.rebuild(peer, 'ICE restart did not recover');
    });
  }

  private removePeer(id: string, why: string): void {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.log('peer gone', id, why);
    this.peers.delete(id);
    this.closeConnection(peer);
    this.emit('peer-left', peer);
  }

  private sendSignal(peer: Peer, type: string, body: Record<string, unknown>): void {
    if (this._state !== 'connected') {
      // Trickled candidates and offers made while signaling is down are lost; the
      // connection is restarted after the rejoin (see afterRejoin).
      if (type !== 'ice-candidate') peer.restartPending = true;
      return;
    }
    this.sendFrame({
      type,
      roomId: this.roomId,
      userId: this.userId,
      data: { peer: peer.id, cid: peer.cid, rcid: peer.remoteCid, ...body },
    });
  }

  private onSignal(from: string, type: string, data: any): void {
    const cid: string | undefined = typeof data.cid === 'string' ? data.cid : undefined;
    const rcid: string | undefined = typeof data.rcid === 'string' ? data.rcid : undefined;
    let peer = this.peers.get(from);
    if (peer && rcid && rcid !== peer.cid) {
      // Meant for a connection of ours that no longer exists; ours has offered anew.
      peer.stats.staleSignals++;
      this.log('stale signal from', from, type);
      return;
    }
    if (!peer || !peer.pc) {
      peer = this.ensurePeer(from, undefined, 'none');
      this.connect(peer);
      if (rcid) {
        // The sender talks to a previous incarnation of us; our new connection offers itself.
        peer.stats.staleSignals++;
        return;
      }
    } else if (type === 'sdp-offer' && cid && peer.remoteCid && cid !== peer.remoteCid) {
      // The other side replaced its connection (reload, rebuild): so do we.
      this.rebuild(peer, 'the peer has a new connection');
    }
    const target = peer;
    const pc = peer.pc;
    target.queue = target.queue.then(() => this.handleSignal(target, pc, type, data, cid)).catch((e) => {
      this.fail(new SwitchboardError('webrtc', `handling ${type} from ${from}: ${e}`, { peerId: from }));
    });
  }

  private async handleSignal(peer: Peer, pc: RTCPeerConnection, type: string, data: any, cid?: string): Promise<void> {
    if (type === 'ice-candidate') {
      // Candidates go to whichever connection is current, if they belong to the remote
      // connection it negotiates with; until that is known they wait.
      const c: RTCIceCandidateInit | undefined = data.candidate;
      const current = peer.pc;
      if (!c || !current || current.signalingState === 'closed' || this.peers.get(peer.id) !== peer) return;
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
        this.log('addIceCandidate failed', peer.id, e);
      }
      return;
    }
    if (peer.pc !== pc || pc.signalingState === 'closed') return;
    const description: RTCSessionDescriptionInit | undefined = type === 'sdp-offer' ? data.offer : data.answer;
    if (!description || !description.type) return;
    const isOffer = description.type === 'offer';
    if (isOffer) peer.stats.offersReceived++;
    else peer.stats.answersReceived++;
    const collision = isOffer && (peer.makingOffer || pc.signalingState !== 'stable');
    this.log(`${description.type} from ${peer.id} (${pc.signalingState}${peer.makingOffer ? ', making an offer' : ''})`);
    if (collision) peer.stats.collisions++;
    peer.ignoreOffer = !peer.polite && collision;
    if (peer.ignoreOffer) {
      peer.stats.ignoredOffers++;
      this.log('glare: ignoring the offer of', peer.id);
      return;
    }
    if (!isOffer && pc.signalingState !== 'have-local-offer') {
      this.log('ignoring an answer in state', pc.signalingState);
      return;
    }
    if (!isOffer && peer.remoteCid && cid && cid !== peer.remoteCid) {
      peer.stats.staleSignals++;
      return;
    }
    if (collision && !pc.remoteDescription) {
      // Glare before this connection ever negotiated: Chromium does not reliably recover from
      // rolling back a first offer (the answer's ICE never starts, or the call never settles),
      // so the polite side yields by answering on a fresh connection instead.
      peer.stats.rollbacks++;
      this.log('glare before the first connection: answering', peer.id, 'on a new connection');
      this.rebuild(peer, 'offer collision before the first negotiation');
      peer.remoteCid = cid ?? null;
      return this.handleSignal(peer, peer.pc, type, data, cid);
    }
    if (collision) {
      peer.stats.rollbacks++;
      this.log('glare: rolling back our offer to', peer.id);
    }
    if (!peer.remoteCid && cid) peer.remoteCid = cid;
    await pc.setRemoteDescription(description); // rolls our own offer back when needed
    if (peer.pc !== pc) return;
    for (const { candidate, cid: from } of peer.pendingCandidates.splice(0)) {
      if (from && peer.remoteCid && from !== peer.remoteCid) continue; // for a connection we did not take
      await pc.addIceCandidate(candidate).catch((e) => this.log('queued candidate refused', peer.id, e));
    }
    if (isOffer) {
      await pc.setLocalDescription();
      if (peer.pc !== pc || !pc.localDescription) return;
      this.log('answering', peer.id);
      peer.stats.answersSent++;
      this.sendSignal(peer, 'sdp-answer', { answer: pc.localDescription.toJSON() });
    }
  }

  private sendOn(peer: Peer, data: string | ArrayBuffer | ArrayBufferView | Blob): void {
    const max = peer.pc && peer.pc.sctp && peer.pc.sctp.maxMessageSize;
    const size = typeof data === 'string' ? new TextEncoder().encode(data).length : data instanceof Blob ? data.size : data.byteLength;
    if (max && size > max) {
      throw new SwitchboardError('message_too_large', `message of ${size} bytes exceeds the connection's limit of ${max} bytes`, { peerId: peer.id });
    }
    peer.channel.send(data as any);
  }

  private shutdown(error: SwitchboardError | null): void {
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
        ws.close(1000, 'leaving');
      } catch {
        /* already closed */
      }
    }
    for (const peer of this.peers.values()) this.closeConnection(peer);
    this.peers.clear();
    this.members.clear();
    this.setState('closed');
  }
}

/** Entry point. */
export class Switchboard {
  /**
   * Connects to the server, authenticates, joins `roomId` (creating it when needed) and starts
   * connecting to every member. Resolves once the room is joined; peers connect afterwards
   * (listen for `open`). Rejects with a `SwitchboardError` when the server refuses (bad token,
   * full room) or nothing worked within `timeout`.
   */
  static async join(options: JoinOptions): Promise<Room> {
    for (const k of ['url', 'roomId', 'userId'] as const) {
      if (!options || typeof options[k] !== 'string' || !options[k]) {
        throw new SwitchboardError('bad_options', `Switchboard.join: '${k}' is required`, { fatal: true });
      }
    }
    const room = new Room(options);
    await room.start();
    return room;
  }
}

export default Switchboard;
