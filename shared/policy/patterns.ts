import { canonicalDomain, canonicalEmail } from '../email.js';
import type { Matcher } from './types.js';

/**
 * Compiles a policy pattern (docs/contract.md, "Grants"): an exact string, `*`
 * alone, or `*@domain` in place of an email's local part. Nothing else is a
 * pattern. With `email: true`, exact patterns must be emails and matching is
 * on canonical (lower-case) emails. Returns the matcher, or a problem.
 */
export function compilePattern(pattern: unknown, options: { email: boolean }): Matcher | string {
  if (typeof pattern !== 'string' || pattern.length === 0) return 'must be a non-empty string';
  if (pattern === '*') return () => true;
  if (pattern.startsWith('*@')) {
    if (!options.email) return 'a `*@domain` pattern is only for emails';
    const domain = canonicalDomain(pattern.slice(2));
    if (domain === undefined) return `${JSON.stringify(pattern)} is not a valid \`*@domain\` pattern`;
    const suffix = `@${domain}`;
    // The value must itself be a plain email: a request value like `*@acme.com` is never a pattern.
    return (value) => value.endsWith(suffix) && canonicalEmail(value) === value;
  }
  if (pattern.includes('*'))
    return `${JSON.stringify(pattern)}: \`*\` is allowed only alone or as \`*@domain\``;
  if (options.email) {
    const email = canonicalEmail(pattern);
    if (email === undefined) return `${JSON.stringify(pattern)} is not a valid email`;
    return (value) => value === email;
  }
  return (value) => value === pattern;
}

/** Compiles a list of patterns into one matcher (any of them), collecting problems with their index. */
export function compilePatterns(
  list: readonly unknown[],
  options: { email: boolean },
  problems: (index: number, problem: string) => void,
): Matcher {
  const matchers: Matcher[] = [];
  list.forEach((p, i) => {
    const m = compilePattern(p, options);
    if (typeof m === 'string') problems(i, m);
    else matchers.push(m);
  });
  return (value) => matchers.some((m) => m(value));
}
