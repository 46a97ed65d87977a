import { appendFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * For the test run's leak scan: when `BROKER_TEST_CAPTURE_DIR` is set, every
 * line a broker process writes, and every secret the stand-ins hand out
 * (tokens, private keys), is appended to files there. After the run, the
 * global teardown checks that no secret appears in any log line.
 */
const dir = process.env['BROKER_TEST_CAPTURE_DIR'];

/** Records lines a broker wrote. */
export function captureLogLines(lines: readonly string[]): void {
  if (dir && lines.length > 0) appendFileSync(join(dir, `lines-${process.pid}.log`), `${lines.join('\n')}\n`);
}

/** Records a secret that must never appear in a log line. */
export function captureSecret(secret: string): void {
  if (dir) appendFileSync(join(dir, `secrets-${process.pid}.txt`), `${secret.replace(/\n/g, '\\n')}\n`);
}
