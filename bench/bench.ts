/**
 * npm run bench: the CLI pair against direct TCP and raw amqplib (bench/cli.ts),
 * or with --lib the in-process benchmark of the stream library (bench/lib.ts).
 */
import { USAGE, runCliBench } from './cli';
import { runLibBench } from './lib';

if (process.argv.includes('--lib')) runLibBench();
else if (process.argv.includes('--help') || process.argv.includes('-h')) console.log(USAGE);
else runCliBench();
