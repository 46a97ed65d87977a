import { urlProblem } from '../packages/wire/rules.js';
import { ConfigError } from './errors.js';
import { compilePolicy } from './policy/load.js';
import type { CompiledPolicy } from './policy/types.js';
import { type IntSettingName, SETTINGS, type SettingName, type UrlSettingName } from './settings.js';

/** The broker's configuration, checked once at start (docs/configuration.md). */
export interface Config {
  readonly policy: CompiledPolicy;
  /** Directory that `file:` keys are relative to: the policy file's, or the working directory. */
  readonly keyBaseDir: string;
  /** With `BROKER_POLICY_FILE`: its absolute path and the text the policy was compiled from, to read it again. */
  readonly policyFile: { readonly path: string; readonly text: string } | undefined;
  /** How often the policy file is read again, in seconds; 0 for never. */
  readonly policyRefreshSeconds: number;
  readonly audience: string;
  readonly jwksUrl: string;
  readonly issuers: readonly string[];
  readonly tokenUrl: string;
  readonly upstash: { readonly url: string; readonly token: string } | undefined;
  /** 32 bytes; required with a shared cache. */
  readonly cacheKey: Uint8Array | undefined;
  readonly refreshSkewSeconds: number;
  readonly secretManagerEmulatorHost: string | undefined;
  /** Accept caller tokens whose signature Cloud Run's IAM replaced with `SIGNATURE_REMOVED_BY_GOOGLE`. Off unless an operator turns it on. */
  readonly allowSignatureRemovedByGoogle: boolean;
  readonly clockToleranceSeconds: number;
  readonly projectId: string | undefined;
  readonly keyTtlSeconds: number;
  readonly l1MaxEntries: number;
  /** Width of the refresh-ahead window before the skew. */
  readonly refreshAheadSeconds: number;
  /** With a shared cache: seconds a token is served from memory past its last check (docs/contract.md, "Purge"). */
  readonly purgeBoundSeconds: number;
  /** Budget of one shared-cache call. */
  readonly cacheTimeoutMs: number;
  /** `host:port` of the metadata server that gives the broker its own identity (keyless accounts). */
  readonly metadataHost: string;
  /** Base URL of Google's IAM Service Account Credentials API (keyless accounts). */
  readonly iamCredentialsUrl: string;
  /** Google's STS token endpoint, for tokens bounded by an access boundary. */
  readonly stsUrl: string;
  /** Policy issuers and their key sets may be `http:` on loopback (tests, `npm start`); off in production. */
  readonly allowLoopbackIssuers: boolean;
}

/** The environment as a plain map (tests pass their own). */
export type Env = Readonly<Record<string, string | undefined>>;

export interface LoadConfigIo {
  readFile: (path: string) => string;
  cwd: string;
  dirname: (path: string) => string;
  resolve: (...paths: string[]) => string;
}

const HOST_AND_PORT = /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;
// The metadata server's port is optional (Google's listens on 80).
const HOST_PORT = /^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9a-fA-F:]+\](?::\d{1,5})?$/;

/**
 * Reads and checks the whole configuration at once. Throws one ConfigError
 * that lists every problem, so an operator fixes them in one go. `target`
 * is the function this process serves (some need more than others).
 */
export function loadConfig(env: Env, io: LoadConfigIo, target?: string): Config {
  const problems: string[] = [];
  // Only the table's variables can be read: a new one needs its row (default, range, meaning) first.
  const str = (name: SettingName): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const url = (name: UrlSettingName): string => {
    const value = str(name) ?? SETTINGS[name].default;
    const problem = urlProblem(value);
    if (problem) problems.push(`${name}: ${problem}`);
    return value;
  };
  const int = (name: IntSettingName): number => {
    const { default: fallback, min, max } = SETTINGS[name];
    const raw = str(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    return n;
  };
  const bool = (name: SettingName): boolean => {
    const raw = str(name);
    if (raw === undefined || raw === 'false' || raw === '0') return false;
    if (raw === 'true' || raw === '1') return true;
    problems.push(`${name} must be "true" or "false"`);
    return false;
  };

  // Policy: exactly one source. Its issuers may be http on loopback only with this flag.
  const allowLoopbackIssuers = bool('BROKER_ALLOW_LOOPBACK_ISSUERS');
  let policy: CompiledPolicy | undefined;
  let keyBaseDir = io.cwd;
  let policySource: Config['policyFile'];
  const policyText = str('BROKER_POLICY');
  const policyFile = str('BROKER_POLICY_FILE');
  if (policyText !== undefined && policyFile !== undefined) {
    problems.push('set only one of BROKER_POLICY and BROKER_POLICY_FILE');
  } else if (policyText === undefined && policyFile === undefined) {
    problems.push(
      'one of BROKER_POLICY (the policy as JSON) or BROKER_POLICY_FILE (a path to it) is required',
    );
  } else {
    let text: string | undefined = policyText;
    const source = policyText !== undefined ? 'BROKER_POLICY' : 'BROKER_POLICY_FILE';
    if (policyFile !== undefined) {
      const path = io.resolve(io.cwd, policyFile);
      keyBaseDir = io.dirname(path);
      try {
        text = io.readFile(path);
        policySource = { path, text };
      } catch (err) {
        problems.push(
          `BROKER_POLICY_FILE: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        );
      }
    }
    if (text !== undefined) {
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch (err) {
        problems.push(`${source}: not valid JSON (${(err as Error).message})`);
      }
      if (raw !== undefined) {
        try {
          policy = compilePolicy(raw, { allowLoopbackIssuers });
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          for (const p of err.problems) problems.push(`${source}: ${p}`);
        }
      }
    }
  }

  const audience = str('BROKER_AUDIENCE');
  if (audience === undefined)
    problems.push('BROKER_AUDIENCE is required: the `aud` that caller ID tokens must carry');
  const jwksUrl = url('BROKER_JWKS_URL');
  const tokenUrl = url('BROKER_TOKEN_URL');
  const issuers = (str('BROKER_ISSUERS') ?? SETTINGS.BROKER_ISSUERS.default)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (issuers.length === 0) problems.push('BROKER_ISSUERS must list at least one issuer');
  // A policy issuer is never one of Google's: a Google token must keep its email identity (docs/contract.md).
  for (const i of policy?.issuers ?? []) {
    if (issuers.includes(i.issuer))
      problems.push(`policy issuers[${i.index}].issuer: ${i.issuer} is in BROKER_ISSUERS (Google's callers)`);
  }

  const upstashUrl = str('UPSTASH_REDIS_REST_URL');
  const upstashToken = str('UPSTASH_REDIS_REST_TOKEN');
  let upstash: Config['upstash'];
  if ((upstashUrl === undefined) !== (upstashToken === undefined)) {
    problems.push('set both UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN, or neither');
  } else if (upstashUrl !== undefined && upstashToken !== undefined) {
    const problem = urlProblem(upstashUrl);
    if (problem) problems.push(`UPSTASH_REDIS_REST_URL: ${problem}`);
    upstash = { url: upstashUrl, token: upstashToken };
  }
  let cacheKey: Uint8Array | undefined;
  const cacheKeyText = str('BROKER_CACHE_KEY');
  if (cacheKeyText !== undefined) {
    const bytes = Buffer.from(cacheKeyText, 'base64');
    if (
      bytes.length !== 32 ||
      bytes.toString('base64').replace(/=+$/, '') !== cacheKeyText.replace(/=+$/, '')
    ) {
      problems.push('BROKER_CACHE_KEY must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)');
    } else cacheKey = new Uint8Array(bytes);
  } else if (upstash !== undefined) {
    problems.push('BROKER_CACHE_KEY is required with a shared cache (e.g. `openssl rand -base64 32`)');
  }

  // The admin function serves no tokens: without a shared cache its purge would reach nothing (docs/contract.md).
  if (target === 'admin' && upstash === undefined) {
    problems.push(
      'the admin function needs a shared cache: without one its purge reaches only its own process, which holds no tokens, while the token functions keep serving theirs. Set UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN and BROKER_CACHE_KEY, or purge through the all-in-one broker function',
    );
  }

  const emulator = str('SECRET_MANAGER_EMULATOR_HOST');
  if (emulator !== undefined && !HOST_AND_PORT.test(emulator)) {
    problems.push('SECRET_MANAGER_EMULATOR_HOST must be host:port');
  }

  const metadataHost = str('GCE_METADATA_HOST') ?? SETTINGS.GCE_METADATA_HOST.default;
  if (!HOST_PORT.test(metadataHost)) {
    problems.push('GCE_METADATA_HOST must be a host name, optionally with :port (e.g. 127.0.0.1:8080)');
  }
  const iamCredentialsUrl = url('BROKER_IAM_CREDENTIALS_URL');
  const stsUrl = url('BROKER_STS_URL');

  const config: Config = {
    policy: policy as CompiledPolicy,
    keyBaseDir,
    policyFile: policySource,
    policyRefreshSeconds: int('BROKER_POLICY_REFRESH_SECONDS'),
    audience: audience ?? '',
    jwksUrl,
    issuers,
    tokenUrl,
    upstash,
    cacheKey,
    refreshSkewSeconds: int('BROKER_REFRESH_SKEW_SECONDS'),
    secretManagerEmulatorHost: emulator,
    allowSignatureRemovedByGoogle: bool('BROKER_ALLOW_SIGNATURE_REMOVED_BY_GOOGLE'),
    clockToleranceSeconds: int('BROKER_CLOCK_TOLERANCE_SECONDS'),
    projectId: str('GOOGLE_CLOUD_PROJECT') ?? str('GCP_PROJECT'),
    keyTtlSeconds: int('BROKER_KEY_TTL_SECONDS'),
    l1MaxEntries: int('BROKER_L1_MAX_ENTRIES'),
    refreshAheadSeconds: int('BROKER_REFRESH_AHEAD_SECONDS'),
    purgeBoundSeconds: int('BROKER_PURGE_BOUND_SECONDS'),
    cacheTimeoutMs: int('BROKER_CACHE_TIMEOUT_MS'),
    metadataHost,
    iamCredentialsUrl,
    stsUrl,
    allowLoopbackIssuers,
  };
  if (problems.length > 0) throw new ConfigError('broker configuration', problems);
  return config;
}
