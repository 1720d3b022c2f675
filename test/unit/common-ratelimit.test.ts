import * as assert from 'node:assert/strict';
import type { Logger } from '../../src/common/logger';
import { RateLimitedLogger, untrusted } from '../../src/common/ratelimit';

/** A logger that keeps its warnings and lets a test await the next one. */
function capture(): Logger & { lines: string[]; next(): Promise<string> } {
  const lines: string[] = [];
  let waiter: ((line: string) => void) | undefined;
  const warn = (m: string): void => {
    lines.push(m);
    const w = waiter;
    waiter = undefined;
    w?.(m);
  };
  return {
    lines,
    next: () => new Promise<string>((r) => (waiter = r)),
    debug: () => undefined,
    info: () => undefined,
    warn,
    error: warn,
  };
}

describe('rate-limited logger (one line per kind of problem)', () => {
  it('logs the first problem of a kind at once and only counts the next ones', () => {
    const log = capture();
    const limited = new RateLimitedLogger(log, { intervalMs: 60_000 });
    for (let i = 0; i < 10_000; i++) limited.warn('bad request', `bad request #${i}`);
    assert.deepEqual(log.lines, ['bad request #0']);
    limited.flush();
  });

  it('keeps kinds apart: each kind gets its own first line', () => {
    const log = capture();
    const limited = new RateLimitedLogger(log, { intervalMs: 60_000 });
    for (let i = 0; i < 100; i++) {
      limited.warn('a', `a${i}`);
      limited.warn('b', `b${i}`);
    }
    assert.deepEqual(log.lines, ['a0', 'b0']);
    limited.flush();
  });

  it('writes one count line at the end of the interval, quoting the last problem, then starts over', async () => {
    const log = capture();
    const limited = new RateLimitedLogger(log, { intervalMs: 30 });
    limited.warn('stray', 'first');
    limited.warn('stray', 'second');
    limited.warn('stray', 'third');
    const summary = await log.next();
    assert.equal(summary, 'stray: 2 more within 30 ms, not logged one by one; the last: third');
    limited.warn('stray', 'fourth');
    assert.deepEqual(log.lines, ['first', summary, 'fourth']);
    limited.flush();
  });

  it('writes no count line when nothing was held back', async () => {
    const log = capture();
    const limited = new RateLimitedLogger(log, { intervalMs: 20 });
    limited.warn('once', 'only one');
    // A second kind whose count line proves the first kind's window has ended too.
    limited.warn('probe', 'p1');
    limited.warn('probe', 'p2');
    await log.next();
    assert.deepEqual(log.lines, ['only one', 'p1', 'probe: 1 more within 20 ms, not logged one by one; the last: p2']);
  });

  it('flush() writes pending counts at once', () => {
    const log = capture();
    const limited = new RateLimitedLogger(log, { intervalMs: 60_000 });
    limited.warn('k', 'x1');
    limited.warn('k', 'x2');
    limited.flush();
    assert.deepEqual(log.lines, ['x1', 'k: 1 more within 60 s, not logged one by one; the last: x2']);
    limited.flush();
    assert.equal(log.lines.length, 2);
  });

  it('quotes untrusted text on one line and cuts it short', () => {
    assert.equal(untrusted('amq.gen-1'), '"amq.gen-1"');
    assert.equal(untrusted('a\nFAKE LOG LINE\u001b[31m'), '"a\\nFAKE LOG LINE\\u001b[31m"');
    assert.equal(untrusted('x'.repeat(500), 10), `"${'x'.repeat(10)}…"`);
  });
});
