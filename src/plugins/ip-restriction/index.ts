/**
 * ip-restriction (APISIX, priority 3000, access phase): admit or refuse the client
 * by address. `whitelist` xor `blacklist` of IPs and CIDRs (IPv4 and IPv6),
 * validated at load. Judged on `ctx.clientIp`, the address resolved through
 * `gateway.trusted_proxies`: a forwarding header from an untrusted peer changes
 * nothing.
 */
import { definePlugin } from '../../core/plugin.js';
import { AddressList } from '../../server/address-list.js';

export interface IpRestrictionConfig {
  whitelist?: string[];
  blacklist?: string[];
  message: string;
  response_code: number;
}

interface State {
  list: AddressList;
  /** True for a whitelist: addresses not in the list are refused. */
  allow: boolean;
  message: string;
  status: number;
}

const ipList = { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } };

export default definePlugin<IpRestrictionConfig, State>({
  name: 'ip-restriction',
  version: '1.0.0',
  priority: 3000,
  schema: {
    type: 'object',
    properties: {
      whitelist: { ...ipList, description: 'Addresses and CIDRs admitted; every other address is refused.' },
      blacklist: { ...ipList, description: 'Addresses and CIDRs refused.' },
      message: { type: 'string', minLength: 1, maxLength: 1024, default: 'Your IP address is not allowed' },
      response_code: { type: 'integer', minimum: 403, maximum: 404, default: 403 },
    },
    additionalProperties: false,
  },
  init(config) {
    const { whitelist, blacklist } = config;
    if ((whitelist === undefined) === (blacklist === undefined)) {
      throw new Error('set exactly one of whitelist or blacklist');
    }
    const allow = whitelist !== undefined;
    const entries = (allow ? whitelist : blacklist)!;
    let list: AddressList;
    try {
      list = new AddressList(entries);
    } catch (err) {
      throw new Error(`${allow ? 'whitelist' : 'blacklist'}: ${(err as Error).message}`);
    }
    return { list, allow, message: config.message, status: config.response_code };
  },
  access(ctx, state) {
    const ip = ctx.clientIp;
    if (state.list.has(ip) !== state.allow) {
      return {
        reject: 'IP_DENIED',
        status: state.status,
        message: state.message,
        detail: state.allow ? `client ${ip} is not in the whitelist` : `client ${ip} is in the blacklist`,
      };
    }
    return undefined;
  },
});
