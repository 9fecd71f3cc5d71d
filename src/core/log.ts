/**
 * Logging through pino. One JSON line per event; credentials and message bodies
 * never reach it (the redact list is a second line of defence, not the first).
 */
import cluster from 'node:cluster';
import { pino } from 'pino';
import type { LogSettings } from '../config/types.js';

export type Logger = pino.Logger;

const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'req.headers.apikey',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  'headers.apikey',
];

/** Build the logger; `stream` (tests, embedding) replaces the configured destination. */
export function createLogger(settings: LogSettings, stream?: pino.DestinationStream): Logger {
  const dest =
    stream ??
    (settings.destination === 'stdout'
      ? pino.destination({ dest: 1, sync: false })
      : settings.destination === 'stderr'
        ? pino.destination({ dest: 2, sync: false })
        : pino.destination({ dest: settings.destination, sync: false, mkdir: true }));
  return pino(
    {
      level: settings.level,
      // Workers of `gateway.workers` say which one logged.
      base: cluster.isWorker ? { service: 'portcullis', pid: process.pid } : { service: 'portcullis' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}
