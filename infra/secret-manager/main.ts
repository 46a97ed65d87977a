/**
 * Runs the Secret Manager stand-in alone:
 * `node dist/infra/secret-manager/main.js [--port 8086] [--secret NAME=FILE ...]`.
 * `--secret projects/P/secrets/S=key.json` stores the file's bytes as that
 * secret's first version (a key a broker's policy then names as
 * `projects/P/secrets/S/versions/latest`). It prints the `export` a broker needs.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startSecretManagerStandIn } from './server.js';

let values: { port?: string; secret?: string[] };
try {
  ({ values } = parseArgs({
    options: { port: { type: 'string' }, secret: { type: 'string', multiple: true } },
    strict: true,
  }));
} catch (err) {
  console.error(
    `${(err as Error).message}\nusage: secret-manager/main.js [--port 8086] [--secret NAME=FILE ...]`,
  );
  process.exit(2);
}
const port = Number(values.port ?? 8086);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port: not a port: ${values.port}`);
  process.exit(2);
}
const sm = await startSecretManagerStandIn({ port });
console.log(`Secret Manager stand-in (plaintext gRPC) on ${sm.host}`);
for (const s of values.secret ?? []) {
  const at = s.indexOf('=');
  if (at <= 0) {
    console.error(`--secret: expected NAME=FILE, got ${s}`);
    process.exit(2);
  }
  const name = s.slice(0, at);
  const version = sm.put(name, readFileSync(s.slice(at + 1)));
  console.log(`  ${version}`);
}
console.log('The variable a broker needs for this stand-in:');
console.log(`export SECRET_MANAGER_EMULATOR_HOST=${sm.host}`);
const stop = () => void sm.close().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
