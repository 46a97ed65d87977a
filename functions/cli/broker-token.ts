#!/usr/bin/env node
/**
 * `npx broker-token`: get a token from the broker, for ops and scripts.
 *
 *   broker-token --url https://broker-xyz.a.run.app --service-account SA --scope S [--scope S2] [--subject USER]
 *   broker-token --url URL --tenant blue --jwt --audience https://firestore.googleapis.com/
 *   broker-token --url URL --service-account SA --id-token --audience https://svc.example.com [--json]
 *
 * The caller's ID token comes from $BROKER_ID_TOKEN, or else from Google's
 * Application Default Credentials for the broker's audience (--broker-audience,
 * default: --url). Prints the token (or the whole answer with --json); on
 * failure prints the broker's error on stderr and exits non-zero.
 */
import { parseArgs } from 'node:util';
import {
  BrokerClient,
  BrokerClientError,
  type BrokerToken,
  googleIdTokenSource,
} from '../../shared/client/index.js';

const USAGE = `usage: broker-token --url URL (--service-account EMAIL | --tenant ID)
         [--scope SCOPE ...] [--subject EMAIL] [--min-lifetime SECONDS]
         [--jwt | --id-token] [--audience URL] [--broker-audience AUD] [--json]`;

/** Runs the CLI; returns the exit code. */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  let values: ReturnType<typeof parse>['values'];
  try {
    ({ values } = parse(argv));
  } catch (e) {
    err(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const url = values.url ?? env['BROKER_URL'];
  const target = values['service-account']
    ? { serviceAccount: values['service-account'] }
    : values.tenant
      ? { tenant: values.tenant }
      : undefined;
  if (!url || !target || (values.jwt && values['id-token'])) {
    err(USAGE);
    return 2;
  }
  const idToken = env['BROKER_ID_TOKEN'];
  const client = new BrokerClient({
    url,
    idToken: idToken ? async () => idToken : googleIdTokenSource(values['broker-audience'] ?? url),
  });
  const min =
    values['min-lifetime'] === undefined ? {} : { minLifetimeSeconds: Number(values['min-lifetime']) };
  const scopes = values.scope ?? [];
  try {
    let t: BrokerToken;
    if (values['id-token']) {
      t = await client.idToken({ ...target, audience: values.audience ?? '', ...min } as never);
    } else if (values.jwt) {
      t = await client.jwt({
        ...target,
        ...(values.audience ? { audience: values.audience } : { scopes }),
        ...min,
      } as never);
    } else {
      t = await client.accessToken({
        ...target,
        scopes,
        ...(values.subject ? { subject: values.subject } : {}),
        ...min,
      } as never);
    }
    out(
      values.json
        ? JSON.stringify({
            token: t.token,
            expires_at: Math.floor(t.expiresAt / 1000),
            scope: t.scope,
            cache_status: t.cacheStatus,
          })
        : t.token,
    );
    return 0;
  } catch (e) {
    if (e instanceof BrokerClientError) {
      err(`broker-token: ${e.code}${e.upstreamError ? ` (${e.upstreamError})` : ''}: ${e.message}`);
      return e.retryable ? 75 : 1; // EX_TEMPFAIL for what may succeed later
    }
    err(`broker-token: ${(e as Error).message}`);
    return 1;
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    options: {
      url: { type: 'string' },
      'service-account': { type: 'string' },
      tenant: { type: 'string' },
      scope: { type: 'string', multiple: true },
      subject: { type: 'string' },
      'min-lifetime': { type: 'string' },
      audience: { type: 'string' },
      'broker-audience': { type: 'string' },
      jwt: { type: 'boolean' },
      'id-token': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
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
