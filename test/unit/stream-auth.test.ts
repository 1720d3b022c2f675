import * as assert from 'node:assert/strict';
import { RefusalLog, offeredFeatures, refusalError } from '../../src/stream/auth';
import { brokerConnectError } from '../../src/stream/brokerErrors';
import { parseStreamUrl } from '../../src/stream/url';
import { StreamCipher } from '../../src/stream/aead';

describe('auth rules (auth.ts)', () => {
  it('offers auth only with a secret, and never aead without one', () => {
    const all = new Set(['presence', 'credit', 'seq', 'auth', 'aead'] as const);
    assert.deepEqual([...offeredFeatures(all, undefined)].sort(), ['credit', 'presence', 'seq']);
    assert.deepEqual([...offeredFeatures(new Set(), Buffer.alloc(16))].sort(), ['aead', 'auth']);
  });

  it('turns a listener refusal into a sentence that says what to do', () => {
    assert.match(refusalError('this tunnel requires a secret', 'q', 'amqp://h').message, /requires a tunnel secret — set the same secret on this side/);
    assert.equal(refusalError('the tunnel secret does not match', 'q', 'amqp://h').code, 'ERR_AMQP_SECRET');
    assert.match(refusalError('x'.repeat(500), 'q', 'amqp://h').message, /refused the stream: x{200}$/);
  });

  it('logs at most one refusal per interval, then says how many it held back', () => {
    const lines: string[] = [];
    let now = 1000;
    const log = new RefusalLog({ debug() {}, info() {}, error() {}, warn: (m) => lines.push(m) }, 10_000, () => now);
    for (let i = 0; i < 50; i++) log.refused('q', `amq.gen-${i}`, 'secret does not match');
    assert.deepEqual(lines, ["refused a stream on queue 'q' from 'amq.gen-0': secret does not match"]);
    now += 10_000;
    log.refused('q', 'amq.gen-x', 'secret does not match');
    assert.equal(lines[1], "refused a stream on queue 'q' from 'amq.gen-x': secret does not match (and 49 more refused in the last 10 s)");
  });

  it('never copies control characters of a requester queue name into the log', () => {
    const lines: string[] = [];
    new RefusalLog({ debug() {}, info() {}, error() {}, warn: (m) => lines.push(m) }).refused('q', 'evil\nfake log line\x1b[2J', 'x');
    assert.equal(lines[0], "refused a stream on queue 'q' from 'evil?fake log line?[2J': x");
  });
});

describe('TLS and certificate-login errors in one sentence (brokerErrors.ts)', () => {
  const url = parseStreamUrl('amqps://h.example:5671');
  const tlsErr = (code: string, message: string): Error => Object.assign(new Error(message), { code });
  const cases: Array<[string, Error, RegExp]> = [
    ['the broker refusing an unsigned client certificate', tlsErr('ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'x:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:y'), /^the broker at h\.example:5671 refused this client's TLS certificate \(sslv3 alert bad certificate\) — it must be signed by a CA the broker trusts/],
    ['the broker refusing an expired client certificate', tlsErr('ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', 'x'), /^the broker at h\.example:5671 refused this client's TLS certificate: it has expired — renew the certificate given with --cert/],
    ['a broker that wants a client certificate', tlsErr('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'x'), /requires a client certificate — give --cert and --key/],
    ['a broker certificate for another host', tlsErr('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 is not in the cert's list: "), /^the broker's TLS certificate at h\.example:5671 is issued for another host name \(.*is not in the cert's list\) — connect with a host name the certificate names$/],
    ['an expired broker certificate', tlsErr('CERT_HAS_EXPIRED', 'certificate has expired'), /^the broker's TLS certificate at h\.example:5671 has expired — the broker's administrator must renew it$/],
    ['a certificate login without a matching user', new Error('Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL."'), /refused the certificate login \(SASL EXTERNAL\): it has no user named after the certificate's common name/],
  ];
  for (const [what, err, re] of cases) {
    it(`names ${what}`, () => {
      const e = brokerConnectError(err, url);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'));
    });
  }
});

describe('aead on one stream (aead.ts)', () => {
  const secret = Buffer.from('a stream cipher test secret!');
  const nc = Buffer.alloc(16, 1);
  const ns = Buffer.alloc(16, 2);
  const client = new StreamCipher(secret, nc, ns, 'client');
  const listener = new StreamCipher(secret, nc, ns, 'listener');

  it('what one end seals, the other opens, in both directions', () => {
    assert.equal(listener.open(0, client.seal(0, Buffer.from('c2s'))).toString(), 'c2s');
    assert.equal(client.open(7, listener.seal(7, Buffer.from('s2c'))).toString(), 's2c');
  });

  it('an end cannot open its own messages reflected back to it', () => {
    assert.throws(() => client.open(0, client.seal(0, Buffer.from('mirror'))), /protocol error/);
  });

  it('control tags verify at the other end only, for the same kind and value', () => {
    const h = client.tag('end', 4096, {});
    assert.ok(listener.verify('end', 4096, h));
    assert.ok(listener.verify('end', Buffer.from('4096'), h), 'a header value that arrives as bytes');
    assert.equal(listener.verify('end', 4095, h), false);
    assert.equal(listener.verify('reset', 4096, h), false);
    assert.equal(client.verify('end', 4096, h), false, 'reflected');
    assert.equal(listener.verify('end', 4096, {}), false, 'no tag');
    assert.equal(listener.verify('end', undefined, h), false, 'no value');
  });
});
