import { createHash } from 'node:crypto';
import { ConfigError } from '../errors.js';
import { compilePolicy } from '../policy/load.js';
import type { CompiledPolicy } from '../policy/types.js';

/** The policy in force, read again from its file now and then. */
export interface PolicySource {
  /** The policy to decide this request with. Synchronous; may start a re-read in the background. */
  current(): CompiledPolicy;
}

export interface PolicyFileOptions {
  /** The policy loaded at start, and the text it was compiled from. */
  initial: CompiledPolicy;
  initialText: string;
  /** The file's absolute path (`BROKER_POLICY_FILE`). */
  path: string;
  /** `BROKER_POLICY_REFRESH_SECONDS`, in milliseconds: how often the file is read again; 0 for never. */
  refreshMs: number;
  /** As at start: policy issuers may be `http:` on loopback (`BROKER_ALLOW_LOOPBACK_ISSUERS`). */
  allowLoopbackIssuers: boolean;
  readFile: (path: string) => Promise<string>;
  now?: () => number;
  /** A new policy took effect (its warnings, if any). */
  onChange?: (policy: CompiledPolicy) => void;
  /** A new version could not be used: the policy in force keeps deciding. */
  onError?: (problem: string, problems: readonly string[]) => void;
}

/**
 * The policy from `BROKER_POLICY_FILE`, read again at most every
 * `refreshMs` (docs/contract.md, "Policy"): on Cloud Functions the file is a
 * Secret Manager volume, where every read fetches the newest version, so a
 * new version takes effect within that time on every instance, with no
 * deploy. A read is started by a request once the interval has passed and
 * runs beside it; the request is decided by the policy in force. A version
 * that does not parse or validate changes nothing (and is reported once);
 * the same text is not compiled twice.
 */
export function createPolicyFile(options: PolicyFileOptions): PolicySource {
  const now = options.now ?? Date.now;
  let policy = options.initial;
  let checkedAt = now();
  const digestOf = (text: string) => createHash('sha256').update(text).digest('base64url');
  let lastDigest = digestOf(options.initialText);
  let reading = false;

  async function reread(): Promise<void> {
    reading = true;
    try {
      const text = await options.readFile(options.path);
      const digest = digestOf(text);
      if (digest === lastDigest) return;
      lastDigest = digest;
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch (err) {
        options.onError?.(`${options.path} is not valid JSON (${(err as Error).message})`, []);
        return;
      }
      try {
        policy = compilePolicy(raw, { allowLoopbackIssuers: options.allowLoopbackIssuers });
        options.onChange?.(policy);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        options.onError?.(`${options.path} is not a valid policy`, err.problems);
      }
    } catch (err) {
      options.onError?.(
        `${options.path} could not be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        [],
      );
    } finally {
      checkedAt = now();
      reading = false;
    }
  }

  return {
    current() {
      if (options.refreshMs > 0 && !reading && now() - checkedAt >= options.refreshMs) void reread();
      return policy;
    },
  };
}
