/**
 * The access log: one JSON line per finished connection or request, built from
 * the `portcullis:finished` channel. Never a credential (the query string is not
 * logged: it may carry an API key), never a message body.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { FinishedEvent } from '../core/events.js';
import type { Logger } from '../core/log.js';

export class AccessLog {
  readonly #source: object;
  readonly #log: Logger;
  readonly #onFinished: (message: unknown) => void;
  readonly #enabled: boolean;

  constructor(source: object, log: Logger, enabled: boolean) {
    this.#source = source;
    this.#log = log;
    this.#enabled = enabled;
    this.#onFinished = (message: unknown) => this.#write(message as FinishedEvent);
    if (enabled) subscribe('portcullis:finished', this.#onFinished);
  }

  #write(ev: FinishedEvent): void {
    if (ev.source !== this.#source) return;
    const s = ev.summary;
    const consumer = ev.ctx?.consumer;
    this.#log.info(
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
        ...(ev.detail ? { detail: ev.detail } : {}),
      },
      'access',
    );
  }

  close(): void {
    if (this.#enabled) unsubscribe('portcullis:finished', this.#onFinished);
  }
}
