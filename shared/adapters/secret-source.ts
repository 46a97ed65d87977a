import { BrokerError } from '../errors.js';

/** Where service-account keys are read from. */
export interface SecretSource {
  /** Returns the secret's bytes in a fresh buffer (the caller zeroes it after use). Throws BrokerErrors. */
  read(ref: string, options?: { signal?: AbortSignal }): Promise<Uint8Array>;
}

const SECRET_VERSION = /^projects\/[^/]+\/secrets\/[^/]+\/versions\/[^/]+$/;

/**
 * Sends `file:` refs to the file source and `projects/…/versions/…` refs to
 * Secret Manager, whose client is created on first use only, so a broker
 * that only serves from cache (or only uses files) never loads it.
 */
export function createSecretRouter(sources: {
  secretManager: () => SecretSource;
  file: SecretSource;
}): SecretSource {
  let secretManager: SecretSource | undefined;
  return {
    read(ref, options) {
      if (ref.startsWith('file:')) return sources.file.read(ref, options);
      if (SECRET_VERSION.test(ref)) {
        secretManager ??= sources.secretManager();
        return secretManager.read(ref, options);
      }
      return Promise.reject(
        new BrokerError('internal_error', 'The policy names a key the broker cannot read.'),
      );
    },
  };
}
