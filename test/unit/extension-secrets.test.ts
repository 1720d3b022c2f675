import * as assert from 'node:assert/strict';
import { allInterfacesQuestion, bindNotConfirmedMessage, isAllInterfaces, secretInputProblem, unprotectedMessage } from '../../src/extension/secretModel';
import { defaultPublishQueue } from '../../src/extension/model';

describe('extension: tunnel secrets and safe defaults (secretModel.ts)', () => {
  it('asks for at least 16 bytes, and accepts empty (removes the secret)', () => {
    assert.match(secretInputProblem('short')!, /at least 16 bytes \(this one has 5\)/);
    assert.equal(secretInputProblem('x'.repeat(16)), undefined);
    assert.equal(secretInputProblem(''), undefined);
  });

  it('counts every interface as asking for confirmation, loopback and a named address not', () => {
    assert.ok(isAllInterfaces({ host: '0.0.0.0', port: 1 }));
    assert.ok(isAllInterfaces({ host: '::', port: 1 }));
    assert.equal(isAllInterfaces({ host: '127.0.0.1', port: 1 }), false);
    assert.equal(isAllInterfaces({ host: '::1', port: 1 }), false);
  });

  it('asks about every interface naming the queue, the address and the 127.0.0.1 alternative; a "no" says the same', () => {
    assert.match(allInterfacesQuestion('app-debug', { host: '0.0.0.0', port: 9229 }), /^Forward 'app-debug' on every network interface \(0\.0\.0\.0:9229\)\? Anyone .* on port 9229 .* bind 127\.0\.0\.1:9229 instead\.$/);
    assert.match(
      bindNotConfirmedMessage('app-debug', { host: '::', port: 9229 }),
      /^listening on every network interface \(\[::\]:9229\) for queue 'app-debug' was not confirmed — to keep the forward to this machine, bind 127\.0\.0\.1:9229 instead \(the tunnel's "bind" in amqpTunnel\.tunnels/,
    );
  });

  it('warns in one sentence that names the broker, the queue, the target and what to do', () => {
    const m = unprotectedMessage('staging', 'app-debug', '127.0.0.1:9229');
    assert.match(m, /^No tunnel secret is set for broker 'staging', so anyone .* 'app-debug' can connect to 127\.0\.0\.1:9229 .* "AMQP Tunnel: Set Tunnel Secret"/);
    assert.equal(m.split('. ').length, 1);
  });

  it('suggests a publish queue that the host name alone does not give away', () => {
    assert.equal(defaultPublishQueue('DevBox', '9229', '3fa2c1'), 'devbox-9229-3fa2c1');
    assert.equal(defaultPublishQueue('DevBox', '9229'), 'devbox-9229');
  });
});
