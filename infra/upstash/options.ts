/** Command-line options of the standalone stand-in (`main.ts`). */
import { parseArgs } from 'node:util';

/** The stand-in's command-line options, validated; throws an Error listing every problem. */
export function parseStandInArgs(
  argv: string[],
  env: NodeJS.ProcessEnv,
): { redisUrl: string; token: string; port: number; host: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
      port: { type: 'string', default: '8079' },
      host: { type: 'string', default: '127.0.0.1' },
      token: { type: 'string' },
    },
    strict: true,
  });
  const problems: string[] = [];
  const token = values.token ?? env['UPSTASH_REDIS_REST_TOKEN'] ?? '';
  if (token === '') problems.push('--token (or UPSTASH_REDIS_REST_TOKEN) is required');
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) problems.push('--port must be 0..65535');
  if (!/^rediss?:\/\//.test(values.redis)) problems.push('--redis must be a redis:// URL');
  if (problems.length > 0) throw new Error(problems.join('; '));
  return { redisUrl: values.redis, token, port, host: values.host };
}
