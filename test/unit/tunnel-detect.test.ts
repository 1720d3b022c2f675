import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  classifyCommandLine,
  decodeProcAddress,
  detectProtocol,
  parseCmdline,
  parseEnviron,
  parseInspectorList,
  parseInspectorVersion,
  parseProcNetTcp,
  socketsFor,
} from '../../src/tunnel/detect';

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A187 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 30298 1 0000000091b4ba58 100 0 0 10 0
   1: 00000000:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 00000000fbfe3a52 100 0 0 10 0
   2: 0100007F:1628 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 00000000fbfe3a52 20 4 30 10 -1
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5714 1 0000000037456c5a 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1389 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5715 1 0000000037456c5a 100 0 0 10 0
`;

describe('protocol detection: /proc/net/tcp', () => {
  it('decodes IPv4 and IPv6 addresses as the kernel prints them (host byte order per 32-bit word)', () => {
    assert.equal(decodeProcAddress('0100007F', true), '127.0.0.1');
    assert.equal(decodeProcAddress('7F000001', false), '127.0.0.1');
    assert.equal(decodeProcAddress('00000000000000000000000001000000', true), '::1');
    assert.equal(decodeProcAddress('0000000000000000FFFF00000100007F', true), '::ffff:7f00:1');
    assert.equal(decodeProcAddress('00000000000000000000000000000000', true), '::');
  });

  it('lists only listening sockets, with address, port, inode and owner', () => {
    assert.deepEqual(parseProcNetTcp(TCP, true), [
      { address: '127.0.0.1', port: 0xa187, inode: 30298, uid: 0 },
      { address: '0.0.0.0', port: 5672, inode: 4242, uid: 1000 },
    ]);
    assert.deepEqual(
      parseProcNetTcp(TCP6, true).map((s) => [s.address, s.port]),
      [
        ['::1', 6379],
        ['::ffff:7f00:1', 5001],
      ],
    );
  });

  it('matches a target to the socket a connection would reach (its address or a wildcard)', () => {
    const socks = [
      { address: '127.0.0.1', port: 9229, inode: 1, uid: 0 },
      { address: '10.0.0.5', port: 9229, inode: 2, uid: 0 },
      { address: '::', port: 5005, inode: 3, uid: 0 },
    ];
    assert.deepEqual(socketsFor(socks, ['127.0.0.1'], 9229).map((s) => s.inode), [1]);
    assert.deepEqual(socketsFor(socks, ['127.0.0.1'], 5005).map((s) => s.inode), [3]);
    assert.deepEqual(socketsFor(socks, ['0.0.0.0'], 9229).map((s) => s.inode), [1, 2]);
    assert.deepEqual(socketsFor(socks, ['127.0.0.1'], 1234), []);
  });
});

describe('protocol detection: command lines', () => {
  const table: Array<[string, string[], Record<string, string>, ReturnType<typeof classifyCommandLine>]> = [
    ['node --inspect', ['node', '--inspect=127.0.0.1:9229', 'server.js'], {}, { protocol: 'node', runtime: 'node.js', title: 'server.js', inspectPort: 9229 }],
    ['node --inspect-brk', ['/usr/bin/node', '--inspect-brk', 'app.js'], {}, { protocol: 'node', runtime: 'node.js', title: 'app.js', inspectPort: 9229 }],
    ['NODE_OPTIONS=--inspect', ['node', 'app.js'], { NODE_OPTIONS: '--max-old-space-size=512 --inspect=0' }, { protocol: 'node', runtime: 'node.js', title: 'app.js', inspectPort: 0 }],
    ['a node without --inspect (maybe inspector.open(): ask its HTTP port)', ['node', 'app.js'], {}, { protocol: 'unknown', title: 'app.js', nodeCandidate: true }],
    [
      'java -agentlib:jdwp -jar',
      ['java', '-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=5005', '-jar', 'app.jar'],
      {},
      { protocol: 'java', runtime: 'JDWP', title: 'app.jar' },
    ],
    ['java -Xrunjdwp with a main class', ['/opt/jdk/bin/java', '-Xrunjdwp:transport=dt_socket,server=y', '-cp', 'lib/*', 'com.example.Main'], {}, { protocol: 'java', runtime: 'JDWP', title: 'com.example.Main' }],
    ['JAVA_TOOL_OPTIONS=-agentlib:jdwp', ['java', '-jar', 'svc.jar'], { JAVA_TOOL_OPTIONS: '-agentlib:jdwp=transport=dt_socket,address=5005' }, { protocol: 'java', runtime: 'JDWP', title: 'svc.jar' }],
    ['python -m debugpy', ['python3', '-m', 'debugpy', '--listen', '127.0.0.1:5678', '--wait-for-client', 'app.py'], {}, { protocol: 'python', runtime: 'debugpy', title: 'app.py' }],
    ['python -m debugpy -m module', ['python3', '-m', 'debugpy', '--listen', '5678', '-m', 'flask', 'run'], {}, { protocol: 'python', runtime: 'debugpy', title: '-m flask' }],
    [
      "debugpy's adapter process (the program is on the debuggee's command line)",
      ['/usr/bin/python3', '/usr/lib/python3/dist-packages/debugpy/adapter', '--for-server', '4000', '--port', '5678', '--server-access-token', 'T0KEN'],
      {},
      { protocol: 'python', runtime: 'debugpy', debugpyAdapter: true },
    ],
    ['dlv', ['/home/u/go/bin/dlv', 'exec', './server', '--headless', '--listen=:2345'], {}, { protocol: 'go', runtime: 'Delve', title: './server' }],
    ['anything else', ['redis-server', '*:6379'], {}, { protocol: 'unknown' }],
    ['an empty command line (a kernel thread)', [], {}, { protocol: 'unknown' }],
  ];
  for (const [name, argv, env, want] of table) {
    it(`${name}: ${want.protocol}`, () => assert.deepEqual(classifyCommandLine(argv, env), want));
  }

  it('parses /proc/PID/cmdline and keeps only the environment variables detection reads', () => {
    assert.deepEqual(parseCmdline(Buffer.from('node\0--inspect\0a b.js\0')), ['node', '--inspect', 'a b.js']);
    assert.deepEqual(parseEnviron(Buffer.from('HOME=/root\0NODE_OPTIONS=--inspect\0SECRET=x\0JAVA_TOOL_OPTIONS=-Da=b=c\0')), {
      NODE_OPTIONS: '--inspect',
      JAVA_TOOL_OPTIONS: '-Da=b=c',
    });
  });
});

describe('protocol detection: the Node inspector answers', () => {
  it('takes the runtime from /json/version and only from an inspector-shaped answer', () => {
    assert.equal(parseInspectorVersion({ Browser: 'node.js/v22.3.0', 'Protocol-Version': '1.1' }), 'node.js/v22.3.0');
    assert.equal(parseInspectorVersion({ Browser: 'x' }), undefined);
    assert.equal(parseInspectorVersion('<html>'), undefined);
    assert.equal(parseInspectorVersion(null), undefined);
  });

  it('takes the script title from /json/list', () => {
    assert.equal(parseInspectorList([{ description: 'node.js instance', title: '/app/server.js', type: 'node' }]), '/app/server.js');
    assert.equal(parseInspectorList([]), undefined);
    assert.equal(parseInspectorList({ title: 'x' }), undefined);
  });
});

describe('protocol detection over a /proc tree', () => {
  let root: string;
  const uid = process.getuid?.() ?? 0;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'proc-'));
    fs.mkdirSync(path.join(root, 'net'));
    fs.writeFileSync(
      path.join(root, 'net', 'tcp'),
      `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n` +
        `   0: ${os.endianness() === 'LE' ? '0100007F' : '7F000001'}:138D 00000000:0000 0A 00000000:00000000 00:00000000 00000000  ${uid}        0 777 1 0 100 0 0 10 0\n` +
        `   1: ${os.endianness() === 'LE' ? '0100007F' : '7F000001'}:162E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  ${uid}        0 888 1 0 100 0 0 10 0\n`,
    );
    for (const [pid, inode, cmd] of [
      ['100', 555, 'sleep\x00100\x00'],
      ['200', 777, 'java\x00-agentlib:jdwp=transport=dt_socket,server=y,address=5005\x00Main\x00'],
      ['300', 888, '/usr/bin/python3\x00/usr/lib/python3/dist-packages/debugpy/adapter\x00--for-server\x004000\x00--port\x005678\x00'],
      ['301', 889, 'python3\x00-m\x00debugpy\x00--listen\x00127.0.0.1:5678\x00--wait-for-client\x00app.py\x00'],
    ] as const) {
      fs.mkdirSync(path.join(root, pid, 'fd'), { recursive: true });
      fs.symlinkSync(`socket:[${inode}]`, path.join(root, pid, 'fd', '3'));
      fs.writeFileSync(path.join(root, pid, 'cmdline'), cmd);
    }
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('finds the process holding the listening socket and classifies its command line', async () => {
    assert.deepEqual(await detectProtocol({ host: '127.0.0.1', port: 5005 }, { procRoot: root }), { protocol: 'java', runtime: 'JDWP', title: 'Main', pid: 200 });
  });

  it("finds debugpy's program on the debuggee's command line when the listener is debugpy's adapter", async () => {
    assert.deepEqual(await detectProtocol({ host: '127.0.0.1', port: 5678 }, { procRoot: root }), { protocol: 'python', runtime: 'debugpy', title: 'app.py', pid: 301 });
  });

  it('says unknown when nothing listens on the port, or the target is another machine', async () => {
    assert.deepEqual(await detectProtocol({ host: '127.0.0.1', port: 5006 }, { procRoot: root }), { protocol: 'unknown' });
    assert.deepEqual(await detectProtocol({ host: '192.0.2.1', port: 5005 }, { procRoot: root }), { protocol: 'unknown' });
  });

  it('says unknown without /proc (not Linux)', async () => {
    assert.deepEqual(await detectProtocol({ host: '127.0.0.1', port: 5005 }, { procRoot: path.join(root, 'missing') }), { protocol: 'unknown' });
  });
});
