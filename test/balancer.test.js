import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, nodeLabel } from '../dist/upstream/balancer.js';

const A = { host: 'a', port: 1, weight: 5 };
const B = { host: 'b', port: 2, weight: 1 };
const C = { host: 'c', port: 3, weight: 1 };

function picks(balancer, n, tried) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(balancer.pick(tried)?.node.host);
  return out.join('');
}

/** A clock the test moves by hand. */
function clock(start = 1000) {
  const c = { t: start, reads: 0 };
  c.now = () => {
    c.reads++;
    return c.t;
  };
  return c;
}

test('weights 5:1:1 over 7 picks give the smooth sequence a a b a c a a', () => {
  const b = new Balancer([A, B, C]);
  assert.equal(picks(b, 7), 'aabacaa');
  assert.equal(picks(b, 7), 'aabacaa');
});

test('pick returns the node and its index', () => {
  const b = new Balancer([B, A]);
  assert.deepEqual(b.pick(), { node: A, index: 1 });
  assert.deepEqual(b.pick(new Set([1])), { node: B, index: 0 });
});

test('equal weights alternate in order', () => {
  const b = new Balancer([B, C, { host: 'd', port: 4, weight: 1 }]);
  assert.equal(picks(b, 6), 'bcdbcd');
});

test('a node of weight 0 is never picked', () => {
  const b = new Balancer([{ host: 'z', port: 9, weight: 0 }, B, C]);
  assert.equal(picks(b, 6), 'bcbcbc');
  assert.equal(new Balancer([{ host: 'z', port: 9, weight: 0 }]).pick(), undefined);
});

test('no nodes: nothing to pick', () => {
  assert.equal(new Balancer([]).pick(), undefined);
});

test('nodes in tried are skipped, so a retry goes to the next node', () => {
  const b = new Balancer([A, B, C]);
  const tried = new Set();
  const order = [];
  for (let p = b.pick(tried); p !== undefined; p = b.pick(tried)) {
    order.push(p.node.host);
    tried.add(p.index);
  }
  assert.equal(order.join(''), 'abc');
  assert.equal(b.pick(tried), undefined);
});

test('skipping tried nodes does not change the weights of the others', () => {
  const b = new Balancer([A, B, C]);
  assert.equal(picks(b, 4, new Set([0])), 'bcbc');
});

test('a failed node is skipped until failTimeoutMs has passed', () => {
  const c = clock();
  const b = new Balancer([A, B, C], { failTimeoutMs: 5000, now: c.now });
  b.markFailed(0);
  assert.equal(picks(b, 4), 'bcbc');
  c.t += 4999;
  assert.equal(picks(b, 2), 'bc');
  c.t += 1;
  assert.equal(b.pick()?.node, A);
});

test('failTimeoutMs defaults to 10 seconds', () => {
  const c = clock();
  const b = new Balancer([A, B], { now: c.now });
  b.markFailed(0);
  c.t += 9999;
  assert.equal(picks(b, 2), 'bb');
  c.t += 1;
  assert.equal(b.pick()?.node, A);
});

test('markOk brings a failed node back at once', () => {
  const c = clock();
  const b = new Balancer([A, B], { now: c.now });
  b.markFailed(0);
  assert.equal(b.pick()?.node, B);
  b.markOk(0);
  assert.equal(b.pick()?.node, A);
});

test('when every node is failed, the failed ones are still tried', () => {
  const c = clock();
  const b = new Balancer([A, B, C], { now: c.now });
  b.markFailed(0);
  b.markFailed(1);
  b.markFailed(2);
  assert.equal(picks(b, 7), 'aabacaa');
});

test('when every node not yet tried is failed, a failed one is tried', () => {
  const c = clock();
  const b = new Balancer([A, B, C], { now: c.now });
  b.markFailed(0);
  b.markFailed(2);
  assert.equal(b.pick()?.node, B);
  assert.equal(b.pick(new Set([1]))?.node, A);
  assert.equal(b.pick(new Set([0, 1]))?.node, C);
  assert.equal(b.pick(new Set([0, 1, 2])), undefined);
});

test('the clock is not read while no node is marked failed', () => {
  const c = clock();
  const b = new Balancer([A, B, C], { now: c.now });
  picks(b, 10);
  assert.equal(c.reads, 0);
  b.markFailed(1);
  b.markOk(1);
  const before = c.reads;
  picks(b, 10);
  assert.equal(c.reads, before);
});

test('misuse throws TypeError', () => {
  assert.throws(() => new Balancer([{ host: 'x', port: 1, weight: -1 }]), TypeError);
  assert.throws(() => new Balancer([{ host: 'x', port: 1, weight: NaN }]), TypeError);
  assert.throws(() => new Balancer([A], { failTimeoutMs: -1 }), TypeError);
  const b = new Balancer([A]);
  assert.throws(() => b.markFailed(1), TypeError);
  assert.throws(() => b.markOk(-1), TypeError);
});

test('nodeLabel is host:port, with IPv6 in brackets', () => {
  assert.equal(nodeLabel({ host: '127.0.0.1', port: 8080, weight: 1 }), '127.0.0.1:8080');
  assert.equal(nodeLabel({ host: 'backend.local', port: 443, weight: 1 }), 'backend.local:443');
  assert.equal(nodeLabel({ host: '::1', port: 9000, weight: 1 }), '[::1]:9000');
  assert.equal(nodeLabel({ host: 'fe80::1%eth0', port: 80, weight: 1 }), '[fe80::1%eth0]:80');
  assert.equal(nodeLabel({ host: '[::1]', port: 9000, weight: 1 }), '[::1]:9000');
});
