// The error catalogue and docs/errors.md must agree: every code documented, with
// the same HTTP status and close code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS } from '../dist/index.js';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const rows = new Map();
for (const m of doc.matchAll(/^\| `([A-Z0-9_]+)` \| (\d{3}) \| (\d{4}) \|/gm)) rows.set(m[1], { status: Number(m[2]), close: Number(m[3]) });

test('every catalogue code is documented in docs/errors.md with its status and close code', () => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    assert.ok(rows.has(code), `${code} is not documented in docs/errors.md`);
    assert.deepEqual(rows.get(code), { status: spec.status, close: spec.close }, `${code} differs between catalogue and docs`);
  }
});

test('docs/errors.md documents no code that the catalogue lacks', () => {
  for (const code of rows.keys()) assert.ok(code in ERRORS, `${code} is documented but not in the catalogue`);
});

test('close codes in the catalogue are ones a gateway may send', () => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    const c = spec.close;
    const sendable = (c >= 1000 && c <= 1014 && ![1004, 1005, 1006].includes(c)) || (c >= 3000 && c <= 4999);
    assert.ok(sendable, `${code} uses close code ${c}, which must not be sent`);
  }
});
