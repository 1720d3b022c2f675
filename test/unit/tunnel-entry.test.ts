import * as assert from 'node:assert/strict';
import { parseTunnelEntry } from '../../src/tunnel/entry';

/** One parser for tunnels.json (CLI) and amqpTunnel.tunnels (extension): the table both rely on. */
describe('tunnel list entries (tunnels.json, amqpTunnel.tunnels)', () => {
  const ok: Array<[string, unknown, unknown]> = [
    ['a forward without bind takes a free port', { forward: 'db' }, { kind: 'forward', queue: 'db', bind: { host: '127.0.0.1', port: 0 } }],
    ['a forward with a port', { forward: 'db', bind: '9229' }, { kind: 'forward', queue: 'db', bind: { host: '127.0.0.1', port: 9229 } }],
    ['a forward with a numeric bind', { forward: 'db', bind: 9229 }, { kind: 'forward', queue: 'db', bind: { host: '127.0.0.1', port: 9229 } }],
    ['a forward on another interface', { forward: 'db', bind: '0.0.0.0:5005' }, { kind: 'forward', queue: 'db', bind: { host: '0.0.0.0', port: 5005 } }],
    ['a forward on IPv6', { forward: 'db', bind: '[::1]:5005' }, { kind: 'forward', queue: 'db', bind: { host: '::1', port: 5005 } }],
    ['a publish of a port', { publish: '9229', queue: 'app' }, { kind: 'publish', queue: 'app', target: { host: '127.0.0.1', port: 9229 } }],
    ['a publish of a numeric port', { publish: 9229, queue: 'app' }, { kind: 'publish', queue: 'app', target: { host: '127.0.0.1', port: 9229 } }],
    ['a publish of host:port, other keys ignored', { publish: 'db.internal:5432', queue: 'pg', broker: 'x' }, { kind: 'publish', queue: 'pg', target: { host: 'db.internal', port: 5432 } }],
  ];
  for (const [what, input, want] of ok) {
    it(`reads ${what}: ${JSON.stringify(input)}`, () => assert.deepEqual(parseTunnelEntry(input), want));
  }

  const bad: Array<[unknown, RegExp]> = [
    [null, /must be an object/],
    [['db'], /must be an object/],
    [{}, /each entry needs "publish"/],
    [{ forward: 5 }, /"forward" must be a queue name/],
    [{ forward: 'db', publish: '1', queue: 'q' }, /both "forward" and "publish"/],
    [{ forward: 'amq.x' }, /reserved/],
    [{ forward: 'db', bind: 'x:y' }, /not a valid/],
    [{ forward: 'db', bind: 1.5 }, /"bind" must be/],
    [{ forward: 'db', bind: true }, /"bind" must be/],
    [{ publish: '9229' }, /needs "queue"/],
    [{ publish: '0', queue: 'q' }, /port/],
    [{ publish: '70000', queue: 'q' }, /out of range/],
  ];
  for (const [input, re] of bad) {
    it(`rejects ${JSON.stringify(input)} saying ${re}`, () => {
      assert.throws(() => parseTunnelEntry(input), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_INVALID_ARG');
        assert.match(err.message, re);
        return true;
      });
    });
  }
});
