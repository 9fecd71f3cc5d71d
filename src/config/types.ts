/**
 * The shape of a validated configuration, after YAML parsing, `${ENV}` expansion,
 * schema validation (defaults applied) and cross-reference checks. Times are in
 * seconds as written in the file (APISIX's convention); sizes in bytes.
 */
import type { GatewayRedisSettings, PluginDefinition } from '../core/plugin.js';

export interface TlsFiles {
  cert: string;
  key: string;
  /** Loaded at validation time so an unreadable key is a config error. */
  certPem?: Buffer;
  keyPem?: Buffer;
}

export interface ListenConfig {
  host: string;
  port: number;
  tls?: TlsFiles;
}

/**
 * permessage-deflate parameters (RFC 7692), applied on each hop: toward the client
 * the gateway is the server, toward the upstream it is the client.
 */
export interface PerMessageDeflateSettings {
  server_no_context_takeover?: boolean;
  client_no_context_takeover?: boolean;
  server_max_window_bits?: number;
  client_max_window_bits?: number;
}

export interface WebSocketSettings {
  /** Close a connection after this many seconds with no traffic either way (0 = never). */
  idle_timeout: number;
  /** Largest message (frame mode) in bytes, after reassembly and decompression. */
  max_payload: number;
  /** Most fragments per message (frame mode). */
  max_fragments: number;
  /** Send a ping to the client every N seconds in frame mode (0 = never). */
  ping_interval: number;
  /** Tunnel mode: pass Sec-WebSocket-Extensions through unchanged, or offer none. */
  extensions: 'passthrough' | 'none';
  /** Frame mode: stop reading from one side while the other has more unsent bytes than this. */
  max_buffered: number;
  /** Frame mode: close a peer that keeps its unsent bytes above max_buffered this many seconds (0 = never). */
  stall_timeout: number;
  /** Frame mode: negotiate permessage-deflate on both hops (false: never). */
  permessage_deflate: boolean | PerMessageDeflateSettings;
}

export interface SseSettings {
  /** Insert a `:` comment between events after N quiet seconds (0 = never). */
  heartbeat_interval: number;
  /** End a stream after N seconds (0 = never); the client reconnects with Last-Event-ID. */
  max_duration: number;
}

export interface LogSettings {
  level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `stdout`, `stderr`, or a file path. */
  destination: string;
  /** `true`/`false` as written, or a mapping (defaults applied, a file path made absolute). */
  access_log: boolean | AccessLogSettings;
}

/** `gateway.log.access_log` in its mapping form. */
export interface AccessLogSettings {
  enabled: boolean;
  /** `stdout`, `stderr`, or a file path; absent: the main log's destination. */
  destination?: string;
  /** The level access lines are written at. */
  level: Exclude<LogSettings['level'], 'silent'>;
}

export interface GatewaySettings {
  listen: ListenConfig[];
  trusted_proxies: string[];
  /** Which header trusted proxies use to pass the client address. */
  real_ip_header: 'x-forwarded-for' | 'forwarded';
  /** Seconds allowed to receive a request's headers (slow-loris bound). */
  client_header_timeout: number;
  /** Largest request header block in bytes. */
  max_header_size: number;
  /** Keep-alive idle time for client connections, seconds. */
  keepalive_timeout: number;
  /** Seconds a handshake may take end to end (auth + upstream), before it is answered 504/408. */
  handshake_timeout: number;
  /** WebSocket handshakes one client address may have in progress at once (0: no cap). */
  max_pending_handshakes_per_ip: number;
  /** Seconds to let connections finish on SIGTERM/SIGINT before they are cut. */
  shutdown_timeout: number;
  /** Reload when the config file changes (as on SIGHUP). */
  watch_config: boolean;
  /** Worker processes sharing the listening ports (1: no cluster; auto: os.availableParallelism()). */
  workers: number | 'auto';
  websocket: WebSocketSettings;
  sse: SseSettings;
  log: LogSettings;
  /** JavaScript module paths, each exporting a plugin (default export or `plugin`). */
  custom_plugins: string[];
  /** The Redis limit plugins use when they do not name their own (absent: none). */
  redis?: GatewayRedisSettings;
}

export interface UpstreamNode {
  host: string;
  port: number;
  weight: number;
}

export interface UpstreamConfig {
  id: string;
  nodes: UpstreamNode[];
  type: 'roundrobin';
  scheme: 'http' | 'https';
  timeout: { connect: number; send: number; read: number };
  pass_host: 'pass' | 'node' | 'rewrite';
  upstream_host?: string;
  keepalive_pool: { size: number; idle_timeout: number };
  tls: { verify: boolean; ca?: string; caPem?: Buffer; servername?: string };
}

export type PluginConfigs = Record<string, Record<string, unknown>>;

/** A plugin configured on a route or global rule: validated config and its init() state. */
export interface PluginInstance {
  readonly name: string;
  readonly def: PluginDefinition;
  readonly config: Record<string, unknown>;
  readonly state: unknown;
}

export interface RouteConfig {
  id: string;
  uris: string[];
  hosts: string[];
  methods: string[];
  priority: number;
  enable_websocket: boolean;
  upstream: UpstreamConfig;
  plugins: PluginConfigs;
  /** Built from `plugins` at load; not part of the file. */
  instances: PluginInstance[];
  /** Route-level overrides of gateway.websocket / gateway.sse, merged. */
  websocket: WebSocketSettings;
  sse: SseSettings;
}

export interface ConsumerConfig {
  username: string;
  group_id?: string;
  desc?: string;
  labels?: Record<string, string>;
  /** Validated configs by plugin name: credentials (auth plugins) and overrides. */
  plugins: PluginConfigs;
  /**
   * Non-auth plugins set on this consumer or its group, instantiated: for this
   * consumer they replace the route's plugin of the same name (APISIX's merge).
   */
  instances: PluginInstance[];
}

export interface ConsumerGroup {
  id: string;
  desc?: string;
  labels?: Record<string, string>;
  plugins: PluginConfigs;
  instances: PluginInstance[];
}

export interface GlobalRule {
  id: string;
  plugins: PluginConfigs;
  instances: PluginInstance[];
}

/** `admin`: the admin API listener. */
export interface AdminSettings {
  listen: ListenConfig;
  /** Sent by every admin call as X-API-KEY; required on a non-loopback listener. */
  key?: string;
}

/** `metrics`: Prometheus metrics. */
export interface MetricsSettings {
  enabled: boolean;
  /** A separate listener serving only /metrics. */
  listen?: ListenConfig;
  /** Label per-connection metrics with the consumer (bounded). */
  consumer_label: boolean;
  max_consumer_labels: number;
}

export interface Config {
  /** Absolute path of the file it came from, or `<inline>`. */
  source: string;
  gateway: GatewaySettings;
  upstreams: UpstreamConfig[];
  routes: RouteConfig[];
  consumers: ConsumerConfig[];
  consumer_groups: ConsumerGroup[];
  global_rules: GlobalRule[];
  /** Absent: no admin API. */
  admin?: AdminSettings;
  metrics: MetricsSettings;
}
