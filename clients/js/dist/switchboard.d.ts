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
    reconnect?: {
        minDelay?: number;
        maxDelay?: number;
    };
    /** Deadline in ms for the first join (connect, authenticate, join). Default 15000. */
    timeout?: number;
    /** A peer connection not connected after this many ms is replaced. Default 15000. */
    connectTimeout?: number;
    /** Log what the SDK does: `true` for `console.debug`, or your own function. */
    debug?: boolean | ((...args: unknown[]) => void);
}
/** Error codes: the server's (see docs/PROTOCOL.md) and these client-side ones. */
export type ErrorCode = 'timeout' | 'connect_failed' | 'connection_lost' | 'token_fetch_failed' | 'ice_servers_failed' | 'room_closed' | 'message_too_large' | 'not_open' | 'webrtc' | 'closed' | string;
/** Every error the SDK reports, with a machine-readable `code`. */
export declare class SwitchboardError extends Error {
    /** Server error code (`invalid_token`, `room_full`, …) or a client one (`timeout`, …). */
    readonly code: ErrorCode;
    /** True when the SDK gave up: the room is closed. */
    readonly fatal: boolean;
    /** The peer the error concerns, when there is one. */
    readonly peerId?: string;
    constructor(code: ErrorCode, message: string, options?: {
        fatal?: boolean;
        peerId?: string;
    });
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
/** A member of the room and the connection to it. */
export declare class Peer {
    /** The peer's user id. */
    readonly id: string;
    /** Its display name (its `userName`, or its id). */
    name: string;
    /** This side rolls back its own offer on a collision (decided by comparing ids). */
    readonly polite: boolean;
    /** Negotiation counters. */
    readonly stats: NegotiationStats;
    /** The current RTCPeerConnection (replaced when the connection is rebuilt); null until it exists. */
    get connection(): RTCPeerConnection | null;
    /** Whether the data channel is open. */
    get open(): boolean;
    /** The RTCPeerConnection's state. */
    get connectionState(): RTCPeerConnectionState;
    /** The selected candidate pair (direct or relayed through TURN), or null before there is one. */
    route(): Promise<Route | null>;
}
/** A joined room: signaling plus one connection per peer. Get one from `Switchboard.join`. */
export declare class Room {
    readonly roomId: string;
    readonly userId: string;
    /** Every known peer, by id. */
    readonly peers: Map<string, Peer>;
    private opts;
    private handlers;
    private ws;
    private _state;
    private members;
    private ice;
    private waiter;
    private heartbeatTimer;
    private heartbeatSentAt;
    private lastFrameAt;
    private attempt;
    private reconnectTimer;
    private closed;
    private log;
    /** Signaling state: `connecting`, `connected`, `reconnecting` or `closed`. */
    get state(): SignalingState;
    /** ICE servers in use (from the server's auth reply, `iceServersUrl`, or the options). */
    get iceServers(): RTCIceServer[];
    /** Subscribes to an event; returns a function that unsubscribes. */
    on<K extends keyof RoomEvents>(name: K, handler: RoomEvents[K]): () => void;
    /** Unsubscribes a handler. */
    off<K extends keyof RoomEvents>(name: K, handler: RoomEvents[K]): void;
    /** Sends `data` to every peer whose data channel is open; returns how many. */
    send(data: string | ArrayBuffer | ArrayBufferView | Blob): number;
    /**
     * Sends `data` to one peer. Returns false when its data channel is not open (yet);
     * throws a `SwitchboardError` (`message_too_large`) when the message exceeds what the
     * connection accepts.
     */
    sendTo(peerId: string, data: string | ArrayBuffer | ArrayBufferView | Blob): boolean;
    /**
     * Sends an OctateCode `presence` or `cursor-update` message through the server (to one peer,
     * or to everyone), for peers whose data channel is not open. Returns false while signaling is
     * down.
     */
    signal(type: 'presence' | 'cursor-update', data: Record<string, unknown>, to?: string): boolean;
    /** Leaves the room: tells the server, closes every connection, and stops reconnecting. */
    leave(): Promise<void>;
    private emit;
    private fail;
    private setState;
    private backoff;
    /** Opens the socket, authenticates and joins. Throws a SwitchboardError. */
    private connectOnce;
    private openSocket;
    /** `join-room`, or `create-room` when the room is missing; a lost creation race joins. */
    private joinOrCreate;
    private serverError;
    private fetchToken;
    private useIceServers;
    /** Resolves with the next frame of one of `types`; rejects on timeout or a closed socket. */
    private waitFor;
    private sendFrame;
    private startHeartbeat;
    private onSocketClosed;
    private scheduleReconnect;
    /** After a reconnect: connections that did not survive the outage are restarted. */
    private afterRejoin;
    private onFrame;
    private onMembers;
    /**
     * Creates the peer, or revives a connection that is not healthy. `now`: connect (and offer)
     * at once, as the newcomer does for the members it finds; `later`: a member that just joined
     * is expected to offer, so connect only if it has not within a few seconds; `none`: the caller
     * connects.
     */
    private ensurePeer;
    private peerTimer;
    /** A new RTCPeerConnection and data channel for `peer`. */
    private connect;
    private channelClosed;
    private closeConnection;
    /** Replaces the connection to `peer` with a new one (and a new connection id). */
    private rebuild;
    private restartIce;
    private removePeer;
    private sendSignal;
    private onSignal;
    private handleSignal;
    private sendOn;
    private shutdown;
}
/** Entry point. */
export declare class Switchboard {
    /**
     * Connects to the server, authenticates, joins `roomId` (creating it when needed) and starts
     * connecting to every member. Resolves once the room is joined; peers connect afterwards
     * (listen for `open`). Rejects with a `SwitchboardError` when the server refuses (bad token,
     * full room) or nothing worked within `timeout`.
     */
    static join(options: JoinOptions): Promise<Room>;
}
export default Switchboard;
