/**
 * websocket-validator (Kong's name; open here; priority 1000, message phase):
 * validates every complete WebSocket message, per direction (`client`: client to
 * upstream, `upstream`: upstream to client):
 *
 *   text / binary      is that message type allowed (else close 1003)
 *   schema / schemas   JSON Schema (2020-12, or draft-07 by $schema), or one schema
 *                      per value of a discriminator field (`type`)
 *   max_depth          bracket nesting, counted on the raw bytes before JSON.parse
 *   reject_proto_keys  __proto__ / constructor / prototype keys (on by default)
 *   deny_patterns / allow_pattern
 *                      regexes proven free of catastrophic backtracking at load,
 *                      run on at most max_pattern_input bytes
 *   validator          a user module `(message, context) => verdict`
 *
 * An invalid message is never forwarded. `on_invalid: close` closes the sender with
 * 1003 (type), 1007 (not valid data: json, depth, proto_key, schema), 1008 (policy:
 * pattern, validator) or 1009 (too long for the patterns), and the other side with
 * 1001; `drop` discards the message and may answer the sender with error_message.
 * Every rejection is published on `portcullis:message:rejected` with its reason;
 * the message itself never reaches a log, a detail or a reply.
 */
import { definePlugin } from '../../core/plugin.js';
import type { WebsocketValidatorConfig } from './config.js';
import { schema } from './config.js';
import { loadValidator } from './custom.js';
import type { Rules } from './rules.js';
import { PLUGIN, compileRules, judge } from './rules.js';
import { SchemaCompiler } from './schemas.js';

interface State {
  client: Rules | undefined;
  upstream: Rules | undefined;
}

export default definePlugin<WebsocketValidatorConfig, State>({
  name: PLUGIN,
  version: '1.0.0',
  priority: 1000,
  schema,
  init(config, { configDir }) {
    const compiler = new SchemaCompiler();
    const state: State = {
      client: config.client ? compileRules('client', config.client, config, compiler) : undefined,
      upstream: config.upstream ? compileRules('upstream', config.upstream, config, compiler) : undefined,
    };
    const loads: Promise<void>[] = [];
    for (const rules of [state.client, state.upstream]) {
      const file = rules && config[rules.dir]!.validator;
      if (rules && file) {
        loads.push(
          loadValidator(file, configDir, `${rules.dir}.validator`).then((fn) => {
            rules.validator = fn;
          }),
        );
      }
    }
    // Synchronous unless a validator module has to be imported.
    return loads.length === 0 ? state : Promise.all(loads).then(() => state);
  },
  message(msg, ctx, state) {
    const rules = msg.direction === 'client' ? state.client : state.upstream;
    return rules === undefined ? undefined : judge(rules, msg, ctx);
  },
});
