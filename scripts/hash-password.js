#!/usr/bin/env node
// Print a password hash for a basic-auth consumer (`password:` in the config).
//
//   node scripts/hash-password.js                      prompts (no echo), prints an scrypt hash
//   printf %s "$PASSWORD" | node scripts/hash-password.js   reads stdin (one trailing newline dropped)
//   node scripts/hash-password.js --bcrypt [--cost 10]
//   node scripts/hash-password.js --ln 15 --r 8 --p 3    scrypt parameters (these are the defaults)
//
// The password is never taken from the command line (it would land in the shell
// history and in `ps`). Needs the compiled code: run `npm run build` first.
import { createInterface } from 'node:readline';

const USAGE = 'usage: node scripts/hash-password.js [--scrypt [--ln N] [--r N] [--p N] | --bcrypt [--cost N]] < password';

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--bcrypt' || a === '--scrypt') opts.algorithm = a.slice(2);
    else if (['--ln', '--r', '--p', '--cost'].includes(a)) {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v)) fail(`${a} needs an integer`);
      opts[a.slice(2)] = v;
    } else if (a === '-h' || a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else fail(`unknown argument ${a}`);
  }
  return opts;
}

function fail(msg) {
  process.stderr.write(`hash-password: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

async function readPiped() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

function prompt(question) {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    // Echo nothing after the prompt.
    rl._writeToOutput = (s) => {
      if (s.startsWith(question)) process.stderr.write(question);
    };
    rl.question(question, (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
  });
}

const opts = parseArgs(process.argv.slice(2));
let hashPassword;
try {
  ({ hashPassword } = await import('../dist/plugins/basic-auth/hash.js'));
} catch {
  fail('cannot load dist/plugins/basic-auth/hash.js: run `npm run build` first');
}
let password;
if (process.stdin.isTTY) {
  password = await prompt('Password: ');
  if ((await prompt('Again: ')) !== password) fail('the passwords differ');
} else {
  password = await readPiped();
}
if (password === '') fail('empty password');
try {
  process.stdout.write(`${await hashPassword(password, opts)}\n`);
} catch (err) {
  fail(err.message);
}
