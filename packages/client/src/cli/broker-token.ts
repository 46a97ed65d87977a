/**
 * `npx broker-token`: tokens from the broker for ops and scripts, shaped like
 * gcloud's `auth print-access-token` / `print-identity-token`, and the
 * `external_account` credential file for Google's own libraries. `--help`
 * lists the commands, environment variables and exit codes.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BrokerClient, BrokerClientError, type BrokerToken, googleIdTokenSource } from '../index.js';
import { type Plan, parseCommandLine, UsageError } from './arguments.js';
import { render } from './output.js';
import { writePrivateFile } from './private-file.js';
import { EXIT, USAGE } from './usage.js';
import { version } from './version.js';

export { DEFAULT_SCOPE, EXIT, USAGE } from './usage.js';

/** No caller ID token could be had: neither $BROKER_ID_TOKEN nor Application Default Credentials gave one. */
class NoCallerToken extends Error {}

/**
 * The caller's ID token: $BROKER_ID_TOKEN, or else Application Default
 * Credentials through google-auth-library. Rejects with NoCallerToken, in
 * the CLI's words, when neither gives one.
 */
function callerToken(env: NodeJS.ProcessEnv, brokerAudience: string): () => Promise<string> {
  const given = env['BROKER_ID_TOKEN'];
  if (given) return async () => given;
  const adc = googleIdTokenSource(brokerAudience);
  return async () => {
    try {
      return await adc();
    } catch (e) {
      const missing = /needs google-auth-library/.test((e as Error).message);
      throw new NoCallerToken(
        `no caller ID token for audience ${brokerAudience}: set $BROKER_ID_TOKEN to one, or run where Application Default Credentials give one (the metadata server on Google Cloud, or GOOGLE_APPLICATION_CREDENTIALS naming a service-account key)${missing ? '; Application Default Credentials need google-auth-library: npm install google-auth-library' : ` (${(e as Error).message.split('\n')[0]})`}`,
      );
    }
  };
}

/** Runs the CLI; returns the exit code (see `EXIT`). */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  if (argv[0] === 'policy') return policy(argv.slice(1), out, err);
  let plan: Plan;
  try {
    const parsed = parseCommandLine(argv, env);
    if (parsed === 'help') {
      out(USAGE);
      return EXIT.ok;
    }
    if (parsed === 'version') {
      out(`broker-token ${version()}`);
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
  const client = new BrokerClient({
    url: plan.url,
    idToken: callerToken(env, plan.brokerAudience),
    // A token asked for a lifetime is for that long from now: no refresh skew on top.
    ...(plan.kind === 'token' && plan.request.lifetimeSeconds !== undefined ? { refreshSkewSeconds: 0 } : {}),
  });
  try {
    const t: BrokerToken =
      plan.kind === 'idtoken'
        ? await client.idToken(plan.request)
        : plan.kind === 'jwt'
          ? await client.jwt(plan.request)
          : await client.accessToken(plan.request);
    out(render(t, plan.format, Date.now()));
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

/**
 * `broker-token policy check|explain`: they run the broker's own policy code,
 * which ships with the broker, not with this package. In a clone of the
 * broker (built by `npm install`), its tool is found beside this package and
 * run; elsewhere the command says where to run it.
 */
async function policy(argv: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    const tool = join(dir, 'dist', 'infra', 'policy-cli.js');
    if (!existsSync(tool)) continue;
    const { policyMain } = (await import(pathToFileURL(tool).href)) as {
      policyMain: (argv: string[], out: (s: string) => void, err: (s: string) => void) => number;
    };
    return policyMain(argv, out, err);
  }
  err(
    "broker-token: `policy check` and `policy explain` run the broker's own policy code: run them in a clone of the broker, after `npm install` (npx broker-token policy check FILE).",
  );
  return EXIT.usage;
}
