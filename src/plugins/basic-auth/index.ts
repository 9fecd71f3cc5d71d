/**
 * basic-auth (APISIX priority 2520): a consumer is identified by
 * `Authorization: Basic base64(username:password)`. Stored passwords may be plain
 * text or bcrypt / scrypt hashes; successful hash checks are cached briefly.
 * See docs/plugins/basic-auth.md.
 */
import { definePlugin } from '../../core/plugin.js';
import type { RequestContext, Rejection } from '../../core/plugin.js';
import { wwwAuthenticate } from '../shared/credentials.js';
import { checkPlain } from './hash.js';
import { parseBasic } from './header.js';
import { userIndex, verifiedKey, type BasicUser, type UserIndex } from './users.js';

export interface BasicAuthConfig {
  hide_credentials: boolean;
  realm: string;
}

interface BasicAuthState {
  readonly index: UserIndex;
  readonly hide: boolean;
  readonly challenge: Record<string, string>;
  readonly missing: Rejection;
  readonly unknownUser: Rejection;
}

export default definePlugin<BasicAuthConfig, BasicAuthState>({
  name: 'basic-auth',
  version: '1.0.0',
  priority: 2520,
  schema: {
    type: 'object',
    properties: {
      hide_credentials: { type: 'boolean', default: false, description: 'Remove the Authorization header from the request sent upstream.' },
      realm: { type: 'string', pattern: '^[^"\\\\\\r\\n]+$', default: 'basic', description: 'The realm of WWW-Authenticate on a 401.' },
    },
    additionalProperties: false,
  },
  consumerSchema: {
    type: 'object',
    properties: {
      username: { type: 'string', minLength: 1, pattern: '^[^:]+$', description: 'The basic-auth user name (no colon, RFC 7617).' },
      password: { type: 'string', minLength: 1, description: 'Plain text, a bcrypt hash ($2a$/$2b$/$2y$) or an scrypt hash ($scrypt$...).' },
    },
    required: ['username', 'password'],
    additionalProperties: false,
  },

  init(config, { consumers }) {
    const challenge = wwwAuthenticate('Basic', config.realm);
    return {
      index: userIndex(consumers),
      hide: config.hide_credentials,
      challenge,
      missing: { reject: 'AUTH_MISSING', message: 'Missing authorization in request', headers: challenge, detail: 'no Authorization header' },
      // The presented name is not logged when it matches no consumer: it may be a password typed in the wrong field.
      unknownUser: denied(challenge, 'unknown basic-auth username'),
    };
  },

  rewrite(ctx, state) {
    const header = ctx.headers.authorization;
    if (header === undefined || header.trim() === '') return state.missing;
    const creds = parseBasic(header);
    if ('error' in creds) {
      return { reject: 'AUTH_INVALID', message: 'Invalid authorization in request', headers: state.challenge, detail: creds.error };
    }
    const user = state.index.users.get(creds.username);
    if (!user) return state.unknownUser;
    if (user.stored.kind === 'plain') {
      return checkPlain(user.stored, creds.password) ? admit(ctx, state, user) : wrongPassword(state, user);
    }
    const key = verifiedKey(creds.username, creds.password);
    if (state.index.recentlyVerified(key)) return admit(ctx, state, user);
    return state.index.verify(user, creds.password, key).then(
      (ok) => (ok ? admit(ctx, state, user) : wrongPassword(state, user)),
      // A hash that parsed at load should not fail; never pass the library's message on.
      (): Rejection => ({ reject: 'PLUGIN_ERROR', detail: `basic-auth: the ${user.stored.kind} check failed for consumer "${user.consumer}"` }),
    );
  },
});

function admit(ctx: RequestContext, state: BasicAuthState, user: BasicUser): undefined {
  ctx.consumer = {
    username: user.consumer,
    ...(user.group_id !== undefined ? { group_id: user.group_id } : {}),
    credential_id: user.username,
    auth: 'basic-auth',
  };
  if (state.hide) ctx.upstreamHeaders.authorization = null;
  return undefined;
}

function denied(challenge: Record<string, string>, detail: string): Rejection {
  return { reject: 'AUTH_INVALID', message: 'Invalid user authorization', headers: challenge, detail };
}

function wrongPassword(state: BasicAuthState, user: BasicUser): Rejection {
  return denied(state.challenge, `wrong password for basic-auth username "${user.username}"`);
}
