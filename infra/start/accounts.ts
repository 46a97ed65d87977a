/**
 * Makes every account a policy names exist at the local stand-ins, as an
 * operator would in a project: a keyed account gets a key in Secret Manager
 * or in its `file:` (an existing key file is kept and its public key
 * registered), a keyless one is registered with IAM, and the broker's own
 * account is made Token Creator on it (through its `delegates` chain, hop by
 * hop). Domain-wide delegation is allowed for every scope, and the literal
 * subjects of the grants become Workspace users.
 */
import { createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { generateServiceAccountKey, type ServiceAccountKeyJson } from '../google/keys.js';
import type { GoogleStandIn } from '../google/server.js';
import type { SecretManagerStandIn } from '../secret-manager/server.js';

interface PolicyAccount {
  email?: unknown;
  key?: unknown;
  keyless?: unknown;
  delegates?: unknown;
}

/** What was made for each account, in words, for `npm start` to print. */
export function provisionAccounts(
  policy: { serviceAccounts?: unknown; grants?: unknown },
  where: {
    google: GoogleStandIn;
    secretManager: SecretManagerStandIn;
    policyDir: string;
    brokerIdentity: string;
  },
): string[] {
  const { google, secretManager, policyDir, brokerIdentity } = where;
  const made: string[] = [];
  const accounts = Array.isArray(policy.serviceAccounts) ? (policy.serviceAccounts as PolicyAccount[]) : [];
  for (const a of accounts) {
    if (typeof a.email !== 'string') continue;
    const email = a.email;
    const projectId = /@([^.]+)\./.exec(email)?.[1] ?? 'local-project';
    if (a.keyless === true) {
      const delegates = Array.isArray(a.delegates) ? a.delegates.filter((d) => typeof d === 'string') : [];
      let member = brokerIdentity;
      for (const hop of [...delegates, email]) {
        try {
          google.registerKeylessAccount(hop);
        } catch {
          // Registered already (a hop shared by two accounts).
        }
        google.grantTokenCreator(hop, member);
        member = hop;
      }
      made.push(`${email}: keyless; ${[brokerIdentity, ...delegates].join(' → ')} may mint for it`);
    } else if (typeof a.key === 'string' && a.key.startsWith('file:')) {
      const path = a.key.slice('file:'.length);
      const file = isAbsolute(path) ? path : join(policyDir, path);
      let json: ServiceAccountKeyJson;
      let publicKeyPem: string;
      if (existsSync(file)) {
        json = JSON.parse(readFileSync(file, 'utf8')) as ServiceAccountKeyJson;
        publicKeyPem = createPublicKey(json.private_key).export({ type: 'spki', format: 'pem' }).toString();
        made.push(`${email}: its key file ${file}, registered`);
      } else {
        ({ json, publicKeyPem } = generateServiceAccountKey({ email, projectId, tokenUri: google.tokenUrl }));
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, JSON.stringify(json, null, 2), { mode: 0o600 });
        made.push(`${email}: a new key in ${file}`);
      }
      google.registerServiceAccount({
        email,
        clientId: json.client_id,
        keyId: json.private_key_id,
        publicKeyPem,
      });
    } else if (typeof a.key === 'string') {
      const k = generateServiceAccountKey({ email, projectId, tokenUri: google.tokenUrl });
      const secret = a.key.replace(/\/versions\/[^/]+$/, '');
      secretManager.put(secret, JSON.stringify(k.json));
      google.registerServiceAccount({
        email,
        clientId: k.json.client_id,
        keyId: k.json.private_key_id,
        publicKeyPem: k.publicKeyPem,
      });
      made.push(`${email}: a new key in Secret Manager ${secret}`);
    } else continue;
    google.allowDelegation(email, '*');
  }
  const grants = Array.isArray(policy.grants) ? (policy.grants as Array<{ subjects?: unknown }>) : [];
  for (const g of grants)
    for (const s of Array.isArray(g.subjects) ? g.subjects : [])
      if (typeof s === 'string' && !s.includes('*')) google.addUser(s);
  return made;
}
