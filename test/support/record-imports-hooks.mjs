import { appendFileSync } from 'node:fs';

const file = process.env.RECORD_IMPORTS_FILE;

/** Records each resolved module URL, then resolves as usual. */
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  if (file) appendFileSync(file, `${resolved.url}\n`);
  return resolved;
}
