import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  TASK_BEGINS_PATTERN,
  TASK_ENDS_PATTERN,
  TASK_LINES,
  applyLocalAddress,
  fieldStyle,
  nothingPublishedMessage,
  numericPorts,
  parseAmqpTunnelProperty,
  parseTaskDefinition,
} from '../../src/extension/debug/fields';
import { COMMANDS, PROBLEM_MATCHER, TASK_TYPE } from '../../src/extension/ids';

describe('debugging through tunnels: where each debugger reads host and port', () => {
  const cases: Array<[string, Record<string, unknown>, Record<string, unknown>, string[]]> = [
    ['node', {}, { address: '127.0.0.1', port: 40001 }, ['address', 'port']],
    ['pwa-node', {}, { address: '127.0.0.1', port: 40001 }, ['address', 'port']],
    ['chrome', {}, { address: '127.0.0.1', port: 40001 }, ['address', 'port']],
    ['debugpy', {}, { connect: { host: '127.0.0.1', port: 40001 } }, ['connect.host', 'connect.port']],
    ['python', { host: 'stale', port: 1 }, { connect: { host: '127.0.0.1', port: 40001 } }, ['connect.host', 'connect.port']],
    ['debugpy', { connect: { host: 'x', port: 5678, extra: true } }, { connect: { host: '127.0.0.1', port: 40001, extra: true } }, ['connect.host', 'connect.port']],
    ['java', {}, { hostName: '127.0.0.1', port: 40001 }, ['hostName', 'port']],
    ['go', { mode: 'remote' }, { mode: 'remote', host: '127.0.0.1', port: 40001 }, ['host', 'port']],
    ['some-other-debugger', {}, { host: '127.0.0.1', port: 40001 }, ['host', 'port']],
  ];
  for (const [type, before, after, fields] of cases) {
    it(`${type}: writes ${fields.join(' and ')}`, () => {
      const config: Record<string, unknown> = { type, request: 'attach', name: 'x', ...structuredClone(before) };
      assert.deepEqual(applyLocalAddress(config, '127.0.0.1', 40001), fields);
      assert.deepEqual(config, { type, request: 'attach', name: 'x', ...after });
    });
  }

  it('falls back to host and port for unknown types, and says so', () => {
    assert.equal(fieldStyle('cppdbg'), 'fallback');
    assert.equal(fieldStyle('node'), 'js');
  });

  it('turns port fields holding digits (command variables substitute strings) into numbers', () => {
    const c: Record<string, unknown> = { port: '9229', connect: { port: '5678' }, name: '42' };
    numericPorts(c);
    assert.deepEqual(c, { port: 9229, connect: { port: 5678 }, name: '42' });
    const d: Record<string, unknown> = { port: '${command:x}' };
    numericPorts(d);
    assert.equal(d.port, '${command:x}');
  });
});

describe('debugging through tunnels: the amqpTunnel property', () => {
  it('reads queue, broker, localPort and stopWhenDone', () => {
    assert.deepEqual(parseAmqpTunnelProperty({ queue: 'my-app', broker: 'staging', localPort: 9229, stopWhenDone: false }), {
      queue: 'my-app',
      broker: 'staging',
      localPort: 9229,
      stopWhenDone: false,
    });
    assert.deepEqual(parseAmqpTunnelProperty('my-app'), { queue: 'my-app', broker: undefined, localPort: undefined, stopWhenDone: undefined });
  });

  const bad: Array<[unknown, RegExp]> = [
    [undefined, /must be an object/],
    [[], /must be an object/],
    [{}, /needs a "queue"/],
    [{ queue: 'amq.x' }, /amqpTunnel\.queue/],
    [{ queue: 'q', broker: 3 }, /broker/],
    [{ queue: 'q', localPort: 70000 }, /localPort.*port number/],
    [{ queue: 'q', stopWhenDone: 'yes' }, /stopWhenDone/],
  ];
  for (const [value, why] of bad) {
    it(`explains what is wrong with ${JSON.stringify(value)}`, () => {
      const r = parseAmqpTunnelProperty(value);
      assert.equal(typeof r, 'string');
      assert.match(r as string, why);
    });
  }
});

describe('debugging through tunnels: the amqp-tunnel task', () => {
  it('reads a task definition and explains a missing or bad localPort', () => {
    assert.deepEqual(parseTaskDefinition({ type: 'amqp-tunnel', queue: 'q', broker: 'b', localPort: 9229 }), { type: 'amqp-tunnel', queue: 'q', broker: 'b', localPort: 9229 });
    assert.match(parseTaskDefinition({ type: 'amqp-tunnel', queue: 'q' }) as string, /"localPort" must be a port number.*attaches to this port/);
    assert.match(parseTaskDefinition({ type: 'amqp-tunnel', localPort: 1 }) as string, /needs a "queue"/);
  });

  it('prints lines that the contributed problem matcher sees as begin and end of the busy phase', () => {
    const starting = TASK_LINES.starting('q', 'local', '127.0.0.1:9229');
    const ready = TASK_LINES.ready('127.0.0.1:9229', 'q', 'amqp://127.0.0.1:5672');
    const failed = TASK_LINES.failed(nothingPublishedMessage('q', 'local', 'amqp://127.0.0.1:5672'));
    assert.match(starting, new RegExp(TASK_BEGINS_PATTERN));
    assert.match(ready, new RegExp(TASK_ENDS_PATTERN));
    assert.match(failed, new RegExp(TASK_ENDS_PATTERN));
    assert.doesNotMatch(starting, new RegExp(TASK_ENDS_PATTERN));
    assert.match(failed, /queue 'q' at amqp:\/\/127\.0\.0\.1:5672 \(broker 'local'\)/);
  });

  it('package.json contributes the task type, the problem matcher with those patterns, and a matcher pattern the task never prints', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    const def = pkg.contributes.taskDefinitions.find((d: { type: string }) => d.type === TASK_TYPE);
    assert.ok(def, 'taskDefinitions has amqp-tunnel');
    assert.deepEqual(def.required, ['queue', 'localPort']);
    const pm = pkg.contributes.problemMatchers.find((m: { name: string }) => m.name === PROBLEM_MATCHER);
    assert.ok(pm, 'problemMatchers has amqp-tunnel');
    assert.equal(pm.background.beginsPattern, TASK_BEGINS_PATTERN);
    assert.equal(pm.background.endsPattern, TASK_ENDS_PATTERN);
    // A failure is reported by the launch itself; an error marker would add VS Code's "Debug Anyway?" dialog.
    for (const line of [TASK_LINES.starting('q', 'b', 'x'), TASK_LINES.ready('x', 'q', 'y'), TASK_LINES.failed('z')]) {
      assert.doesNotMatch(line, new RegExp(pm.pattern.regexp));
    }
  });

  it('package.json offers the three attach snippets under its own debugger key, and the amqpTunnel schema on each type', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    // Snippets contributed to another extension's debugger type are lost or hide that extension's own
    // (VS Code merges arrays by replacing them), so they live under a type key of ours with no adapter.
    // Its label puts "AMQP Tunnel" into "create a launch.json file"; the extension's providers turn it
    // into node/debugpy/java attach configurations (debug/configurations.ts), so it needs no adapter.
    const own = pkg.contributes.debuggers.find((d: { type: string }) => d.type === TASK_TYPE);
    assert.match(own.label, /^AMQP Tunnel/);
    assert.equal(own.program ?? own.runtime, undefined, 'no adapter of its own');
    const snippets = own.configurationSnippets as Array<{ label: string; body: { type: string; request: string; amqpTunnel: { queue: string } } }>;
    assert.deepEqual(
      snippets.map((s) => [s.label, s.body.type]),
      [
        ['Attach to Node.js over AMQP', 'node'],
        ['Attach to Python over AMQP', 'debugpy'],
        ['Attach to Java over AMQP', 'java'],
      ],
    );
    for (const s of snippets) {
      assert.equal(s.body.request, 'attach');
      assert.ok(s.body.amqpTunnel.queue, `${s.label} names a queue`);
    }
    for (const type of ['node', 'debugpy', 'java']) {
      const d = pkg.contributes.debuggers.find((x: { type: string }) => x.type === type);
      assert.deepEqual(Object.keys(d).sort(), ['configurationAttributes', 'type'], `${type}: only the amqpTunnel attribute is added`);
      assert.ok(d.configurationAttributes.attach.properties.amqpTunnel);
    }
    assert.ok(pkg.activationEvents.includes('onDebug'));
    const palette = pkg.contributes.menus.commandPalette.find((m: { command: string }) => m.command === COMMANDS.localPort);
    assert.equal(palette.when, 'false', 'the command variable is hidden from the palette');
  });
});
