/**
 * @module
 * The host's end of one agent's socket: decodes frames, routes them to the invocation under way, and
 * tells the container when the agent is ready for the next one or gone.
 */
import type { Socket } from 'node:net';
import { FrameDecoder, FRAME } from './protocol.ts';

/** What the agent announced when it connected. */
export interface AgentHello {
  version: string;
  stdinWindow: number;
}

/** Receives the frames of one invocation (runtime/invocation/invocation.ts implements it). */
export interface FrameSink {
  handleFrame(type: number, payload: Buffer): void;
  handleLost(): void;
}

/** Told when the agent could not open a relay (runtime/container/relay.ts implements it). */
export interface RelaySink {
  handleOpenFailed(id: number, errno: number): void;
}

/** One agent connection; at most one invocation uses it at a time. */
export class AgentConnection {
  readonly hello: Promise<AgentHello>;
  /** Resolves when the socket has closed, for whatever reason. */
  readonly closed: Promise<void>;
  stdinWindow = 0;

  readonly #socket: Socket;
  readonly #decoder = new FrameDecoder();
  #sink: FrameSink | undefined;
  /** Where OPEN_FAILED frames go, while relays are used. */
  relays: RelaySink | undefined;
  #readyWaiter: ((clean: boolean) => void) | undefined;
  #isClosed = false;
  #closeReason = '';

  constructor(socket: Socket) {
    this.#socket = socket;
    let resolveHello!: (hello: AgentHello) => void;
    let rejectHello!: (error: Error) => void;
    this.hello = new Promise((resolve, reject) => {
      resolveHello = resolve;
      rejectHello = reject;
    });
    this.hello.catch(() => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of this.#decoder.push(chunk)) {
          if (frame.type === FRAME.HELLO) {
            const [name, version, window] = frame.payload.toString('utf8').split(' ');
            this.stdinWindow = Number(window);
            if (name !== 'fnix-agent' || !(this.stdinWindow > 0)) throw new Error(`unexpected agent hello: ${frame.payload}`);
            resolveHello({ version: `${name} ${version}`, stdinWindow: this.stdinWindow });
          } else if (frame.type === FRAME.OPEN_FAILED) {
            this.relays?.handleOpenFailed(frame.payload.readUInt32BE(0), frame.payload.readUInt32BE(4));
          } else if (frame.type === FRAME.READY) {
            const waiter = this.#readyWaiter;
            this.#readyWaiter = undefined;
            waiter?.(frame.payload[0] === 1);
          } else {
            this.#sink?.handleFrame(frame.type, frame.payload);
            if (frame.type === FRAME.EXIT) this.#sink = undefined;
          }
        }
      } catch (error) {
        this.destroy(`protocol error: ${(error as Error).message}`);
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      this.#isClosed = true;
      rejectHello(new Error(`agent connection closed before hello${this.#closeReason ? `: ${this.#closeReason}` : ''}`));
      const sink = this.#sink;
      this.#sink = undefined;
      sink?.handleLost();
      const waiter = this.#readyWaiter;
      this.#readyWaiter = undefined;
      waiter?.(false);
    });
  }

  /** True once the socket is closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Why the connection was destroyed by the host, if it was. */
  get closeReason(): string {
    return this.#closeReason;
  }

  /** Routes the next frames (until EXIT) to `sink`, and resolves with the agent's READY afterwards. */
  attach(sink: FrameSink): Promise<boolean> {
    if (this.#sink) throw new Error('the agent is already running an invocation');
    this.#sink = sink;
    if (this.#isClosed) {
      queueMicrotask(() => sink.handleLost());
      return Promise.resolve(false);
    }
    return new Promise((resolve) => (this.#readyWaiter = resolve));
  }

  /**
   * Queues a frame. Frames sent in one turn of the event loop go in one write (SPAWN and the end of an
   * empty stdin, say): the socket is corked until the turn's callbacks and promise reactions have run.
   * With `wipe` (a SPAWN frame, which may carry secrets), the frame is zeroed once it is written.
   */
  send(frame: Buffer, options?: { wipe?: boolean }): void {
    const wipe = options?.wipe ? () => frame.fill(0) : undefined;
    if (this.#isClosed) {
      wipe?.();
      return;
    }
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(this.#uncork);
    }
    // The callback runs once the bytes are handed to the kernel, or with an error once the socket is
    // destroyed: either way no write reads the frame any more.
    if (wipe) this.#socket.write(frame, wipe);
    else this.#socket.write(frame);
  }

  #corked = false;
  readonly #uncork = () => {
    this.#corked = false;
    this.#socket.uncork();
  };

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  /** Closes the socket; the agent exits, and with it (PID 1) everything in the container. */
  destroy(reason: string): void {
    if (!this.#closeReason) this.#closeReason = reason;
    this.#socket.destroy();
  }
}
