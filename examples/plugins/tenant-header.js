// An example access plugin: only requests naming an allowed tenant in a header get
// through, and the upstream learns that the gateway checked it.
// `plugins: { tenant-header: { header: x-tenant, allow: [acme, globex] } }`

/** @type {import('portcullis').PluginDefinition<{header: string, allow: string[]}, {header: string, allow: Set<string>}>} */
const plugin = {
  name: 'tenant-header',
  version: '1.0.0',
  priority: 2000,
  schema: {
    type: 'object',
    properties: {
      header: { type: 'string', default: 'x-tenant', pattern: '^[A-Za-z0-9-]+$' },
      allow: { type: 'array', items: { type: 'string' }, minItems: 1 },
    },
    required: ['allow'],
    additionalProperties: false,
  },
  init(config) {
    return { header: config.header.toLowerCase(), allow: new Set(config.allow) };
  },
  access(ctx, state) {
    const tenant = ctx.headers[state.header];
    if (typeof tenant !== 'string' || !state.allow.has(tenant)) {
      return { reject: 'ACCESS_DENIED', detail: `tenant ${JSON.stringify(tenant ?? null)} not allowed` };
    }
    ctx.upstreamHeaders['x-tenant-verified'] = tenant;
  },
};

export default plugin;
