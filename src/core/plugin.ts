/**
 * The plugin contract. A plugin is a declarative object: name, version, priority,
 * a JSON Schema for its config (validated once at load, defaults applied), and
 * phase functions that return verdicts. Plugins never touch sockets; the pipeline
 * carries their verdicts out.
 *
 * Phases, in order:
 *   rewrite  on the request / handshake, before access (authentication identifies the consumer here)
 *   access   on the request / handshake (authorization, limits); may reject
 *   message  on each complete WebSocket message, both directions (frame mode only)
 *   control  on each ping and pong frame, both directions (frame mode only)
 *   frame    on each frame header, both directions (tunnel mode only): lets a plugin
 *            that only needs headers (limit-messages) keep the route in tunnel mode
 *   log      once per connection or request, on every way it can end
 *
 * Besides phases, `frameLimits` gives the WebSocket parser limits to enforce while
 * a message arrives (frame mode).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorCode } from './errors.js';

export type Protocol = 'http' | 'sse' | 'websocket';

export interface Consumer {
  username: string;
  group_id?: string;
  /** Identifier of the credential that authenticated it (never the secret itself). */
  credential_id?: string;
  /** Which plugin authenticated it. */
  auth?: string;
  /** Claims of the token that authenticated it (JWT, OIDC), for authorization rules. */
  claims?: Readonly<Record<string, unknown>>;
  /** Scopes granted to the token, for authorization rules. */
  scopes?: readonly string[];
  [key: string]: unknown;
}

/** A consumer as configured, with its credentials and plugin configs by plugin name. */
export interface ConsumerInfo {
  readonly username: string;
  readonly group_id?: string;
  readonly desc?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly plugins: Readonly<Record<string, Record<string, unknown>>>;
}

/** The gateway's logger as plugins see it (pino): `log.debug({ ... }, 'message')`. */
export interface PluginLogger {
  isLevelEnabled(level: string): boolean;
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** What every phase can see about the request or connection. */
export interface RequestContext {
  readonly id: string;
  readonly routeId: string;
  readonly method: string;
  /** The one normalised path used for routing, plugins and the upstream request. */
  readonly path: string;
  /** Raw query string without `?` ('' when none). */
  readonly query: string;
  readonly host: string;
  /** Scheme of the listener the client reached (`https` on a TLS listener). */
  readonly scheme: 'http' | 'https';
  readonly headers: IncomingHttpHeaders;
  /** Client address resolved through trusted_proxies. */
  readonly clientIp: string;
  /** True when the request is a WebSocket handshake. */
  readonly websocket: boolean;
  readonly startedAt: number;
  /** Route parameters from `:name` segments. */
  readonly params: Readonly<Record<string, string>>;
  /** Set by an authentication plugin. */
  consumer: Consumer | undefined;
  /**
   * When the credential that admitted this request expires (ms since the epoch).
   * A live WebSocket or SSE connection is closed then (1008 "credential expired").
   * Set it with limitLifetime(), which keeps the earliest.
   */
  readonly expiresAt: number | undefined;
  limitLifetime(epochMs: number): void;
  /** Offered subprotocols to withhold from the upstream (they carry credentials). */
  readonly dropProtocols: Set<string>;
  /** Headers to add to (string) or remove from (null) the upstream request. */
  readonly upstreamHeaders: Record<string, string | null>;
  /**
   * Headers to add to the gateway's response to the client (lowercase names, plain
   * token values): on a relayed HTTP response, an SSE stream's head and a WebSocket
   * 101, over the upstream's. A rejection carries only its own `headers`.
   */
  readonly responseHeaders: Record<string, string>;
  /** Query parameters to remove from the upstream request (e.g. hidden credentials). */
  readonly stripQuery: Set<string>;
  /** Per-request scratch space, keyed by plugin name. */
  readonly vars: Map<string, unknown>;
  /** The gateway's logger. Never log credentials or message bodies. */
  readonly log: PluginLogger;
}

/** Returned by rewrite/access to stop the request. The pipeline answers the client. */
export interface Rejection {
  reject: ErrorCode;
  /** Override the catalogue status (e.g. a configured `rejected_code`). */
  status?: number;
  /** Override the catalogue message shown to the client. */
  message?: string;
  headers?: Record<string, string>;
  /**
   * A raw response body replacing the JSON error body (e.g. forward-auth relaying
   * its service's answer); give its Content-Type in `headers` (lowercase names).
   * Ignored on a live connection. Omit it to keep the JSON error format.
   */
  body?: string | Buffer;
  /** Cause, for the log only. */
  detail?: string;
}

export type AccessResult = void | undefined | Rejection;

export type Direction = 'client' | 'upstream';

/** A complete WebSocket message (fragments reassembled). */
export interface Message {
  readonly direction: Direction;
  readonly data: Buffer;
  readonly binary: boolean;
  /** The payload as UTF-8 text, decoded once. */
  text(): string;
  /** The payload parsed as JSON, parsed once however many plugins ask. Throws SyntaxError. */
  json(): unknown;
}

export type MessageVerdict =
  | void
  | undefined
  | { action: 'pass' }
  | { action: 'replace'; data: Buffer | string; binary?: boolean }
  | { action: 'drop'; reply?: string; error?: ErrorCode; detail?: string }
  | { action: 'close'; code: number; reason?: string; error?: ErrorCode; detail?: string };

/**
 * What a `frame` phase may answer: nothing (forward the frame) or close. A close
 * verdict stops the stream right before the frame: nothing of it is forwarded, the
 * sender is closed with `code` (and `reason`), the other side with 1001.
 */
export type FrameVerdict =
  | void
  | undefined
  | { action: 'close'; code: number; reason?: string; error?: ErrorCode; detail?: string };

/** WebSocket opcodes a `frame` phase sees (close frames are not reported). */
export const OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, ping: 0x9, pong: 0xa } as const;

export interface ConnectionSummary {
  protocol: Protocol;
  /** HTTP status sent to the client (101 for an accepted WebSocket). */
  status: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  /** Data messages from the client / to the client (null for HTTP and SSE). */
  messagesIn: number | null;
  messagesOut: number | null;
  closeCode?: number;
  /** Who ended the connection. */
  closedBy?: 'client' | 'upstream' | 'gateway';
  /** Catalogue code when the gateway rejected or cut the request. */
  error?: string;
  /**
   * The plugin whose verdict ended it (a rejection in rewrite/access, a close verdict
   * on a message, a size limit it set), set by the pipeline; absent when the gateway
   * itself refused or nothing was refused.
   */
  rejectedBy?: string;
}

export type MaybePromise<T> = T | Promise<T>;

export interface PluginContext {
  /** Directory of the config file, to resolve relative paths in plugin config. */
  readonly configDir: string;
  /** Every configured consumer (same array for every route of one config: cache on it). */
  readonly consumers: readonly ConsumerInfo[];
  /**
   * Where this instance is configured: `route:<id>`, `global_rule:<id>`,
   * `consumer:<username>` or `consumer_group:<id>`. The same in every gateway
   * instance loading the same config, so shared state (a Redis key) can be named by it.
   */
  readonly scope: string;
  /** `gateway.redis`, when configured: the Redis every limit plugin uses unless it names its own. */
  readonly redis: GatewayRedisSettings | undefined;
}

/** `gateway.redis` as plugins see it: one Redis by URL, or the master Redis Sentinel names (`'url' in r` tells). */
export type GatewayRedisSettings = GatewayRedisUrl | GatewayRedisSentinel;

export interface GatewayRedisUrl {
  /** `redis://[user:password@]host:port[/db]` or `rediss://...`. */
  readonly url: string;
  readonly sentinels?: undefined;
  /** Connect and command timeout, seconds. */
  readonly timeout: number;
  /** Signs and checks revoke-channel messages (admin/revoke.ts). */
  readonly revoke_secret?: string;
}

export interface GatewayRedisSentinel {
  readonly url?: undefined;
  /** The sentinels to ask where the master is. */
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  /** The master group they monitor (`sentinel monitor <name> ...`). */
  readonly master_name: string;
  /** AUTH for the master. */
  readonly username?: string;
  readonly password?: string;
  readonly database: number;
  /** AUTH for the sentinels, when they require it. */
  readonly sentinel_username?: string;
  readonly sentinel_password?: string;
  /** Connect and command timeout, seconds. */
  readonly timeout: number;
  /** Signs and checks revoke-channel messages (admin/revoke.ts). */
  readonly revoke_secret?: string;
}

/**
 * Limits a plugin needs the frame-mode WebSocket parser to enforce while a message
 * is being received (bytes, measured after reassembly of fragments and after
 * decompression). See `PluginDefinition.frameLimits`.
 */
export interface FrameLimits {
  /** Largest message accepted from the client. */
  clientMaxPayload?: number;
  /** Largest message accepted from the upstream. */
  upstreamMaxPayload?: number;
}

export interface PluginDefinition<C = any, S = C> {
  readonly name: string;
  readonly version: string;
  /** Higher runs first on requests and client messages; reversed for upstream messages. */
  readonly priority: number;
  /** JSON Schema of the plugin's config; validated once at load with defaults applied. */
  readonly schema: Record<string, unknown>;
  /**
   * JSON Schema of the credential a consumer carries for this plugin (auth plugins,
   * as APISIX's consumer_schema). Plugins without one may still be set on a consumer
   * or consumer group: their config then overrides the route's for that consumer.
   */
  readonly consumerSchema?: Record<string, unknown>;
  /**
   * Turn a validated config into the state the phases receive (compile regexes,
   * load keys). Runs once per route at load; throw an Error to refuse the config.
   * May return a promise (to import a module, say): the loader awaits it.
   */
  init?(config: C, ctx: PluginContext): S | Promise<S>;
  rewrite?(ctx: RequestContext, state: S): MaybePromise<AccessResult>;
  access?(ctx: RequestContext, state: S): MaybePromise<AccessResult>;
  /**
   * Limits the WebSocket parser must enforce while receiving, before a message is
   * complete (a limit checked in `message` would come after buffering the whole
   * message). Called once when the route's pipeline is built. The effective limit of
   * each direction is the smallest of the route's `websocket.max_payload` and every
   * plugin's; a message over it closes the sender with 1009 and the other side with
   * 1001, and nothing of it is forwarded. Declaring it puts the route in frame mode.
   */
  frameLimits?(state: S): FrameLimits;
  /** Return synchronously when you can: the pipeline only awaits when given a promise. */
  message?(msg: Message, ctx: RequestContext, state: S): MaybePromise<MessageVerdict>;
  /**
   * On each ping or pong frame a peer sends (frame mode only; declaring it puts the
   * route in frame mode). The message phase only sees data messages; this lets a plugin
   * count control frames too (limit-messages). `direction` is who sent the frame,
   * `size` its payload length. Synchronous and cheap: the bridge calls it only when some
   * plugin of the route has it. Pings are answered by the gateway itself and never
   * forwarded, so only `close` has an effect (the sender is closed with its code, the
   * other side with 1001); `drop`, `pass` and `replace` leave the frame as it was.
   * A throwing plugin is logged and ignored.
   */
  control?(kind: 'ping' | 'pong', direction: Direction, size: number, ctx: RequestContext, state: S): MessageVerdict;
  /**
   * On each frame header a peer sends, in tunnel mode (the gateway forwards bytes
   * and reads only frame headers: nothing is unmasked, copied or reassembled). Every
   * frame except close frames is reported: text, binary, each continuation, ping,
   * pong (`opcode`, see OPCODE), with its FIN bit and the payload `length` its header
   * announces (before any decompression: with permessage-deflate passed through, the
   * compressed length). A fragmented message is its first frame (opcode 1 or 2)
   * followed by continuations (0), the last with `fin`.
   *
   * Called before any byte of the frame is forwarded, so a close verdict is exact:
   * the frame and everything after it never reach the other side. Synchronous and
   * cheap (it runs per frame): it cannot wait for anything. Only runs in tunnel mode;
   * when the route is in frame mode for another reason, `message` and `control` run
   * instead, so a plugin with a `frame` phase must have those too and behave the same.
   * A throwing plugin closes the connection with 1011 PLUGIN_ERROR.
   */
  frame?(direction: Direction, opcode: number, fin: boolean, length: number, ctx: RequestContext, state: S): FrameVerdict;
  /**
   * Whether this instance's `message` and `control` phases can be replaced by its
   * `frame` phase, so that the route may stay in tunnel mode (called once when the
   * route's pipeline is built). Absent means yes for a plugin with a `frame` phase;
   * a plugin without one is never tunnelable. A route runs in tunnel mode when every
   * plugin with a `message` or `control` phase is tunnelable and none declares
   * `frameLimits`.
   */
  tunnelable?(state: S): boolean;
  /** Runs exactly once per request or connection; errors are logged, never propagated. */
  log?(ctx: RequestContext, summary: ConnectionSummary, state: S): void;
  /**
   * Let go of what init() opened (a Redis connection, timers). Runs once per
   * instance when the gateway that uses it closes, after every connection ended
   * (so every log phase has run). Errors are logged, never propagated.
   */
  dispose?(state: S): void | Promise<void>;
}

/** Identity helper that gives plugin authors type checking. */
export function definePlugin<C = any, S = C>(plugin: PluginDefinition<C, S>): PluginDefinition<C, S> {
  return plugin;
}
