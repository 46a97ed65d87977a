import { parseArgs } from 'node:util';

/** How the standalone Google stand-in (`infra/google/main.ts`) is set up. */
export interface StandInProcessOptions {
  port: number;
  /** Port of the IAM Credentials API; 0 picks a free one. */
  iamPort: number;
  /** A metadata server, when `--metadata-email` (or its variable) names the instance's account. */
  metadata?: { email: string; port: number; projectId?: string };
  /** Keyless service accounts to register. */
  keyless: string[];
  /** `roles/iam.serviceAccountTokenCreator` grants: [account, member]. */
  grants: Array<[string, string]>;
  /** Keyed service accounts: a key file each (made when missing), whose public key `/token` accepts. */
  keyed: Array<{ email: string; file: string }>;
}

const EMAIL = /^[^\s@,=]+@[^\s@,=]+$/;

/**
 * Reads the standalone stand-in's options from argv, falling back to
 * `GOOGLE_STANDIN_*` variables; throws one error that lists every problem.
 * With keyless accounts and a metadata server but no `--grant`, each keyless
 * account grants the metadata server's account (the usual local demo).
 * `--keyed EMAIL=KEY_FILE` registers a keyed account from its key file, made
 * first when it does not exist.
 */
export function parseStandInOptions(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): StandInProcessOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: 'string' },
      'iam-port': { type: 'string' },
      'metadata-port': { type: 'string' },
      'metadata-email': { type: 'string' },
      'metadata-project': { type: 'string' },
      keyless: { type: 'string', multiple: true },
      keyed: { type: 'string', multiple: true },
      grant: { type: 'string', multiple: true },
    },
    strict: true,
  });
  const problems: string[] = [];
  const list = (v: string[] | undefined, name: string) =>
    v ??
    (env[name] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const port = (v: string | undefined, name: string, fallback: number) => {
    const raw = v ?? env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 65535) problems.push(`${name}: not a port: ${raw}`);
    return n;
  };
  const options: StandInProcessOptions = {
    port: port(values.port, 'GOOGLE_STANDIN_PORT', 8085),
    iamPort: port(values['iam-port'], 'GOOGLE_STANDIN_IAM_PORT', 8087),
    keyless: list(values.keyless, 'GOOGLE_STANDIN_KEYLESS'),
    grants: [],
    keyed: [],
  };
  for (const k of list(values.keyed, 'GOOGLE_STANDIN_KEYED')) {
    const at = k.indexOf('=');
    const email = k.slice(0, at);
    const file = k.slice(at + 1);
    if (at <= 0 || !EMAIL.test(email) || file === '')
      problems.push(`keyed account: expected EMAIL=KEY_FILE, got ${k}`);
    else options.keyed.push({ email, file });
  }
  for (const email of options.keyless)
    if (!EMAIL.test(email)) problems.push(`keyless account: not an email: ${email}`);
  const metadataEmail = values['metadata-email'] ?? env['GOOGLE_STANDIN_METADATA_EMAIL'];
  if (metadataEmail !== undefined && metadataEmail !== '') {
    if (!EMAIL.test(metadataEmail)) problems.push(`metadata email: not an email: ${metadataEmail}`);
    const projectId = values['metadata-project'] ?? env['GOOGLE_STANDIN_METADATA_PROJECT'];
    options.metadata = {
      email: metadataEmail,
      port: port(values['metadata-port'], 'GOOGLE_STANDIN_METADATA_PORT', 8088),
      ...(projectId ? { projectId } : {}),
    };
  }
  for (const g of list(values.grant, 'GOOGLE_STANDIN_GRANTS')) {
    const [account, member, ...rest] = g.split('=');
    if (!account || !member || rest.length > 0 || !EMAIL.test(account)) {
      problems.push(`grant: expected ACCOUNT=MEMBER, got ${g}`);
    } else {
      options.grants.push([account, member]);
    }
  }
  if (options.grants.length === 0 && options.metadata)
    for (const account of options.keyless) options.grants.push([account, options.metadata.email]);
  if (problems.length > 0) throw new Error(`Google stand-in options:\n  ${problems.join('\n  ')}`);
  return options;
}
