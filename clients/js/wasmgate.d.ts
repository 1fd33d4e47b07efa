// Types of @wasmgate/client (src/wasmgate.js).

/** Code of the notice a group's members get when a client joins it. */
export declare const NOTICE_JOIN: 1001;
/** Code of the notice a group's members get when a client leaves it or disconnects. */
export declare const NOTICE_LEAVE: 1002;

export type ErrorKind = "unknown-system" | "unauthorized" | "refused" | "unreachable" | "closed" | "timeout" | "protocol";

export declare class WasmgateError extends Error {
  readonly kind: ErrorKind;
  /** HTTP status of a refused connect, close code, or the plugin's reply code. */
  readonly status?: number;
  constructor(kind: ErrorKind, message: string, status?: number);
}

export interface ConnectOptions {
  /** The gateway: `http(s)://host:port` or `ws(s)://host:port`. */
  url: string;
  systemId: string;
  /** A JWT, for systems with a `jwt_secret`. */
  token?: string;
  /** A WebSocket constructor (default: the global one). Node 20 without --experimental-websocket needs one. */
  WebSocket?: { new (url: string): WebSocket };
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  /** Backoff bounds; each delay is drawn at random below min·2^(n-1), capped at max (defaults 250 / 10000). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Send `ping` after this long without a frame from the gateway (default 20000; 0 disables). */
  pingIntervalMs?: number;
  /** Declare the link dead when nothing answers a ping for this long (default 10000). */
  pongTimeoutMs?: number;
  /** Give up on a connect whose welcome does not arrive (default 10000). */
  welcomeTimeoutMs?: number;
}

/** An API push: `{messageId, sendUserId, code, msg, data}`. */
export interface Push<D = unknown> {
  messageId: string;
  sendUserId: string;
  code: number;
  msg: string;
  data: D;
}

/** Data of a 1001/1002 group notice. */
export interface GroupNotice {
  clientId: string;
  userId: string;
  extend: string;
}

/** A plugin frame: `{event, data}` or a reply `{event, code, msg, data}`. */
export interface EventMessage<D = unknown> {
  event: string;
  code?: number;
  msg?: string;
  data: D;
}

export type State = "idle" | "connecting" | "connected" | "disconnected" | "closed";

export interface StateDetail {
  attempt?: number;
  clientId?: string;
  previousClientId?: string | null;
  code?: number;
  reason?: string;
  willReconnect?: boolean;
  error?: WasmgateError;
}

export declare class Client {
  /** The current clientId (a new one after each reconnect). */
  readonly clientId: string | null;
  readonly state: State;
  on(event: "state", handler: (state: State, detail: StateDetail) => void): () => void;
  on(event: "connecting" | "connected" | "disconnected" | "closed", handler: (detail: StateDetail) => void): () => void;
  on(event: "reconnecting", handler: (info: { attempt: number; delayMs: number }) => void): () => void;
  on(event: "error", handler: (err: WasmgateError) => void): () => void;
  on(event: "push", handler: (push: Push) => void): () => void;
  on(event: "join-notice" | "leave-notice", handler: (data: GroupNotice, push: Push<GroupNotice>) => void): () => void;
  on(event: "message", handler: (msg: EventMessage | unknown) => void): () => void;
  on(event: "text", handler: (text: string) => void): () => void;
  on(event: "binary", handler: (data: Blob | ArrayBuffer) => void): () => void;
  /** A plugin event `{event, data}` (replies with a non-zero code are not delivered here). */
  on<D = any>(event: string, handler: (data: D, msg: EventMessage<D>) => void): () => void;
  onPush(handler: (push: Push) => void): () => void;
  /** Send `{"event": event, "data": data}`; throws a WasmgateError("closed") when not connected. */
  emit(event: string, data?: unknown): void;
  /** Send and await the plugin's reply of the same event: resolves with its data on code 0. */
  request<D = any>(event: string, data?: unknown, timeoutMs?: number): Promise<D>;
  /** Send a raw text frame. */
  send(text: string): void;
  /** Close for good (no reconnect). */
  close(code?: number, reason?: string): void;
}

/** Connect and resolve once the gateway's welcome arrived (`client.clientId` is set). */
export declare function connect(options: ConnectOptions): Promise<Client>;
/** The WebSocket URL of `systemId` on the gateway at `url`. */
export declare function socketUrl(url: string, systemId: string, token?: string): string;
