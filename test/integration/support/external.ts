import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GitHubActionsIssuer, KubernetesIssuer } from '../../../infra/google/server.js';
import type { InProcessBroker } from '../../../infra/in-process-broker.js';
import {
  AUDIENCE,
  BIGQUERY,
  examplePolicy,
  KEYLESS,
  OPS,
  REPORTING,
  type Stack,
  startStack,
} from './stack.js';

/** The audience a Kubernetes-like caller's projected token carries. */
export const K8S_AUDIENCE = 'token-broker';
export const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
/** The GitHub-like job's principal: its `sub` behind the issuer's name. */
export const ETL_MAIN = 'github:repo:acme/etl:ref:refs/heads/main';
export const NIGHTLY = 'onprem:system:serviceaccount:batch:nightly';
/** A keyless account whose tokens may live 6 hours, and which the organisation policy lists at IAM. */
export const LONG_JOB = 'long-job@acme.iam.gserviceaccount.com';
/** A keyless account the broker's policy lets live 6 hours, but which the organisation policy does not list. */
export const NOT_EXTENDED = 'not-extended@acme.iam.gserviceaccount.com';
export const SIX_HOURS = 21_600;

/** A stack with the broker's own stand-ins, issuers that the policy trusts, and issuers that it does not. */
export interface ExternalStack {
  stack: Stack;
  broker: InProcessBroker;
  github: GitHubActionsIssuer;
  k8s: KubernetesIssuer;
  /** Issuers the policy does not name: nothing may ever reach them. */
  strangers: readonly [GitHubActionsIssuer, KubernetesIssuer];
  /** The broker's environment (to serve another broker in process with changes). */
  env: Record<string, string | undefined>;
}

/**
 * The example policy plus two trusted issuers (GitHub-like, with the
 * organisation guard `repository_owner: acme`; Kubernetes-like, by
 * discovery) and grants for their principals, served by a broker in process.
 */
export async function startExternalStack(): Promise<ExternalStack> {
  const stack = await startStack();
  const google = stack.google;
  const github = await google.startGitHubIssuer({ run: { owner: 'acme', repo: 'etl' } });
  const k8s = await google.startKubernetesIssuer();
  const strangers = [
    await google.startGitHubIssuer({ run: { owner: 'acme', repo: 'etl' } }),
    await google.startKubernetesIssuer(),
  ] as const;
  for (const email of [LONG_JOB, NOT_EXTENDED]) {
    google.registerKeylessAccount(email);
    google.grantTokenCreator(email, 'token-broker@acme.iam.gserviceaccount.com');
  }
  google.allowLifetimeExtension(LONG_JOB);
  const policy = examplePolicy();
  (policy['serviceAccounts'] as unknown[]).push(
    { email: LONG_JOB, keyless: true, maxLifetimeSeconds: SIX_HOURS },
    { email: NOT_EXTENDED, keyless: true, maxLifetimeSeconds: SIX_HOURS },
  );
  policy['issuers'] = [
    {
      name: 'github',
      issuer: github.issuer,
      audiences: [AUDIENCE],
      claims: { repository_owner: 'acme' },
    },
    { name: 'onprem', issuer: k8s.issuer, audiences: [K8S_AUDIENCE] },
  ];
  (policy['grants'] as unknown[]).push(
    {
      callers: ['github:repo:acme/etl:*', 'github:repo:acme/limited:*'],
      serviceAccounts: [REPORTING, KEYLESS, LONG_JOB, NOT_EXTENDED],
      scopes: [BIGQUERY, CLOUD_PLATFORM],
    },
    { callers: [NIGHTLY], serviceAccounts: [KEYLESS, LONG_JOB], scopes: [BIGQUERY, CLOUD_PLATFORM] },
  );
  policy['admins'] = [OPS, 'github:repo:acme/ops:*'];
  policy['rateLimits'] = { 'github:repo:acme/limited:*': { requests: 2, windowSeconds: 60 } };
  const policyFile = join(stack.dir, 'external-policy.json');
  writeFileSync(policyFile, JSON.stringify(policy));
  const env = { BROKER_POLICY_FILE: policyFile, BROKER_ALLOW_LOOPBACK_ISSUERS: 'true' };
  const broker = await stack.serveBroker('broker', env);
  return { stack, broker, github, k8s, strangers, env };
}

/** Every request any of these issuers received, by issuer. */
export function requestCounts(issuers: ReadonlyArray<{ stats: { requests: number } }>): number[] {
  return issuers.map((i) => i.stats.requests);
}

/** The parsed log lines of a broker in process whose audit names `caller`. */
export function auditLines(broker: InProcessBroker, caller: string): Array<Record<string, unknown>> {
  return broker.lines
    .map((l) => JSON.parse(l) as { audit?: Record<string, unknown> })
    .filter((l) => l.audit?.['caller'] === caller)
    .map((l) => l.audit as Record<string, unknown>);
}
