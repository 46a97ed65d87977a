#!/usr/bin/env node
// The broker-token command. The CLI itself is built into dist/ (npm install builds it in a clone; the
// package ships it built): this file exists before any build, so npm links the command at install time.
// It is the repository's own bin too: in a clone, `policy check|explain` finds the broker's policy code.
import { main } from '../dist/cli.js';

main(
  process.argv.slice(2),
  process.env,
  (s) => process.stdout.write(`${s}\n`),
  (s) => process.stderr.write(`${s}\n`),
).then((code) => {
  process.exitCode = code;
});
