/**
 * The access log: one JSON line per finished connection or request, built from
 * the `portcullis:finished` channel. Never a credential (the query string is not
 * logged: it may carry an API key), never a message body.
 *
 * `gateway.log.access_log` is `true`/`false`, or a mapping with its own `level` (the
 * level lines are written at) and `destination`. A destination other than the main
 * log's gets a pino destination of its own, flushed and closed with the gateway.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { pino } from 'pino';
import type { AccessLogSettings, LogSettings } from '../config/types.js';
import type { FinishedEvent } from '../core/events.js';
import { createLogger, type Logger } from '../core/log.js';
import { reasonClass } from './reasons.js';

type Level = AccessLogSettings['level'];

/** The settings in their mapping form (`true` is `{ enabled: true, level: info }` on the main log). */
export function accessLogSettings(log: LogSettings): AccessLogSettings {
  const a = log.access_log;
  if (typeof a === 'boolean') return { enabled: a, level: 'info' };
  return a;
}

export class AccessLog {
  readonly #source: object;
  readonly #log: Logger;
  readonly #level: Level;
  /** The destination opened for the access log alone (closed with it). */
  readonly #own: ReturnType<typeof pino.destination> | undefined;
  readonly #onFinished: (message: unknown) => void;
  readonly #enabled: boolean;

  /**
   * `main`: the gateway's logger; `settings`: `gateway.log` (the access log shares the
   * main logger when its destination is the main log's).
   */
  constructor(source: object, main: Logger, settings: LogSettings) {
    this.#source = source;
    const a = accessLogSettings(settings);
    this.#enabled = a.enabled;
    this.#level = a.level;
    if (a.enabled && a.destination !== undefined && a.destination !== settings.destination) {
      const d = a.destination;
      const stream = pino.destination(
        d === 'stdout' ? { dest: 1, sync: false } : d === 'stderr' ? { dest: 2, sync: false } : { dest: d, sync: false, mkdir: true },
      );
      this.#own = stream;
      this.#log = createLogger({ level: a.level, destination: d, access_log: false }, stream);
    } else {
      this.#own = undefined;
      this.#log = main;
    }
    this.#onFinished = (message: unknown) => this.#write(message as FinishedEvent);
    if (a.enabled) subscribe('portcullis:finished', this.#onFinished);
  }

  #write(ev: FinishedEvent): void {
    if (ev.source !== this.#source) return;
    const s = ev.summary;
    const consumer = ev.ctx?.consumer;
    this.#log[this.#level](
      {
        type: 'access',
        request_id: ev.requestId,
        route: ev.routeId ?? null,
        protocol: s.protocol,
        method: ev.method,
        path: ev.path,
        client_ip: ev.clientIp,
        consumer: consumer?.username ?? null,
        status: s.status,
        close_code: s.closeCode ?? null,
        closed_by: s.closedBy ?? null,
        duration_ms: s.durationMs,
        bytes_in: s.bytesIn,
        bytes_out: s.bytesOut,
        messages_in: s.messagesIn,
        messages_out: s.messagesOut,
        error: s.error ?? null,
        reason: s.error ? reasonClass(s.error) : null,
        ...(s.rejectedBy ? { rejected_by: s.rejectedBy } : {}),
        ...(ev.detail ? { detail: ev.detail } : {}),
      },
      'access',
    );
  }

  /** Stop writing; an access log with its own destination flushes and closes it. */
  close(): Promise<void> {
    if (this.#enabled) unsubscribe('portcullis:finished', this.#onFinished);
    const own = this.#own;
    if (!own) return Promise.resolve();
    // end() writes what is buffered, then closes the file (never fd 1 or 2) and emits 'close'.
    return new Promise<void>((resolve) => {
      own.once('close', () => resolve());
      own.once('error', () => resolve());
      try {
        own.end();
      } catch {
        resolve();
      }
    });
  }
}
