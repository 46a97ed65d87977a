/**
 * The commands `npm start` prints once the stack is up, with its real ports:
 * paste them into another shell (docs/calling.md, "Try it locally", holds
 * the same block for the default ports, and a test runs it).
 */

/** What the commands need to know about the running stack. */
export interface TryIt {
  /** The repository's root: the commands run there (`npx broker-token`, `.venv`). */
  root: string;
  brokerUrl: string;
  audience: string;
  /** `127.0.0.1:PORT` of the caller's metadata server stand-in. */
  callerMetadataHost: string;
  caller: string;
  account: string;
  /** Scopes the caller's grant allows, for the curl. */
  scopes: string[];
  /** Whether the grant allows cloud-platform, which Google's libraries ask when the code names no scope. */
  cloudPlatform: boolean;
}

/** The shell commands, one block, with comments. */
export function tryItCommands(t: TryIt): string {
  const body = JSON.stringify({ serviceAccount: t.account, scopes: t.scopes });
  return [
    `cd ${t.root.replace(/\/$/, '')}`,
    `export BROKER_URL=${t.brokerUrl} BROKER_AUDIENCE=${t.audience}`,
    '',
    `# A caller ID token (a raw JWT) for ${t.caller}, from its metadata server stand-in, as on Google Cloud:`,
    `ID_TOKEN=$(curl -sS -H 'Metadata-Flavor: Google' "http://${t.callerMetadataHost}/computeMetadata/v1/instance/service-accounts/default/identity?audience=$BROKER_AUDIENCE&format=full")`,
    '',
    `# curl: an access token for ${t.account}`,
    `curl -sS -X POST "$BROKER_URL/token" -H "Authorization: Bearer $ID_TOKEN" -H 'Content-Type: application/json' \\`,
    `  -d '${body}'`,
    '',
    '# The CLI, as gcloud auth print-access-token:',
    `BROKER_ID_TOKEN=$ID_TOKEN npx broker-token print-access-token ${t.account} --scopes ${t.scopes.join(',')}`,
    '',
    "# Google's own libraries, from a credential file whose ID token comes from that metadata server:",
    `GCE_METADATA_HOST=${t.callerMetadataHost} npx broker-token credential-config --url "$BROKER_URL" \\`,
    `  --broker-audience "$BROKER_AUDIENCE" --impersonate-service-account ${t.account} \\`,
    '  --credential-source-metadata --output-file .tmp/credentials.json',
    'export GOOGLE_APPLICATION_CREDENTIALS=$PWD/.tmp/credentials.json',
    t.cloudPlatform
      ? '# Python google-auth, no scopes (it then asks cloud-platform); `npm run setup:python` makes .venv:'
      : '# Python google-auth, no scopes: it asks cloud-platform, which this policy does not grant this caller (invalid_target):',
    `.venv/bin/python -c 'import google.auth, google.auth.transport.requests as r; c, _ = google.auth.default(); c.refresh(r.Request()); print(c.token)'`,
    `node -e "new (require('google-auth-library').GoogleAuth)({scopes: '${t.scopes[0]}'}).getAccessToken().then(console.log)"`,
  ].join('\n');
}
