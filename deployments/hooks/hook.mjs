// fnix's pre-receive and post-receive hook (installed by runtime/deploy/git.ts through a small shell
// script). It hands the push to the gateway over the deploy socket and prints what the gateway says,
// which git shows the pusher as `remote:` lines. Usage: node hook.mjs <pre-receive|post-receive> <socket>
import { createConnection } from 'node:net';

const [hook, socketPath] = process.argv.slice(2);
let input = '';
for await (const chunk of process.stdin) input += chunk;
const updates = input
  .split('\n')
  .filter(Boolean)
  .map((line) => {
    const [old, next, ref] = line.split(' ');
    return { old, new: next, ref };
  });
const env = {};
for (const name of ['GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_QUARANTINE_PATH']) {
  if (process.env[name]) env[name] = process.env[name];
}

let exitCode = 1;
const socket = createConnection(socketPath);
socket.on('connect', () => socket.write(`${JSON.stringify({ hook, pushId: process.env.FNIX_PUSH_ID ?? '', updates, env })}\n`));
let buffer = '';
socket.on('data', (chunk) => {
  buffer += chunk;
  for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
    const message = JSON.parse(buffer.slice(0, newline));
    buffer = buffer.slice(newline + 1);
    if (typeof message.line === 'string') process.stderr.write(`${message.line}\n`);
    if (typeof message.exit === 'number') exitCode = message.exit;
  }
});
socket.on('error', (error) => process.stderr.write(`fnix: cannot reach the gateway's deploy socket (${error.message})\n`));
socket.on('close', () => process.exit(exitCode));
