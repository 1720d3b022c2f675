import * as assert from 'node:assert/strict';
import { settleWithin } from '../../src/common/timeout';

describe('settleWithin', () => {
  it("gives the promise's value when it settles in time", async () => {
    assert.equal(await settleWithin(Promise.resolve('done'), 1000, 'late'), 'done');
  });

  it('gives the fallback once the time is up, for a promise that never settles', async () => {
    const started = Date.now();
    assert.equal(await settleWithin(new Promise<string>(() => undefined), 30, 'late'), 'late');
    assert.ok(Date.now() - started >= 25, 'not before the time is up');
  });

  it("passes the promise's rejection on", async () => {
    await assert.rejects(settleWithin(Promise.reject(new Error('refused')), 1000, 'late'), /refused/);
  });
});
