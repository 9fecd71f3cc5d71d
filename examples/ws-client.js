#!/usr/bin/env node
// A small WebSocket client for trying the demo (uses the `ws` package the gateway depends on).
//
//   node examples/ws-client.js URL [-p PROTOCOL]... [-H 'Name: value']... [-o ORIGIN]
//
// Lines typed (or piped) on stdin are sent as text messages; received messages are printed
// with "< ". It prints how the connection ends: the close code and reason, or the status and
// body of a refused handshake. With piped input it closes a second after the input ends.
import WebSocket from 'ws';
import { createInterface } from 'node:readline';

const USAGE = "usage: node examples/ws-client.js URL [-p PROTOCOL]... [-H 'Name: value']... [-o ORIGIN]";

function parse(argv) {
  const opts = { url: undefined, protocols: [], headers: {}, origin: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '-p' || a === '--protocol') opts.protocols.push(next());
    else if (a === '-o' || a === '--origin') opts.origin = next();
    else if (a === '-H' || a === '--header') {
      const h = next();
      const colon = h.indexOf(':');
      if (colon < 1) fail(`bad header ${JSON.stringify(h)}: expected 'Name: value'`);
      opts.headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
    } else if (a === '-h' || a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (!a.startsWith('-') && opts.url === undefined) opts.url = a;
    else fail(`unexpected argument ${a}`);
  }
  if (!opts.url) fail('a ws:// or wss:// URL is required');
  return opts;
}

function fail(msg) {
  process.stderr.write(`ws-client: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

const opts = parse(process.argv.slice(2));
const ws = new WebSocket(opts.url, opts.protocols, {
  headers: opts.headers,
  ...(opts.origin ? { origin: opts.origin } : {}),
  perMessageDeflate: false,
});
let exitCode = 0;

ws.on('open', () => {
  console.log(`* connected${ws.protocol ? `, subprotocol "${ws.protocol}"` : ''}`);
  const rl = createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (l) => ws.readyState === ws.OPEN && ws.send(l));
  rl.on('close', () => {
    if (!process.stdin.isTTY) setTimeout(() => ws.close(1000, 'done'), 1000).unref();
  });
});
ws.on('message', (data, isBinary) => console.log(`< ${isBinary ? `[${data.length} bytes]` : data.toString()}`));
ws.on('unexpected-response', (_req, res) => {
  const chunks = [];
  res.on('data', (c) => chunks.push(c));
  res.on('end', () => {
    console.log(`* refused: HTTP ${res.statusCode} ${Buffer.concat(chunks).toString().trim()}`);
    process.exit(1);
  });
});
ws.on('close', (code, reason) => {
  console.log(`* closed: ${code}${reason.length ? ` ${reason}` : ''}`);
  process.exit(exitCode);
});
ws.on('error', (err) => {
  exitCode = 1;
  console.log(`* error: ${err.message}`);
  if (ws.readyState !== ws.CLOSING) process.exit(1);
});
