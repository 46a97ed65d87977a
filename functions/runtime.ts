import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { createCallerVerifier } from '../shared/adapters/caller-auth.js';
import { createFileSecretSource } from '../shared/adapters/file-secrets.js';
import { createIamCredentials } from '../shared/adapters/iam-credentials.js';
import { createMetadataIdentity } from '../shared/adapters/metadata-identity.js';
import { createPolicyFile } from '../shared/adapters/policy-file.js';
import { createSecretManagerSource } from '../shared/adapters/secret-manager.js';
import { createSecretRouter } from '../shared/adapters/secret-source.js';
import { createSts } from '../shared/adapters/sts.js';
import { createTokenEndpoint } from '../shared/adapters/token-endpoint.js';
import { createUpstashRedis, describeCacheError } from '../shared/adapters/upstash.js';
import { createUpstashRateLimiter } from '../shared/adapters/upstash-ratelimit.js';
import { createBroker } from '../shared/broker.js';
import { createMemoryCache } from '../shared/cache/memory.js';
import { SharedTokenCache } from '../shared/cache/shared-cache.js';
import { TokenStore } from '../shared/cache/token-store.js';
import { type Config, type Env, loadConfig } from '../shared/config.js';
import { BrokerError } from '../shared/errors.js';
import { createKeyStore } from '../shared/key-store.js';
import { createLogger, LABELS, type Logger } from '../shared/log.js';
import { createKeyedMinter } from '../shared/minting/keyed.js';
import { createKeylessMinter } from '../shared/minting/keyless.js';
import { policyFindings } from '../shared/policy/lint.js';
import { createMemoryRateLimiter } from '../shared/rate-limit.js';
import { createService, type Service } from '../shared/service.js';
import { Throttle } from '../shared/throttle.js';

/** Everything a request handler needs, built once per process. */
export interface Runtime {
  readonly config: Config;
  /** Verify → rate limit → authorise → serve, for every front door. */
  readonly service: Service;
  readonly log: Logger;
  readonly now: () => number;
  /** Opens what the first request will need (the JWKS, the connection to Upstash), in the background. */
  warm(): void;
}

/**
 * The logger of a function process: its lines name the function served, and
 * its ERROR lines the service and revision (Cloud Run sets `K_SERVICE` and
 * `K_REVISION`), for Error Reporting. `write` replaces stdout (tests).
 */
export function createFunctionLogger(
  env: Env,
  serving: string | undefined,
  write?: (line: string) => void,
): Logger {
  return createLogger({
    base: { [LABELS]: { function: serving ?? 'function' } },
    serviceContext: {
      service: env['K_SERVICE'] ?? serving ?? 'token-broker',
      version: env['K_REVISION'] ?? 'local',
    },
    ...(write === undefined ? {} : { write }),
  });
}

/** Builds the real runtime from the environment. Throws ConfigError listing every problem. */
export function createRuntime(env: Env, log: Logger = createLogger(), target?: string): Runtime {
  const config = loadConfig(
    env,
    {
      readFile: (p) => readFileSync(p, 'utf8'),
      cwd: process.cwd(),
      dirname,
      resolve,
    },
    target,
  );
  warnAbout(config.policy, log);
  const now = Date.now;
  const secrets = createSecretRouter({
    file: createFileSecretSource({ baseDir: config.keyBaseDir }),
    secretManager: () =>
      createSecretManagerSource(
        config.secretManagerEmulatorHost === undefined
          ? {}
          : { emulatorHost: config.secretManagerEmulatorHost },
      ),
  });
  const l2 = sharedCache(config, log, now);
  const tokenEndpoint = createTokenEndpoint({ tokenUrl: config.tokenUrl });
  const identity = createMetadataIdentity({
    host: config.metadataHost,
    refreshSkewSeconds: config.refreshSkewSeconds,
    now,
  });
  const broker = createBroker({
    sts: createSts({ url: config.stsUrl, now }),
    boundedMarginSeconds: config.refreshAheadSeconds,
    now,
    minters: {
      keyed: createKeyedMinter({
        keys: createKeyStore({ secrets, ttlMs: config.keyTtlSeconds * 1000, now }),
        tokenEndpoint,
        tokenUrl: config.tokenUrl,
        now,
      }),
      keyless: createKeylessMinter({
        iam: createIamCredentials({ baseUrl: config.iamCredentialsUrl, identity, now }),
        tokenEndpoint,
        tokenUrl: config.tokenUrl,
        now,
      }),
    },
    store: new TokenStore({
      l1: createMemoryCache({ maxEntries: config.l1MaxEntries, now }),
      l2,
      refreshSkewSeconds: config.refreshSkewSeconds,
      refreshAheadSeconds: config.refreshAheadSeconds,
      purgeBoundMs: config.purgeBoundSeconds * 1000,
      now,
      onBackgroundError: (err) =>
        log.log('WARNING', 'background refresh failed; the cached token keeps serving', {
          error: errorCode(err),
        }),
    }),
  });
  const verifier = createCallerVerifier({
    jwksUrl: config.jwksUrl,
    issuers: config.issuers,
    audience: config.audience,
    clockToleranceSeconds: config.clockToleranceSeconds,
    allowSignatureRemovedByGoogle: config.allowSignatureRemovedByGoogle,
    // The policy's issuers (docs/contract.md, "Trusted issuers"): only these are ever fetched.
    trustedIssuers: config.policy.issuers,
    allowLoopbackIssuers: config.allowLoopbackIssuers,
  });
  const memoryLimiter = createMemoryRateLimiter({ now });
  const limiterWarnings = new Throttle(30_000, now);
  const rateLimiter =
    config.upstash && config.cacheKey
      ? createUpstashRateLimiter({
          ...config.upstash,
          cacheKey: config.cacheKey,
          timeoutMs: config.cacheTimeoutMs,
          fallback: memoryLimiter,
          onFailure: (error) => {
            const suppressed = limiterWarnings.take('ratelimit');
            if (suppressed !== undefined) {
              log.log('WARNING', 'shared rate limiter unavailable; counting in process', {
                error: describeCacheError(error),
                suppressedSinceLast: suppressed,
              });
            }
          },
        })
      : memoryLimiter;
  const warm = () => {
    void verifier.warm();
    void l2?.warm();
  };
  const policy =
    config.policyFile === undefined
      ? { current: () => config.policy }
      : createPolicyFile({
          initial: config.policy,
          initialText: config.policyFile.text,
          path: config.policyFile.path,
          refreshMs: config.policyRefreshSeconds * 1000,
          allowLoopbackIssuers: config.allowLoopbackIssuers,
          readFile: (p) => readFile(p, 'utf8'),
          now,
          onChange: (next) => {
            log.log('NOTICE', 'policy: a new version of the policy file took effect', {
              policy: { grants: next.grants.length, serviceAccounts: next.accounts.size },
            });
            warnAbout(next, log);
          },
          onError: (problem, problems) =>
            log.log('ERROR', `policy: ${problem}; the policy in force keeps deciding`, { problems }),
        });
  const service = createService({ policy, verifier, rateLimiter, broker });
  return { config, service, log, now, warm };
}

/** What is valid but probably wrong in the policy (`policyFindings`): one WARNING line each. */
function warnAbout(policy: Config['policy'], log: Logger): void {
  for (const finding of policyFindings(policy)) log.log('WARNING', `policy: ${finding}`);
}

/** The shared cache (L2) when Upstash is configured; its failures become rate-limited warnings, never request errors. */
function sharedCache(config: Config, log: Logger, now: () => number): SharedTokenCache | undefined {
  if (config.upstash === undefined || config.cacheKey === undefined) return undefined;
  const throttle = new Throttle(30_000, now);
  return new SharedTokenCache({
    redis: createUpstashRedis(config.upstash),
    cacheKey: config.cacheKey,
    timeoutMs: config.cacheTimeoutMs,
    now,
    onFailure: (failure) => {
      const suppressed = throttle.take(`${failure.op}:${failure.reason}`);
      if (suppressed === undefined) return;
      log.log('WARNING', 'shared cache unavailable; serving by minting', {
        cache: {
          op: failure.op,
          reason: failure.reason,
          error: describeCacheError(failure.error),
          suppressedSinceLast: suppressed,
        },
      });
    },
  });
}

function errorCode(err: unknown): string {
  return err instanceof BrokerError
    ? `${err.code}${err.upstreamError ? `/${err.upstreamError}` : ''}`
    : 'unexpected';
}
