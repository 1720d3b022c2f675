import * as assert from 'node:assert/strict';
import { CreditReceiver, CreditSender, DEFAULT_WINDOW, MAX_WINDOW, MIN_WINDOW, peerWindowOf, resolveWindow } from '../../src/stream/flow';
import { TunnelError } from '../../src/common/errors';
import { headerInt, offsetProblem } from '../../src/stream/protocol';

describe('credit window (flow.ts)', () => {
  it('takes a window from 64 KiB to 16 MiB and refuses anything else with a message naming the range', () => {
    assert.equal(resolveWindow(undefined), DEFAULT_WINDOW);
    assert.equal(DEFAULT_WINDOW, 8 * 1024 * 1024);
    assert.equal(resolveWindow(MIN_WINDOW), 64 * 1024);
    assert.equal(resolveWindow(MAX_WINDOW), 16 * 1024 * 1024);
    for (const bad of [MIN_WINDOW - 1, MAX_WINDOW + 1, 0, -5, 1.5 * MIN_WINDOW + 0.5, NaN]) {
      assert.throws(
        () => resolveWindow(bad),
        (err: unknown) => err instanceof TunnelError && err.code === 'ERR_INVALID_ARG' && /from 65536 \(64 KiB\) to 16777216 \(16 MiB\)/.test(err.message),
      );
    }
  });

  it("clamps a peer's announced window into the allowed range, treating garbage as the smallest", () => {
    assert.equal(peerWindowOf(200_000), 200_000);
    assert.equal(peerWindowOf('200000'), 200_000);
    assert.equal(peerWindowOf(1), MIN_WINDOW);
    assert.equal(peerWindowOf(1e12), MAX_WINDOW);
    assert.equal(peerWindowOf(undefined), MIN_WINDOW);
    assert.equal(peerWindowOf(Buffer.from('x')), MIN_WINDOW);
    assert.equal(peerWindowOf('lots'), MIN_WINDOW);
  });

  it('lets a sender have at most one window beyond what the reader consumed', () => {
    const tx = new CreditSender(1000);
    assert.equal(tx.room, 1000);
    tx.take(600);
    assert.equal(tx.room, 400);
    tx.take(400);
    assert.equal(tx.room, 0);
    assert.equal(tx.grant(250), 'more');
    assert.equal(tx.room, 250);
    assert.equal(tx.limit, 1250);
  });

  it('ignores an old grant and calls a grant beyond what was sent, or no number, invalid', () => {
    const tx = new CreditSender(1000);
    tx.take(800);
    assert.equal(tx.grant(500), 'more');
    assert.equal(tx.grant(300), 'stale');
    assert.equal(tx.grant(500), 'stale');
    assert.equal(tx.limit, 1500);
    assert.equal(tx.grant(801), 'invalid');
    assert.equal(tx.grant(-1), 'invalid');
    assert.equal(tx.grant(600.5), 'invalid');
    assert.equal(tx.grant(undefined), 'invalid');
    assert.equal(tx.limit, 1500, 'an invalid grant changes nothing');
  });

  it('grants only what the application consumed, batched to a quarter window', () => {
    const rx = new CreditReceiver(1000);
    assert.ok(rx.arrive(1000));
    // Arrived but not read: nothing to grant.
    assert.equal(rx.consume(0), undefined);
    assert.equal(rx.consume(249), undefined);
    assert.equal(rx.consume(250), 250);
    assert.equal(rx.consume(400), undefined);
    assert.equal(rx.consume(1000), 1000);
    assert.equal(rx.lastGranted, 1000);
  });

  it('never grants more than arrived, and never goes back', () => {
    const rx = new CreditReceiver(1000);
    rx.arrive(300);
    assert.equal(rx.consume(5000), 300);
    assert.equal(rx.consume(100), undefined, 'an unshift() makes consumed look smaller: no grant, no step back');
    assert.equal(rx.consumed, 300);
  });

  it('catches a peer that sends beyond its window', () => {
    const rx = new CreditReceiver(1000);
    assert.ok(rx.arrive(1000));
    assert.equal(rx.arrive(1), false);
    const rx2 = new CreditReceiver(1000);
    rx2.arrive(1000);
    rx2.consume(1000);
    assert.ok(rx2.arrive(1000), 'after a grant of 1000 the peer may have 2000 in all');
    assert.equal(rx2.arrive(1), false);
  });

  it('splits a message to fit the window only when at least a quarter window is free (no tiny messages)', () => {
    const tx = new CreditSender(1024);
    tx.take(1000); // 24 bytes of room
    assert.equal(tx.sendable(10), 10, 'a message that fits goes whole');
    assert.equal(tx.sendable(100), 0, 'a 24-byte sliver of a 100-byte message waits for the next grant');
    assert.equal(tx.grant(800), 'more'); // room 824
    assert.equal(tx.sendable(2000), 824, 'with a quarter window free, the head is split to fill it');
  });

  it('a sender and a receiver together never stall while the reader keeps reading (every split size)', () => {
    for (const window of [4, 7, 64]) {
      for (const messageSize of [1, 3, 5, 64, 100]) {
        const tx = new CreditSender(window);
        const rx = new CreditReceiver(window);
        const total = 1000;
        let queued = total;
        const inFlight: number[] = [];
        let read = 0;
        for (let steps = 0; read < total; steps++) {
          assert.ok(steps < 100_000, `stalled at window ${window}, message ${messageSize}`);
          const n = queued > 0 ? tx.sendable(Math.min(queued, messageSize)) : 0;
          if (n > 0) {
            tx.take(n);
            queued -= n;
            inFlight.push(n);
          }
          const arrived = inFlight.shift();
          if (arrived !== undefined) {
            assert.ok(rx.arrive(arrived), 'the sender kept within the window');
            read += arrived;
            const grant = rx.consume(read);
            if (grant !== undefined) assert.notEqual(tx.grant(grant), 'invalid');
          }
        }
        assert.equal(read, total);
      }
    }
  });
});

describe('seq offsets (protocol.ts)', () => {
  it('reads integer headers as AMQP integers or their decimal string form, nothing else', () => {
    assert.equal(headerInt(4096), 4096);
    assert.equal(headerInt('4096'), 4096);
    assert.equal(headerInt(Buffer.from('12')), 12);
    for (const bad of [-1, 1.5, 'x12', '', '1e3', ' 1', null, undefined, {}, 2 ** 60]) assert.equal(headerInt(bad), undefined, String(bad));
  });

  it('names gaps, duplicates, truncating ends and missing or malformed offsets', () => {
    assert.equal(offsetProblem(5, 5, 'data'), undefined);
    assert.equal(offsetProblem('5', 5, 'end-of-stream'), undefined);
    assert.match(offsetProblem(9, 5, 'data')!, /a gap: data at offset 9, expected 5/);
    assert.match(offsetProblem(0, 5, 'data')!, /a duplicate or reordered message: data at offset 0, expected 5/);
    assert.match(offsetProblem(3, 5, 'end-of-stream')!, /end-of-stream at offset 3 after 5 bytes/);
    assert.match(offsetProblem(undefined, 5, 'data')!, /^a data message without an offset/);
    assert.match(offsetProblem(undefined, 5, 'end-of-stream')!, /^an end-of-stream message without an offset/);
    assert.match(offsetProblem(true, 5, 'data')!, /malformed offset/);
  });
});
