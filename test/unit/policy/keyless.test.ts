import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../shared/errors.js';
import { compilePolicy } from '../../../shared/policy/load.js';

const KEYLESS = 'keyless@acme.iam.gserviceaccount.com';
const HOP = 'hop@acme.iam.gserviceaccount.com';
const grant = { callers: ['c@acme.iam.gserviceaccount.com'], serviceAccounts: ['*'], scopes: ['s'] };

function problems(accounts: unknown[]): readonly string[] {
  try {
    compilePolicy({ serviceAccounts: accounts, grants: [grant] });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('keyless entries in the policy', () => {
  it('compiles a keyless account with a delegation chain, and a keyless tenant', () => {
    const p = compilePolicy({
      serviceAccounts: [
        { email: KEYLESS, keyless: true, delegates: [HOP.toUpperCase()] },
        { email: 'v@tenant-v.iam.gserviceaccount.com', keyless: true, tenant: 'violet' },
      ],
      grants: [grant],
    });
    expect(p.accounts.get(KEYLESS)).toEqual({
      email: KEYLESS,
      tenants: [],
      anyTenant: false,
      shared: false,
      mode: 'keyless',
      delegates: [HOP],
      maxLifetimeSeconds: 3600,
    });
    expect(p.tenants.get('violet')).toMatchObject({ mode: 'keyless', delegates: [] });
  });

  it('stops the start on an entry with both `key` and `keyless`, naming the entry', () => {
    expect(problems([{ email: KEYLESS, key: 'projects/p/secrets/s/versions/1', keyless: true }])).toEqual([
      `serviceAccounts[0] (${KEYLESS}): has both \`key\` and \`keyless\`; give exactly one`,
    ]);
  });

  it('stops the start on `delegates` on a keyed account, naming the entry', () => {
    expect(problems([{ email: KEYLESS, key: 'projects/p/secrets/s/versions/1', delegates: [HOP] }])).toEqual([
      `serviceAccounts[0] (${KEYLESS}).delegates: is only for keyless accounts (\`"keyless": true\`): IAM follows the chain`,
    ]);
  });

  it('stops the start on a malformed delegate, naming the entry and the delegate', () => {
    const found = problems([
      {
        email: KEYLESS,
        keyless: true,
        delegates: ['alice@acme.com', 'projects/-/serviceAccounts/x', KEYLESS],
      },
    ]);
    expect(found).toEqual([
      `serviceAccounts[0] (${KEYLESS}).delegates[0]: "alice@acme.com" is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)`,
      `serviceAccounts[0] (${KEYLESS}).delegates[1]: "projects/-/serviceAccounts/x" is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)`,
      `serviceAccounts[0] (${KEYLESS}).delegates[2]: ${KEYLESS} appears twice in the chain`,
    ]);
  });

  it('needs exactly one of `key` or `keyless: true`', () => {
    expect(problems([{ email: KEYLESS }])).toEqual([
      `serviceAccounts[0] (${KEYLESS}): needs exactly one of \`key\` (a secret version) or \`"keyless": true\``,
    ]);
    expect(problems([{ email: KEYLESS, keyless: 'yes' }])).toContain(
      `serviceAccounts[0] (${KEYLESS}).keyless: must be true or absent`,
    );
  });
});
