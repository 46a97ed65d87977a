#!/usr/bin/env node
/**
 * `npx broker-token`: tokens from the broker for ops and scripts, shaped like
 * gcloud's `auth print-access-token` / `print-identity-token`, and the
 * `external_account` credential file for Google's own libraries. `--help`
 * lists the commands, environment variables and exit codes.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { checkBrokerUrl } from '../../shared/client/broker-client.js';
import {
  BrokerClient,
  BrokerClientError,
  type BrokerToken,
  googleIdTokenSource,
} from '../../shared/client/core.js';
import { MAX_MIN_LIFETIME_SECONDS, type WireTarget } from '../../shared/wire.js';
import {
  credentialConfig,
  METADATA_HEADERS,
  metadataIdentityUrl,
  type SubjectTokenSource,
} from './credential-config.js';

/** gcloud's default scope. */
export const DEFAULT_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

/** Exit codes, as `--help` lists them. */
export const EXIT = { ok: 0, refused: 1, usage: 2, tempfail: 75 } as const;

export const USAGE = `usage: broker-token [COMMAND] [FLAGS]

Commands:
  print-access-token    an OAuth 2.0 access token (the default command)
  print-identity-token  a Google-signed ID token for --audiences
  print-jwt             a self-signed JWT for --audiences, or for --scopes
  credential-config     write an external_account credential file, so that Google's
                        auth libraries (any language, gcloud) get tokens from the broker

Who the token is for (exactly one):
  --impersonate-service-account EMAIL   a service account (alias: --service-account)
  --tenant ID                           a tenant the broker's policy maps to one account

Flags:
  --url URL                the broker's base URL (paths /token, /jwt, /idtoken, /sts);
                           https:, or http: on loopback only [$BROKER_URL]
  --scopes S1,S2           comma-separated OAuth scopes (--scope S may repeat)
                           [default: ${DEFAULT_SCOPE}]
  --subject EMAIL          the user to act as (domain-wide delegation)
  --audiences AUD          the ID token's or JWT's audience (alias: --audience)
  --include-email          accepted for gcloud's sake: the broker's ID tokens always carry email
  --min-lifetime SECONDS   the token served has at least this much life left (0-${MAX_MIN_LIFETIME_SECONDS})
  --broker-audience AUD    the audience of the caller's own ID token [$BROKER_AUDIENCE, else --url]
  --format json            print the whole answer as JSON (alias: --json)
  -h, --help               this text

credential-config flags (one source of the caller's ID token):
  --credential-source-file PATH          a file that holds it (kept fresh by something else)
  --credential-source-metadata           the metadata server's identity endpoint for
                                         --broker-audience (Cloud Run, GKE, Compute Engine);
                                         host: $GCE_METADATA_HOST or metadata.google.internal
  --credential-source-url URL            any URL that answers with it ...
  --credential-source-headers K=V,K2=V2  ... with these request headers
  --executable-command "CMD ARGS"        a program that prints it (Google's executable format;
                                         the libraries run it only with
                                         GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1)
  --executable-timeout-millis N          5000-120000 [libraries' default: 30000]
  --executable-output-file PATH          where the program caches its answer
  --sts-url URL            the sts function's own URL, instead of --url + /sts
  --output-file PATH       write the file there [default: standard output]
  --subject EMAIL          as above; a target is required. The file names no scopes:
                           the calling code or its client library chooses them

Environment:
  BROKER_URL                      the broker's base URL, when --url is not given
  BROKER_AUDIENCE                 the audience of the caller's ID token (default: the URL)
  BROKER_ID_TOKEN                 the caller's ID token; when unset, it comes from Google's
                                  Application Default Credentials (metadata server on Google
                                  Cloud, else GOOGLE_APPLICATION_CREDENTIALS)
  GOOGLE_APPLICATION_CREDENTIALS  see above
  GCE_METADATA_HOST               see --credential-source-metadata

Exit codes:
  0   success: the token (or the file) was written
  1   the broker refused (its error code and description are on stderr)
  2   usage error: nothing was sent
  75  temporary failure (rate limited, Google or the broker unavailable): retry later

Examples:
  broker-token print-access-token --url https://broker-xyz.a.run.app \\
      --impersonate-service-account reporting@acme.iam.gserviceaccount.com \\
      --scopes https://www.googleapis.com/auth/bigquery.readonly
  broker-token print-identity-token --url URL --tenant blue --audiences https://svc.example.com
  broker-token credential-config --url URL --impersonate-service-account SA \\
      --credential-source-metadata --output-file broker.json
  GOOGLE_APPLICATION_CREDENTIALS=broker.json python3 my_job.py`;

const COMMANDS = ['print-access-token', 'print-identity-token', 'print-jwt', 'credential-config'] as const;
type Command = (typeof COMMANDS)[number];

const OPTIONS = {
  url: { type: 'string' },
  'impersonate-service-account': { type: 'string' },
  'service-account': { type: 'string' },
  tenant: { type: 'string' },
  scopes: { type: 'string', multiple: true },
  scope: { type: 'string', multiple: true },
  subject: { type: 'string' },
  audiences: { type: 'string' },
  audience: { type: 'string' },
  'include-email': { type: 'boolean' },
  'min-lifetime': { type: 'string' },
  'broker-audience': { type: 'string' },
  format: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  // The command-less form's older flags.
  jwt: { type: 'boolean' },
  'id-token': { type: 'boolean' },
  // credential-config
  'sts-url': { type: 'string' },
  'output-file': { type: 'string' },
  'credential-source-file': { type: 'string' },
  'credential-source-metadata': { type: 'boolean' },
  'credential-source-url': { type: 'string' },
  'credential-source-headers': { type: 'string' },
  'executable-command': { type: 'string' },
  'executable-timeout-millis': { type: 'string' },
  'executable-output-file': { type: 'string' },
} as const;
type Flag = keyof typeof OPTIONS;

const COMMON: Flag[] = [
  'url',
  'broker-audience',
  'help',
  'impersonate-service-account',
  'service-account',
  'tenant',
];
const PRINT: Flag[] = [...COMMON, 'min-lifetime', 'format', 'json'];
const ALLOWED: Record<Command | 'legacy', ReadonlySet<Flag>> = {
  'print-access-token': new Set([...PRINT, 'scopes', 'scope', 'subject']),
  'print-identity-token': new Set([...PRINT, 'audiences', 'audience', 'include-email']),
  'print-jwt': new Set([...PRINT, 'audiences', 'audience', 'scopes', 'scope']),
  'credential-config': new Set<Flag>([
    ...COMMON,
    'subject',
    'sts-url',
    'output-file',
    'credential-source-file',
    'credential-source-metadata',
    'credential-source-url',
    'credential-source-headers',
    'executable-command',
    'executable-timeout-millis',
    'executable-output-file',
  ]),
  legacy: new Set<Flag>([
    ...PRINT,
    'scopes',
    'scope',
    'subject',
    'audiences',
    'audience',
    'include-email',
    'jwt',
    'id-token',
  ]),
};

type Values = ReturnType<typeof parse>['values'];

class UsageError extends Error {}

/** Runs the CLI; returns the exit code (see `EXIT`). */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  let plan: Plan;
  try {
    const { values, positionals } = parse(argv);
    if (values.help) {
      out(USAGE);
      return EXIT.ok;
    }
    plan = planFrom(values, positionals, env);
  } catch (e) {
    if (!(e instanceof UsageError) && !(e instanceof TypeError)) throw e;
    err(`broker-token: ${e.message}\nRun \`broker-token --help\` for usage.`);
    return EXIT.usage;
  }
  if (plan.kind === 'credential-config') {
    const text = `${JSON.stringify(plan.file, null, 2)}\n`;
    if (plan.outputFile === undefined) out(text.trimEnd());
    else {
      writeFileSync(plan.outputFile, text);
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

type Plan =
  | { kind: 'credential-config'; file: ReturnType<typeof credentialConfig>; outputFile: string | undefined }
  | {
      kind: 'token';
      url: string;
      brokerAudience: string;
      json: boolean;
      request: Parameters<BrokerClient['accessToken']>[0];
    }
  | {
      kind: 'jwt';
      url: string;
      brokerAudience: string;
      json: boolean;
      request: Parameters<BrokerClient['jwt']>[0];
    }
  | {
      kind: 'idtoken';
      url: string;
      brokerAudience: string;
      json: boolean;
      request: Parameters<BrokerClient['idToken']>[0];
    };

/** Checks every flag before anything is sent. Throws UsageError (or TypeError for an unsafe URL). */
function planFrom(values: Values, positionals: string[], env: NodeJS.ProcessEnv): Plan {
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
  const command = positionals[0];
  if (command !== undefined && !(COMMANDS as readonly string[]).includes(command))
    throw new UsageError(`unknown command "${command}"; commands: ${COMMANDS.join(', ')}`);
  const allowed = ALLOWED[(command as Command | undefined) ?? 'legacy'];
  for (const [flag, value] of Object.entries(values))
    if (value !== undefined && !allowed.has(flag as Flag))
      throw new UsageError(`--${flag} does not apply to ${command ?? 'this command'}`);

  const sa = values['impersonate-service-account'] ?? values['service-account'];
  if (values['impersonate-service-account'] && values['service-account'])
    throw new UsageError('give --impersonate-service-account once (--service-account is its alias)');
  if (sa !== undefined && values.tenant !== undefined)
    throw new UsageError('give --impersonate-service-account or --tenant, not both');
  const target: WireTarget | undefined =
    sa !== undefined
      ? { serviceAccount: sa }
      : values.tenant !== undefined
        ? { tenant: values.tenant }
        : undefined;
  if (!target)
    throw new UsageError('say who the token is for: --impersonate-service-account EMAIL or --tenant ID');
  if (sa === '' || values.tenant === '') throw new UsageError('the target must not be empty');

  const explicitScopes = scopesFrom(values);
  const scopes = explicitScopes ?? [DEFAULT_SCOPE];
  const url = values.url ?? env['BROKER_URL'];

  if (command === 'credential-config') return credentialPlan(values, env, target, url);

  if (!url) throw new UsageError('give the broker URL: --url URL or $BROKER_URL');
  checkBrokerUrl(url, '--url');
  const brokerAudience = values['broker-audience'] ?? env['BROKER_AUDIENCE'] ?? url;
  if (values.format !== undefined && values.format !== 'json' && values.format !== 'text')
    throw new UsageError('--format takes json or text');
  const json = values.json === true || values.format === 'json';
  const min = minLifetime(values['min-lifetime']);
  const audience = single('--audiences', values.audiences ?? values.audience);
  const kind =
    command === 'print-identity-token' || values['id-token']
      ? 'idtoken'
      : command === 'print-jwt' || values.jwt
        ? 'jwt'
        : 'token';
  if (values.jwt && values['id-token']) throw new UsageError('give --jwt or --id-token, not both');
  const common = { url, brokerAudience, json };
  if (kind === 'idtoken') {
    if (audience === undefined) throw new UsageError('an ID token needs --audiences AUD');
    if (explicitScopes) throw new UsageError('an ID token takes --audiences, not --scopes');
    return { kind, ...common, request: { ...target, audience, ...min } };
  }
  if (kind === 'jwt') {
    if (audience !== undefined && explicitScopes)
      throw new UsageError('a JWT is for --audiences or for --scopes, not both');
    return {
      kind,
      ...common,
      request: audience !== undefined ? { ...target, audience, ...min } : { ...target, scopes, ...min },
    };
  }
  if (audience !== undefined) throw new UsageError('an access token takes --scopes, not --audiences');
  if (values.subject === '') throw new UsageError('--subject must not be empty');
  return {
    kind,
    ...common,
    request: { ...target, scopes, ...(values.subject ? { subject: values.subject } : {}), ...min },
  };
}

function credentialPlan(
  values: Values,
  env: NodeJS.ProcessEnv,
  target: WireTarget,
  url: string | undefined,
): Plan {
  const stsUrl = values['sts-url'] ?? (url ? `${url.replace(/\/+$/, '')}/sts` : undefined);
  if (!stsUrl)
    throw new UsageError(
      'give the broker URL (--url URL or $BROKER_URL) or the sts function URL (--sts-url)',
    );
  if (values['sts-url'] !== undefined && values.url !== undefined)
    throw new UsageError('give --url or --sts-url, not both');
  checkBrokerUrl(stsUrl, values['sts-url'] !== undefined ? '--sts-url' : '--url');

  const sources = [
    values['credential-source-file'] !== undefined,
    values['credential-source-metadata'] === true,
    values['credential-source-url'] !== undefined,
    values['executable-command'] !== undefined,
  ].filter(Boolean).length;
  if (sources !== 1)
    throw new UsageError(
      'give exactly one source of the caller ID token: --credential-source-file, --credential-source-metadata, --credential-source-url or --executable-command',
    );
  if (values['credential-source-headers'] !== undefined && values['credential-source-url'] === undefined)
    throw new UsageError('--credential-source-headers goes with --credential-source-url');
  if (
    (values['executable-timeout-millis'] !== undefined || values['executable-output-file'] !== undefined) &&
    values['executable-command'] === undefined
  )
    throw new UsageError(
      '--executable-timeout-millis and --executable-output-file go with --executable-command',
    );

  let source: SubjectTokenSource;
  if (values['credential-source-file'] !== undefined) {
    if (values['credential-source-file'] === '')
      throw new UsageError('--credential-source-file must not be empty');
    source = { file: values['credential-source-file'] };
  } else if (values['credential-source-metadata']) {
    const audience = values['broker-audience'] ?? env['BROKER_AUDIENCE'] ?? url;
    if (!audience)
      throw new UsageError(
        '--credential-source-metadata needs the broker audience: --broker-audience, $BROKER_AUDIENCE or --url',
      );
    const host = env['GCE_METADATA_HOST'];
    source = { url: metadataIdentityUrl(audience, host || undefined), headers: { ...METADATA_HEADERS } };
  } else if (values['credential-source-url'] !== undefined) {
    try {
      new URL(values['credential-source-url']);
    } catch {
      throw new UsageError('--credential-source-url is not a URL');
    }
    source = {
      url: values['credential-source-url'],
      ...(values['credential-source-headers'] === undefined
        ? {}
        : { headers: headerPairs(values['credential-source-headers']) }),
    };
  } else {
    const command = values['executable-command'] ?? '';
    if (command.trim() === '') throw new UsageError('--executable-command must not be empty');
    const timeoutText = values['executable-timeout-millis'];
    const timeout = timeoutText === undefined ? undefined : Number(timeoutText);
    if (timeout !== undefined && !(Number.isInteger(timeout) && timeout >= 5000 && timeout <= 120_000))
      throw new UsageError('--executable-timeout-millis must be an integer from 5000 to 120000');
    source = {
      executable: {
        command,
        ...(timeout === undefined ? {} : { timeoutMillis: timeout }),
        ...(values['executable-output-file'] === undefined
          ? {}
          : { outputFile: values['executable-output-file'] }),
      },
    };
  }
  if (values.subject === '') throw new UsageError('--subject must not be empty');
  return {
    kind: 'credential-config',
    file: credentialConfig({ stsUrl, target, subject: values.subject, source }),
    outputFile: values['output-file'],
  };
}

/** `--scopes a,b` (may repeat) and `--scope a` (may repeat); undefined when neither was given. */
function scopesFrom(values: Values): string[] | undefined {
  const given = [...(values.scopes ?? []).flatMap((s) => s.split(',')), ...(values.scope ?? [])];
  if (values.scopes === undefined && values.scope === undefined) return undefined;
  const scopes = given.map((s) => s.trim());
  if (scopes.length === 0 || scopes.some((s) => s === '' || /\s/.test(s)))
    throw new UsageError('--scopes takes a comma-separated list of scopes, none empty, no spaces');
  return [...new Set(scopes)];
}

function minLifetime(text: string | undefined): { minLifetimeSeconds?: number } {
  if (text === undefined) return {};
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > MAX_MIN_LIFETIME_SECONDS)
    throw new UsageError(`--min-lifetime must be an integer from 0 to ${MAX_MIN_LIFETIME_SECONDS}`);
  return { minLifetimeSeconds: n };
}

function single(flag: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value === '' || value.includes(',')) throw new UsageError(`${flag} takes one audience`);
  return value;
}

function headerPairs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',')) {
    const i = pair.indexOf('=');
    const name = pair.slice(0, i).trim();
    if (i <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
      throw new UsageError('--credential-source-headers takes NAME=VALUE pairs separated by commas');
    out[name] = pair.slice(i + 1);
  }
  return out;
}

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, strict: true, allowPositionals: true, options: OPTIONS });
  } catch (e) {
    throw new UsageError((e as Error).message);
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
