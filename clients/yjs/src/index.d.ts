import type * as Y from 'yjs';

export declare const MAGIC: 0x59;
export declare const SYNC_STEP1: 1;
export declare const SYNC_STEP2: 2;
export declare const UPDATE: 3;
export declare const AWARENESS: 4;

/** Frames `payload` as a provider message: [0x59, kind, ...payload]. */
export declare function encode(kind: number, payload: Uint8Array): Uint8Array;
/** The kind and payload of a provider message, or null for any other data. */
export declare function decode(data: unknown): { kind: number; payload: Uint8Array } | null;

export interface AwarenessChanges {
  added: string[];
  updated: string[];
  removed: string[];
}

/** Per-peer JSON states (names, colours, cursors) keyed by peer id, each with a clock. */
export declare class Awareness {
  constructor(clientId: string);
  /** This peer's id (the room's userId). */
  readonly clientId: string;
  getStates(): Map<string, Record<string, any>>;
  getLocalState(): Record<string, any> | null;
  setLocalState(state: Record<string, any> | null): void;
  setLocalStateField(field: string, value: unknown): void;
  applyRemote(peerId: string, clock: number, state: Record<string, any> | null, origin?: string): boolean;
  remove(peerId: string, origin?: string): void;
  on(name: 'change' | 'update', handler: (changes: AwarenessChanges, origin: string) => void): () => void;
  off(name: 'change' | 'update', handler: (changes: AwarenessChanges, origin: string) => void): void;
}

/** The part of the SDK's Room the provider uses. */
export interface RoomLike {
  readonly userId: string;
  readonly state: string;
  readonly peers: Map<string, { id: string; open: boolean }>;
  on(name: string, handler: (...args: any[]) => void): () => void;
  send(data: Uint8Array): number;
  sendTo(peerId: string, data: Uint8Array): boolean;
  signal(type: 'presence' | 'cursor-update', data: Record<string, unknown>, to?: string): boolean;
}

export interface ProviderOptions {
  /** Initial local awareness state, e.g. `{ name, colour }`. */
  awareness?: Record<string, any>;
  /** Milliseconds between awareness re-broadcasts (default 15000; 0 = never). */
  refresh?: number;
  /** Milliseconds between awareness messages sent through the server (default 250). */
  signalThrottle?: number;
}

/** Keeps a Y.Doc in sync with every peer of a Switchboard room. */
export declare class SwitchboardProvider {
  constructor(room: RoomLike, doc: Y.Doc, options?: ProviderOptions);
  readonly room: RoomLike;
  readonly doc: Y.Doc;
  readonly awareness: Awareness;
  /** Peers whose sync step 2 was applied here. */
  readonly syncedPeers: Set<string>;
  /** True once synced with at least one peer. */
  readonly synced: boolean;
  /** Moves this peer's cursor (awareness field `cursor`). */
  setCursor(cursor: unknown): void;
  on(name: 'synced', handler: (peer: { id: string }) => void): () => void;
  on(name: 'update', handler: (update: Uint8Array, peer: { id: string }) => void): () => void;
  off(name: string, handler: (...args: any[]) => void): void;
  /** Stops syncing and clears this peer's awareness for the others; the room stays joined. */
  destroy(): void;
}
