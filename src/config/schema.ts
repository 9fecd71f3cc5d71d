/**
 * The JSON Schema of the config file, as written by the user (before the
 * loader normalises it into `Config`). Defaults live here so that the docs can
 * be generated from this one object; every property carries a `description`.
 *
 * Rules kept on purpose:
 * - every object sets `additionalProperties: false` (unknown keys are errors);
 * - no `$ref` and no `default` inside `oneOf`/`anyOf` branches, so Ajv error
 *   paths stay translatable and defaults never leak from a branch that failed;
 * - checks that need more than a schema (exactly one of `uri`/`uris`, TLS files,
 *   CIDRs, cross references) are done by the loader, with their own messages.
 */

type Schema = Record<string, unknown>;

const seconds = (description: string, dflt: number): Schema => ({
  type: 'number',
  minimum: 0,
  default: dflt,
  description: `${description} Seconds; may be fractional.`,
});

const positiveSeconds = (description: string, dflt: number): Schema => ({
  type: 'number',
  exclusiveMinimum: 0,
  default: dflt,
  description: `${description} Seconds (> 0); may be fractional.`,
});

/** Properties of `gateway.websocket`; route-level overrides use the same ones without defaults. */
function websocketProperties(withDefaults: boolean): Record<string, Schema> {
  const d = (value: unknown): Schema => (withDefaults ? { default: value } : {});
  return {
    idle_timeout: {
      type: 'number', minimum: 0, ...d(300),
      description: 'Close a connection after this many seconds with no traffic either way (0 = never).',
    },
    max_payload: {
      type: 'integer', minimum: 1, maximum: 2147483647, ...d(16777216),
      description: 'Largest message in bytes (frame mode), after reassembly and decompression.',
    },
    max_fragments: {
      type: 'integer', minimum: 1, ...d(1024),
      description: 'Most fragments per message (frame mode).',
    },
    ping_interval: {
      type: 'number', minimum: 0, ...d(0),
      description: 'Send a ping to the client every N seconds in frame mode (0 = never).',
    },
    extensions: {
      type: 'string', enum: ['passthrough', 'none'], ...d('passthrough'),
      description: 'Tunnel mode: pass Sec-WebSocket-Extensions through unchanged (passthrough), or offer none.',
    },
    max_buffered: {
      type: 'integer', minimum: 1024, maximum: 2147483647, ...d(1048576),
      description: 'Frame mode: stop reading from one side while the other side has more than this many unsent bytes.',
    },
    stall_timeout: {
      type: 'number', minimum: 0, ...d(30),
      description: 'Frame mode: close a peer whose unsent bytes stay above max_buffered for this many seconds (0 = never).',
    },
    permessage_deflate: {
      ...d(false),
      description: 'Frame mode: negotiate permessage-deflate with the client and the upstream (true, or RFC 7692 parameters).',
      anyOf: [
        { type: 'boolean' },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            server_no_context_takeover: { type: 'boolean', description: 'The server of each hop resets its compressor after every message.' },
            client_no_context_takeover: { type: 'boolean', description: 'The client of each hop resets its compressor after every message.' },
            server_max_window_bits: { type: 'integer', minimum: 9, maximum: 15, description: 'LZ77 window of the server of each hop.' },
            client_max_window_bits: { type: 'integer', minimum: 9, maximum: 15, description: 'LZ77 window of the client of each hop.' },
          },
        },
      ],
    },
  };
}

function sseProperties(withDefaults: boolean): Record<string, Schema> {
  const d = (value: unknown): Schema => (withDefaults ? { default: value } : {});
  return {
    heartbeat_interval: {
      type: 'number', minimum: 0, ...d(0),
      description: 'Insert a `:` comment line after N quiet seconds (0 = never).',
    },
    max_duration: {
      type: 'number', minimum: 0, ...d(0),
      description: 'End a stream after N seconds (0 = never); the client reconnects with Last-Event-ID.',
    },
  };
}

const pluginsSchema: Schema = {
  type: 'object',
  default: {},
  description: 'Plugin name -> plugin config. Each config is checked against that plugin\'s own schema.',
};

const listenSchema: Schema = {
  type: 'object',
  description: 'One address to listen on.',
  additionalProperties: false,
  required: ['port'],
  properties: {
    host: { type: 'string', minLength: 1, default: '127.0.0.1', description: 'Address to bind (IPv4, IPv6 or a host name).' },
    port: { type: 'integer', minimum: 0, maximum: 65535, description: 'TCP port (0 = any free port).' },
    tls: {
      type: 'object',
      description: 'Serve TLS on this address. Both files are read and checked as a pair at load.',
      additionalProperties: false,
      required: ['cert', 'key'],
      properties: {
        cert: { type: 'string', minLength: 1, description: 'PEM certificate (chain) file, relative to the config file.' },
        key: { type: 'string', minLength: 1, description: 'PEM private key file, relative to the config file.' },
      },
    },
  },
};

const gatewaySchema: Schema = {
  type: 'object',
  default: {},
  description: 'Settings of the gateway process itself.',
  additionalProperties: false,
  properties: {
    listen: {
      type: 'array',
      minItems: 1,
      items: listenSchema,
      default: [{ host: '127.0.0.1', port: 9080 }],
      description: 'Addresses to listen on.',
    },
    trusted_proxies: {
      type: 'array',
      items: { type: 'string', description: 'An IPv4/IPv6 address or CIDR.' },
      default: [],
      description: 'Proxies whose client-address header is believed (addresses or CIDRs).',
    },
    real_ip_header: {
      type: 'string',
      enum: ['x-forwarded-for', 'forwarded'],
      default: 'x-forwarded-for',
      description: 'Header trusted proxies use to pass the client address.',
    },
    client_header_timeout: positiveSeconds('Time allowed to receive a request\'s headers (slow-loris bound).', 10),
    max_header_size: {
      type: 'integer', minimum: 1024, maximum: 1048576, default: 16384,
      description: 'Largest request header block, in bytes.',
    },
    keepalive_timeout: positiveSeconds('Keep-alive idle time for client connections.', 60),
    handshake_timeout: positiveSeconds('Time a handshake may take end to end (plugins + upstream).', 10),
    max_pending_handshakes_per_ip: {
      type: 'integer', minimum: 0, default: 32,
      description: 'WebSocket handshakes one client address may have in progress at once (0: no cap); more get 429.',
    },
    shutdown_timeout: seconds('Time connections get to finish on SIGTERM/SIGINT before they are cut.', 10),
    watch_config: {
      type: 'boolean', default: false,
      description: 'Reload when the config file changes (as on SIGHUP): validated first, a bad file keeps the running config.',
    },
    workers: {
      anyOf: [{ type: 'integer', minimum: 1, maximum: 1024 }, { type: 'string', enum: ['auto'] }],
      default: 1,
      description: 'Worker processes sharing the listening ports (node:cluster); auto: one per CPU. 1: no cluster.',
    },
    websocket: {
      type: 'object',
      default: {},
      description: 'WebSocket limits and behaviour; routes may override any of them.',
      additionalProperties: false,
      properties: websocketProperties(true),
    },
    sse: {
      type: 'object',
      default: {},
      description: 'Server-Sent Events behaviour; routes may override any of them.',
      additionalProperties: false,
      properties: sseProperties(true),
    },
    log: {
      type: 'object',
      default: {},
      description: 'Logging.',
      additionalProperties: false,
      properties: {
        level: {
          type: 'string',
          enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
          default: 'info',
          description: 'Lowest level written.',
        },
        destination: {
          type: 'string', minLength: 1, default: 'stdout',
          description: '`stdout`, `stderr`, or a file path (relative to the config file).',
        },
        access_log: {
          type: ['boolean', 'object'],
          default: true,
          description:
            'Write one access-log line per request or connection: true/false, or a mapping giving its own destination and level.',
          additionalProperties: false,
          properties: {
            enabled: { type: 'boolean', default: true, description: 'Write access-log lines.' },
            destination: {
              type: 'string', minLength: 1,
              description: '`stdout`, `stderr`, or a file path (relative to the config file). Default: the main log\'s destination.',
            },
            level: {
              type: 'string',
              enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'],
              default: 'info',
              description: 'The level access lines are written at (in the main log, gateway.log.level still filters them).',
            },
          },
        },
      },
    },
    custom_plugins: {
      type: 'array',
      items: { type: 'string', minLength: 1, description: 'Path of a JavaScript module exporting a plugin.' },
      default: [],
      description: 'User plugin modules (relative to the config file), loaded before any plugin config is checked.',
    },
    redis: {
      type: 'object',
      description:
        'The Redis that limit plugins with policy redis use when they set no redis_host (or redis-sentinel, no redis_sentinels): one connection, shared. Either `url`, or `sentinels` and `master_name`.',
      additionalProperties: false,
      properties: {
        url: { type: 'string', minLength: 1, description: '`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.' },
        sentinels: {
          type: 'array',
          minItems: 1,
          items: { type: 'string', minLength: 3, description: '"host:port" ("[v6]:port") of a Redis Sentinel.' },
          description: 'Instead of `url`: sentinels to ask where the master of `master_name` is.',
        },
        master_name: { type: 'string', minLength: 1, description: 'With `sentinels`: the master group they monitor.' },
        username: { type: 'string', minLength: 1, description: 'With `sentinels`: ACL user for the master (with `url`, put it in the URL).' },
        password: { type: 'string', minLength: 1, description: 'With `sentinels`: password for the master (with `url`, put it in the URL).' },
        database: { type: 'integer', minimum: 0, description: 'With `sentinels`: database number (default 0; with `url`, the URL path).' },
        sentinel_username: { type: 'string', minLength: 1, description: 'With `sentinels`: ACL user for the sentinels, when they require AUTH.' },
        sentinel_password: { type: 'string', minLength: 1, description: 'With `sentinels`: password for the sentinels, when they require AUTH.' },
        timeout: positiveSeconds('Connect and command timeout; a slower Redis counts as unavailable.', 1),
        revoke_secret: {
          type: 'string',
          minLength: 32,
          description:
            'Shared by every instance: messages on the revoke channel (admin API revocations and blocks) are signed with it (HMAC-SHA256) and unsigned, badly signed or stale ones are ignored. At least 32 characters.',
        },
      },
    },
  },
};

const nodeMapSchema: Schema = {
  type: 'object',
  minProperties: 1,
  description: 'APISIX form: "host:port" -> weight. IPv6 as "[::1]:80".',
  additionalProperties: { type: 'integer', minimum: 0, description: 'Weight (0 = never picked).' },
};

const nodeListSchema: Schema = {
  type: 'array',
  minItems: 1,
  description: 'List form: [{host, port, weight}].',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['host', 'port'],
    properties: {
      host: { type: 'string', minLength: 1, description: 'Host name or IP address.' },
      port: { type: 'integer', minimum: 1, maximum: 65535, description: 'TCP port.' },
      weight: { type: 'integer', minimum: 0, description: 'Weight (default 1; 0 = never picked).' },
    },
  },
};

/** Top-level upstreams require an id; an inline route upstream does not. */
function upstreamSchema(requireId: boolean): Schema {
  return {
    type: 'object',
    description: requireId ? 'A named upstream that routes refer to by id.' : 'An upstream defined inside a route.',
    additionalProperties: false,
    required: requireId ? ['id', 'nodes'] : ['nodes'],
    properties: {
      id: {
        type: ['string', 'integer'],
        minLength: 1,
        description: requireId ? 'Unique id, used by routes[].upstream_id.' : 'Optional id (default `route:<route id>`).',
      },
      name: { type: 'string', description: 'Free text.' },
      desc: { type: 'string', description: 'Free text.' },
      nodes: {
        description: 'Servers: a "host:port" -> weight mapping or a list of {host, port, weight}. At least one.',
        oneOf: [nodeMapSchema, nodeListSchema],
      },
      type: { type: 'string', enum: ['roundrobin'], default: 'roundrobin', description: 'Load-balancing algorithm.' },
      scheme: { type: 'string', enum: ['http', 'https'], default: 'http', description: 'Protocol toward the upstream (https also means wss).' },
      timeout: {
        type: 'object',
        default: {},
        description: 'Upstream timeouts.',
        additionalProperties: false,
        properties: {
          connect: positiveSeconds('Time to establish the connection.', 60),
          send: positiveSeconds('Time allowed between two writes to the upstream.', 60),
          read: positiveSeconds('Time allowed between two reads from the upstream (HTTP responses).', 60),
        },
      },
      pass_host: {
        type: 'string',
        enum: ['pass', 'node', 'rewrite'],
        default: 'pass',
        description: 'Host header sent upstream: the client\'s (pass), the node\'s (node), or upstream_host (rewrite).',
      },
      upstream_host: { type: 'string', minLength: 1, description: 'Host header to send; required when pass_host is rewrite.' },
      keepalive_pool: {
        type: 'object',
        default: {},
        description: 'Idle upstream connections kept for reuse (plain HTTP; WebSocket handshakes and event-stream GETs open their own).',
        additionalProperties: false,
        properties: {
          size: { type: 'integer', minimum: 1, default: 320, description: 'Most idle connections kept.' },
          idle_timeout: seconds('How long an idle connection is kept.', 60),
        },
      },
      tls: {
        type: 'object',
        default: {},
        description: 'TLS toward the upstream (scheme https).',
        additionalProperties: false,
        properties: {
          verify: { type: 'boolean', default: true, description: 'Verify the upstream certificate.' },
          ca: { type: 'string', minLength: 1, description: 'PEM CA bundle file (relative to the config file) to verify against.' },
          servername: { type: 'string', minLength: 1, description: 'SNI name and name to verify (default: the node host).' },
        },
      },
    },
  };
}

export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'PURGE'] as const;

const routeSchema: Schema = {
  type: 'object',
  description: 'A route: which requests it matches, where they go, and the plugins on the way.',
  additionalProperties: false,
  required: ['id'],
  properties: {
    id: { type: ['string', 'integer'], minLength: 1, description: 'Unique route id.' },
    name: { type: 'string', description: 'Free text.' },
    desc: { type: 'string', description: 'Free text.' },
    uri: {
      type: 'string',
      description: 'Path to match: starts with `/`; `*` only as the last character (prefix match); `:name` segments capture.',
    },
    uris: {
      type: 'array',
      minItems: 1,
      items: { type: 'string', description: 'A path, as in `uri`.' },
      description: 'Several paths (use `uri` or `uris`, not both).',
    },
    host: { type: 'string', description: 'Host to match (`*.example.com` allowed). Absent = any host.' },
    hosts: {
      type: 'array',
      minItems: 1,
      items: { type: 'string', description: 'A host, as in `host`.' },
      description: 'Several hosts (use `host` or `hosts`, not both).',
    },
    methods: {
      type: 'array',
      uniqueItems: true,
      items: { type: 'string', enum: [...HTTP_METHODS], description: 'An HTTP method.' },
      description: 'Methods to match. Absent = any method.',
    },
    priority: { type: 'integer', default: 0, description: 'When several routes match, the highest priority wins.' },
    enable_websocket: { type: 'boolean', default: false, description: 'Allow WebSocket upgrades on this route.' },
    upstream_id: { type: ['string', 'integer'], minLength: 1, description: 'Id of an entry of `upstreams` (or give `upstream`).' },
    upstream: upstreamSchema(false),
    plugins: pluginsSchema,
    websocket: {
      type: 'object',
      description: 'Overrides of gateway.websocket for this route.',
      additionalProperties: false,
      properties: websocketProperties(false),
    },
    sse: {
      type: 'object',
      description: 'Overrides of gateway.sse for this route.',
      additionalProperties: false,
      properties: sseProperties(false),
    },
  },
};

const consumerSchema: Schema = {
  type: 'object',
  description: 'A consumer: an identity that authentication plugins map credentials to.',
  additionalProperties: false,
  required: ['username'],
  properties: {
    username: { type: 'string', pattern: '^[a-zA-Z0-9_-]+$', description: 'Unique name: letters, digits, `_` and `-`.' },
    group_id: { type: 'string', minLength: 1, description: 'Id of a consumer group (consumer_groups[].id).' },
    desc: { type: 'string', description: 'Free text.' },
    labels: {
      type: 'object',
      additionalProperties: { type: 'string' },
      description: 'Free key/value labels, visible to authorization rules.',
    },
    plugins: pluginsSchema,
  },
};

const consumerGroupSchema: Schema = {
  type: 'object',
  description: 'A consumer group: plugins shared by its consumers (a consumer\'s own config wins).',
  additionalProperties: false,
  required: ['id'],
  properties: {
    id: { type: 'string', pattern: '^[a-zA-Z0-9_.-]+$', description: 'Unique id.' },
    desc: { type: 'string', description: 'Free text.' },
    labels: { type: 'object', additionalProperties: { type: 'string' }, description: 'Free key/value labels.' },
    plugins: pluginsSchema,
  },
};

const globalRuleSchema: Schema = {
  type: 'object',
  description: 'Plugins that run on every route.',
  additionalProperties: false,
  required: ['id'],
  properties: {
    id: { type: ['string', 'integer'], minLength: 1, description: 'Unique id.' },
    plugins: pluginsSchema,
  },
};

const adminSchema: Schema = {
  type: 'object',
  description: 'The admin API (status, live connections, disconnect, config, reload, /metrics) on its own listener. Absent: no admin API.',
  additionalProperties: false,
  properties: {
    listen: {
      ...listenSchema,
      default: { host: '127.0.0.1', port: 9180 },
      description: 'Where the admin API listens (APISIX\'s admin port 9180 by default). A non-loopback address requires `key`.',
    },
    key: {
      type: 'string', minLength: 16,
      description: 'Every admin call must send it as X-API-KEY. Required unless the listener is on a loopback address.',
    },
  },
};

const metricsSchema: Schema = {
  type: 'object',
  default: {},
  description: 'Prometheus metrics, served at /metrics on the admin listener and, optionally, on a listener of their own.',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean', default: true, description: 'Collect metrics (false: none, /metrics answers 404).' },
    listen: { ...listenSchema, description: 'A separate, unauthenticated listener serving only /metrics (for a Prometheus scraper).' },
    consumer_label: {
      type: 'boolean', default: false,
      description: 'Add a `consumer` label to per-connection metrics (bounded by max_consumer_labels; the rest count as `other`).',
    },
    max_consumer_labels: {
      type: 'integer', minimum: 1, maximum: 10000, default: 100,
      description: 'Distinct consumer label values kept; later consumers are counted as `other`.',
    },
  },
};

/** The schema of the whole file. */
export const configSchema: Schema = {
  type: 'object',
  description: 'A Portcullis config file (APISIX standalone style).',
  additionalProperties: false,
  properties: {
    gateway: gatewaySchema,
    upstreams: { type: 'array', items: upstreamSchema(true), default: [], description: 'Named upstreams.' },
    routes: { type: 'array', items: routeSchema, default: [], description: 'Routes, matched by host, path and method.' },
    consumers: { type: 'array', items: consumerSchema, default: [], description: 'Consumers and their credentials.' },
    consumer_groups: { type: 'array', items: consumerGroupSchema, default: [], description: 'Consumer groups.' },
    global_rules: { type: 'array', items: globalRuleSchema, default: [], description: 'Plugins applied to every route.' },
    admin: adminSchema,
    metrics: metricsSchema,
  },
};
