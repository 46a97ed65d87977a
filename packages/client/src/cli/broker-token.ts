#!/usr/bin/env node
/**
 * `npx broker-token`: tokens from the broker for ops and scripts, shaped like
 * gcloud's `auth print-access-token` / `print-identity-token`, and the
 * `external_account` credential file for Google's own libraries. `--help`
 * lists the commands, environment variables and exit codes.
 */
import { BrokerClient, BrokerClientError, type BrokerToken, googleIdTokenSource } from '../index.js';
import { type Plan, parseCommandLine, UsageError } from './arguments.js';
import { writePrivateFile } from './private-file.js';
import { EXIT, USAGE } from './usage.js';

export { DEFAULT_SCOPE, EXIT, USAGE } from './usage.js';

/** Runs the CLI; returns the exit code (see `EXIT`). */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  let plan: Plan;
  try {
    const parsed = parseCommandLine(argv, env);
    if (parsed === 'help') {
      out(USAGE);
      return EXIT.ok;
    }
    plan = parsed;
  } catch (e) {
    if (!(e instanceof UsageError) && !(e instanceof TypeError)) throw e;
    err(`broker-token: ${e.message}\nRun \`broker-token --help\` for usage.`);
    return EXIT.usage;
  }
  if (plan.kind === 'credential-config') {
    const text = `${JSON.stringify(plan.file, null, 2)}\n`;
    if (plan.outputFile === undefined) out(text.trimEnd());
    else {
      try {
        writePrivateFile(plan.outputFile, text);
      } catch (e) {
        err(`broker-token: could not write ${plan.outputFile}: ${(e as NodeJS.ErrnoException).code ?? e}`);
        return EXIT.refused;
      }
      err(`broker-token: wrote the credential configuration to ${plan.outputFile}`);
    }
    return EXIT.ok;
  }
  const idToken = env['BROKER_ID_TOKEN'];
  const client = new BrokerClient({
    url: plan.url,
    idToken: idToken ? async () => idToken : googleIdTokenSource(plan.brokerAudience),
  });
  try {
    const t: BrokerToken =
      plan.kind === 'idtoken'
        ? await client.idToken(plan.request)
        : plan.kind === 'jwt'
          ? await client.jwt(plan.request)
          : await client.accessToken(plan.request);
    out(
      plan.json
        ? JSON.stringify({
            token: t.token,
            expires_at: Math.floor(t.expiresAt / 1000),
            scope: t.scope,
            cache_status: t.cacheStatus,
          })
        : t.token,
    );
    return EXIT.ok;
  } catch (e) {
    if (e instanceof BrokerClientError) {
      err(`broker-token: ${e.code}${e.upstreamError ? ` (${e.upstreamError})` : ''}: ${e.message}`);
      return e.retryable ? EXIT.tempfail : EXIT.refused;
    }
    err(`broker-token: ${(e as Error).message}`);
    return EXIT.refused;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('broker-token')) {
  main(
    process.argv.slice(2),
    process.env,
    (s) => process.stdout.write(`${s}\n`),
    (s) => process.stderr.write(`${s}\n`),
  ).then((code) => {
    process.exitCode = code;
  });
}
