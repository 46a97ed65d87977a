/** Runs the Secret Manager stand-in alone: `node dist/infra/secret-manager/main.js [--port 8086]`. */
import { startSecretManagerStandIn } from './server.js';

const i = process.argv.indexOf('--port');
const sm = await startSecretManagerStandIn({ port: i > 0 ? Number(process.argv[i + 1]) : 8086 });
console.log(`Secret Manager stand-in (plaintext gRPC) on ${sm.host}`);
console.log(`  export SECRET_MANAGER_EMULATOR_HOST=${sm.host}`);
process.once('SIGINT', () => void sm.close().then(() => process.exit(0)));
