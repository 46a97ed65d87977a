/** Runs the Google OAuth 2.0 stand-in alone: `node dist/infra/google/main.js [--port 8085]`. */
import { startGoogleStandIn } from './server.js';

const i = process.argv.indexOf('--port');
const port = i > 0 ? Number(process.argv[i + 1]) : 8085;
const google = await startGoogleStandIn({ port });
console.log(`Google OAuth 2.0 stand-in on ${google.url}`);
console.log(`  token     ${google.tokenUrl}`);
console.log(`  JWKS      ${google.jwksUrl}`);
console.log(`  tokeninfo ${google.tokeninfoUrl}`);
console.log(`  caller ID tokens: POST ${google.url}/local/idtoken {"email","audience"}`);
process.once('SIGINT', () => void google.close().then(() => process.exit(0)));
