import * as assert from 'node:assert/strict';
import {
  DEBUGGERS,
  announcedPresence,
  attachConfiguration,
  presenceKey,
  debuggerFor,
  debuggerOfType,
  debuggerRows,
  missingDebuggerMessage,
  entryDescription,
  entryDetail,
  installedType,
  protocolIcon,
  protocolText,
} from '../../src/extension/discoveryModel';
import { fieldStyle } from '../../src/extension/debug/fields';
import type { PublisherInfo } from '../../src/tunnel/discovery';

const INFO: PublisherInfo = {
  v: 1,
  queue: 'my-app',
  host: 'build-7',
  pid: 4242,
  target: '127.0.0.1:9229',
  protocol: 'node',
  runtime: 'node.js/v22.3.0',
  title: '/app/server.js',
  startedAt: '2026-01-01T10:00:00.000Z',
  secretRequired: false,
  version: '0.1.0',
};

describe('extension: discovered entries (discoveryModel)', () => {
  it('maps each detected protocol to the debugger that attaches to it, and unknown to none', () => {
    assert.deepEqual(
      Object.fromEntries(Object.entries(DEBUGGERS).map(([p, d]) => [p, [d.types[0], d.extensionId]])),
      {
        node: ['node', 'ms-vscode.js-debug'],
        python: ['debugpy', 'ms-python.debugpy'],
        java: ['java', 'vscjava.vscode-java-debug'],
        go: ['go', 'golang.go'],
      },
    );
    assert.equal(debuggerFor('unknown'), undefined);
    // Every type is one whose host/port fields the amqpTunnel provider knows.
    for (const d of Object.values(DEBUGGERS)) assert.notEqual(fieldStyle(d.types[0]!), 'fallback', d.types[0]);
  });

  it('uses the first installed type of a debugger, or none', () => {
    assert.equal(installedType(DEBUGGERS.python, new Set(['python'])), 'python');
    assert.equal(installedType(DEBUGGERS.python, new Set(['debugpy', 'python'])), 'debugpy');
    assert.equal(installedType(DEBUGGERS.java, new Set(['node'])), undefined);
  });

  it('one table serves the "What runs on the remote side?" pick: Node.js, Python, Java, Go, each with its installed type or the extension it needs', () => {
    assert.deepEqual(
      debuggerRows(new Set(['node', 'python'])).map((r) => [r.label, r.type, r.description]),
      [
        ['Node.js', 'node', 'type "node"'],
        ['Python (debugpy)', 'python', 'type "python"'],
        ['Java', undefined, 'not installed: needs the Debugger for Java extension (vscjava.vscode-java-debug)'],
        ['Go (Delve)', undefined, 'not installed: needs the Go extension (golang.go)'],
      ],
    );
    assert.deepEqual(debuggerRows(new Set(['debugpy'])).map((r) => r.need), Object.values(DEBUGGERS), 'the rows are the table, in its order');
    assert.equal(debuggerOfType('pwa-node'), DEBUGGERS.node);
    assert.equal(debuggerOfType('debugpy'), DEBUGGERS.python);
    assert.equal(debuggerOfType('cppdbg'), undefined);
    assert.equal(
      missingDebuggerMessage(DEBUGGERS.java),
      'attaching to Java needs the Debugger for Java extension (vscjava.vscode-java-debug), which is not installed — install it from the Extensions view, then attach again',
    );
  });

  it('builds the launch.json attach configuration with the amqpTunnel property', () => {
    assert.deepEqual(attachConfiguration(INFO, 'staging', 'debugpy', { justMyCode: false }), {
      type: 'debugpy',
      request: 'attach',
      name: 'Attach to my-app over AMQP',
      amqpTunnel: { queue: 'my-app', broker: 'staging' },
      justMyCode: false,
    });
  });

  it('describes an entry: protocol, host and pid, target; then runtime, script, uptime and the secret', () => {
    assert.equal(entryDescription(INFO), 'node · build-7 pid 4242 · 127.0.0.1:9229');
    const now = Date.parse(INFO.startedAt) + 3 * 3600_000;
    assert.equal(entryDetail(INFO, now), 'Node.js (node.js/v22.3.0) · /app/server.js · up 3h');
    assert.equal(entryDetail({ ...INFO, protocol: 'java', runtime: 'JDWP', title: undefined, secretRequired: true }, now), 'Java (JDWP) · up 3h · tunnel secret required');
    assert.equal(protocolText({ protocol: 'unknown' }), 'unknown protocol');
  });

  it('gives each protocol its own icon', () => {
    const icons = (['node', 'python', 'java', 'go', 'unknown'] as const).map(protocolIcon);
    assert.equal(new Set(icons).size, icons.length);
  });

  describe('publisher presence from the announcements', () => {
    const fwd = (queue: string, publisher?: boolean, broker = 'b'): { broker: string; queue: string; publisher?: boolean } => ({ broker, queue, publisher });
    const keys = (...qs: string[]): Set<string> => new Set(qs.map((q) => presenceKey('b', q)));

    it('a forward whose queue a publisher announced is present at once, whatever the last passive check said', () => {
      const r = announcedPresence([fwd('app', false), fwd('other', false), fwd('unknown')], keys('app', 'unknown'), keys());
      assert.deepEqual(r, { present: [0, 2], recheck: false });
    });

    it('a forward already present is left alone, and the same queue on another broker is not it', () => {
      assert.deepEqual(announcedPresence([fwd('app', true), fwd('app', false, 'other-broker')], keys('app'), keys('app')), { present: [], recheck: false });
    });

    it('a publisher that left the lists asks for a check (it may still hold the queue), one never listed does not', () => {
      assert.deepEqual(announcedPresence([fwd('app', true)], keys(), keys('app')), { present: [], recheck: true });
      // A Go publisher (no announcements) found by the passive check: nothing in the lists changes that.
      assert.deepEqual(announcedPresence([fwd('go-app', true)], keys(), keys()), { present: [], recheck: false });
    });
  });
});
