/**
 * One question to the authorization service: a GET or POST with the forwarded
 * headers, answered by an Outcome. Never rejects: a refused connection, a reset,
 * a TLS failure or no answer within `timeout` is a `failure`.
 *
 * The whole exchange (connect, request, response head and, for a denial, the body)
 * must finish within `timeout`. A 2xx admits as soon as its head arrives; its body
 * is drained (so the connection can be reused) and never read. A denial's body is
 * kept up to MAX_DENY_BODY bytes; a longer one is not relayed.
 *
 * Connections are pooled in keep-alive agents shared by every route with the same
 * settings (module level, so reloading the config creates no new pools).
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';

export const MAX_DENY_BODY = 64 * 1024;

export type Outcome =
  | { readonly kind: 'allow'; readonly headers: IncomingHttpHeaders }
  | {
      readonly kind: 'deny';
      readonly status: number;
      readonly headers: IncomingHttpHeaders;
      /** Undefined when empty, over MAX_DENY_BODY, or cut short. */
      readonly body: Buffer | undefined;
      /** Why the body is not relayed, when it is not (for the log). */
      readonly note: string | undefined;
      /** A body cut short is a transport failure: never cached. */
      readonly complete: boolean;
    }
  | { readonly kind: 'failure'; readonly reason: string };

export interface AgentOptions {
  https: boolean;
  keepalive: boolean;
  keepalive_timeout: number;
  keepalive_pool: number;
  ssl_verify: boolean;
}

const agents = new Map<string, http.Agent>();

/** The shared agent for these settings. */
export function agentFor(o: AgentOptions): http.Agent {
  const key = `${o.https ? 's' : 'p'}|${o.keepalive ? o.keepalive_timeout : 0}|${o.keepalive ? o.keepalive_pool : 0}|${o.ssl_verify}`;
  let agent = agents.get(key);
  if (!agent) {
    const opts: https.AgentOptions = o.keepalive
      ? { keepAlive: true, maxFreeSockets: o.keepalive_pool, timeout: o.keepalive_timeout, scheduling: 'lifo' }
      : { keepAlive: false };
    if (o.https) opts.rejectUnauthorized = o.ssl_verify;
    agent = o.https ? new https.Agent(opts) : new http.Agent(opts);
    agents.set(key, agent);
  }
  return agent;
}

export interface Target {
  readonly url: URL;
  readonly https: boolean;
  readonly method: 'GET' | 'POST';
  readonly agent: http.Agent;
  readonly timeout: number;
  /** scheme://host:port of the service, for log lines (never its path or user info). */
  readonly origin: string;
}

export function ask(t: Target, headers: Record<string, string>): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => new Exchange(t, headers, resolve));
}

class Exchange {
  readonly #t: Target;
  readonly #resolve: (o: Outcome) => void;
  readonly #req: http.ClientRequest;
  readonly #timer: NodeJS.Timeout;
  #settled = false;
  #timedOut = false;
  /** Status and headers of a denial whose body is being read. */
  #denyHead: { status: number; headers: IncomingHttpHeaders } | undefined;

  constructor(t: Target, headers: Record<string, string>, resolve: (o: Outcome) => void) {
    this.#t = t;
    this.#resolve = resolve;
    if (t.method === 'POST') headers['content-length'] = '0';
    const lib = t.https ? https : http;
    this.#req = lib.request(t.url, { method: t.method, headers, agent: t.agent });
    this.#timer = setTimeout(onTimeout, t.timeout, this);
    this.#req.on('response', (res: IncomingMessage) => this.#onResponse(res));
    this.#req.on('error', (err: NodeJS.ErrnoException) => this.#onError(err));
    this.#req.end();
  }

  timeout(): void {
    this.#timedOut = true;
    // Also stops draining an admitting body that is still arriving.
    this.#req.destroy();
    const head = this.#denyHead;
    // The service said no and only its body is late: still a denial (never let
    // allow_degradation turn a "no" into a "yes"), just without the body.
    if (head) this.#settle(deny(head.status, head.headers, undefined, 'body late, not relayed', false));
    else this.#settle({ kind: 'failure', reason: `no answer from ${this.#t.origin} within ${this.#t.timeout} ms` });
  }

  #settle(o: Outcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(o);
  }

  #done(): void {
    clearTimeout(this.#timer);
  }

  #onError(err: NodeJS.ErrnoException): void {
    this.#done();
    if (this.#timedOut) return;
    const head = this.#denyHead;
    if (head) this.#settle(deny(head.status, head.headers, undefined, 'body cut short, not relayed', false));
    else this.#settle({ kind: 'failure', reason: `${this.#t.origin} unreachable: ${err.code ?? err.message}` });
  }

  #onResponse(res: IncomingMessage): void {
    const status = res.statusCode ?? 0;
    res.on('error', ignore);
    if (status >= 200 && status < 300) {
      this.#settle({ kind: 'allow', headers: res.headers });
      res.on('end', () => this.#done());
      res.resume();
      return;
    }
    if (status < 300) {
      // 1xx as a final status cannot reach here; anything else below 200 is not an answer.
      this.#done();
      res.destroy();
      this.#settle({ kind: 'failure', reason: `${this.#t.origin} answered status ${status}` });
      return;
    }
    this.#denyHead = { status, headers: res.headers };
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    res.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > MAX_DENY_BODY) {
        over = true;
        chunks.length = 0;
        this.#done();
        res.destroy();
        this.#settle(deny(status, res.headers, undefined, `body over ${MAX_DENY_BODY} bytes not relayed`, true));
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => {
      this.#done();
      const body = size > 0 ? Buffer.concat(chunks, size) : undefined;
      this.#settle(deny(status, res.headers, body, undefined, true));
    });
    res.on('close', () => {
      // Closed before 'end': the body was cut short (reset, or our timeout).
      this.#done();
      if (this.#timedOut) return;
      this.#settle(deny(status, res.headers, undefined, 'body cut short, not relayed', false));
    });
  }
}

function deny(status: number, headers: IncomingHttpHeaders, body: Buffer | undefined, note: string | undefined, complete: boolean): Outcome {
  return { kind: 'deny', status, headers, body, note, complete };
}

function onTimeout(x: Exchange): void {
  x.timeout();
}

function ignore(): void {}
