#!/usr/bin/env node
/**
 * The broker repository's `broker-token`: the client package's CLI (tokens,
 * credential files), plus `policy check` and `policy explain`, which need
 * the broker's own policy code and so ship with the broker, not with the
 * client package.
 */
import { main } from '../packages/client/src/cli/broker-token.js';
import { policyMain } from './policy-cli.js';

const argv = process.argv.slice(2);
const out = (s: string) => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);
if (argv[0] === 'policy') process.exitCode = policyMain(argv.slice(1), out, err);
else
  main(argv, process.env, out, err).then((code) => {
    process.exitCode = code;
  });
