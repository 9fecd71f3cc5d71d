// An example message plugin: refuses client messages that contain a banned word.
// Load it with `gateway.custom_plugins: [./plugins/block-words.js]`, then use it on a
// route as `plugins: { block-words: { words: [spam], on_match: close } }`.
// A route with a message plugin runs in frame mode: every message passes through here.

/** @type {import('portcullis').PluginDefinition<{words: string[], on_match: 'close' | 'drop', reply?: string}, {re: RegExp, config: any}>} */
const plugin = {
  name: 'block-words',
  version: '1.0.0',
  priority: 900,
  schema: {
    type: 'object',
    properties: {
      words: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
      on_match: { enum: ['close', 'drop'], default: 'close' },
      reply: { type: 'string' },
    },
    required: ['words'],
    additionalProperties: false,
  },
  // Runs once per route at load: compile the words into one regular expression.
  init(config) {
    const escaped = config.words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    return { re: new RegExp(`\\b(?:${escaped.join('|')})\\b`, 'i'), config };
  },
  message(msg, _ctx, state) {
    if (msg.direction !== 'client' || msg.binary) return;
    if (!state.re.test(msg.text())) return;
    if (state.config.on_match === 'drop') return { action: 'drop', reply: state.config.reply };
    return { action: 'close', code: 1008, reason: 'MESSAGE_REJECTED', detail: 'banned word' };
  },
};

export default plugin;
