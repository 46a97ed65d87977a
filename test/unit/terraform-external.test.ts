/**
 * Callers with a non-Google OIDC token (terraform: external_caller_targets,
 * policy.issuers): exactly the named targets open to them, every branch of
 * the validations, and the issuers as the broker gets them.
 */
import { describe, expect, it } from 'vitest';
import type { Plan } from '../support/tf-eval.js';
import { blocksOf, fullPlan, planned, README, SINGLE, variables } from '../support/tf-module.js';

const GITHUB = {
  name: 'github',
  issuer: 'https://token.actions.githubusercontent.com',
  audiences: ['https://europe-west1-acme-prod.cloudfunctions.net/token-broker-token'],
  claims: { repository: 'acme/app' },
};
const KUBERNETES = {
  name: 'gke',
  issuer: 'https://container.googleapis.com/v1/projects/acme-prod/locations/europe-west1/clusters/apps',
  audiences: ['token-broker'],
  jwksUri: 'https://container.googleapis.com/v1/projects/acme-prod/locations/europe-west1/clusters/apps/jwks',
};
const policy = SINGLE['policy'] as Record<string, unknown>;
const WITH_ISSUERS = { ...SINGLE, policy: { ...policy, issuers: [GITHUB, KUBERNETES] } };

const FN = 'google_cloudfunctions2_function.broker';
const BINDINGS = 'google_cloud_run_v2_service_iam_member.invoker';
const ingress = (p: Plan) =>
  Object.fromEntries(
    [...p.instances.get(FN)!].map(([t, f]) => [t, blocksOf(f, 'service_config')[0]!['ingress_settings']]),
  );
/** The targets whose invoker bindings let anyone past Cloud Run's check. */
const publicTargets = (p: Plan) =>
  [...p.instances.get(BINDINGS)!]
    .filter(([, b]) => b['member'] === 'allUsers')
    .map(([key]) => key.split('/')[0])
    .sort();
const policyOf = (p: Plan) =>
  (
    blocksOf(planned(p, FN, 'token'), 'service_config')[0]!['environment_variables'] as Record<string, string>
  )['BROKER_POLICY']!;

describe('external_caller_targets', () => {
  it('opens no function by default', () => {
    const p = fullPlan(WITH_ISSUERS);
    expect(publicTargets(p)).toEqual([]);
    expect(new Set(Object.values(ingress(p)))).toEqual(new Set(['ALLOW_INTERNAL_ONLY']));
  });

  it('opens exactly the named targets: allUsers invoker and the external ingress; the others keep IAM and internal ingress', () => {
    const p = fullPlan({ ...WITH_ISSUERS, external_caller_targets: ['token', 'sts'] });
    expect(publicTargets(p)).toEqual(['sts', 'token']);
    expect(ingress(p)).toEqual({
      token: 'ALLOW_ALL',
      sts: 'ALLOW_ALL',
      jwt: 'ALLOW_INTERNAL_ONLY',
      idtoken: 'ALLOW_INTERNAL_ONLY',
      admin: 'ALLOW_INTERNAL_ONLY',
    });
    // IAM callers keep their own bindings on every target (sts_invoker = callers included).
    for (const key of [
      'token/billing@acme-prod.iam.gserviceaccount.com',
      'jwt/billing@acme-prod.iam.gserviceaccount.com',
      'sts/billing@acme-prod.iam.gserviceaccount.com',
    ])
      expect(planned(p, BINDINGS, key)['member']).toBe(
        'serviceAccount:billing@acme-prod.iam.gserviceaccount.com',
      );
    expect(p.preconditions).toEqual([]);
  });

  it('uses external_caller_ingress for them, e.g. internal for a cluster in the VPC', () => {
    const p = fullPlan({
      ...WITH_ISSUERS,
      external_caller_targets: ['token'],
      external_caller_ingress: 'ALLOW_INTERNAL_ONLY',
    });
    expect(publicTargets(p)).toEqual(['token']);
    expect(ingress(p)['token']).toBe('ALLOW_INTERNAL_ONLY');
    expect(variables({ ...WITH_ISSUERS, external_caller_ingress: 'PUBLIC' }).failures.join()).toMatch(
      /external_caller_ingress must be/,
    );
  });

  it('opens the broker function of the one-function layout', () => {
    const p = fullPlan({
      ...WITH_ISSUERS,
      targets: ['broker', 'sts'],
      delegated_job: null,
      external_caller_targets: ['broker'],
    });
    expect(publicTargets(p)).toEqual(['broker']);
    expect(ingress(p)).toEqual({ broker: 'ALLOW_ALL', sts: 'ALLOW_INTERNAL_ONLY' });
  });

  it.each([
    [
      'a target that is not deployed',
      { ...WITH_ISSUERS, external_caller_targets: ['broker'] },
      /must be among the deployed targets/,
    ],
    ['admin', { ...WITH_ISSUERS, external_caller_targets: ['admin'] }, /cannot include admin/],
    [
      'a policy without issuers',
      { ...SINGLE, external_caller_targets: ['token'] },
      /needs at least one entry in issuers/,
    ],
    [
      'a policy with an empty issuers list',
      { ...SINGLE, policy: { ...policy, issuers: [] }, external_caller_targets: ['token'] },
      /needs at least one entry in issuers/,
    ],
  ])('refuses %s', (_name, given, message) => {
    expect(variables(given).failures.join('\n')).toMatch(message);
  });

  it('accepts issuers without opening anything (the broker may take them behind an IAM-checked proxy)', () => {
    expect(variables(WITH_ISSUERS).failures).toEqual([]);
  });

  it('passes the issuers to the broker, with unset optional fields left out', () => {
    const json = policyOf(fullPlan(WITH_ISSUERS));
    expect((JSON.parse(json) as Record<string, unknown>)['issuers']).toEqual([GITHUB, KUBERNETES]);
    // Nothing unset is written as null, at the top or in an issuer.
    expect(json).not.toContain('null');
    expect(JSON.parse(policyOf(fullPlan(SINGLE)))).not.toHaveProperty('issuers');
  });

  it('explains the trade-off', () => {
    expect(README).toMatch(/## External callers/);
    expect(README).toContain('external_caller_targets');
    expect(README).toMatch(/allowedPolicyMemberDomains/);
  });
});
