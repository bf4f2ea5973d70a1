#!/usr/bin/env node
// Entry point installed as `logmta`: runs the compiled CLI (npm run build first).
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`logmta: ${err instanceof Error ? err.message : String(err)}\n`);
    // Crash-only: a start that failed half-way may have listeners open; nothing needs saving.
    process.exit(70);
  },
);
