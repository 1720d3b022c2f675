/**
 * `npm test` runs this once before the integration tests: is a broker at
 * $AMQP_URL (default amqp://guest:guest@127.0.0.1:5672) accepting our login?
 * Exit 0 quietly when it is; otherwise one line on stderr that says what is
 * wrong and what to run, and exit 1, instead of every integration test
 * failing with the same cause.
 *
 *     node --import tsx scripts/check-broker.ts [--quiet]
 */
import { connect, redactUrl } from '../src/stream';
import { describeError } from '../src/common/errors';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const quiet = process.argv.includes('--quiet');

async function main(): Promise<number> {
  try {
    const conn = await connect(url, { connectionName: 'amqp-tunnel test set-up check', connectTimeout: 5000, livenessInterval: 0 });
    await conn.close();
    if (!quiet) console.error(`broker: ${redactUrl(url)} accepts the login`);
    return 0;
  } catch (err) {
    const u = new URL(url);
    const local = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
    const fix = local ? 'run `npm run setup` (it installs and starts RabbitMQ here), or point AMQP_URL at a broker' : 'start that broker or point AMQP_URL at another';
    console.error(`no usable broker for the integration tests: ${describeError(err as Error)}; ${fix}`);
    return 1;
  }
}

void main().then((code) => process.exit(code));
