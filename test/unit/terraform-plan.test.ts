/**
 * terraform/ planned whole, as `terraform plan` would on a fresh project:
 * every local, every instance's arguments, preconditions, checks and outputs
 * (test/support/tf-eval.ts, planModule), for both examples and for every
 * `targets` set that variables.tf allows.
 */
import { describe, expect, it } from 'vitest';
import { evaluateText, planScope, TfEvalError, variableValues } from '../support/tf-eval.js';
import { DIR, fullPlan, MODULE, MULTI, SINGLE, TEXT, variables } from '../support/tf-module.js';
import { readModule } from '../support/tf-syntax.js';

const TARGETS = ['token', 'jwt', 'idtoken', 'admin', 'sts', 'broker'];
/** Every non-empty subset of the targets, in the order variables.tf lists them. */
const SUBSETS: string[][] = Array.from({ length: 2 ** TARGETS.length - 1 }, (_, i) =>
  TARGETS.filter((_, bit) => (i + 1) & (1 << bit)),
);
const NO_JOB = { ...SINGLE, delegated_job: null };
const NO_CACHE = {
  ...NO_JOB,
  enable_shared_cache: false,
  upstash_redis_rest_url: '',
  upstash_redis_rest_token: null,
};

// main.tf:47 before issue 22, word for word.
const OLD_TOKEN_URL =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: an HCL interpolation, not a JavaScript one
  'contains(var.targets, "broker") ? "${local.function_url["broker"]}/token" : local.function_url["token"]';

describe('issue 22: the first plan on a fresh project', () => {
  it('fails, with the eager evaluator, on the old token_url_for_job for targets = ["sts"] and ["jwt", "idtoken"]', () => {
    for (const targets of [['sts'], ['jwt', 'idtoken']]) {
      const { vars, failures } = variables({ ...NO_JOB, targets });
      expect(failures).toEqual([]); // variables.tf allows these sets...
      // ...the old expression cannot be evaluated for them...
      const scope = planScope(MODULE, vars);
      expect(() => evaluateText(OLD_TOKEN_URL, scope)).toThrow(/no element "token"/);
      // ...and a module holding it fails its plan, although nothing reads the local without the job.
      const old = readModule(DIR, {
        ...TEXT,
        'main.tf': TEXT['main.tf']!.replace(
          /\n {2}token_url {6}= .*\n/,
          `\n  token_url_for_job = ${OLD_TOKEN_URL}\n`,
        ),
      });
      expect(old.locals.has('token_url_for_job')).toBe(true);
      expect(() => planScope(old, variableValues(old, { ...NO_JOB, targets }))).toThrow(TfEvalError);
      expect(() => planScope(old, variableValues(old, { ...NO_JOB, targets }))).toThrow(
        /local\.token_url_for_job: no element "token"/,
      );
    }
  });

  it('looks optional targets up and never indexes them in a local', () => {
    // function_url[...] of a literal target other than through each/for, anywhere in the module.
    for (const [file, text] of Object.entries(TEXT))
      expect(text, file).not.toMatch(/function_url\["(token|jwt|idtoken|admin|sts|broker)"\]/);
    const { scope } = variables({ ...NO_JOB, targets: ['sts'] });
    expect((scope['local'] as Record<string, unknown>)['token_url']).toBeNull();
    expect((scope['local'] as Record<string, unknown>)['token_audience']).toBeNull();
    const broker = variables({ ...NO_JOB, targets: ['broker', 'sts'] }).scope['local'] as Record<
      string,
      unknown
    >;
    expect(broker['token_url']).toBe(
      'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-broker/token',
    );
    expect(broker['token_audience']).toBe(
      'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-broker',
    );
  });

  it.each([
    ['single-tenant', SINGLE],
    ['multi-tenant', MULTI],
  ])('plans the %s example whole, with no failed precondition', (_name, given) => {
    const p = fullPlan(given);
    expect(p.preconditions).toEqual([]);
    let instances = 0;
    for (const byKey of p.instances.values()) instances += byKey.size;
    expect(instances).toBeGreaterThan(30);
  });

  it(`plans every targets set variables.tf allows (${SUBSETS.length} sets, with and without the shared cache and the job)`, () => {
    let plans = 0;
    for (const targets of SUBSETS) {
      const variants: [string, Record<string, unknown>, boolean][] = [
        ['shared cache', { ...NO_JOB, targets }, true],
        ['no shared cache', { ...NO_CACHE, targets }, !targets.includes('admin')],
        ['the job', { ...SINGLE, targets }, targets.includes('token') || targets.includes('broker')],
      ];
      for (const [variant, given, allowed] of variants) {
        const { failures } = variables(given);
        expect(failures.length === 0, `${targets.join(',')} with ${variant}: ${failures.join('; ')}`).toBe(
          allowed,
        );
        if (!allowed) continue;
        const p = fullPlan(given);
        expect(p.preconditions, `${targets.join(',')} with ${variant}`).toEqual([]);
        expect([...p.instances.get('google_cloudfunctions2_function.broker')!.keys()].sort()).toEqual(
          [...targets].sort(),
        );
        plans++;
      }
    }
    expect(plans).toBe(63 + 31 + 48);
  });
});
