import * as assert from 'node:assert/strict';
import { TunnelError } from '../../src/common/errors';
import { formatHostPort, parseBind, parsePort, parseQueue, parseTarget } from '../../src/tunnel/spec';

describe('tunnel spec parser', () => {
  const ok: Array<[string, (s: string) => unknown, string, unknown]> = [
    ['a bare port binds to 127.0.0.1', parseBind, '9229', { host: '127.0.0.1', port: 9229 }],
    ['port 0 asks for a free port when binding', parseBind, '0', { host: '127.0.0.1', port: 0 }],
    ['a host and port bind to that host', parseBind, '0.0.0.0:8080', { host: '0.0.0.0', port: 8080 }],
    ['a bracketed IPv6 address binds to it', parseBind, '[::1]:9229', { host: '::1', port: 9229 }],
    ['a bare port targets 127.0.0.1', parseTarget, '9229', { host: '127.0.0.1', port: 9229 }],
    ['a host name target keeps the name', parseTarget, 'db.internal:5432', { host: 'db.internal', port: 5432 }],
    ['localhost is a valid target host', parseTarget, 'localhost:65535', { host: 'localhost', port: 65535 }],
    ['surrounding spaces are ignored', parseTarget, ' 1 ', { host: '127.0.0.1', port: 1 }],
    ['a queue name passes through unchanged', parseQueue, 'my-app.debug', 'my-app.debug'],
  ];
  for (const [name, fn, input, want] of ok) {
    it(`${name} ('${input}')`, () => assert.deepEqual(fn(input), want));
  }

  const bad: Array<[string, (s: string) => unknown, string, RegExp]> = [
    ['rejects a port above 65535', parseBind, '65536', /out of range/],
    ['rejects port 0 for a target', parseTarget, '0', /out of range.*1 to 65535/],
    ['rejects a non-numeric port', parseBind, 'abc', /'abc' is not a valid/],
    ['rejects a negative port', parseTarget, '-1', /'-1'/],
    ['rejects an empty spec', parseBind, '', /empty/],
    ['rejects a missing port after the colon', parseTarget, 'localhost:', /port after ':' is missing/],
    ['rejects an empty host without an emptyHost rule', parseBind, ':9229', /host before ':' is missing/],
    ['rejects an unbracketed IPv6 address', parseBind, '::1:9229', /brackets/],
    ['rejects a host with spaces', parseTarget, 'my host:80', /not a host name/],
    ['rejects an empty queue name', parseQueue, '', /empty/],
    ['rejects a reserved amq. queue name', parseQueue, 'amq.foo', /reserved/],
    ['rejects a queue name longer than 255 bytes', parseQueue, 'q'.repeat(256), /255/],
  ];
  for (const [name, fn, input, pattern] of bad) {
    it(`${name} ('${input.slice(0, 20)}')`, () => {
      assert.throws(
        () => fn(input),
        (err: unknown) => err instanceof TunnelError && err.code === 'ERR_INVALID_ARG' && pattern.test(err.message),
      );
    });
  }

  it('maps an empty Go-style host to the given default', () => {
    assert.deepEqual(parseBind(':9229', { emptyHost: '0.0.0.0' }), { host: '0.0.0.0', port: 9229 });
    assert.deepEqual(parseTarget(':9229', { emptyHost: '127.0.0.1' }), { host: '127.0.0.1', port: 9229 });
  });

  it('names the bad input and the valid range in a port error', () => {
    assert.throws(() => parsePort('70000', 'port'), /port 70000 is out of range \(give a number from 1 to 65535\)/);
  });

  it('formats IPv6 hosts in brackets', () => {
    assert.equal(formatHostPort({ host: '::1', port: 1 }), '[::1]:1');
    assert.equal(formatHostPort({ host: '127.0.0.1', port: 2 }), '127.0.0.1:2');
  });
});
