/**
 * Runs the Google stand-in alone: the OAuth 2.0 server, the IAM Credentials
 * API, and optionally a metadata server and keyless accounts.
 *
 *   node dist/infra/google/main.js [--port 8085] [--iam-port 8087]
 *     [--metadata-email broker@p.iam.gserviceaccount.com [--metadata-port 8088] [--metadata-project p]]
 *     [--keyless job@p.iam.gserviceaccount.com ...] [--grant ACCOUNT=MEMBER ...]
 *
 * Each flag has a variable: GOOGLE_STANDIN_PORT, GOOGLE_STANDIN_IAM_PORT,
 * GOOGLE_STANDIN_METADATA_EMAIL, GOOGLE_STANDIN_METADATA_PORT,
 * GOOGLE_STANDIN_METADATA_PROJECT, GOOGLE_STANDIN_KEYLESS (comma list),
 * GOOGLE_STANDIN_GRANTS (comma list of ACCOUNT=MEMBER). Without grants, each
 * keyless account grants the metadata server's account token creator.
 */
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
console.log(`Google OAuth 2.0 stand-in on ${google.url}`);
console.log(`  token     ${google.tokenUrl}`);
console.log(`  JWKS      ${google.jwksUrl}`);
console.log(`  tokeninfo ${google.tokeninfoUrl}`);
console.log(`  caller ID tokens: POST ${google.url}/local/idtoken {"email","audience"}`);
console.log(`IAM Credentials API stand-in on ${google.iamUrl}`);
console.log(`  export BROKER_IAM_CREDENTIALS_URL=${google.iamUrl}`);
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
if (options.metadata) {
  const m = options.metadata;
  const metadata = await google.startMetadataServer({
    email: m.email,
    port: m.port,
    ...(m.projectId ? { projectId: m.projectId } : {}),
  });
  console.log(`Metadata server stand-in on ${metadata.url}, running as ${metadata.email}`);
  console.log(`  export GCE_METADATA_HOST=${metadata.host}`);
}
const stop = () => void google.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
