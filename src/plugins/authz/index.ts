/**
 * authz (Portcullis; priority 2300, access phase, after authentication and
 * consumer-restriction): rules over the consumer, its group and labels, the
 * method, the token's claims and scopes, and route parameters, for channel-level
 * least privilege (`/ws/rooms/:room` admits a consumer only if `:room` is in its
 * token's `rooms` claim). The first rule whose conditions all hold decides, by
 * its `effect`; no rule matched is a deny (AUTHZ_DENIED).
 *
 * The deciding rule is recorded: on deny in the rejection's `detail` (the access
 * log line), on allow in `ctx.vars` as `authz.rule` (its index).
 */
import { definePlugin } from '../../core/plugin.js';
import type { Rejection } from '../../core/plugin.js';
import { Facts, compileRules, firstMatch, labelIndex } from './rules.js';
import type { CompiledRule } from './rules.js';
import { schema } from './schema.js';
import type { AuthzConfig } from './schema.js';

interface State {
  rules: readonly CompiledRule[];
  labels: (username: string) => Readonly<Record<string, string>> | undefined;
  status: number;
  message: string | undefined;
}

export default definePlugin<AuthzConfig, State>({
  name: 'authz',
  version: '1.0.0',
  priority: 2300,
  schema,
  init(config, { consumers }) {
    return {
      rules: compileRules(config.rules),
      labels: labelIndex(consumers),
      status: config.rejected_code,
      message: config.rejected_msg,
    };
  },
  access(ctx, state) {
    const rule = firstMatch(state.rules, new Facts(ctx, state.labels));
    if (rule?.allow) {
      ctx.vars.set('authz.rule', rule.index);
      if (ctx.log.isLevelEnabled('debug')) {
        ctx.log.debug({ request_id: ctx.id, route: ctx.routeId, consumer: ctx.consumer?.username ?? null, decision: 'allow', rule: ruleName(rule) }, 'authz decision');
      }
      return undefined;
    }
    const why = rule ? `denied by ${ruleName(rule)}` : ctx.consumer || ctx.vars.has('auth.claims') ? 'no rule matched (default deny)' : 'no rule matched (default deny; no consumer identified)';
    if (ctx.log.isLevelEnabled('debug')) {
      ctx.log.debug({ request_id: ctx.id, route: ctx.routeId, consumer: ctx.consumer?.username ?? null, decision: 'deny', rule: rule ? ruleName(rule) : null }, 'authz decision');
    }
    const r: Rejection = { reject: 'AUTHZ_DENIED', status: state.status, detail: `authz: ${why}` };
    if (state.message !== undefined) r.message = state.message;
    return r;
  },
});

function ruleName(rule: CompiledRule): string {
  return rule.description ? `rules[${rule.index}] (${rule.description})` : `rules[${rule.index}]`;
}
