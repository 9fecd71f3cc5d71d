/**
 * The admin side of a gateway, started by Gateway.start and closed by its close():
 *
 *   - the admin API listener (`admin`), server.ts + handlers.ts;
 *   - the revoke channel (`gateway.redis`): a subscriber that closes this instance's
 *     connections when another instance revokes them, and the publisher DELETE uses
 *     (revoke.ts), whether or not this instance has an admin listener;
 *   - with `gateway.workers` > 1, this worker's end of the admin relay (cluster.ts),
 *     which a /metrics scrape uses too (with or without an admin listener).
 */
import cluster from 'node:cluster';
import { GatewayError } from '../core/errors.js';
import type { Gateway, ListenerAddress } from '../server/gateway.js';
import type { LiveRegistry } from '../server/live.js';
import { WorkerRelay, type RelayOp, type RelayResult } from './cluster.js';
import type { AdminContext } from './handlers.js';
import {
  applyConfigText,
  listConnections,
  markStarted,
  processStatus,
  reloadFile,
  revokeLocal,
  type ConnectionQuery,
  type ProcessStatus,
} from './ops.js';
import { INSTANCE_ENV, parseFilter, RevokeBroadcast } from './revoke.js';
import { AdminServer } from './server.js';

export { serveAdminRelay } from './cluster.js';
export { revokeLocal, type ProcessStatus, type Status, type ConnectionInfo } from './ops.js';
export type { RevokeFilter } from './revoke.js';

export class Admin {
  readonly #gw: Gateway;
  readonly #broadcast: RevokeBroadcast | undefined;
  #server: AdminServer | undefined;
  #relay: WorkerRelay | undefined;

  private constructor(gw: Gateway, live: LiveRegistry) {
    this.#gw = gw;
    const redis = gw.config.gateway.redis;
    this.#broadcast = redis
      ? new RevokeBroadcast({
          redis,
          log: gw.log,
          onRevoke: (f, blockS) => {
            if (blockS !== undefined && 'consumer' in f && !gw.block(f.consumer, blockS)) {
              gw.log.warn({ consumer: f.consumer }, 'block from another instance not applied: the block list is full');
            }
            return revokeLocal(live, f);
          },
          onUnblock: (consumer) => void gw.unblock(consumer),
          // A block found in Redis after a reconnect may be one whose revocation this
          // instance missed while it was away: close the consumer's connections too.
          onBlock: (consumer, until) => {
            if (!gw.blockUntil(consumer, until)) return false;
            revokeLocal(live, { consumer });
            return true;
          },
        })
      : undefined;
  }

  /** Start what the config asks for. Rejects when the admin port cannot be bound. */
  static async start(gw: Gateway, live: LiveRegistry): Promise<Admin> {
    markStarted(gw);
    const admin = new Admin(gw, live);
    admin.#broadcast?.start();
    const settings = gw.config.admin;
    // Relay only under our own primary (cli.ts sets the instance id before forking);
    // a gateway embedded in someone else's cluster answers for itself. A scrape of
    // /metrics (admin listener or metrics.listen) collects every worker's through it.
    if (cluster.isWorker && process.env[INSTANCE_ENV] && (settings || gw.metrics)) {
      const relay = new WorkerRelay((op, args) => admin.#exec(op, args));
      admin.#relay = relay;
      gw.metrics?.gatherFrom((timeoutMs) => relay.call('metrics', null, timeoutMs));
    }
    if (!settings) return admin;
    const ctx: AdminContext = {
      gw,
      log: gw.log,
      broadcast: admin.#broadcast,
      run: (op, args, timeoutMs) => admin.#run(op, args, timeoutMs),
    };
    const server = new AdminServer({
      listen: settings.listen,
      // A reload refuses a change of `admin.listen`; it may rotate the key (setKey).
      key: settings.key,
      log: gw.log,
      context: ctx,
    });
    try {
      await server.listen();
    } catch (err) {
      await admin.close();
      throw err;
    }
    admin.#server = server;
    const a = server.address();
    gw.log.info({ admin: a, key: settings.key !== undefined ? 'required' : 'none (loopback)' }, 'admin API listening');
    return admin;
  }

  /** The status of a gateway without an Admin (not started yet). */
  static processStatus(gw: Gateway): ProcessStatus {
    return processStatus(gw);
  }

  /** A reload's new `admin.key` (the loader kept a non-loopback listener from losing it). */
  setKey(key: string | undefined): void {
    this.#server?.setKey(key);
  }

  /** Where the admin API listens (undefined without one). */
  address(): ListenerAddress | undefined {
    return this.#server?.address();
  }

  /** This process's status (connections, stores). */
  status(): ProcessStatus {
    const b = this.#broadcast;
    return processStatus(this.#gw, b ? { address: b.address, subscribed: b.subscribed } : undefined);
  }

  /** Stop the admin listener (first, so no call starts during the drain). */
  async closeListener(): Promise<void> {
    this.#relay?.close();
    await this.#server?.close();
  }

  /** Stop everything, the revoke channel last (so revocations still arrive while draining). */
  async close(): Promise<void> {
    await this.closeListener();
    await this.#broadcast?.close();
  }

  #run(op: RelayOp, args: unknown, timeoutMs: number): Promise<RelayResult> {
    if (this.#relay) {
      return this.#relay.call(op, args, timeoutMs).catch((err: unknown) => {
        throw new GatewayError('ADMIN_UNAVAILABLE', { detail: `relay: ${(err as Error).message}` });
      });
    }
    return this.#exec(op, args).then(
      (value) => ({ answers: [{ pid: process.pid, value }], missing: 0 }),
      (err: unknown) => ({ answers: [{ pid: process.pid, error: err instanceof Error ? err.message : String(err) }], missing: 0 }),
    );
  }

  /** One operation on this process's gateway; plain JSON in and out (it may come over IPC). */
  async #exec(op: RelayOp, args: unknown): Promise<unknown> {
    const gw = this.#gw;
    switch (op) {
      case 'status':
        return this.status();
      case 'connections': {
        const list = listConnections(gw, args as ConnectionQuery);
        if (cluster.isWorker) for (const c of list.connections) c.worker = process.pid;
        return list;
      }
      case 'revoke': {
        const a = (args ?? {}) as { filter?: unknown; block_s?: unknown };
        const filter = parseFilter(a.filter);
        if (!filter) throw new Error('bad revoke filter');
        // Block first: a handshake finishing meanwhile is refused, not admitted after the close.
        const blocked = typeof a.block_s === 'number' && 'consumer' in filter ? gw.block(filter.consumer, a.block_s) : undefined;
        return { closed: gw.revoke(filter), ...(blocked !== undefined ? { blocked } : {}) };
      }
      case 'blocks':
        return { blocks: gw.blocks() };
      case 'unblock': {
        const consumer = (args as { consumer?: unknown } | null)?.consumer;
        if (typeof consumer !== 'string') throw new Error('bad unblock');
        return { lifted: gw.unblock(consumer) };
      }
      case 'config': {
        const text = (args as { text?: unknown } | null)?.text;
        if (typeof text !== 'string') throw new Error('no config text');
        return applyConfigText(gw, text);
      }
      case 'reload':
        return reloadFile(gw);
      case 'metrics':
        if (!gw.metrics) throw new Error('metrics are disabled');
        return gw.metrics.snapshot();
    }
  }
}
