import type { Caller, CallerVerifier } from './adapters/caller-auth.js';
import { ACCESS_DENIED, type Admission, type Broker, type PurgeResult, type Served } from './broker.js';
import type { CacheOutcome } from './cache/types.js';
import { BrokerError } from './errors.js';
import { isAdmin, rateLimitFor } from './policy/evaluate.js';
import type { CompiledPolicy, Operation } from './policy/types.js';
import type { RateLimiter } from './rate-limit.js';
import {
  type MintRequest,
  parseIdTokenRequest,
  parseJwtRequest,
  parsePurgeRequest,
  parseTokenRequest,
} from './request.js';

/** What a caller asks the broker to do: mint one kind of token, or purge. */
export type Action = Operation | 'purge';

/** The caller's credential, as it arrived. */
export type Credential =
  /** The JSON API: the `Authorization` header, and Cloud Run's `X-Serverless-Authorization` when present. */
  | { readonly authorization: string | undefined; readonly serverlessAuthorization?: string | undefined }
  /** Token exchange: the `subject_token` of the form (docs/contract.md, "Token exchange (RFC 8693)"). */
  | { readonly subjectToken: string };

/** One call into the broker, after HTTP: the action, the credential and the (parsed JSON) body. */
export interface Call {
  readonly action: Action;
  readonly credential: Credential;
  readonly body: unknown;
}

/** The facts of one decision, for the audit log line. Built here only, returned as a value. */
export interface AuditRecord {
  readonly operation: Action;
  caller?: string;
  serviceAccount?: string;
  tenant?: string;
  scopes?: readonly string[];
  subject?: string;
  audience?: string;
  minLifetimeSeconds?: number;
  all?: true;
  decision?: 'allow' | 'deny';
  reason?: string;
  account?: string;
  /** How the account's tokens are minted: with its key, or keyless through IAM. */
  accountMode?: 'keyed' | 'keyless';
  cache?: CacheOutcome;
}

/** What a call came to, as a value. */
export type Result =
  | { readonly ok: true; readonly request: MintRequest; readonly served: Served; readonly audit: AuditRecord }
  | { readonly ok: true; readonly purged: PurgeResult; readonly audit: AuditRecord }
  | { readonly ok: false; readonly error: unknown; readonly audit: AuditRecord };

/** The broker as its front doors see it: verify → rate limit → authorise (once) → serve. */
export interface Service {
  /**
   * Answers a call. A call whose caller token was verified before and
   * whose token is in this instance's memory is answered synchronously,
   * without a promise or any I/O; anything else returns a promise. Never
   * throws: failures are `{ ok: false, error }`.
   */
  handle(call: Call): Result | Promise<Result>;
}

export interface ServiceDeps {
  policy: CompiledPolicy;
  verifier: CallerVerifier;
  rateLimiter: RateLimiter;
  broker: Broker;
}

const PARSERS = { token: parseTokenRequest, jwt: parseJwtRequest, idtoken: parseIdTokenRequest } as const;

/** Creates the service over its parts. */
export function createService(deps: ServiceDeps): Service {
  const { policy, verifier, broker } = deps;

  function cachedCaller(credential: Credential): Caller | undefined {
    return 'subjectToken' in credential
      ? verifier.cached(`Bearer ${credential.subjectToken}`)
      : verifier.cached(credential.authorization);
  }

  function verify(credential: Credential): Promise<Caller> {
    return 'subjectToken' in credential
      ? verifier.verify(`Bearer ${credential.subjectToken}`, undefined, 'subject_token')
      : verifier.verify(credential.authorization, credential.serverlessAuthorization);
  }

  function admit(caller: string, request: MintRequest, audit: AuditRecord): Admission {
    describe(audit, request);
    const result = broker.admit(caller, request);
    if ('denied' in result) {
      audit.decision = 'deny';
      audit.reason = result.denied;
      throw new BrokerError('access_denied', ACCESS_DENIED);
    }
    const { account } = result.admitted;
    audit.decision = 'allow';
    audit.account = account.email;
    audit.accountMode = account.mode;
    return result.admitted;
  }

  function done(request: MintRequest, served: Served, audit: AuditRecord): Result {
    audit.cache = served.cache;
    return { ok: true, request, served, audit };
  }

  async function slow(call: Call, audit: AuditRecord, known: Caller | undefined): Promise<Result> {
    try {
      const caller = known ?? (await verify(call.credential));
      audit.caller = caller.email;
      const limit = rateLimitFor(policy, caller.email);
      if (limit) {
        const decision = await deps.rateLimiter.check(caller.email, limit);
        if (!decision.success) {
          throw new BrokerError(
            'rate_limited',
            'This caller is over its request limit; retry after the given delay.',
            { retryAfterSeconds: decision.retryAfterSeconds },
          );
        }
      }
      if (call.action === 'purge') {
        const request = parsePurgeRequest(call.body);
        if ('all' in request) audit.all = true;
        else Object.assign(audit, request);
        if (!isAdmin(policy, caller.email)) {
          audit.decision = 'deny';
          audit.reason = 'not_admin';
          throw new BrokerError('access_denied', ACCESS_DENIED);
        }
        audit.decision = 'allow';
        const purged = await broker.purge(request);
        audit.account = purged.accounts === 'all' ? '*' : purged.accounts.join(',');
        return { ok: true, purged, audit };
      }
      const request = PARSERS[call.action](call.body);
      const admission = admit(caller.email, request, audit);
      return done(request, await broker.serve(admission), audit);
    } catch (error) {
      return { ok: false, error, audit };
    }
  }

  return {
    handle(call) {
      const audit: AuditRecord = { operation: call.action };
      try {
        const caller = cachedCaller(call.credential);
        if (caller === undefined || call.action === 'purge' || rateLimitFor(policy, caller.email)) {
          return slow(call, audit, caller);
        }
        audit.caller = caller.email;
        const request = PARSERS[call.action](call.body);
        const admission = admit(caller.email, request, audit);
        const hit = broker.cached(admission);
        if (hit !== undefined) return done(request, hit, audit);
        return broker.serve(admission).then(
          (served) => done(request, served, audit),
          (error: unknown): Result => ({ ok: false, error, audit }),
        );
      } catch (error) {
        return { ok: false, error, audit };
      }
    },
  };
}

function describe(audit: AuditRecord, request: MintRequest): void {
  Object.assign(audit, request.target);
  audit.scopes = request.scopes;
  if (request.kind === 'token' && request.subject !== undefined) audit.subject = request.subject;
  if (request.kind !== 'token' && request.audience !== undefined) audit.audience = request.audience;
  if (request.minLifetimeSeconds > 0) audit.minLifetimeSeconds = request.minLifetimeSeconds;
}
