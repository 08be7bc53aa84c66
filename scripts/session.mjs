#!/usr/bin/env node
// A command-line client for fnix sessions: attaches this terminal (or these pipes) to a function's stdio
// over WebSocket, with the channel protocol, and exits with the function's exit code.
//
//   node scripts/session.mjs shell                          # a terminal when stdin is one (tty mode)
//   echo hello | node scripts/session.mjs echo              # pipes
//   FNIX_URL=http://host:8080 node scripts/session.mjs shell
import WebSocket from 'ws';

const [name, query = ''] = (process.argv[2] ?? '').split('?');
if (!name) {
  console.error('usage: node scripts/session.mjs <function>[?query]');
  process.exit(2);
}
const base = (process.env.FNIX_URL ?? 'http://127.0.0.1:8080').replace(/^http/, 'ws');
const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
const params = new URLSearchParams(query);
if (tty) {
  params.set('tty', '1');
  params.set('cols', String(process.stdout.columns));
  params.set('rows', String(process.stdout.rows));
}
const ws = new WebSocket(`${base}/sessions/${name}?${params}`);
const send = (channel, payload = '') => ws.send(Buffer.concat([Buffer.of(channel), Buffer.from(payload)]));
let exitCode = 1;
// Output piped into a reader that went away (`| head`): the session ends, without a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', () => {
    ws.terminate();
    process.exit(exitCode);
  });
}

ws.on('open', () => {
  if (tty) {
    process.stdin.setRawMode(true); // keystrokes, Ctrl-C included, go to the function's terminal
    process.stdout.on('resize', () => send(4, JSON.stringify({ cols: process.stdout.columns, rows: process.stdout.rows })));
  }
  process.stdin.on('data', (chunk) => {
    send(0, chunk);
    // Piped input goes no faster than the socket takes it.
    if (ws.bufferedAmount > 1 << 20) {
      process.stdin.pause();
      const wait = setInterval(() => {
        if (ws.bufferedAmount > 1 << 19) return;
        clearInterval(wait);
        process.stdin.resume();
      }, 10);
    }
  });
  process.stdin.on('end', () => send(0)); // an empty stdin frame: end of input
});
ws.on('message', (frame) => {
  const channel = frame[0];
  const payload = frame.subarray(1);
  if (channel === 1) process.stdout.write(payload);
  else if (channel === 2) process.stderr.write(payload);
  else if (channel === 3) {
    const status = JSON.parse(payload.toString());
    if ('exitCode' in status) exitCode = status.exitCode;
    else console.error(`\r\n[fnix] ${status.signal ? `killed by ${status.signal}` : `${status.error.code}: ${status.error.message}`}`);
  }
});
ws.on('unexpected-response', (_request, response) => {
  let body = '';
  response.on('data', (chunk) => (body += chunk));
  response.on('end', () => {
    console.error(`[fnix] ${response.statusCode}: ${body}`);
    process.exit(1);
  });
});
ws.on('error', (error) => console.error(`[fnix] ${error.message}`));
ws.on('close', () => {
  if (tty) process.stdin.setRawMode(false);
  process.exit(exitCode);
});
