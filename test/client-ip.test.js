import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientIpResolver, checkCidr, parseForwardedFor, parseNode } from '../dist/server/client-ip.js';

const PROXIES = ['10.0.0.0/8', '192.168.1.1', 'fd00::/8', '::1'];

function xff(value) {
  return { 'x-forwarded-for': value };
}

test('no trusted proxies: the peer is the client and headers are never read', () => {
  const r = new ClientIpResolver([], 'x-forwarded-for');
  assert.deepEqual(r.resolve('203.0.113.9', xff('1.1.1.1')), { clientIp: '203.0.113.9', forwardedFor: [] });
  assert.equal(r.isTrusted('10.0.0.1'), false);
});

test('untrusted peer spoofing X-Forwarded-For is ignored', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.deepEqual(r.resolve('203.0.113.9', xff('10.0.0.5, 1.2.3.4')), {
    clientIp: '203.0.113.9',
    forwardedFor: [],
  });
});

test('untrusted peer spoofing Forwarded is ignored', () => {
  const r = new ClientIpResolver(PROXIES, 'forwarded');
  assert.deepEqual(r.resolve('203.0.113.9', { forwarded: 'for=1.2.3.4' }), {
    clientIp: '203.0.113.9',
    forwardedFor: [],
  });
});

test('trusted peer with no header: the peer is the client', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.deepEqual(r.resolve('10.0.0.1', {}), { clientIp: '10.0.0.1', forwardedFor: [] });
  assert.deepEqual(r.resolve('10.0.0.1', xff('')), { clientIp: '10.0.0.1', forwardedFor: [] });
});

test('trusted peer: the rightmost untrusted entry is the client; entries to its left are not believed', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  // The client forged "6.6.6.6"; proxy 10.0.0.2 appended the real client 198.51.100.7,
  // then 192.168.1.1 appended 10.0.0.2, and the peer is 10.0.0.1.
  const res = r.resolve('10.0.0.1', xff('6.6.6.6, 198.51.100.7, 10.0.0.2, 192.168.1.1'));
  assert.deepEqual(res, {
    clientIp: '198.51.100.7',
    forwardedFor: ['198.51.100.7', '10.0.0.2', '192.168.1.1'],
  });
});

test('trusted peer: all occurrences of the header are joined (Node joins them with ", ")', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  const res = r.resolve('10.0.0.1', xff(['198.51.100.7', '10.0.0.2']));
  assert.deepEqual(res, { clientIp: '198.51.100.7', forwardedFor: ['198.51.100.7', '10.0.0.2'] });
});

test('every entry trusted: the leftmost is the client', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  const res = r.resolve('10.0.0.1', xff('10.1.1.1, 10.2.2.2'));
  assert.deepEqual(res, { clientIp: '10.1.1.1', forwardedFor: ['10.1.1.1', '10.2.2.2'] });
});

test('a junk entry stops the walk: the valid hop to its right is the client', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.deepEqual(r.resolve('10.0.0.1', xff('1.2.3.4, not-an-ip, 10.0.0.3')), {
    clientIp: '10.0.0.3',
    forwardedFor: ['10.0.0.3'],
  });
  assert.deepEqual(r.resolve('10.0.0.1', xff('1.2.3.4, <script>')), { clientIp: '10.0.0.1', forwardedFor: [] });
  assert.deepEqual(r.resolve('10.0.0.1', xff('unknown')), { clientIp: '10.0.0.1', forwardedFor: [] });
  assert.deepEqual(r.resolve('10.0.0.1', xff('01.2.3.4')), { clientIp: '10.0.0.1', forwardedFor: [] });
  assert.deepEqual(r.resolve('10.0.0.1', xff('1.2.3.4.5')), { clientIp: '10.0.0.1', forwardedFor: [] });
});

test('empty list elements in X-Forwarded-For are skipped', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.deepEqual(r.resolve('10.0.0.1', xff(' 1.2.3.4 ,, 10.0.0.2 , ')), {
    clientIp: '1.2.3.4',
    forwardedFor: ['1.2.3.4', '10.0.0.2'],
  });
});

test('X-Forwarded-For entries with ports and brackets are accepted', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.deepEqual(r.resolve('10.0.0.1', xff('1.2.3.4:5555')), { clientIp: '1.2.3.4', forwardedFor: ['1.2.3.4'] });
  assert.deepEqual(r.resolve('10.0.0.1', xff('[2001:db8::1]:443')), {
    clientIp: '2001:db8::1',
    forwardedFor: ['2001:db8::1'],
  });
});

test('IPv6 peers and entries, trusted by subnet', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.equal(r.isTrusted('fd12::1'), true);
  assert.equal(r.isTrusted('::1'), true);
  assert.equal(r.isTrusted('2001:db8::1'), false);
  const res = r.resolve('fd00::1', xff('2001:DB8:0:0::7, fd00::2'));
  assert.deepEqual(res, { clientIp: '2001:db8::7', forwardedFor: ['2001:db8::7', 'fd00::2'] });
});

test('IPv4-mapped IPv6 is normalised to IPv4, for the peer and for entries', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.equal(r.isTrusted('::ffff:10.9.9.9'), true);
  assert.deepEqual(r.resolve('::ffff:203.0.113.9', xff('1.1.1.1')), { clientIp: '203.0.113.9', forwardedFor: [] });
  assert.deepEqual(r.resolve('::ffff:10.0.0.1', xff('::ffff:198.51.100.7, ::ffff:a00:2')), {
    clientIp: '198.51.100.7',
    forwardedFor: ['198.51.100.7', '10.0.0.2'],
  });
});

test('only the configured header is read', () => {
  const x = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.deepEqual(x.resolve('10.0.0.1', { forwarded: 'for=1.2.3.4' }), { clientIp: '10.0.0.1', forwardedFor: [] });
  const f = new ClientIpResolver(PROXIES, 'forwarded');
  assert.deepEqual(f.resolve('10.0.0.1', xff('1.2.3.4')), { clientIp: '10.0.0.1', forwardedFor: [] });
});

test('Forwarded: for= values with quotes, [v6]:port, v4:port and other parameters', () => {
  const r = new ClientIpResolver(PROXIES, 'forwarded');
  const res = r.resolve('10.0.0.1', {
    forwarded: 'for="[2001:db8:cafe::17]:4711";proto=https, For=192.0.2.60:8080;by=10.0.0.9, for=10.0.0.2;host="a,b"',
  });
  assert.deepEqual(res, { clientIp: '192.0.2.60', forwardedFor: ['192.0.2.60', '10.0.0.2'] });
});

test('Forwarded: unknown and obfuscated identifiers stop the walk', () => {
  const r = new ClientIpResolver(PROXIES, 'forwarded');
  assert.deepEqual(r.resolve('10.0.0.1', { forwarded: 'for=1.2.3.4, for=unknown, for=10.0.0.2' }), {
    clientIp: '10.0.0.2',
    forwardedFor: ['10.0.0.2'],
  });
  assert.deepEqual(r.resolve('10.0.0.1', { forwarded: 'for=1.2.3.4, for=_hidden' }), {
    clientIp: '10.0.0.1',
    forwardedFor: [],
  });
  assert.deepEqual(r.resolve('10.0.0.1', { forwarded: 'for=1.2.3.4, proto=https' }), {
    clientIp: '10.0.0.1',
    forwardedFor: [],
  });
});

test('Forwarded: an obfuscated port still yields the address', () => {
  const r = new ClientIpResolver(PROXIES, 'forwarded');
  assert.deepEqual(r.resolve('10.0.0.1', { forwarded: 'for="1.2.3.4:_p1"' }), {
    clientIp: '1.2.3.4',
    forwardedFor: ['1.2.3.4'],
  });
});

test('Forwarded: an unterminated quote is junk', () => {
  assert.deepEqual(parseForwardedFor('for="1.2.3.4'), ['']);
  const r = new ClientIpResolver(PROXIES, 'forwarded');
  assert.deepEqual(r.resolve('10.0.0.1', { forwarded: 'for=1.2.3.4, for="5.6.7.8' }), {
    clientIp: '10.0.0.1',
    forwardedFor: [],
  });
});

test('parseForwardedFor: per-element for= values, escapes, empty elements skipped', () => {
  assert.deepEqual(parseForwardedFor('for=a;by=b, ,for="x\\"y" ; proto=http'), ['a', 'x"y']);
  assert.deepEqual(parseForwardedFor('by=1.2.3.4'), ['']);
  assert.deepEqual(parseForwardedFor(''), []);
});

test('parseNode accepts addresses and refuses everything else', () => {
  assert.equal(parseNode('1.2.3.4'), '1.2.3.4');
  assert.equal(parseNode('1.2.3.4:80'), '1.2.3.4');
  assert.equal(parseNode('[::1]'), '::1');
  assert.equal(parseNode('[::1]:80'), '::1');
  assert.equal(parseNode('::FFFF:1.2.3.4'), '1.2.3.4');
  assert.equal(parseNode('fe80::1%eth0'), undefined);
  assert.equal(parseNode('1.2.3.4:'), undefined);
  assert.equal(parseNode('1.2.3.4:123456'), undefined);
  assert.equal(parseNode('[::1]x'), undefined);
  assert.equal(parseNode('[1.2.3.4]'), undefined);
  assert.equal(parseNode('example.com'), undefined);
  assert.equal(parseNode(''), undefined);
});

test('checkCidr validates trusted_proxies entries', () => {
  assert.equal(checkCidr('10.0.0.0/8'), undefined);
  assert.equal(checkCidr('192.168.1.1'), undefined);
  assert.equal(checkCidr('2001:db8::/32'), undefined);
  assert.equal(checkCidr('::ffff:10.0.0.0/104'), undefined);
  for (const bad of ['10.0.0.0/33', '2001:db8::/129', 'nope', '10.0.0.0/', '10.0.0.0/8x', '1.2.3', '', 'fe80::1%eth0']) {
    assert.equal(typeof checkCidr(bad), 'string', bad);
  }
});

test('an IPv4-mapped subnet in the config trusts the IPv4 subnet', () => {
  const r = new ClientIpResolver(['::ffff:10.0.0.0/104'], 'x-forwarded-for');
  assert.equal(r.isTrusted('10.200.0.1'), true);
  assert.equal(r.isTrusted('11.0.0.1'), false);
});

test('the constructor refuses an invalid entry with a TypeError', () => {
  assert.throws(() => new ClientIpResolver(['10.0.0.0/99'], 'x-forwarded-for'), TypeError);
});

test('isTrusted is false for garbage', () => {
  const r = new ClientIpResolver(PROXIES, 'x-forwarded-for');
  assert.equal(r.isTrusted(''), false);
  assert.equal(r.isTrusted('10.0.0.1.1'), false);
});
