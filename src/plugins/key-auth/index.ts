/**
 * key-auth (APISIX priority 2500): a consumer is identified by an API key sent in
 * a header (default `apikey`), then a query parameter (default `apikey`), then,
 * for browsers that cannot set headers, a cookie or an offered WebSocket
 * subprotocol `<prefix><key>`. See docs/plugins/key-auth.md.
 */
import { definePlugin } from '../../core/plugin.js';
import type { RequestContext, Rejection } from '../../core/plugin.js';
import {
  cookieValue,
  findCredential,
  hideCredential,
  wwwAuthenticate,
  type CredentialSource,
  type CredentialSources,
} from '../shared/credentials.js';
import { findOwner, keyIndex, type KeyIndex } from './keys.js';

/** RFC 9110 token characters: header names, cookie names and subprotocols are tokens. */
const TOKEN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

export interface KeyAuthConfig {
  header: string;
  query: string;
  hide_credentials: boolean;
  realm: string;
  cookie?: string;
  subprotocol?: string;
}

interface KeyAuthState {
  readonly index: KeyIndex;
  readonly sources: CredentialSources;
  readonly hide: boolean;
  readonly missing: Rejection;
  /** By where the unknown key was found; the detail names the place, never the key. */
  readonly invalid: Readonly<Record<CredentialSource, Rejection>>;
}

export default definePlugin<KeyAuthConfig, KeyAuthState>({
  name: 'key-auth',
  version: '1.0.0',
  priority: 2500,
  schema: {
    type: 'object',
    properties: {
      header: { type: 'string', pattern: TOKEN, default: 'apikey', description: 'Request header carrying the key (checked first).' },
      query: { type: 'string', minLength: 1, default: 'apikey', description: 'Query parameter carrying the key (checked after the header).' },
      hide_credentials: { type: 'boolean', default: false, description: 'Remove the key from the request sent upstream.' },
      realm: { type: 'string', pattern: '^[^"\\\\\\r\\n]+$', default: 'key', description: 'The realm of WWW-Authenticate on a 401.' },
      cookie: { type: 'string', pattern: TOKEN, description: 'Cookie carrying the key (checked after the query parameter).' },
      subprotocol: {
        type: 'string',
        pattern: TOKEN,
        description: 'Prefix of an offered WebSocket subprotocol carrying the key, e.g. "apikey." (checked last; never sent upstream).',
      },
    },
    additionalProperties: false,
  },
  consumerSchema: {
    type: 'object',
    properties: {
      key: { type: 'string', minLength: 1, description: 'The API key; ${ENV} references are expanded.' },
    },
    required: ['key'],
    additionalProperties: false,
  },

  init(config, { consumers }) {
    const header = config.header.toLowerCase();
    const sources: CredentialSources = {
      header,
      query: config.query,
      cookie: config.cookie,
      subprotocol: config.subprotocol,
    };
    const labels: Record<CredentialSource, string> = {
      header: `header "${header}"`,
      query: `query parameter "${config.query}"`,
      cookie: `cookie "${config.cookie ?? ''}"`,
      subprotocol: `subprotocol "${config.subprotocol ?? ''}…"`,
    };
    const where = [labels.header, labels.query];
    if (config.cookie !== undefined) where.push(labels.cookie);
    if (config.subprotocol !== undefined) where.push(`${labels.subprotocol} (WebSocket only)`);
    const challenge = wwwAuthenticate('ApiKey', config.realm);
    return {
      index: keyIndex(consumers),
      sources,
      hide: config.hide_credentials,
      missing: {
        reject: 'AUTH_MISSING',
        message: 'Missing API key in request',
        headers: challenge,
        detail: `no API key in ${where.join(', ')}`,
      },
      invalid: {
        header: invalid(challenge, labels.header),
        query: invalid(challenge, labels.query),
        cookie: invalid(challenge, labels.cookie),
        subprotocol: invalid(challenge, labels.subprotocol),
      },
    };
  },

  rewrite(ctx, state) {
    const found = findCredential(ctx, state.sources);
    if (!found) return state.missing;
    const owner = findOwner(state.index, found.value);
    if (!owner) return state.invalid[found.from];
    ctx.consumer = {
      username: owner.username,
      ...(owner.group_id !== undefined ? { group_id: owner.group_id } : {}),
      credential_id: owner.credentialId,
      auth: 'key-auth',
    };
    if (state.hide) hideAll(ctx, state.sources);
    return undefined;
  },
});

function invalid(challenge: Record<string, string>, where: string): Rejection {
  return { reject: 'AUTH_INVALID', message: 'Invalid API key in request', headers: challenge, detail: `unknown API key in ${where}` };
}

/**
 * Remove every copy of the key the client sent (header, query parameter, cookie),
 * not only the one that authenticated: a second copy is still a credential.
 * Credential subprotocols were withheld by findCredential already.
 */
function hideAll(ctx: RequestContext, src: CredentialSources): void {
  if (src.header && ctx.headers[src.header] !== undefined) hideCredential(ctx, { value: '', from: 'header', name: src.header });
  // Parsed, so that a percent-encoded parameter name (`api%6Bey`) is found too.
  if (src.query && ctx.query !== '' && new URLSearchParams(ctx.query).has(src.query)) hideCredential(ctx, { value: '', from: 'query', name: src.query });
  if (src.cookie && cookieValue(ctx.headers.cookie, src.cookie) !== undefined) {
    hideCredential(ctx, { value: '', from: 'cookie', name: src.cookie });
  }
}
