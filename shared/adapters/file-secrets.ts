import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BrokerError } from '../errors.js';
import type { SecretSource } from './secret-source.js';

/** Reads `file:PATH` keys, relative to `baseDir` (the policy file's directory), for local runs. */
export function createFileSecretSource(options: { baseDir?: string } = {}): SecretSource {
  const baseDir = options.baseDir ?? process.cwd();
  return {
    async read(ref) {
      if (!ref.startsWith('file:')) throw new BrokerError('internal_error', 'Not a file: key reference.');
      try {
        return new Uint8Array(await readFile(resolve(baseDir, ref.slice(5))));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EACCES' || code === 'EPERM') {
          throw new BrokerError(
            'upstream_rejected',
            'The key file for this account cannot be read (permission denied).',
            {
              upstreamError: 'PERMISSION_DENIED',
            },
          );
        }
        throw new BrokerError(
          'upstream_rejected',
          "The key file for this account does not exist; check the policy's key reference.",
          {
            upstreamError: 'NOT_FOUND',
          },
        );
      }
    },
  };
}
