import * as assert from 'node:assert/strict';
import {
  bindInputProblem,
  brokerConnectUrl,
  brokerNameProblem,
  brokerUrlProblem,
  defaultPublishQueue,
  formatBytes,
  keptFromSpec,
  parseBrokers,
  queueInputProblem,
  scrub,
  specFromKept,
  splitBrokerUrl,
  targetInputProblem,
} from '../../src/extension/model';

describe('extension model: input checks, settings, words', () => {
  const inputs: Array<[string, (v: string) => string | undefined, string, RegExp | undefined]> = [
    ['accepts a plain queue name', queueInputProblem, 'my-app-debug', undefined],
    ['explains an empty queue name', queueInputProblem, '', /empty/],
    ['explains a reserved amq. queue name', queueInputProblem, 'amq.foo', /reserved/],
    ['explains spaces around a queue name', queueInputProblem, ' q', /spaces/],
    ['accepts a bare port to bind', bindInputProblem, '9229', undefined],
    ['accepts port 0 to bind (a free port)', bindInputProblem, '0', undefined],
    ['accepts an address to bind', bindInputProblem, '0.0.0.0:8080', undefined],
    ['explains a port out of range', bindInputProblem, '70000', /out of range/],
    ['explains letters for a port', bindInputProblem, 'abc', /not a valid/],
    ['accepts a target host:port', targetInputProblem, 'localhost:5432', undefined],
    ['explains target port 0', targetInputProblem, '0', /1 to 65535/],
    ['accepts an amqp URL', brokerUrlProblem, 'amqp://localhost:5672', undefined],
    ['explains an http URL', brokerUrlProblem, 'http://localhost', /amqp:\/\//],
    ['explains a server_queue in a broker URL', brokerUrlProblem, 'amqp://h?server_queue=q', /server_queue/],
  ];
  for (const [name, fn, value, want] of inputs) {
    it(`${name} ('${value}')`, () => {
      const got = fn(value);
      if (want) assert.match(got ?? '', want);
      else assert.equal(got, undefined);
    });
  }

  it('rejects a broker name that is empty or taken', () => {
    assert.match(brokerNameProblem(' ', []) ?? '', /give the broker a name/);
    assert.match(brokerNameProblem('local', ['local']) ?? '', /exists already/);
    assert.equal(brokerNameProblem('staging', ['local']), undefined);
  });

  it('keeps the password out of the URL stored in settings', () => {
    assert.deepEqual(splitBrokerUrl('amqp://bob:s%40cret@mq.example:5672/dev'), { url: 'amqp://bob@mq.example:5672/dev', password: 's@cret' });
    assert.deepEqual(splitBrokerUrl('amqp://localhost:5672'), { url: 'amqp://localhost:5672', password: undefined });
  });

  it('puts the stored password into the URL it connects with', () => {
    assert.equal(brokerConnectUrl('amqp://bob@mq:5672/dev', 'p@ss'), 'amqp://bob:p%40ss@mq:5672/dev');
    assert.equal(brokerConnectUrl('amqp://mq:5672', undefined), 'amqp://mq:5672');
    assert.equal(brokerConnectUrl('amqp://guest@mq:5672', undefined), 'amqp://guest:guest@mq:5672', 'the user name prompt defaults to guest: no password means guest\'s default');
    assert.equal(brokerConnectUrl('amqp://bob@mq:5672', undefined), 'amqp://bob@mq:5672');
  });

  it('reads kept tunnels in the CLI tunnels.json shape and writes them back the same', () => {
    const f = specFromKept({ forward: 'db', bind: '9229', broker: 'local' }, undefined);
    assert.deepEqual(f, { kind: 'forward', broker: 'local', queue: 'db', address: '127.0.0.1:9229' });
    const p = specFromKept({ publish: '5005', queue: 'jvm' }, 'first');
    assert.deepEqual(p, { kind: 'publish', broker: 'first', queue: 'jvm', address: '127.0.0.1:5005' });
    assert.deepEqual(keptFromSpec(p as never), { publish: '127.0.0.1:5005', queue: 'jvm', broker: 'first' });
    assert.match(specFromKept({ publish: '5005' }, 'b') as string, /needs "queue"/);
    // A numeric bind means what it means in the CLI's tunnels.json (it used to become port 0 here).
    assert.deepEqual(specFromKept({ forward: 'q', bind: 9229 }, 'b'), { kind: 'forward', broker: 'b', queue: 'q', address: '127.0.0.1:9229' });
    assert.match(specFromKept({ forward: 'q' }, undefined) as string, /no broker/);
    assert.match(specFromKept({ forward: 'q', bind: 'x:y' }, 'b') as string, /not a valid/);
  });

  it('reads the brokers setting and reports bad entries instead of throwing', () => {
    const r = parseBrokers([{ name: 'a', url: 'amqp://a' }, { name: 'a', url: 'amqp://b' }, { url: 'amqp://c' }]);
    assert.deepEqual(r.brokers, [{ name: 'a', url: 'amqp://a' }]);
    assert.equal(r.problems.length, 2);
  });

  it('suggests <hostname>-<port> as the queue to publish on', () => {
    assert.equal(defaultPublishQueue('DevBox', '9229'), 'devbox-9229');
    assert.equal(defaultPublishQueue('amq.weird host', { host: '127.0.0.1', port: 1 }), 'amq-weird-host-1');
  });

  it('formats byte counts for the tree', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(50 * 1024 * 1024), '50 MiB');
  });

  it('scrubs passwords where they stand: URL userinfo (raw or encoded) and password fields', () => {
    assert.equal(scrub('login to amqp://u:hunter2@h failed', []), 'login to amqp://u@h failed');
    assert.equal(scrub('login to amqps://u:p%40ss@h:5671/vh failed', []), 'login to amqps://u@h:5671/vh failed');
    assert.equal(scrub('connecting as u:hunter2@h', ['hunter2']), 'connecting as u@h');
    assert.equal(scrub('connecting as u:p%40ss@h', ['p@ss']), 'connecting as u@h');
    assert.equal(scrub('options password=hunter2 heartbeat=10', []), 'options password=*** heartbeat=10');
    assert.equal(scrub('{"user":"u","password":"hunter2"}', []), '{"user":"u","password":"***"}');
  });

  it('masks a long known secret (a tunnel secret) wherever it appears', () => {
    const secret = 'k3y-0f-s1xteen-bytes+';
    assert.equal(scrub(`handshake with ${secret} failed`, [secret]), 'handshake with *** failed');
    assert.equal(scrub(`sent ${encodeURIComponent(secret)}`, [secret]), 'sent ***');
  });

  it('leaves a user name that equals the password alone (guest/guest)', () => {
    const secrets = ['guest'];
    assert.equal(
      scrub("the broker at 127.0.0.1:5672 refused the login of user 'guest' — check the user name and password", secrets),
      "the broker at 127.0.0.1:5672 refused the login of user 'guest' — check the user name and password",
    );
    assert.equal(scrub('tunnel forward q > connecting to amqp://guest:guest@localhost:5672', secrets), 'tunnel forward q > connecting to amqp://guest@localhost:5672');
    assert.equal(scrub('tunnel forward guest-queue > ready (broker amqp://guest@localhost:5672)', secrets), 'tunnel forward guest-queue > ready (broker amqp://guest@localhost:5672)');
  });
});
