/**
 * `broker-token policy`: a policy checked and explained by the broker's own
 * code, before it is deployed (docs/contract.md, "Policy as code").
 *
 *   broker-token policy check FILE
 *   broker-token policy explain FILE --caller C (--service-account E | --tenant T)
 *       [--scopes S1,S2] [--subject S] [--operation token|jwt|idtoken] [--audience A]
 *
 * `check` prints the loader's problems with their JSON paths (exit 1), or
 * the findings the broker would warn about (exit 0). `explain` decides one
 * request with `decide()`, as the broker does: allowed by which grant (and,
 * for a bounded grant, the expanded boundary), or denied with the reason the
 * audit line would carry, and what each grant said (exit 0 allowed, 1 denied).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { canonicalEmail } from '../shared/email.js';
import { ConfigError } from '../shared/errors.js';
import { expandBoundary } from '../shared/policy/boundary.js';
import { decide, verdict } from '../shared/policy/evaluate.js';
import { policyFindings } from '../shared/policy/lint.js';
import { compilePolicy } from '../shared/policy/load.js';
import type { CompiledPolicy } from '../shared/policy/types.js';
import {
  type MintRequest,
  parseIdTokenRequest,
  parseJwtRequest,
  parseTokenRequest,
} from '../shared/request.js';

/** Exit codes: as `broker-token`'s (0 fine, 1 refused or invalid, 2 usage). */
const EXIT = { ok: 0, refused: 1, usage: 2 } as const;

export const POLICY_USAGE = `usage: broker-token policy check FILE
       broker-token policy explain FILE --caller CALLER (--service-account EMAIL | --tenant ID)
                                   [--scopes S1,S2] [--subject EMAIL] [--operation token|jwt|idtoken]
                                   [--audience URL]

check     every problem the broker would refuse to start with, each with its JSON path (exit 1),
          or what it would warn about (exit 0)
explain   one request decided by the broker's own code: allowed by which grant, with the access
          boundary a bounded grant expands to, or denied with the audit line's reason (exit 1)
`;

class Usage extends Error {}

/** Runs `broker-token policy …` (argv after `policy`); returns the exit code. */
export function policyMain(argv: string[], out: (s: string) => void, err: (s: string) => void): number {
  try {
    const [command, file, ...rest] = argv;
    if (command === undefined || command === '--help' || command === '-h') {
      out(POLICY_USAGE);
      return command === undefined ? EXIT.usage : EXIT.ok;
    }
    if (command !== 'check' && command !== 'explain') throw new Usage(`unknown policy command "${command}"`);
    if (file === undefined || file.startsWith('-'))
      throw new Usage(`policy ${command} needs the policy FILE`);
    const loaded = load(file, err);
    if (loaded === undefined) return EXIT.refused;
    if (command === 'check') {
      if (rest.length > 0) throw new Usage(`policy check takes only FILE, not ${rest.join(' ')}`);
      const findings = policyFindings(loaded);
      out(`${file}: valid: ${loaded.accounts.size} service account(s), ${loaded.grants.length} grant(s)`);
      for (const f of findings) out(`  warning: ${f}`);
      return EXIT.ok;
    }
    return explain(loaded, rest, out);
  } catch (e) {
    if (!(e instanceof Usage) && !(e instanceof TypeError)) throw e;
    err(`broker-token policy: ${e.message}\n\n${POLICY_USAGE}`);
    return EXIT.usage;
  }
}

/** The compiled policy, or undefined after printing every problem. */
function load(file: string, err: (s: string) => void): CompiledPolicy | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    err(`${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    return undefined;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    err(`${file}: not valid JSON (${(e as Error).message})`);
    return undefined;
  }
  try {
    // As the broker would start with it: loopback issuers only under the same flag (tests, npm start).
    const flag = process.env['BROKER_ALLOW_LOOPBACK_ISSUERS'];
    return compilePolicy(raw, { allowLoopbackIssuers: flag === 'true' || flag === '1' });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    err(`${file}: the broker would refuse to start with it:`);
    for (const p of e.problems) err(`  - ${p}`);
    return undefined;
  }
}

function explain(policy: CompiledPolicy, argv: string[], out: (s: string) => void): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      caller: { type: 'string' },
      'service-account': { type: 'string' },
      tenant: { type: 'string' },
      scopes: { type: 'string' },
      subject: { type: 'string' },
      operation: { type: 'string' },
      audience: { type: 'string' },
    },
    strict: true,
  });
  // An email is compared in lower case; an issuer's principal (NAME:SUB) exactly, as the broker does.
  const caller = values.caller === undefined ? undefined : (canonicalEmail(values.caller) ?? values.caller);
  if (caller === undefined) throw new Usage('explain needs --caller (an email, or NAME:SUB for an issuer)');
  const operation = values.operation ?? 'token';
  const body: Record<string, unknown> = {
    ...(values['service-account'] === undefined ? {} : { serviceAccount: values['service-account'] }),
    ...(values.tenant === undefined ? {} : { tenant: values.tenant }),
    ...(values.scopes === undefined ? {} : { scopes: values.scopes.split(',').filter((s) => s !== '') }),
    ...(values.subject === undefined ? {} : { subject: values.subject }),
    ...(values.audience === undefined ? {} : { audience: values.audience }),
  };
  let request: MintRequest;
  try {
    // The broker's own request parsers: what it would refuse with 400 is refused here too.
    request =
      operation === 'token'
        ? parseTokenRequest(body)
        : operation === 'jwt'
          ? parseJwtRequest(body)
          : operation === 'idtoken'
            ? parseIdTokenRequest(body)
            : (() => {
                throw new Usage('--operation is token, jwt or idtoken');
              })();
  } catch (e) {
    if (e instanceof Usage) throw e;
    throw new Usage((e as Error).message);
  }
  const { outcome, rateLimit } = decide(policy, caller, { action: 'mint', request });
  const target =
    'serviceAccount' in request.for
      ? `service account ${request.for.serviceAccount}`
      : `tenant ${request.for.tenant}`;
  out(`${operation} for ${target}, asked by ${caller}:`);
  if (outcome.allowed && 'account' in outcome) {
    out(
      `  allowed by grants[${outcome.grant}], minted as ${outcome.account.email} (${outcome.account.mode})`,
    );
    if (outcome.boundary !== undefined) {
      const expanded = expandBoundary(outcome.boundary, {
        tenant: 'tenant' in request.for ? request.for.tenant : undefined,
        subject: request.kind === 'token' ? request.subject : undefined,
      });
      out(`  bounded by the access boundary ${expanded.key}:`);
      out(
        JSON.stringify({ accessBoundary: { accessBoundaryRules: expanded.rules } }, null, 2).replace(
          /^/gm,
          '    ',
        ),
      );
    }
  } else if (!outcome.allowed) {
    out(`  denied: ${outcome.reason} (the audit line's reason; the caller gets the one 403 text)`);
  }
  if (rateLimit !== undefined)
    out(`  rate limit: ${rateLimit.requests} requests per ${rateLimit.windowSeconds} s`);
  const account =
    'serviceAccount' in request.for
      ? policy.accounts.get(request.for.serviceAccount)
      : (policy.tenants.get(request.for.tenant) ?? policy.anyTenant);
  if (account !== undefined) {
    out('  grants:');
    for (const g of policy.grants) out(`    grants[${g.index}]: ${verdict(g, caller, request, account)}`);
  }
  return outcome.allowed ? EXIT.ok : EXIT.refused;
}
