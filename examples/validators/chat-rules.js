// A custom validator for websocket-validator: the business rules of a small chat
// protocol that a JSON Schema cannot express, because they depend on what this
// connection said before and on who it is.
//
//   {"type":"join","room":"lobby"}             join a room (at most MAX_ROOMS per connection)
//   {"type":"say","room":"lobby","text":"hi"}   only in a room this connection joined,
//                                               at most MAX_SAYS per WINDOW_MS
//   {"type":"leave","room":"lobby"}            leave it
//
// Rooms named staff-* are for consumers of the `staff` group (set by an auth plugin).
//
// Use it on a route, after the schemas have checked the shape of each message:
//
//   websocket-validator:
//     client:
//       binary: false
//       schemas: { join: {...}, say: {...}, leave: {...} }   # see docs/plugins/websocket-validator.md
//       validator: ./validators/chat-rules.js               # relative to the config file
//
// THE VERDICT CONTRACT. The module's default export (or an export named `validate`) is
// called with (message, context) for every message of its direction that passed the
// plugin's other checks:
//   - message: { direction, binary, data (Buffer), text(), json() }. text() and json() decode
//     once and are shared with every other plugin; json() throws on text that is not JSON.
//   - context: the connection's request context: routeId, path, params, clientIp, headers,
//     consumer (when an auth plugin identified one), and `vars`, a Map that lives as long
//     as the connection: keep per-connection state there, under your own key.
// It returns (or resolves to):
//   - true or undefined                       the message passes;
//   - false                                   invalid (close reason "MESSAGE_REJECTED: validator");
//   - a string                                invalid, with that string as the reason;
//   - { valid: false, reason, close_code }    invalid, with a reason and a close code (1000-1014
//                                             or 3000-4999; default 1008).
// An invalid message is never forwarded: with on_invalid: close the sender is closed with
// the close code and "MESSAGE_REJECTED: <reason>" (the other side with 1001); with drop it is
// discarded and the sender gets error_message. Reasons go to the client and to the log: never
// put message content in them. A validator that throws, rejects, or returns anything else
// closes the connection with 1011 (counted as validator_error), even under on_invalid: drop.
// It may be async (a lookup, say): while its promise is pending, later messages of that
// direction wait, so order is kept. Keep it synchronous when you can: then no promise is made.

const KEY = 'chat-rules';
const MAX_ROOMS = 5;
const MAX_SAYS = 20;
const WINDOW_MS = 10_000;

/** Per-connection state, made on the first message of the connection. */
function stateOf(context) {
  let s = context.vars.get(KEY);
  if (!s) {
    s = { rooms: new Set(), windowStart: 0, says: 0 };
    context.vars.set(KEY, s);
  }
  return s;
}

export default function chatRules(message, context) {
  // Only client messages are judged here; upstream messages are the server's business.
  if (message.direction !== 'client' || message.binary) return true;
  const msg = message.json();
  // The schemas check these shapes first; a validator should not depend on it (a throw is a 1011).
  if (typeof msg !== 'object' || msg === null || typeof msg.room !== 'string') return 'not a chat message';
  const state = stateOf(context);
  switch (msg.type) {
    case 'join': {
      if (msg.room.startsWith('staff-') && context.consumer?.group_id !== 'staff') {
        return { valid: false, reason: 'room reserved for staff', close_code: 4403 };
      }
      if (!state.rooms.has(msg.room) && state.rooms.size >= MAX_ROOMS) return 'too many rooms';
      state.rooms.add(msg.room);
      return true;
    }
    case 'leave':
      state.rooms.delete(msg.room);
      return true;
    case 'say': {
      // The reason names the rule, never the room: reasons reach the log and the client.
      if (!state.rooms.has(msg.room)) return 'say: not a member of that room';
      const now = Date.now();
      if (now - state.windowStart >= WINDOW_MS) {
        state.windowStart = now;
        state.says = 0;
      }
      if (++state.says > MAX_SAYS) return { valid: false, reason: 'too many messages', close_code: 4029 };
      return true;
    }
    default:
      return 'unknown message type';
  }
}
