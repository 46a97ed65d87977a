import type { Caller } from './adapters/caller.js';
import type { CallerVerifier } from './adapters/caller-auth.js';
import type { Admission, Broker, PurgeResult } from './broker.js';
import type { CacheOutcome, Served } from './cache/types.js';
import { BrokerError } from './errors.js';
import { type Asked, type DenyReason, decide } from './policy/evaluate.js';
import { checkLifetime } from './policy/lifetime.js';
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
  /** The verified caller's principal: a Google caller's email, or `NAME:SUB` (docs/contract.md, "Principals"). */
  caller?: string;
  /** The policy issuer's name, for a caller of one. */
  issuer?: string;
  serviceAccount?: string;
  tenant?: string;
  scopes?: readonly string[];
  subject?: string;
  audience?: string;
  minLifetimeSeconds?: number;
  lifetimeSeconds?: number;
  all?: true;
  decision?: 'allow' | 'deny';
  /** Why the request was refused, as a stable code: a denial's dimension, or why the caller's token failed. */
  reason?: string;
  /** The index of the grant that allowed it. */
  grant?: number;
  account?: string;
  /** How the account's tokens are minted: with its key, or keyless through IAM. */
  accountMode?: 'keyed' | 'keyless';
  /** The key of the access boundary the token is bounded by (a hash of the expanded rules). */
  boundary?: string;
  cache?: CacheOutcome;
}

/** What a call came to, as a value. */
export type Result =
  | { readonly ok: true; readonly request: MintRequest; readonly served: Served; readonly audit: AuditRecord }
  | { readonly ok: true; readonly purged: PurgeResult; readonly audit: AuditRecord }
  | { readonly ok: false; readonly error: unknown; readonly audit: AuditRecord };

/** The broker as its front doors see it: verify → decide (the policy, once) → rate limit → serve. */
export interface Service {
  /**
   * Answers a call. A call whose caller token was verified before, whose
   * caller has no rate limit and whose token is in this instance's memory is
   * answered synchronously, without a promise or any I/O; anything else
   * returns a promise. Never throws: failures are `{ ok: false, error }`.
   */
  handle(call: Call): Result | Promise<Result>;
}

export interface ServiceDeps {
  /** The policy in force: read once per request (it may be replaced while the broker runs). */
  policy: { current(): CompiledPolicy };
  verifier: CallerVerifier;
  rateLimiter: RateLimiter;
  broker: Broker;
}

const PARSERS = { token: parseTokenRequest, jwt: parseJwtRequest, idtoken: parseIdTokenRequest } as const;

/**
 * The text of every 403 (and of `invalid_target` at `sts`): the same for an
 * unknown account or tenant and a forbidden one, so nobody can probe for
 * names. It names the caller the broker verified, which is the caller's own.
 */
export function accessDenied(caller: string): string {
  return `The broker policy does not allow ${caller} this request (service account or tenant, scopes, subject, audience or operation). Ask the broker operators for a grant.`;
}

/** Creates the service over its parts. */
export function createService(deps: ServiceDeps): Service {
  const { verifier, broker } = deps;

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

  /** Everything after the caller is known: one path, synchronous until something needs I/O. */
  function afterVerify(call: Call, caller: Caller, audit: AuditRecord): Result | Promise<Result> {
    try {
      audit.caller = caller.principal;
      if (caller.issuer !== undefined) audit.issuer = caller.issuer;
      const asked = parse(call, audit);
      const decision = decide(deps.policy.current(), caller.principal, asked);
      const limit = decision.rateLimit;
      if (limit === undefined) return act(asked, decision.outcome, caller, audit);
      return deps.rateLimiter
        .check(caller.principal, limit)
        .then((verdict) => {
          if (!verdict.success) {
            throw new BrokerError(
              'rate_limited',
              'This caller is over its request limit; retry after the given delay.',
              { retryAfterSeconds: verdict.retryAfterSeconds },
            );
          }
          return act(asked, decision.outcome, caller, audit);
        })
        .catch((error: unknown) => failed(error, audit));
    } catch (error) {
      return failed(error, audit);
    }
  }

  /** Carries out what the policy decided. */
  function act(
    asked: Asked,
    outcome: ReturnType<typeof decide>['outcome'],
    caller: Caller,
    audit: AuditRecord,
  ): Result | Promise<Result> {
    if (!outcome.allowed) return denied(asked, outcome.reason, caller, audit);
    audit.decision = 'allow';
    if ('purge' in outcome) {
      return broker.purge(outcome.purge).then(
        (purged): Result => {
          audit.account = purged.accounts === 'all' ? '*' : purged.accounts.join(',');
          return { ok: true, purged, audit };
        },
        (error: unknown) => failed(error, audit),
      );
    }
    const { account, grant } = outcome;
    audit.grant = grant;
    audit.account = account.email;
    audit.accountMode = account.mode;
    const request = (asked as Extract<Asked, { action: 'mint' }>).request;
    checkLifetime(request, account); // a 400 only now: a caller the policy refuses learns nothing of the account
    const admission: Admission = broker.admit(request, account, outcome.boundary);
    if (admission.boundary !== undefined) audit.boundary = admission.boundary.key;
    const hit = broker.cached(admission);
    if (hit !== undefined) return served(request, hit, audit);
    return broker.serve(admission).then(
      (token) => served(request, token, audit),
      (error: unknown) => failed(error, audit),
    );
  }

  return {
    handle(call) {
      const audit: AuditRecord = { operation: call.action };
      let known: Caller | undefined;
      try {
        known = cachedCaller(call.credential);
      } catch (error) {
        return failed(error, audit);
      }
      if (known !== undefined) return afterVerify(call, known, audit);
      return verify(call.credential).then(
        (caller) => afterVerify(call, caller, audit),
        (error: unknown) => failed(error, audit),
      );
    },
  };
}

/** Reads the body into the request the action asks for, and notes it in the audit record. */
function parse(call: Call, audit: AuditRecord): Asked {
  if (call.action === 'purge') {
    const request = parsePurgeRequest(call.body);
    if ('all' in request) audit.all = true;
    else Object.assign(audit, request);
    return { action: 'purge', request };
  }
  const request = PARSERS[call.action](call.body);
  Object.assign(audit, request.for);
  audit.scopes = request.scopes;
  if (request.kind === 'token' && request.subject !== undefined) audit.subject = request.subject;
  if (request.kind !== 'token' && request.audience !== undefined) audit.audience = request.audience;
  if (request.minLifetimeSeconds > 0) audit.minLifetimeSeconds = request.minLifetimeSeconds;
  if (request.kind === 'token' && request.lifetimeSeconds !== undefined)
    audit.lifetimeSeconds = request.lifetimeSeconds;
  return { action: 'mint', request };
}

/**
 * A denial: the one 403 for callers; the reason for the audit line. An
 * admin's purge of an account or tenant the policy lacks is a 404 instead
 * (an admin may read the policy anyway).
 */
function denied(asked: Asked, reason: DenyReason, caller: Caller, audit: AuditRecord): Result {
  audit.decision = 'deny';
  audit.reason = reason;
  if (asked.action === 'purge' && reason === 'unknown_account') {
    const what = 'serviceAccount' in asked.request ? 'service account' : 'tenant';
    return failed(new BrokerError('not_found', `The policy has no such ${what}; nothing was purged.`), audit);
  }
  return failed(new BrokerError('access_denied', accessDenied(caller.principal), { reason }), audit);
}

function served(request: MintRequest, token: Served, audit: AuditRecord): Result {
  audit.cache = token.cache;
  return { ok: true, request, served: token, audit };
}

function failed(error: unknown, audit: AuditRecord): Result {
  // A refusal's reason (a denial's dimension, why a token failed) goes to the audit line.
  if (audit.reason === undefined && error instanceof BrokerError && error.reason !== undefined) {
    audit.reason = error.reason;
  }
  return { ok: false, error, audit };
}
