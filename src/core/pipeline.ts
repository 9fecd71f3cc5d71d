/**
 * The plugin pipeline of one route: global-rule plugins and route plugins merged
 * (a plugin named on both runs once, with the route's config), ordered by
 * priority, highest first. Messages from the upstream run in reverse order.
 *
 * Runners are synchronous until a plugin returns a promise: the common path
 * allocates no promise and no closure.
 *
 * The pipeline also decides the WebSocket mode of its connections
 * (`inspectsMessages`): tunnel unless some plugin needs whole messages (a `message`
 * or `control` phase that is not tunnelable, or `frameLimits`). Tunnelable plugins
 * run their `frame` phase on frame headers instead (`runFrame`).
 */
import type { GlobalRule, PluginInstance, RouteConfig, WebSocketSettings } from '../config/types.js';
import type { Logger } from './log.js';
import type {
  AccessResult,
  ConnectionSummary,
  Direction,
  FrameVerdict,
  Message,
  MessageVerdict,
  Rejection,
  RequestContext,
} from './plugin.js';

type Phase = 'rewrite' | 'access';

/** The largest message of one direction in frame mode, and who set it (undefined: the route). */
export interface FrameLimit {
  readonly maxPayload: number;
  readonly plugin: string | undefined;
}

/** Effective frame-mode limits of a route: the smallest of the route's and every plugin's. */
export interface EffectiveFrameLimits {
  readonly client: FrameLimit;
  readonly upstream: FrameLimit;
}

export class Pipeline {
  /** All plugins of the route, highest priority first. */
  readonly plugins: readonly PluginInstance[];
  readonly #rewriteSteps: readonly PluginInstance[];
  readonly #accessSteps: readonly PluginInstance[];
  /** Plugins set on consumers (and their groups), by username. */
  readonly #consumerPlugins: ReadonlyMap<string, readonly PluginInstance[]>;
  readonly #perConsumer = new Map<string, Pipeline>();
  readonly #clientMessage: readonly PluginInstance[];
  readonly #upstreamMessage: readonly PluginInstance[];
  readonly #control: readonly PluginInstance[];
  /** Plugins whose frame phase runs in tunnel mode (empty when the route needs frame mode). */
  readonly #frame: readonly PluginInstance[];
  readonly #needsFrameMode: boolean;
  readonly #logSteps: readonly PluginInstance[];
  /** The plugins' own limits (frameLimits), before the route's are applied. */
  readonly #pluginLimits: PluginLimits;
  readonly #frameLimits = new WeakMap<WebSocketSettings, EffectiveFrameLimits>();

  constructor(instances: readonly PluginInstance[], consumerPlugins: ReadonlyMap<string, readonly PluginInstance[]> = new Map()) {
    this.#consumerPlugins = consumerPlugins;
    // Highest priority first; equal priorities by name, so the order never depends on where a plugin was configured.
    const sorted = [...instances].sort((a, b) => b.def.priority - a.def.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.plugins = sorted;
    this.#rewriteSteps = sorted.filter((i) => i.def.rewrite);
    this.#accessSteps = sorted.filter((i) => i.def.access);
    this.#clientMessage = sorted.filter((i) => i.def.message);
    this.#upstreamMessage = [...this.#clientMessage].reverse();
    this.#control = sorted.filter((i) => i.def.control);
    this.#logSteps = sorted.filter((i) => i.def.log);
    this.#pluginLimits = collectFrameLimits(sorted);
    const tunnelable = new Set(sorted.filter(isTunnelable));
    this.#needsFrameMode =
      this.#pluginLimits.declared || sorted.some((i) => (i.def.message || i.def.control) && !tunnelable.has(i));
    this.#frame = this.#needsFrameMode ? [] : sorted.filter((i) => tunnelable.has(i));
  }

  static forRoute(
    route: RouteConfig,
    globalRules: readonly GlobalRule[],
    consumerPlugins: ReadonlyMap<string, readonly PluginInstance[]> = new Map(),
  ): Pipeline {
    const byName = new Map<string, PluginInstance>();
    for (const rule of globalRules) for (const inst of rule.instances) byName.set(inst.name, inst);
    for (const inst of route.instances) byName.set(inst.name, inst);
    return new Pipeline([...byName.values()], consumerPlugins);
  }

  /**
   * True when the connection needs frame mode: some plugin inspects messages (a
   * `message` or `control` phase it cannot replace by its `frame` phase: see
   * `tunnelable`) or asks the parser for limits (frameLimits).
   */
  get inspectsMessages(): boolean {
    return this.#needsFrameMode;
  }

  /** Some plugin has a control phase (the bridge then reports pings and pongs). */
  get hasControl(): boolean {
    return this.#control.length > 0;
  }

  /** Tunnel mode with some plugin's frame phase to run: the tunnel then reads frame headers for it. */
  get hasFrame(): boolean {
    return this.#frame.length > 0;
  }

  /**
   * The largest message of each direction for a route with these settings: the
   * smaller of `settings.max_payload` and every plugin's `frameLimits`. Computed
   * once per settings object.
   */
  frameLimits(settings: WebSocketSettings): EffectiveFrameLimits {
    let limits = this.#frameLimits.get(settings);
    if (!limits) {
      const route: FrameLimit = { maxPayload: settings.max_payload, plugin: undefined };
      const { client, upstream } = this.#pluginLimits;
      limits = {
        client: client && client.maxPayload < route.maxPayload ? client : route,
        upstream: upstream && upstream.maxPayload < route.maxPayload ? upstream : route,
      };
      this.#frameLimits.set(settings, limits);
    }
    return limits;
  }

  /** The resolved order, for the start-up log and the admin API. */
  describe(): string[] {
    return this.plugins.map((p) => `${p.name}(${p.def.priority})`);
  }

  /**
   * Run one request phase for every plugin that has it. Returns the first
   * rejection, or undefined. A throwing plugin becomes a PLUGIN_ERROR rejection.
   * The plugin that rejected is recorded in `summary.rejectedBy` when given.
   */
  runPhase(phase: Phase, ctx: RequestContext, summary?: ConnectionSummary): Rejection | undefined | Promise<Rejection | undefined> {
    return this.#runFrom(phase === 'rewrite' ? this.#rewriteSteps : this.#accessSteps, 0, ctx, summary);
  }

  /**
   * The pipeline for requests of `username`: the consumer's (and its group's)
   * non-auth plugins replace the route's plugins of the same name, as in APISIX.
   * Built once per consumer and cached.
   */
  forConsumer(username: string): Pipeline {
    const own = this.#consumerPlugins.get(username);
    if (!own || own.length === 0) return this;
    let p = this.#perConsumer.get(username);
    if (!p) {
      const byName = new Map<string, PluginInstance>();
      for (const inst of this.plugins) byName.set(inst.name, inst);
      for (const inst of own) byName.set(inst.name, inst);
      p = new Pipeline([...byName.values()]);
      this.#perConsumer.set(username, p);
    }
    return p;
  }

  #runFrom(
    steps: readonly PluginInstance[],
    start: number,
    ctx: RequestContext,
    summary: ConnectionSummary | undefined,
  ): Rejection | undefined | Promise<Rejection | undefined> {
    const phase: Phase = steps === this.#rewriteSteps ? 'rewrite' : 'access';
    for (let i = start; i < steps.length; i++) {
      const inst = steps[i]!;
      let result: AccessResult | Promise<AccessResult>;
      try {
        result = inst.def[phase]!(ctx, inst.state);
      } catch (err) {
        return rejectedBy(summary, inst, pluginFailure(inst, phase, err));
      }
      if (isPromise(result)) {
        return result.then(
          (r) => (r ? rejectedBy(summary, inst, r) : this.#runFrom(steps, i + 1, ctx, summary)),
          (err: unknown) => rejectedBy(summary, inst, pluginFailure(inst, phase, err)),
        );
      }
      if (result) return rejectedBy(summary, inst, result);
    }
    return undefined;
  }

  /**
   * Pass one complete message through every message plugin, in priority order for
   * client messages and reversed for upstream messages. A replace verdict hands
   * the new message to the next plugin; drop and close stop the chain. The plugin
   * of a close verdict is recorded in `summary.rejectedBy` when given.
   */
  runMessage(msg: Message, ctx: RequestContext, summary?: ConnectionSummary): MessageVerdict | Promise<MessageVerdict> {
    const chain = msg.direction === 'client' ? this.#clientMessage : this.#upstreamMessage;
    return runMessageFrom(chain, 0, msg, ctx, undefined, summary);
  }

  /**
   * Report a ping or pong frame to every control plugin, in priority order. Returns
   * the first close verdict (the bridge closes the sender), else undefined. A
   * throwing plugin is logged and skipped.
   */
  runControl(kind: 'ping' | 'pong', direction: Direction, size: number, ctx: RequestContext): MessageVerdict {
    for (const inst of this.#control) {
      let v: MessageVerdict;
      try {
        v = inst.def.control!(kind, direction, size, ctx, inst.state);
      } catch (err) {
        ctx.log.error({ plugin: inst.name, phase: 'control', err: errMessage(err), request_id: ctx.id }, 'plugin failed in control phase');
        continue;
      }
      if (v && v.action === 'close') return v;
    }
    return undefined;
  }

  /**
   * Report one frame header (tunnel mode) to every frame plugin, in priority order
   * for both directions, as control. Returns the first close verdict (recorded in
   * `summary.rejectedBy`), else undefined. A throwing plugin closes with 1011
   * PLUGIN_ERROR: logging and going on would log once per frame.
   */
  runFrame(direction: Direction, opcode: number, fin: boolean, length: number, ctx: RequestContext, summary?: ConnectionSummary): FrameVerdict {
    const steps = this.#frame;
    for (let i = 0; i < steps.length; i++) {
      const inst = steps[i]!;
      let v: FrameVerdict;
      try {
        v = inst.def.frame!(direction, opcode, fin, length, ctx, inst.state);
      } catch (err) {
        v = {
          action: 'close',
          code: 1011,
          reason: 'PLUGIN_ERROR',
          error: 'PLUGIN_ERROR',
          detail: `plugin ${inst.name} failed in frame: ${errMessage(err)}`,
        };
      }
      if (v && v.action === 'close') {
        if (summary) summary.rejectedBy = inst.name;
        return v;
      }
    }
    return undefined;
  }

  /** Run every log phase once. Failures are logged, never propagated. */
  runLog(ctx: RequestContext, summary: ConnectionSummary, log: Logger): void {
    for (const inst of this.#logSteps) {
      try {
        inst.def.log!(ctx, summary, inst.state);
      } catch (err) {
        log.error({ plugin: inst.name, phase: 'log', err: errMessage(err), request_id: ctx.id }, 'plugin failed in log phase');
      }
    }
  }
}

function runMessageFrom(
  chain: readonly PluginInstance[],
  start: number,
  msg: Message,
  ctx: RequestContext,
  replaced: MessageVerdict,
  summary: ConnectionSummary | undefined,
): MessageVerdict | Promise<MessageVerdict> {
  let current = msg;
  let outcome = replaced;
  for (let i = start; i < chain.length; i++) {
    const inst = chain[i]!;
    let verdict: MessageVerdict | Promise<MessageVerdict>;
    try {
      verdict = inst.def.message!(current, ctx, inst.state);
    } catch (err) {
      return closedBy(summary, inst, messagePluginFailure(inst, err));
    }
    if (isPromise(verdict)) {
      const at = current;
      return verdict.then(
        (v) => {
          const next = applyVerdict(v, at);
          if (next === STOP) return closedBy(summary, inst, v);
          return runMessageFrom(chain, i + 1, next ?? at, ctx, next ? v : outcome, summary);
        },
        (err: unknown) => closedBy(summary, inst, messagePluginFailure(inst, err)),
      );
    }
    const next = applyVerdict(verdict, current);
    if (next === STOP) return closedBy(summary, inst, verdict);
    if (next) {
      current = next;
      outcome = verdict;
    }
  }
  return outcome;
}

interface PluginLimits {
  /** Some plugin declares frameLimits (the route needs frame mode). */
  declared: boolean;
  client: FrameLimit | undefined;
  upstream: FrameLimit | undefined;
}

/** The smallest limit of each direction over the plugins that declare frameLimits. Throws TypeError on a bad value. */
function collectFrameLimits(plugins: readonly PluginInstance[]): PluginLimits {
  let declared = false;
  let client: FrameLimit | undefined;
  let upstream: FrameLimit | undefined;
  for (const inst of plugins) {
    if (!inst.def.frameLimits) continue;
    declared = true;
    const l = inst.def.frameLimits(inst.state);
    for (const [key, value] of [['clientMaxPayload', l.clientMaxPayload], ['upstreamMaxPayload', l.upstreamMaxPayload]] as const) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
        throw new TypeError(`plugin "${inst.name}": frameLimits().${key} must be a positive integer`);
      }
    }
    if (l.clientMaxPayload !== undefined && (!client || l.clientMaxPayload < client.maxPayload)) {
      client = { maxPayload: l.clientMaxPayload, plugin: inst.name };
    }
    if (l.upstreamMaxPayload !== undefined && (!upstream || l.upstreamMaxPayload < upstream.maxPayload)) {
      upstream = { maxPayload: l.upstreamMaxPayload, plugin: inst.name };
    }
  }
  return { declared, client, upstream };
}

/** A plugin whose frame phase can stand in for its message and control phases (tunnel mode). */
function isTunnelable(inst: PluginInstance): boolean {
  if (!inst.def.frame) return false;
  return inst.def.tunnelable ? inst.def.tunnelable(inst.state) === true : true;
}

const STOP = Symbol('stop');

/** Returns STOP for drop/close, a new message for replace, undefined to continue unchanged. */
function applyVerdict(v: MessageVerdict, msg: Message): Message | typeof STOP | undefined {
  if (!v || v.action === 'pass') return undefined;
  if (v.action === 'replace') {
    const data = typeof v.data === 'string' ? Buffer.from(v.data) : v.data;
    return new WsMessage(msg.direction, data, v.binary ?? msg.binary);
  }
  return STOP;
}

/** Records which plugin rejected (for metrics and the access log); returns the rejection. */
function rejectedBy(summary: ConnectionSummary | undefined, inst: PluginInstance, r: Rejection): Rejection {
  if (summary) summary.rejectedBy = inst.name;
  return r;
}

/** Records the plugin of a close verdict (a drop ends nothing); returns the verdict. */
function closedBy(summary: ConnectionSummary | undefined, inst: PluginInstance, v: MessageVerdict): MessageVerdict {
  if (summary && v && v.action === 'close') summary.rejectedBy = inst.name;
  return v;
}

function pluginFailure(inst: PluginInstance, phase: string, err: unknown): Rejection {
  return { reject: 'PLUGIN_ERROR', detail: `plugin ${inst.name} failed in ${phase}: ${errMessage(err)}` };
}

function messagePluginFailure(inst: PluginInstance, err: unknown): MessageVerdict {
  return {
    action: 'close',
    code: 1011,
    reason: 'PLUGIN_ERROR',
    error: 'PLUGIN_ERROR',
    detail: `plugin ${inst.name} failed in message: ${errMessage(err)}`,
  };
}

export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null | undefined)?.then === 'function';
}

/** A complete WebSocket message; text and JSON are decoded at most once. */
export class WsMessage implements Message {
  readonly direction: Direction;
  readonly data: Buffer;
  readonly binary: boolean;
  #text: string | undefined;
  #json: unknown;
  #jsonDone = false;
  #jsonError: unknown;

  constructor(direction: Direction, data: Buffer, binary: boolean) {
    this.direction = direction;
    this.data = data;
    this.binary = binary;
  }

  text(): string {
    return (this.#text ??= this.data.toString('utf8'));
  }

  json(): unknown {
    if (!this.#jsonDone) {
      this.#jsonDone = true;
      try {
        this.#json = JSON.parse(this.text());
      } catch (err) {
        this.#jsonError = err;
      }
    }
    if (this.#jsonError) throw this.#jsonError;
    return this.#json;
  }
}
