/**
 * The CLI's command line, checked completely before anything is sent: every
 * usage error is a `UsageError` (exit 2), and a good command line becomes a
 * `Plan` that names the one request to make or the file to write.
 */
import { parseArgs } from 'node:util';
import type { AccountRef } from '../../../wire/rules.js';
import { MAX_MIN_LIFETIME_SECONDS } from '../../../wire/wire.js';
import { checkBrokerUrl } from '../broker-client.js';
import type { BrokerClient } from '../index.js';
import {
  credentialConfig,
  METADATA_HEADERS,
  metadataIdentityUrl,
  type SubjectTokenSource,
} from './credential-config.js';
import { DEFAULT_SCOPE } from './usage.js';

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

/** A bad command line: the CLI prints it and exits 2 without sending anything. */
export class UsageError extends Error {}

/** What a good command line asks for. */
export type Plan =
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
  const target: AccountRef | undefined =
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
  target: AccountRef,
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

/** Parses and checks a command line; `help` when --help was asked. Throws UsageError, or TypeError for an unsafe URL. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv): Plan | 'help' {
  const { values, positionals } = parse(argv);
  if (values.help) return 'help';
  return planFrom(values, positionals, env);
}
