import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VERSION } from '../../src/common/version';
import { parseCommand, UsageError } from '../../src/cli/args';
import { age, formatTable } from '../../src/cli/list';
import { parsePublisherInfo, publisherInfo, type PublisherInfo } from '../../src/tunnel/discovery';

const INFO: PublisherInfo = {
  v: 1,
  queue: 'my-app',
  host: 'build-7',
  pid: 4242,
  target: '127.0.0.1:9229',
  protocol: 'node',
  runtime: 'node.js/v22.3.0',
  title: '/app/server.js',
  targetPid: 4100,
  startedAt: '2026-01-01T10:00:00.000Z',
  secretRequired: false,
  version: '0.1.0',
};

describe('discovery: the publisher info', () => {
  it('round-trips through JSON', () => {
    assert.deepEqual(parsePublisherInfo(Buffer.from(JSON.stringify(INFO))), INFO);
  });

  it('rejects what is not an info (no queue, bad JSON, wrong types)', () => {
    assert.equal(parsePublisherInfo('not json'), undefined);
    assert.equal(parsePublisherInfo('[]'), undefined);
    assert.equal(parsePublisherInfo(JSON.stringify({ ...INFO, queue: '' })), undefined);
    assert.equal(parsePublisherInfo(JSON.stringify({ ...INFO, pid: '1' })), undefined);
    assert.equal(parsePublisherInfo(JSON.stringify({ ...INFO, v: 0 })), undefined);
  });

  it('reads a protocol it does not know as unknown, and keeps unknown fields out', () => {
    const p = parsePublisherInfo(JSON.stringify({ ...INFO, v: 2, protocol: 'ruby', secret: 'x', secretRequired: 'yes' }));
    assert.equal(p?.protocol, 'unknown');
    assert.equal(p?.secretRequired, false);
    assert.equal((p as unknown as Record<string, unknown>).secret, undefined);
  });

  it("builds this process's info: host, pid, version, no secret required by default", () => {
    const p = publisherInfo({ queue: 'q', target: '127.0.0.1:5005', startedAt: new Date(0), detection: { protocol: 'java', runtime: 'JDWP', pid: 7 } });
    assert.equal(p.pid, process.pid);
    assert.equal(p.secretRequired, false);
    assert.equal(p.version, VERSION);
    assert.equal(p.targetPid, 7);
    assert.equal(p.startedAt, '1970-01-01T00:00:00.000Z');
  });

  it('VERSION is the version in package.json', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '../../package.json'), 'utf8')) as { version: string };
    assert.equal(VERSION, pkg.version);
  });
});

describe('amqp-tunnel list: arguments and output', () => {
  it('parses list with --wait and --json', () => {
    const c = parseCommand(['list', '--wait', '800', '--json'], {});
    assert.equal(c.kind, 'list');
    assert.equal(c.kind === 'list' && c.waitMs, 800);
    assert.equal(c.kind === 'list' && c.json, true);
  });

  it('rejects a --wait that is not a number of milliseconds', () => {
    assert.throws(() => parseCommand(['list', '--wait', 'soon'], {}), (e: unknown) => e instanceof UsageError && /--wait 'soon'/.test(e.message));
    assert.throws(() => parseCommand(['list', 'extra'], {}), UsageError);
  });

  it('publish, server and run are listed unless --unlisted', () => {
    const listed = (argv: string[]): unknown => {
      const c = parseCommand(argv, {});
      return 'listed' in c ? c.listed : 'n/a';
    };
    assert.equal(listed(['publish', '9229', '--queue', 'q']), true);
    assert.equal(listed(['publish', '9229', '--queue', 'q', '--unlisted']), false);
    assert.equal(listed(['server', ':9229', 'amqp://h/?server_queue=q', '--unlisted']), false);
    assert.equal(listed(['run', 'x.json', '--unlisted']), false);
    assert.throws(() => parseCommand(['forward', 'q', '--unlisted'], {}), /unknown option '--unlisted'/);
  });

  it('prints a table with a header and one aligned row per publisher', () => {
    const now = Date.parse(INFO.startedAt) + 125_000;
    const lines = formatTable([INFO, { ...INFO, queue: 'db', protocol: 'java', target: '127.0.0.1:5005', runtime: 'JDWP', title: undefined, secretRequired: true }], now).split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /^QUEUE\s+PROTOCOL\s+TARGET\s+HOST\s+PID\s+UP\s+SECRET\s+DETAILS$/);
    assert.match(lines[1]!, /^my-app\s+node\s+127\.0\.0\.1:9229\s+build-7\s+4242\s+2m\s+no\s+node\.js\/v22\.3\.0 \/app\/server\.js$/);
    assert.match(lines[2]!, /^db\s+java\s+127\.0\.0\.1:5005\s+build-7\s+4242\s+2m\s+yes\s+JDWP$/);
    assert.equal(lines[1]!.indexOf('node'), lines[0]!.indexOf('PROTOCOL'), 'columns line up');
  });

  it('says how long ago in the largest unit', () => {
    const t = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(age('2026-01-01T00:00:00Z', t + 59_000), '59s');
    assert.equal(age('2026-01-01T00:00:00Z', t + 3_600_000 * 5), '5h');
    assert.equal(age('2026-01-01T00:00:00Z', t + 86_400_000 * 3), '3d');
  });
});
