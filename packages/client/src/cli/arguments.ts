/**
 * The CLI's command line, checked completely before anything is sent: every
 * usage error is a `UsageError` (exit 2), and a good command line becomes a
 * `Plan` that names the one request to make or the file to write.
 */
import { parseArgs } from 'node:util';
import type { AccountRef } from '../../../wire/rules.js';
import { MAX_LIFETIME_SECONDS, MAX_MIN_LIFETIME_SECONDS } from '../../../wire/wire.js';
import { checkBrokerUrl } from '../broker-client.js';
import type { BrokerClient } from '../index.js';
import type { credentialConfig } from './credential-config.js';
import { credentialPlan } from './credential-flags.js';
import { type OutputFormat, parseFormat } from './output.js';
import { DEFAULT_SCOPE, UsageError } from './usage.js';

export { UsageError } from './usage.js';

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
  lifetime: { type: 'string' },
  // Accepted only to explain that the broker's policy sets the chain (a usage error).
  delegates: { type: 'string' },
  'broker-audience': { type: 'string' },
  format: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
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
  'credential-source-type': { type: 'string' },
  'credential-source-field-name': { type: 'string' },
  'subject-token-type': { type: 'string' },
  'github-actions': { type: 'boolean' },
  'kubernetes-token': { type: 'string' },
  'executable-command': { type: 'string' },
  'executable-timeout-millis': { type: 'string' },
  'executable-output-file': { type: 'string' },
} as const;
type Flag = keyof typeof OPTIONS;

const COMMON: Flag[] = [
  'url',
  'broker-audience',
  'help',
  'version',
  'impersonate-service-account',
  'service-account',
  'tenant',
  'delegates',
];
const PRINT: Flag[] = [...COMMON, 'min-lifetime', 'format', 'json'];
const ALLOWED: Record<Command | 'legacy', ReadonlySet<Flag>> = {
  'print-access-token': new Set([...PRINT, 'scopes', 'scope', 'subject', 'lifetime']),
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
    'credential-source-type',
    'credential-source-field-name',
    'subject-token-type',
    'github-actions',
    'kubernetes-token',
    'executable-command',
    'executable-timeout-millis',
    'executable-output-file',
  ]),
  legacy: new Set<Flag>([
    ...PRINT,
    'scopes',
    'scope',
    'subject',
    'lifetime',
    'audiences',
    'audience',
    'include-email',
    'jwt',
    'id-token',
  ]),
};

/** The flags as parsed. */
export type Values = ReturnType<typeof parse>['values'];

interface PrintCommon {
  url: string;
  brokerAudience: string;
  format: OutputFormat;
}

/** What a good command line asks for. */
export type Plan =
  | { kind: 'credential-config'; file: ReturnType<typeof credentialConfig>; outputFile: string | undefined }
  | (PrintCommon & { kind: 'token'; request: Parameters<BrokerClient['accessToken']>[0] })
  | (PrintCommon & { kind: 'jwt'; request: Parameters<BrokerClient['jwt']>[0] })
  | (PrintCommon & { kind: 'idtoken'; request: Parameters<BrokerClient['idToken']>[0] });

/** The command and the positional account, from the positionals. */
function commandAndAccount(positionals: string[]): { command: Command | undefined; account?: string } {
  const [first, second, third] = positionals;
  if (first === undefined) return { command: undefined };
  if ((COMMANDS as readonly string[]).includes(first)) {
    if (third !== undefined) throw new UsageError(`unexpected argument "${third}"`);
    return { command: first as Command, ...(second === undefined ? {} : { account: second }) };
  }
  // gcloud's `print-access-token ACCOUNT`: an email on its own names the account (the default command).
  if (first.includes('@')) {
    if (second !== undefined) throw new UsageError(`unexpected argument "${second}"`);
    return { command: undefined, account: first };
  }
  throw new UsageError(`unknown command "${first}"; commands: ${COMMANDS.join(', ')}`);
}

const CHAIN =
  "the broker's policy sets any delegation chain (the account's `delegates`), and the broker follows it";

/** Who the token is for: the positional account, --impersonate-service-account or --tenant. */
function targetFrom(values: Values, positional: string | undefined): AccountRef {
  const given = [
    positional === undefined ? undefined : 'ACCOUNT',
    values['impersonate-service-account'] === undefined ? undefined : '--impersonate-service-account',
    values['service-account'] === undefined ? undefined : '--service-account',
    values.tenant === undefined ? undefined : '--tenant',
  ].filter((g) => g !== undefined);
  if (given.length === 0)
    throw new UsageError(
      'say who the token is for: an ACCOUNT argument, --impersonate-service-account EMAIL or --tenant ID',
    );
  if (given.length > 1) throw new UsageError(`give one of ${given.join(', ')}, not ${given.length}`);
  if (values.delegates !== undefined)
    throw new UsageError(`--delegates cannot be honoured here: ${CHAIN}; name only the last account`);
  const sa = positional ?? values['impersonate-service-account'] ?? values['service-account'];
  if (sa !== undefined) {
    if (sa.includes(',')) {
      const last = sa.split(',').pop()?.trim() ?? '';
      throw new UsageError(
        `a delegation chain (${sa}) cannot be honoured here: ${CHAIN}; name only the last account${last ? ` (${last})` : ''}`,
      );
    }
    if (sa === '') throw new UsageError('the account must not be empty');
    return { serviceAccount: sa };
  }
  if (values.tenant === '') throw new UsageError('--tenant must not be empty');
  return { tenant: values.tenant as string };
}

/** Checks every flag before anything is sent. Throws UsageError (or TypeError for an unsafe URL). */
function planFrom(values: Values, positionals: string[], env: NodeJS.ProcessEnv): Plan {
  const { command, account } = commandAndAccount(positionals);
  const allowed = ALLOWED[command ?? 'legacy'];
  for (const [flag, value] of Object.entries(values))
    if (value !== undefined && !allowed.has(flag as Flag))
      throw new UsageError(`--${flag} does not apply to ${command ?? 'print-access-token'}`);

  const target = targetFrom(values, account);
  const url = values.url ?? env['BROKER_URL'];
  if (command === 'credential-config') return credentialPlan(values, env, target, url);

  const explicitScopes = scopesFrom(values);
  const scopes = explicitScopes ?? [DEFAULT_SCOPE];
  if (!url) throw new UsageError('give the broker URL: --url URL or $BROKER_URL');
  checkBrokerUrl(url, '--url');
  const brokerAudience = values['broker-audience'] ?? env['BROKER_AUDIENCE'] ?? url;
  if (values.format !== undefined && values.json) throw new UsageError('give --format or --json, not both');
  const format = values.json ? { kind: 'json' as const } : parseFormat(values.format ?? 'text');
  if (typeof format === 'string') throw new UsageError(format);
  const min = minLifetime(values['min-lifetime']);
  const audience = single('--audiences', values.audiences ?? values.audience);
  const kind =
    command === 'print-identity-token' || values['id-token']
      ? 'idtoken'
      : command === 'print-jwt' || values.jwt
        ? 'jwt'
        : 'token';
  if (values.jwt && values['id-token']) throw new UsageError('give --jwt or --id-token, not both');
  if (kind !== 'token' && values.lifetime !== undefined)
    throw new UsageError('--lifetime applies to access tokens only');
  const common = { url, brokerAudience, format };
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
  const lifetime = lifetimeFrom(values.lifetime);
  if (lifetime !== undefined && min.minLifetimeSeconds !== undefined)
    throw new UsageError('give --lifetime or --min-lifetime, not both');
  return {
    kind,
    ...common,
    request: {
      ...target,
      scopes,
      ...(values.subject ? { subject: values.subject } : {}),
      ...min,
      ...(lifetime === undefined ? {} : { lifetimeSeconds: lifetime }),
    },
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

/** gcloud's `--lifetime`: seconds, or a duration such as `30m`, `2h`, `3600s`; 1 s to 12 h. */
function lifetimeFrom(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d{1,6})([smh]?)$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1) : Number.NaN;
  if (!(seconds >= 1 && seconds <= MAX_LIFETIME_SECONDS))
    throw new UsageError(
      `--lifetime takes seconds or a duration (3600, 3600s, 60m, 12h), from 1s to ${MAX_LIFETIME_SECONDS}s (12h)`,
    );
  return seconds;
}

function single(flag: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value === '' || value.includes(',')) throw new UsageError(`${flag} takes one audience`);
  return value;
}

/** Node's parseArgs, with the CLI's own words for its errors. */
function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, strict: true, allowPositionals: true, options: OPTIONS });
  } catch (e) {
    throw new UsageError(parseProblem(e as Error & { code?: string }));
  }
}

function parseProblem(e: Error & { code?: string }): string {
  // Node's texts quote the flag: 'Unknown option '--x'…', 'Option '--url <value>' argument missing',
  // 'Option '-h, --help' does not take an argument'.
  const quoted = /'([^']*)'/.exec(e.message)?.[1] ?? '';
  const flag = /--[^\s=,]+/.exec(quoted)?.[0] ?? /-[^\s=,]+/.exec(quoted)?.[0];
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag !== undefined) {
    const name = flag.replace(/^-+/, '').split('=')[0] ?? '';
    const near = Object.keys(OPTIONS).find((o) => o.startsWith(name) || name.startsWith(o));
    return `unknown flag ${flag.split('=')[0]}${near && name !== '' ? `; did you mean --${near}?` : ''}`;
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag !== undefined) {
    const name = flag.replace(/^-+/, '');
    const option = OPTIONS[name as Flag] as { type: string } | undefined;
    return option?.type === 'boolean' ? `${flag} takes no value` : `${flag} needs a value`;
  }
  return 'could not read the command line';
}

/** Parses and checks a command line; `help` or `version` when asked. Throws UsageError, or TypeError for an unsafe URL. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv): Plan | 'help' | 'version' {
  const { values, positionals } = parse(argv);
  if (values.help) return 'help';
  if (values.version) return 'version';
  return planFrom(values, positionals, env);
}
