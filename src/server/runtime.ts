/**
 * The runtime: everything built from one config (router, pipelines, upstream
 * pools, client-IP resolver). The gateway swaps it whole on reload.
 */
import { deepEqual } from '../config/compare.js';
import { configInstances } from '../config/load.js';
import type { Config, PluginInstance, RouteConfig } from '../config/types.js';
import type { Logger } from '../core/log.js';
import { Pipeline } from '../core/pipeline.js';
import { Router } from '../router/router.js';
import { Upstream } from '../upstream/upstream.js';
import { ClientIpResolver } from './client-ip.js';
import { disposeAll } from './reload.js';

/**
 * Everything derived from one config. Swapped whole on reload; the exchanges that
 * started under it keep it (and its plugin instances and upstream pools) until
 * they finish.
 */
export class Runtime {
  readonly config: Config;
  readonly router: Router;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly clientIp: ClientIpResolver;
  /** Every plugin instance of the config, each once. */
  readonly instances: ReadonlySet<PluginInstance>;
  /** Exchanges started under this runtime and not finished yet. */
  #active = 0;
  #onIdle: (() => void) | undefined;

  /** `previous`: the runtime being replaced; its upstream pools are reused where the upstream is unchanged. */
  constructor(config: Config, previous?: Runtime) {
    this.config = config;
    this.router = new Router(config.routes);
    const upstreams = new Map<string, Upstream>();
    const pipelines = new Map<string, Pipeline>();
    const consumerPlugins = new Map<string, readonly PluginInstance[]>();
    for (const c of config.consumers) if (c.instances.length > 0) consumerPlugins.set(c.username, c.instances);
    for (const route of config.routes) {
      const id = route.upstream.id;
      if (!upstreams.has(id)) {
        const old = previous?.upstreams.get(id);
        upstreams.set(id, old && deepEqual(old.config, route.upstream) ? old : new Upstream(route.upstream));
      }
      pipelines.set(route.id, Pipeline.forRoute(route, config.global_rules, consumerPlugins));
    }
    this.upstreams = upstreams;
    this.pipelines = pipelines;
    this.clientIp = new ClientIpResolver(config.gateway.trusted_proxies, config.gateway.real_ip_header);
    this.instances = configInstances(config);
  }

  /** An exchange started under this runtime (it calls `leave` when it finishes). */
  enter(): void {
    this.#active++;
  }

  /** An exchange of this runtime finished. Bound once, so it can be an exchange's `onFinish`. */
  readonly leave = (): void => {
    if (--this.#active > 0 || !this.#onIdle) return;
    const f = this.#onIdle;
    this.#onIdle = undefined;
    f();
  };

  /** Exchanges started under this runtime and not finished yet. */
  get active(): number {
    return this.#active;
  }

  /** Call `fn` once no exchange of this runtime is in flight (at once when none is). */
  whenIdle(fn: () => void): void {
    if (this.#active <= 0) fn();
    else this.#onIdle = fn;
  }

  upstreamFor(route: RouteConfig): Upstream {
    return this.upstreams.get(route.upstream.id)!;
  }

  /**
   * Release what the runtime holds: upstream pools, and whatever plugins opened in
   * init() (each instance's `dispose`, once; shared Redis connections close when
   * their last user lets go). Call it after every connection has ended.
   */
  async close(log?: Logger): Promise<void> {
    for (const up of this.upstreams.values()) up.close();
    await disposeAll(this.instances, log);
  }
}
