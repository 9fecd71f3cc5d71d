// The message the ws workloads send, shared by the load generator and the
// readiness probe.

/**
 * A JSON text message of exactly `size` bytes:
 * {"op":"echo","pad":"xxxx..."}. It satisfies BENCH_MESSAGE_SCHEMA in
 * configs.js, so the validated target checks real JSON on every message.
 */
export function echoPayload(size) {
  const base = '{"op":"echo","pad":""}';
  return Buffer.from(`{"op":"echo","pad":"${'x'.repeat(Math.max(0, size - base.length))}"}`);
}
