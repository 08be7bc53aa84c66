#!/usr/bin/env node
// The session client as it was first called: `node scripts/session.mjs <fn>[?query]` is `fnix session`
// (cli/commands/session.ts), which attaches this terminal (or these pipes) to a function's stdio.
//
//   node scripts/session.mjs shell                          # a terminal when stdin is one (tty mode)
//   echo hello | node scripts/session.mjs echo              # pipes
//   FNIX_URL=http://host:8080 node scripts/session.mjs shell
process.argv.splice(2, 0, 'session');
await import('../bin/fnix.mjs');
