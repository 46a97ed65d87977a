import type { Token } from '../cache/types.js';
import type { ServiceAccountEntry } from '../policy/types.js';
import type { MintRequest } from '../request.js';

/**
 * Mints one fresh token for an authorised request. Keyed and keyless
 * minting are two implementations of this one idea; the broker and its
 * caches never care which one runs. Throws `upstream_rejected` or
 * `upstream_unavailable`.
 */
export interface Minter<A extends ServiceAccountEntry = ServiceAccountEntry> {
  mint(account: A, req: MintRequest): Promise<Token>;
}
