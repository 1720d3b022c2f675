import * as assert from 'node:assert/strict';
import { formatStreamAddress, parseStreamUrl, queueNameProblem, redactUrl } from '../../src/stream/url';
import { brokerConnectError, channelError } from '../../src/stream/brokerErrors';

describe('stream URLs', () => {
  it('parses a Go-style address and keeps the password out of the safe URL', () => {
    const u = parseStreamUrl('amqps://alice:s3cr%40t@broker.example:5671/dev%2Fteam?server_queue=app-debug&heartbeat=5');
    assert.equal(u.protocol, 'amqps:');
    assert.equal(u.host, 'broker.example');
    assert.equal(u.port, 5671);
    assert.equal(u.vhost, 'dev/team');
    assert.equal(u.username, 'alice');
    assert.equal(u.password, 's3cr@t');
    assert.equal(u.serverQueue, 'app-debug');
    assert.equal(u.safeUrl, 'amqps://alice@broker.example:5671/dev%2Fteam?heartbeat=5');
    assert.ok(!u.brokerUrl.includes('server_queue'), 'server_queue is not passed to amqplib');
    assert.ok(u.brokerUrl.includes('heartbeat=5'), 'other parameters are passed on');
  });

  it('defaults the port by scheme, the vhost to /, and treats an empty server_queue as absent', () => {
    assert.equal(parseStreamUrl('amqp://h').port, 5672);
    assert.equal(parseStreamUrl('amqps://h').port, 5671);
    assert.equal(parseStreamUrl('amqp://h').vhost, '/');
    assert.equal(parseStreamUrl('amqp://h?server_queue=').serverQueue, undefined);
  });

  it('rejects what is not a broker URL, naming the expected form and never the password', () => {
    for (const bad of ['not a url', 'http://user:pw-XYZ@host/', 'amqp://']) {
      assert.throws(
        () => parseStreamUrl(bad),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_INVALID_URL');
          assert.match(err.message, /amqp/);
          assert.doesNotMatch(err.message, /pw-XYZ/);
          return true;
        },
      );
    }
  });

  it('scrubs passwords from any URL inside a text', () => {
    assert.equal(
      redactUrl('failed amqp://bob:hunter2@h:5672/v and amqps://x:y@z then'),
      'failed amqp://bob@h:5672/v and amqps://x@z then',
    );
    assert.equal(redactUrl('no credentials amqp://h:5672'), 'no credentials amqp://h:5672');
  });

  it('formats both ends of a stream in the Go form', () => {
    assert.equal(
      formatStreamAddress('amqp://guest@h:5672/', 'q', 'amq.gen-a', 'amq.gen-b'),
      'amqp://guest@h:5672/?server_queue=q&local_queue=amq.gen-a&remote_queue=amq.gen-b',
    );
  });

  it('explains queue names the broker would refuse', () => {
    assert.equal(queueNameProblem('my-app-debug'), undefined);
    assert.match(queueNameProblem('')!, /empty/);
    assert.match(queueNameProblem('amq.mine')!, /reserved/);
    assert.match(queueNameProblem('x'.repeat(256))!, /at most 255/);
    assert.match(queueNameProblem('a\nb')!, /control characters/);
  });
});

describe('broker errors in the user\'s terms', () => {
  const url = parseStreamUrl('amqp://bob:hunter2@rabbit.local:5672/prod');

  it('maps connection failures to stable codes with advice, never the password', () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'ECONNREFUSED', /is RabbitMQ running/],
      [Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }), 'ENOTFOUND', /DNS/],
      [new Error('Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"'), 'ERR_AMQP_AUTH', /refused the login of user 'bob'/],
      [new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>'), 'ERR_AMQP_VHOST', /vhost 'prod'/],
      [Object.assign(new Error('self-signed certificate amqp://bob:hunter2@x'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }), 'ERR_AMQP_TLS', /certificate at rabbit.local:5672 is not trusted \(self-signed certificate amqp:\/\/bob@x\) — pass the CA/],
      [
        Object.assign(new Error('803CA2C3C97F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:\n'), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }),
        'ERR_AMQP_TLS',
        /^the server at rabbit.local:5672 does not speak TLS on that port — use amqp:\/\/ for a plain port/,
      ],
    ];
    for (const [input, code, text] of cases) {
      const err = brokerConnectError(input, url);
      assert.equal(err.code, code);
      assert.match(err.message, text);
      assert.doesNotMatch(err.message, /hunter2/);
    }
  });

  it('maps a locked queue to EADDRINUSE and a refused declare to an access error', () => {
    assert.equal(channelError(Object.assign(new Error('RESOURCE_LOCKED'), { code: 405 }), url, 'q', 'listen on').code, 'EADDRINUSE');
    const denied = channelError(Object.assign(new Error('ACCESS_REFUSED'), { code: 403 }), url, 'q', 'listen on');
    assert.equal(denied.code, 'ERR_AMQP_ACCESS');
    assert.match(denied.message, /permissions on vhost 'prod'/);
  });
});
