/**
 * @module
 * The browser terminal: xterm.js joined to a fnix session (`GET /sessions/<name>` upgraded to a
 * WebSocket, in tty mode) at this page's own path. Frames are binary, the first byte the channel:
 * 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize, 5 signal (gateway/sessions/protocol.ts).
 *
 * A private function's page asks for an invoke key, keeps it in this tab's sessionStorage and offers
 * it as the subprotocol `fnix.key.<key>`: not in the URL, where history, proxies' logs and Referer
 * would keep it. A refused handshake forgets the key and asks again.
 */
import { FitAddon } from './addon-fit.mjs';
import { Terminal } from './xterm.mjs';

const CHANNEL = { STDIN: 0, STDOUT: 1, STDERR: 2, STATUS: 3, RESIZE: 4 };
/** The most stdin bytes in one frame: a large paste goes in pieces, well under the gateway's frame limit. */
const MAX_STDIN_FRAME = 64 * 1024;
/** Query parameters the page sets itself; any others pass through to the function's QUERY_STRING. */
const OWN_PARAMETERS = new Set(['tty', 'cols', 'rows']);

/** The subprotocol the gateway answers with; a private function's key is offered beside it. */
const SESSION_PROTOCOL = 'fnix.session';
const KEY_PROTOCOL_PREFIX = 'fnix.key.';
/** An invoke key's shape (gateway/auth/keys/key-text.ts). */
const KEY_PATTERN = /^fnixk_[0-9A-Za-z]{12}_[A-Za-z0-9_-]{43}$/;

const encoder = new TextEncoder();
const stateElement = document.getElementById('state');
const keyForm = document.getElementById('key-form');
const keyInput = document.getElementById('key-input');
const keyNote = document.getElementById('key-note');
/** A private function's page asks for its invoke key, kept per tab (sessionStorage) and per page path. */
const isPrivate = document.body.dataset.access === 'key';
const KEY_STORAGE = `fnix.key:${location.pathname}`;

const term = new Terminal({
  cursorBlink: true,
  scrollback: 5000,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
  fontSize: 14,
  theme: { background: '#1e1e1e', foreground: '#d4d4d4' },
});
const fitAddon = new FitAddon();
term.loadAddon(fitAddon);
term.open(document.getElementById('terminal'));
fitAddon.fit();
term.focus();

/** The status frame (channel 3), once it has come. */
let status;
/** Whether the handshake succeeded, which tells a refused session from a lost one. */
let wasOpen = false;
/** The session's WebSocket, once there is one. */
let ws;
const requestedSize = { cols: term.cols, rows: term.rows };

if (isPrivate) {
  const kept = sessionStorage.getItem(KEY_STORAGE);
  if (kept) connect(kept);
  else askForKey('');
} else {
  connect(undefined);
}

/**
 * Opens the session. A private function's key goes in the handshake as a second subprotocol,
 * `fnix.key.<key>`, beside `fnix.session`, which the gateway picks (it never echoes the key's).
 */
function connect(key) {
  showState('connecting…', 'ok');
  requestedSize.cols = term.cols;
  requestedSize.rows = term.rows;
  const url = sessionUrl(requestedSize.cols, requestedSize.rows);
  ws = key === undefined ? new WebSocket(url) : new WebSocket(url, [SESSION_PROTOCOL, `${KEY_PROTOCOL_PREFIX}${key}`]);
  ws.binaryType = 'arraybuffer';

  ws.addEventListener('open', () => {
    wasOpen = true;
    // A resize during the handshake could not be sent; the pty still has the size from the URL.
    if (term.cols !== requestedSize.cols || term.rows !== requestedSize.rows) sendSize(term);
    showState(`connected · ${term.cols}×${term.rows}`, 'ok');
    term.focus();
  });
  ws.addEventListener('message', (event) => {
    const frame = new Uint8Array(event.data);
    const payload = frame.subarray(1);
    if (frame[0] === CHANNEL.STDOUT || frame[0] === CHANNEL.STDERR) {
      // Bytes, not text: xterm.js decodes UTF-8 itself, carrying a character split across frames over.
      term.write(payload);
    } else if (frame[0] === CHANNEL.STATUS) {
      status = JSON.parse(new TextDecoder().decode(payload));
      term.write(`\r\n\x1b[1m[${describeStatus(status)}]\x1b[0m\r\n`);
      endInput();
    }
  });
  ws.addEventListener('close', (event) => {
    if (status) {
      endInput();
      showState(`${describeStatus(status)} · connection closed · reload to start again`, 'ended');
    } else if (event.code === 1006 && !wasOpen && key !== undefined) {
      // The browser hides the refusal's HTTP status: the key may be wrong or revoked. It is forgotten,
      // and asked for again.
      sessionStorage.removeItem(KEY_STORAGE);
      askForKey('refused: the key may be wrong, revoked or for another function (or fnix has no capacity); enter it again');
    } else if (event.code === 1006 && !wasOpen) {
      endInput();
      // The browser hides the refusal's HTTP status and JSON body; these are its likely reasons.
      const reason = 'could not connect: the function is unknown, fnix has no capacity or is shutting down, or the gateway is unreachable';
      term.write(`\r\n\x1b[31m[${reason}]\x1b[0m\r\n`);
      showState(`${reason} · reload to try again`, 'failed');
    } else {
      endInput();
      const reason = `connection lost (code ${event.code}${event.reason ? `: ${event.reason}` : ''})`;
      term.write(`\r\n\x1b[31m[${reason}]\x1b[0m\r\n`);
      showState(`${reason} · reload to start again`, 'failed');
    }
  });
}

/** Shows the key form (with `note` saying why, if it is asked again); its submit connects. */
function askForKey(note) {
  showState('an invoke key is needed', 'failed');
  keyNote.textContent = note;
  keyForm.hidden = false;
  keyInput.value = '';
  keyInput.focus();
}

keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!KEY_PATTERN.test(key)) {
    keyNote.textContent = 'that is not an invoke key: it looks like fnixk_<id>_<secret> (POST /api/keys makes one)';
    return;
  }
  keyInput.value = '';
  keyNote.textContent = '';
  keyForm.hidden = true;
  sessionStorage.setItem(KEY_STORAGE, key);
  fitAddon.fit();
  connect(key);
});

term.onData((data) => sendInput(encoder.encode(data)));
// Some mouse reports are bytes that are not UTF-8; xterm.js hands them over one char per byte.
term.onBinary((data) => sendInput(Uint8Array.from(data, (char) => char.charCodeAt(0) & 0xff)));
term.onResize(({ cols, rows }) => {
  sendSize({ cols, rows });
  if (ws?.readyState === WebSocket.OPEN && !status) showState(`connected · ${cols}×${rows}`, 'ok');
});

// Refit whenever the terminal's box changes size (the window, the zoom), at most once a frame.
let fitPending = false;
new ResizeObserver(() => {
  if (fitPending) return;
  fitPending = true;
  requestAnimationFrame(() => {
    fitPending = false;
    fitAddon.fit();
  });
}).observe(document.getElementById('terminal'));

/** The session's WebSocket URL: this page's own origin and path, in tty mode at `cols`×`rows`. */
function sessionUrl(cols, rows) {
  // The page's parameters are kept as they were written (not re-encoded by URLSearchParams), so that
  // the function's QUERY_STRING is what the user typed, plus the terminal's own three.
  const kept = location.search
    .slice(1)
    .split('&')
    .filter((pair) => pair !== '' && !OWN_PARAMETERS.has(decodeName(pair.split('=')[0])));
  const query = [...kept, 'tty=1', `cols=${cols}`, `rows=${rows}`].join('&');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${location.pathname}?${query}`;
}

/** A query parameter's name, decoded as a server would (a malformed one is kept as written). */
function decodeName(name) {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return name;
  }
}

/** Sends one frame, if the session is still open. */
function send(channel, payload) {
  if (ws?.readyState !== WebSocket.OPEN || status) return;
  const frame = new Uint8Array(payload.length + 1);
  frame[0] = channel;
  frame.set(payload, 1);
  ws.send(frame);
}

/** Sends keystrokes and pastes (channel 0); never an empty frame, which would end the input. */
function sendInput(bytes) {
  for (let start = 0; start < bytes.length; start += MAX_STDIN_FRAME) {
    send(CHANNEL.STDIN, bytes.subarray(start, start + MAX_STDIN_FRAME));
  }
}

/** Tells the pty its new size (channel 4). */
function sendSize({ cols, rows }) {
  send(CHANNEL.RESIZE, encoder.encode(JSON.stringify({ cols, rows })));
}

/** The status frame in words: `exited with code 0`, `killed by SIGKILL`, `error SESSION_IDLE: …`. */
function describeStatus(value) {
  if (typeof value.exitCode === 'number') return `exited with code ${value.exitCode}`;
  if (typeof value.signal === 'string') return `killed by ${value.signal}`;
  if (value.error) return `error ${value.error.code}: ${value.error.message}`;
  return `ended: ${JSON.stringify(value)}`;
}

/** Typing does nothing more once the session is over, and the cursor goes (DECTCEM) to say so. */
function endInput() {
  if (term.options.disableStdin) return;
  term.options.disableStdin = true;
  term.write('\x1b[?25l');
}

/** The status line's text; `kind` (ok, ended, failed) picks its colour. */
function showState(text, kind) {
  stateElement.textContent = text;
  stateElement.dataset.kind = kind;
}
