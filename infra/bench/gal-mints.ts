/**
 * One process of the bench's google-auth-library reference: a service that
 * holds the key itself, with one `JWT` client, asked for an access token by
 * `N` concurrent callers. Its token requests go to the local Google stand-in
 * (an interceptor on its transporter rewrites only the URL). Prints how many calls got a
 * token.
 *
 *   node gal-mints.js <key file> <token URL> <scope> <N>
 */
import { readFileSync } from 'node:fs';
import { gaxios, JWT } from 'google-auth-library';

const [keyFile = '', tokenUrl = '', scope = '', n = '1'] = process.argv.slice(2);
const key = JSON.parse(readFileSync(keyFile, 'utf8')) as { client_email: string; private_key: string };
const transporter = new gaxios.Gaxios();
transporter.interceptors.request.add({
  resolved: async (config) => {
    config.url = new URL(tokenUrl);
    return config;
  },
});
const client = new JWT({ email: key.client_email, key: key.private_key, scopes: [scope], transporter });
const results = await Promise.allSettled(Array.from({ length: Number(n) }, () => client.getAccessToken()));
console.log(results.filter((r) => r.status === 'fulfilled' && r.value.token).length);
