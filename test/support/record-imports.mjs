// Loaded with `node --import` into a broker process under test: records every module the process
// resolves, one URL a line, in $RECORD_IMPORTS_FILE (the hooks run on their own thread).
import { register } from 'node:module';

register('./record-imports-hooks.mjs', import.meta.url);
