import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { canonicalEmail } from '../email.js';
import type { CompiledIssuer } from '../policy/types.js';
import { type Caller, refused } from './caller.js';
import type { HttpClient } from './http.js';
import { createJwksCache } from './jwks.js';
import { createJwksUriResolver } from './oidc-discovery.js';

/**
 * The issuers whose tokens identify callers (docs/contract.md, "Caller
 * authentication" and "Trusted issuers"): Google's, from the settings, and
 * each issuer of the policy. One shape for all of them, so that one
 * verifier (`caller-auth.ts`) checks every token the same way; each has its
 * own key set, algorithms, audience rule and identity.
 */
export interface Trust {
  /** The policy issuer's `name`; undefined for Google. */
  readonly name: string | undefined;
  /** Signature algorithms accepted from it. */
  readonly algorithms: readonly string[];
  /** Its keys: cached, single-flighted, cooled down, served stale while it is down (`jwks.ts`). */
  readonly keys: JWTVerifyGetKey & { refresh(): Promise<void> };
  /** Throws `invalid_token` (`wrong_audience`) unless the token's `aud` is one this issuer's tokens must carry. */
  checkAudience(aud: unknown): void;
  /** The caller a token names, once its audience and times hold; throws `invalid_token` when its claims fall short. */
  identify(payload: JWTPayload): Caller;
}

/** How a trust fetches its keys. */
export interface KeyFetchOptions {
  http?: HttpClient;
  timeoutMs?: number;
  /** Least time between two key-set fetches caused by unknown `kid`s (60 s). */
  cooldownMs?: number;
  now: () => number;
}

/** Google's ID tokens: RS256, `aud` exactly the broker's audience, a verified email as the identity. */
export function googleTrust(o: KeyFetchOptions & { jwksUrl: string; audience: string }): Trust {
  return {
    name: undefined,
    algorithms: ['RS256'],
    keys: createJwksCache({ url: o.jwksUrl, ...fetchOptions(o) }),
    checkAudience(aud) {
      if (!(aud === o.audience || (Array.isArray(aud) && aud.length === 1 && aud[0] === o.audience))) {
        throw refused(
          'wrong_audience',
          `the token is for another audience; the broker expects \`aud\` ${o.audience}`,
        );
      }
    },
    identify(payload) {
      if (payload['email_verified'] !== true)
        throw refused('no_verified_email', 'the token has no verified email');
      const email = canonicalEmail(payload['email']);
      if (email === undefined) throw refused('no_verified_email', 'the token has no valid email');
      return {
        principal: email,
        email,
        sub: typeof payload.sub === 'string' ? payload.sub : '',
        iss: payload.iss as string,
        issuer: undefined,
      };
    },
  };
}

/** A `sub` a principal can be made of: 1 to 1024 characters, none of them a control character (Unicode Cc). */
const SUBJECT = /^\P{Cc}{1,1024}$/u;

/**
 * A policy issuer's tokens (GitHub Actions, a Kubernetes cluster, any OIDC
 * issuer): RS256 or ES256; `aud` one of its audiences, or a list holding
 * one; its `claims` guard; the caller is the principal `NAME:SUB`. Its keys
 * come from `jwksUri`, or from the URL its discovery document names.
 */
export function policyIssuerTrust(
  issuer: CompiledIssuer,
  o: KeyFetchOptions & { allowLoopback: boolean },
): Trust {
  const url =
    issuer.jwksUri ??
    createJwksUriResolver({
      issuer: issuer.issuer,
      allowLoopback: o.allowLoopback,
      ...(o.http === undefined ? {} : { http: o.http }),
      ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
      now: o.now,
    });
  return {
    name: issuer.name,
    algorithms: ['RS256', 'ES256'],
    keys: createJwksCache({ url, owner: `issuer ${issuer.name}`, ...fetchOptions(o) }),
    checkAudience(aud) {
      const ok =
        typeof aud === 'string'
          ? issuer.audiences.has(aud)
          : Array.isArray(aud) && aud.some((a) => typeof a === 'string' && issuer.audiences.has(a));
      if (!ok) {
        throw refused(
          'wrong_audience',
          "the token is for another audience than the broker's policy lists for its issuer",
        );
      }
    },
    identify(payload) {
      for (const guard of issuer.claims) {
        const value = Object.hasOwn(payload, guard.claim) ? payload[guard.claim] : undefined;
        if (typeof value !== 'string' || !guard.matches(value)) {
          throw refused(
            'claims_mismatch',
            `the claim \`${guard.claim}\` does not match what the broker's policy requires of this issuer`,
          );
        }
      }
      const sub = payload.sub;
      if (typeof sub !== 'string' || !SUBJECT.test(sub))
        throw refused('invalid_subject', 'the token has no usable `sub`');
      return {
        principal: `${issuer.name}:${sub}`,
        email: undefined,
        sub,
        iss: issuer.issuer,
        issuer: issuer.name,
      };
    },
  };
}

function fetchOptions(o: KeyFetchOptions) {
  return {
    now: o.now,
    ...(o.http === undefined ? {} : { http: o.http }),
    ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
    ...(o.cooldownMs === undefined ? {} : { cooldownMs: o.cooldownMs }),
  };
}
