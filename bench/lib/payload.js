// The message the ws workloads send, shared by the load generator and the
// readiness probe.

/** The six properties every ws-echo message carries; `pad` brings it to size. */
const BASE = '{"op":"echo","id":7,"ts":1.5,"ok":true,"tag":"bench","pad":""}';

/** The smallest message echoPayload can make (the six properties with an empty pad). */
export const ECHO_PAYLOAD_MIN = Buffer.byteLength(BASE);

/**
 * A JSON text message of exactly `size` bytes (at least ECHO_PAYLOAD_MIN = 62):
 * {"op":"echo","id":7,"ts":1.5,"ok":true,"tag":"bench","pad":"xxxx..."}. Six
 * properties of five JSON types; it satisfies BENCH_MESSAGE_SCHEMA in
 * configs.js, so the validated target checks real JSON on every message.
 */
export function echoPayload(size) {
  if (size < ECHO_PAYLOAD_MIN) throw new RangeError(`echoPayload: ${size} B is below the ${ECHO_PAYLOAD_MIN} B the six properties need`);
  const pad = 'x'.repeat(size - ECHO_PAYLOAD_MIN);
  return Buffer.from(`{"op":"echo","id":7,"ts":1.5,"ok":true,"tag":"bench","pad":"${pad}"}`);
}
