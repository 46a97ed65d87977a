/**
 * Runs the Google stand-in alone: the OAuth 2.0 server, the IAM Credentials
 * API, and optionally a metadata server, keyless and keyed accounts. It ends
 * by printing every `export` a broker needs to run against it.
 *
 *   node dist/infra/google/main.js [--port 8085] [--iam-port 8087]
 *     [--metadata-email broker@p.iam.gserviceaccount.com [--metadata-port 8088] [--metadata-project p]]
 *     [--keyless job@p.iam.gserviceaccount.com ...] [--grant ACCOUNT=MEMBER ...]
 *     [--keyed reporting@p.iam.gserviceaccount.com=keys/reporting.json ...]
 *
 * Each flag has a variable: GOOGLE_STANDIN_PORT, GOOGLE_STANDIN_IAM_PORT,
 * GOOGLE_STANDIN_METADATA_EMAIL, GOOGLE_STANDIN_METADATA_PORT,
 * GOOGLE_STANDIN_METADATA_PROJECT, GOOGLE_STANDIN_KEYLESS (comma list),
 * GOOGLE_STANDIN_GRANTS (comma list of ACCOUNT=MEMBER), GOOGLE_STANDIN_KEYED
 * (comma list of EMAIL=KEY_FILE). Without grants, each keyless account grants
 * the metadata server's account token creator. A keyed account's key file is
 * made (0600) when it does not exist; an existing one is registered as it is.
 */
import { createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { generateServiceAccountKey, type ServiceAccountKeyJson } from './keys.js';
import { parseStandInOptions } from './options.js';
import { startGoogleStandIn } from './server.js';

let options: ReturnType<typeof parseStandInOptions>;
try {
  options = parseStandInOptions(process.argv.slice(2), process.env);
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(2);
}
const google = await startGoogleStandIn({ port: options.port, iamPort: options.iamPort });
const exports: Record<string, string> = {
  BROKER_TOKEN_URL: google.tokenUrl,
  BROKER_JWKS_URL: google.jwksUrl,
  BROKER_ISSUERS: google.issuer,
  BROKER_IAM_CREDENTIALS_URL: google.iamUrl,
};
console.log(`Google OAuth 2.0 stand-in on ${google.url}`);
console.log(`  token     ${google.tokenUrl}`);
console.log(`  JWKS      ${google.jwksUrl}`);
console.log(`  tokeninfo ${google.tokeninfoUrl}`);
console.log(`IAM Credentials API stand-in on ${google.iamUrl}`);
console.log(`STS stand-in on ${google.sts.url} (POST /v1/token, for https://sts.googleapis.com)`);
console.log(`Cloud Storage JSON API stand-in on ${google.storage.url} (apiEndpoint)`);
for (const email of options.keyless) {
  const a = google.registerKeylessAccount(email);
  console.log(`  keyless account ${a.email} (client ID ${a.clientId}, Google-managed key ${a.keyId})`);
}
for (const [account, member] of options.grants) {
  google.grantTokenCreator(account, member);
  console.log(`  ${member} is roles/iam.serviceAccountTokenCreator on ${account}`);
}
for (const { email, file } of options.keyed) {
  const path = resolve(file);
  let json: ServiceAccountKeyJson;
  if (existsSync(path)) {
    json = JSON.parse(readFileSync(path, 'utf8')) as ServiceAccountKeyJson;
    if (json.client_email !== email) {
      console.error(`keyed account ${email}: ${path} is the key of ${json.client_email}`);
      process.exit(2);
    }
  } else {
    json = generateServiceAccountKey({
      email,
      projectId: /@([^.]+)\./.exec(email)?.[1] ?? 'local-project',
      tokenUri: google.tokenUrl,
    }).json;
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `${JSON.stringify(json, null, 2)}\n`, { mode: 0o600 });
  }
  google.registerServiceAccount({
    email,
    clientId: json.client_id,
    keyId: json.private_key_id,
    publicKeyPem: createPublicKey(json.private_key).export({ type: 'spki', format: 'pem' }).toString(),
  });
  console.log(`  keyed account ${email}: key ${json.private_key_id} in ${path}`);
  console.log(`    in the broker's policy: {"email": "${email}", "key": "file:${path}"}`);
}
if (options.metadata) {
  const m = options.metadata;
  const metadata = await google.startMetadataServer({
    email: m.email,
    port: m.port,
    ...(m.projectId ? { projectId: m.projectId } : {}),
  });
  console.log(`Metadata server stand-in on ${metadata.url}, running as ${metadata.email}`);
  exports['GCE_METADATA_HOST'] = metadata.host;
}
console.log(`A caller's ID token (a raw JWT) for the broker's audience:`);
console.log(
  `  curl -sS -X POST ${google.url}/local/idtoken -H 'Content-Type: application/json' -d '{"email":"billing@acme.iam.gserviceaccount.com","audience":"'"$BROKER_AUDIENCE"'"}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).id_token'`,
);
console.log('The variables a broker needs for this stand-in (with BROKER_AUDIENCE and a policy of yours):');
for (const [name, value] of Object.entries(exports)) console.log(`export ${name}=${value}`);
const stop = () => void google.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
