/**
 * Runs the Upstash REST stand-in on its own:
 *
 *   node dist/infra/upstash/main.js --redis redis://127.0.0.1:6379 --port 8079 --token dev
 *
 * `--token` may instead come from `UPSTASH_REDIS_REST_TOKEN`. `--host` defaults to 127.0.0.1.
 */
import { parseStandInArgs } from './options.js';
import { startUpstashStandIn } from './server.js';

async function main(): Promise<void> {
  let options: ReturnType<typeof parseStandInArgs>;
  try {
    options = parseStandInArgs(process.argv.slice(2), process.env);
  } catch (err) {
    console.error(`upstash stand-in: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 2;
    return;
  }
  const standIn = await startUpstashStandIn({ ...options, log: (line) => console.error(line) });
  if (!standIn.redisReady) console.error('upstash stand-in: redis is not up yet; answering 503 until it is');
  console.log(`upstash stand-in listening on ${standIn.url}`);
  const stop = () => {
    standIn.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

await main();
