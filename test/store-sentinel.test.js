// policy: redis-sentinel, against real processes: a redis-server master (and a
// replica), and a redis-server running as a sentinel (quorum 1) that names it.
// limit-conn stays exact through the sentinel-found master, the keys are in that
// master, gateway.redis can name the sentinels once for every plugin, a master
// outage is answered as with a plain Redis, a failover moves the limits to the new
// master, and configs that cannot work are refused at
// load with their YAML path and without echoing a password.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closed, config, eventually, nextMessage, openWs, startGateway, wsUpstream } from './helpers.js';
import { ConfigError, createRegistry, loadConfigText } from '../dist/index.js';
import { openStore } from '../dist/store/index.js';
import { startRedis, startSentinel } from './redis-helpers.js';

const redisKey = (route, who = '127.0.0.1') => `portcullis:conn:route:${route}:${who}`;

let upstream;
before(async () => {
  upstream = await wsUpstream({
    onConnection(ws) {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    },
  });
});
after(async () => {
  await upstream?.close();
});

/** A route with limit-conn (attributes as an object). */
function route(id, attrs) {
  const lc = Object.entries(attrs)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join(', ');
  return `  - id: ${id}
    uri: /${id}/*
    enable_websocket: true
    upstream_id: up
    plugins:
      limit-conn: { ${lc} }
`;
}

const openMany = (url, n) => Promise.all(Array.from({ length: n }, () => openWs(url)));
const opened = (rs) => rs.filter((r) => r.ws).map((r) => r.ws);

async function closeAll(sockets) {
  await Promise.all(
    sockets.map(async (ws) => {
      if (ws.readyState === ws.OPEN) ws.close();
      await closed(ws);
    }),
  );
}

async function echoes(ws, text = 'ping') {
  ws.send(text);
  return (await nextMessage(ws)) === text;
}

describe('a master and one sentinel', () => {
  let master;
  let sentinel;
  let inspect;
  before(async () => {
    master = await startRedis();
    sentinel = await startSentinel({ masterPort: master.port });
    inspect = master.client();
  });
  after(async () => {
    await sentinel?.close();
    await master?.close();
  });

  test('limit-conn with policy redis-sentinel: conn 2, of 5 concurrent handshakes exactly 2 open; the slots are in the master', async () => {
    const attrs = {
      conn: 2,
      burst: 0,
      default_conn_delay: 0.1,
      policy: 'redis-sentinel',
      redis_sentinels: [sentinel.address],
      redis_master_name: sentinel.name,
    };
    const gw = await startGateway(config(upstream.port, route('sent', attrs)));
    try {
      const rs = await openMany(`${gw.ws}/sent/echo`, 5);
      const open = opened(rs);
      assert.equal(open.length, 2);
      assert.deepEqual(rs.filter((r) => !r.ws).map((r) => r.status), [503, 503, 503]);
      for (const ws of open) assert.ok(await echoes(ws));
      assert.equal(await inspect.zcard(redisKey('sent')), 2, 'both slots are leases in the master');
      await closeAll(open);
      assert.ok(await eventually(async () => (await inspect.exists(redisKey('sent'))) === 0), 'the key is back to its baseline');
      assert.equal(opened(await openMany(`${gw.ws}/sent/echo`, 3)).length, 2, 'the slots were given back');
    } finally {
      await gw.close();
    }
  });

  test('gateway.redis with sentinels serves policy redis-sentinel and policy redis, in APISIX\'s { host, port } form too', async () => {
    const [host, port] = sentinel.address.split(':');
    const routes = [
      route('gs', { conn: 1, burst: 0, default_conn_delay: 0.1, policy: 'redis-sentinel' }),
      route('gr', { conn: 1, burst: 0, default_conn_delay: 0.1, policy: 'redis' }),
      route('obj', {
        conn: 1,
        burst: 0,
        default_conn_delay: 0.1,
        policy: 'redis-sentinel',
        redis_sentinels: [{ host, port: Number(port) }],
        redis_master_name: sentinel.name,
        redis_database: 3,
      }),
    ].join('');
    const gw = await startGateway(
      config(upstream.port, routes, `  redis: { sentinels: ["${sentinel.address}"], master_name: ${sentinel.name}, database: 2, timeout: 0.5 }`),
    );
    const db2 = master.client();
    const db3 = master.client();
    await db2.select(2);
    await db3.select(3);
    try {
      for (const id of ['gs', 'gr', 'obj']) {
        const rs = await openMany(`${gw.ws}/${id}/echo`, 3);
        assert.equal(opened(rs).length, 1, `${id}: exactly one opens`);
        const db = id === 'obj' ? db3 : db2;
        assert.equal(await db.zcard(redisKey(id)), 1, `${id}: the slot is in database ${id === 'obj' ? 3 : 2} of the master`);
        await closeAll(opened(rs));
        assert.ok(await eventually(async () => (await db.exists(redisKey(id))) === 0));
      }
    } finally {
      await gw.close();
    }
  });

  test('master down: refused at once (allow_degradation false) or admitted under the local cap (true), open connections untouched, logged once; limits resume', async () => {
    const attrs = {
      conn: 2,
      burst: 0,
      default_conn_delay: 0.1,
      policy: 'redis-sentinel',
      redis_sentinels: [sentinel.address],
      redis_master_name: sentinel.name,
      redis_timeout: 300,
    };
    const g = await startGateway(config(upstream.port, route('strict', attrs) + route('lenient', { ...attrs, allow_degradation: true })));
    let all = [];
    try {
      all = opened(await openMany(`${g.ws}/strict/echo`, 1));
      assert.equal(all.length, 1);
      await master.stop();
      try {
        for (let i = 0; i < 3; i++) {
          const refused = await openWs(`${g.ws}/strict/echo`);
          assert.equal(refused.status, 503);
          assert.equal(refused.headers['x-portcullis-error'], 'LIMIT_STORE_UNAVAILABLE');
        }
        const degraded = await openMany(`${g.ws}/lenient/echo`, 3);
        assert.equal(opened(degraded).length, 2, 'the local cap of the same size');
        all.push(...opened(degraded));
        for (const ws of all) assert.ok(await echoes(ws), 'open connections untouched');
        const outage = g.log.lines.filter((l) => /limit store unavailable/.test(l.msg ?? ''));
        assert.equal(outage.length, 1, 'the outage is logged once, not per request');
        assert.match(outage[0].store, /^redis-sentinel mymaster \(127\.0\.0\.1:\d+\)\/0$/);
      } finally {
        await master.start();
      }
      // Back (the same master, emptied by the restart): the held lease is written back, one slot is left.
      const back = await eventually(
        async () => {
          const r = await openWs(`${g.ws}/strict/echo`);
          return r.ws ? r : undefined;
        },
        { tries: 100, every: 50 },
      );
      assert.ok(back?.ws, 'limits resume when the master is back');
      all.push(back.ws);
      const over = await openWs(`${g.ws}/strict/echo`);
      assert.equal(over.headers['x-portcullis-error'], 'LIMIT_EXCEEDED');
      assert.equal(await inspect.zcard(redisKey('strict')), 2);
      await closeAll(all);
      all = [];
      assert.ok(await eventually(async () => (await inspect.exists(redisKey('strict'))) === 0));
    } finally {
      await closeAll(all);
      await g.close();
    }
  });

  test('the store over the sentinel: slots, buckets and windows answer as on a plain Redis', async () => {
    const ref = openStore({ policy: 'redis-sentinel', sentinels: [{ host: '127.0.0.1', port: sentinel.port }], masterName: sentinel.name, timeoutMs: 1000 });
    try {
      const s = ref.store;
      assert.equal(s.policy, 'redis-sentinel');
      const key = `direct:${process.pid}`;
      const a = await s.acquireSlot(key, 1, 60_000);
      assert.equal(a.ok, true);
      assert.equal((await s.acquireSlot(key, 1, 60_000)).ok, false);
      assert.equal(await inspect.zcard(`portcullis:${key}`), 1);
      await s.releaseSlot(a.lease);
      assert.equal(await s.countSlots(key), 0);
      const w = await s.fixedWindow(`fw:${process.pid}`, 2, 60_000);
      assert.deepEqual([w.ok, w.remaining], [true, 1]);
      const t = await s.takeTokens(`tb:${process.pid}`, 10, 10, 1, 4);
      assert.equal(t.granted, 4);
    } finally {
      await ref.release();
    }
  });
});

describe('failover', () => {
  let master;
  let replica;
  let sentinel;
  before(async () => {
    master = await startRedis();
    replica = await startRedis({ replicaOf: master.port });
    assert.ok(await eventually(() => replica.synced(), { tries: 200, every: 50 }), 'the replica is in sync');
    sentinel = await startSentinel({ masterPort: master.port });
    // The sentinel learns the replica from the master's INFO; a failover needs it known and healthy.
    assert.ok(await eventually(async () => (await sentinel.replicas()).includes(replica.port), { tries: 300, every: 50 }), 'the sentinel knows the replica');
  });
  after(async () => {
    await sentinel?.close();
    await replica?.close();
    await master?.close();
  });

  test('SENTINEL FAILOVER: held slots survive on the promoted replica and limits keep working there', async () => {
    const attrs = {
      conn: 2,
      burst: 0,
      default_conn_delay: 0.1,
      rejected_code: 429,
      policy: 'redis-sentinel',
      redis_sentinels: [sentinel.address],
      redis_master_name: sentinel.name,
      redis_timeout: 500,
    };
    const gw = await startGateway(config(upstream.port, route('fo', attrs)));
    const onReplica = replica.client();
    try {
      const first = opened(await openMany(`${gw.ws}/fo/echo`, 2));
      assert.equal(first.length, 2);
      // Replicated before the failover starts (the replica has both leases).
      assert.ok(await eventually(async () => (await onReplica.zcard(redisKey('fo'))) === 2), 'the replica has both leases');

      assert.equal(await sentinel.failover(), replica.port, 'the sentinel now names the replica');
      // The gateway's client hears +switch-master from the sentinel and reconnects to the new
      // master (its connection is named `portcullis`). Until it has, a write may still reach the
      // old master, as with any Sentinel client: wait for the move.
      const named = async (r) => /name=portcullis\b/.test(await r.call('CLIENT', 'LIST'));
      assert.ok(await eventually(() => named(onReplica), { tries: 150, every: 20 }), 'the gateway is connected to the new master');

      // The limit is still exact on the new master: a third connection is refused by the limit
      // (429), not for an unreachable store (503).
      const third = await eventually(
        async () => {
          const r = await openWs(`${gw.ws}/fo/echo`);
          if (r.ws) {
            r.ws.close();
            await closed(r.ws);
            return undefined;
          }
          return r.status === 429 ? r : undefined;
        },
        { tries: 100, every: 100 },
      );
      assert.equal(third?.status, 429, 'refused by the limit on the new master');
      for (const ws of first) assert.ok(await echoes(ws), 'open connections were not touched');

      // A slot given back lands on the new master; a fresh connection takes it.
      first[0].close();
      await closed(first[0]);
      assert.ok(await eventually(async () => (await onReplica.zcard(redisKey('fo'))) === 1), 'the release reached the new master');
      const again = opened(await openMany(`${gw.ws}/fo/echo`, 2));
      assert.equal(again.length, 1);
      assert.equal(await onReplica.zcard(redisKey('fo')), 2);
      await closeAll([first[1], ...again]);
      assert.ok(await eventually(async () => (await onReplica.exists(redisKey('fo'))) === 0), 'the key is back to its baseline on the new master');
    } finally {
      await gw.close();
    }
  });
});

describe('config', () => {
  const load = (plugin, extra = '') =>
    loadConfigText(
      `gateway:\n${extra}\nroutes:\n  - id: r\n    uri: /r\n    upstream: { nodes: { "127.0.0.1:1": 1 } }\n    plugins:\n      limit-conn: ${plugin}\n`,
      '<inline>',
      { registry: createRegistry(), env: {} },
    );
  const refused = async (plugin, fragment, extra) => {
    await assert.rejects(load(plugin, extra), (err) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, fragment);
      assert.doesNotMatch(err.message, /hunter2/, 'no password is ever echoed');
      return true;
    });
  };
  const base = '{ conn: 1, burst: 0, default_conn_delay: 1';

  test('refused at load, with the YAML path: sentinel settings that cannot work', async () => {
    await refused(`${base}, policy: redis-sentinel }`, /routes\/0\/plugins\/limit-conn|routes\[0\]\.plugins\.limit-conn/);
    await refused(`${base}, policy: redis-sentinel }`, /redis_sentinels and redis_master_name, or gateway\.redis/);
    await refused(`${base}, policy: redis-sentinel, redis_sentinels: ["127.0.0.1:26379"], redis_password: hunter2 }`, /redis_master_name/);
    await refused(`${base}, policy: redis-sentinel, redis_sentinels: ["nohost"], redis_master_name: m }`, /redis_sentinels: "nohost" is not host:port/);
    await refused(`${base}, policy: redis-sentinel, redis_host: 10.0.0.1, redis_sentinels: ["h:1"], redis_master_name: m }`, /redis_host is not for policy redis-sentinel/);
    await refused(`${base}, policy: redis, redis_host: h, redis_sentinels: ["h:1"] }`, /redis_sentinels is for policy redis-sentinel/);
    await refused(`${base}, redis_master_name: m }`, /policy is local/);
    await refused(`${base}, policy: redis-sentinel, redis_sentinels: [{ host: h }], redis_master_name: m }`, /port/);
    await refused(`${base}, policy: redis-sentinel, redis_sentinels: ["h:1"], redis_master_name: m, sentinel_password: 7 }`, /sentinel_password/);
    // gateway.redis with sentinels, but the plugin brings its own credentials without sentinels.
    await refused(`${base}, policy: redis-sentinel, sentinel_password: hunter2 }`, /without redis_sentinels/, '  redis: { sentinels: ["h:1"], master_name: m }');
  });

  test('gateway.redis: exactly one of url and sentinels, master_name with sentinels, credentials not beside a url', async () => {
    await refused(`${base}, policy: redis }`, /gateway\.redis.*either `url`, or `sentinels` and `master_name`.*both/s, '  redis: { url: "redis://h:1", sentinels: ["h:2"], master_name: m }');
    await refused(`${base}, policy: redis }`, /gateway\.redis.*neither/s, '  redis: { timeout: 1 }');
    await refused(`${base}, policy: redis }`, /gateway\.redis.*master_name/s, '  redis: { sentinels: ["h:2"], password: hunter2 }');
    await refused(`${base}, policy: redis }`, /gateway\.redis\.sentinels\[0\].*host:port/s, '  redis: { sentinels: ["h"], master_name: m }');
    await refused(`${base}, policy: redis }`, /gateway\.redis\.password.*goes with sentinels/s, '  redis: { url: "redis://h:1", password: hunter2 }');
    await refused(`${base}, policy: redis }`, /gateway\.redis\.sentinel_password/, '  redis: { sentinels: ["h:1"], master_name: m, sentinel_password: [hunter2] }');
  });

  test('valid: sentinel settings load without connecting, in both address forms', async () => {
    const c = await load(`${base}, policy: redis-sentinel }`, '  redis: { sentinels: ["127.0.0.1:1", "[::1]:2"], master_name: m, password: p, database: 4, timeout: 0.2 }');
    assert.deepEqual(c.gateway.redis.sentinels, [
      { host: '127.0.0.1', port: 1 },
      { host: '::1', port: 2 },
    ]);
    assert.equal(c.gateway.redis.master_name, 'm');
    assert.equal(c.gateway.redis.database, 4);
    await load(`${base}, policy: redis-sentinel, redis_sentinels: ["127.0.0.1:1", { host: "::1", port: 2 }], redis_master_name: m, sentinel_password: s }`);
  });
});
