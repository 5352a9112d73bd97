#!/usr/bin/env node
// Entry point of the `execlayer` command: the compiled CLI (built by `npm install` / `npm run build`).
import '../dist/cli/main.js';
