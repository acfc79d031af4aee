/**
 * A one-line progress bar on stderr for the example scripts:
 *
 *   epoch 3/12 [=========>          ] 125/250  loss 0.412  acc 87.1%  41.2 img/s  ETA 14:05
 *
 * On a terminal the line is redrawn in place (at most 5 times a second); when
 * stderr is a file (a `nohup … > log` run) it prints a full line at most every
 * `logEverySeconds` instead, so the log stays readable.
 *
 * @module
 */

export interface ProgressOptions {
  /** Total units of work (steps) in the whole run, for the ETA. */
  total: number;
  /** Width of the bar in characters. */
  width?: number;
  /** Seconds between lines when stderr is not a terminal. */
  logEverySeconds?: number;
  /** Where to write; process.stderr by default. */
  stream?: NodeJS.WriteStream;
}

/** Formats seconds as h:mm:ss or m:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

export class Progress {
  readonly #total: number;
  readonly #width: number;
  readonly #logEvery: number;
  readonly #stream: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #start = performance.now();
  #done = 0;
  #lastDraw = -Infinity;
  #lastLine = "";

  constructor(options: ProgressOptions) {
    this.#total = options.total;
    this.#width = options.width ?? 24;
    this.#logEvery = options.logEverySeconds ?? 30;
    this.#stream = options.stream ?? process.stderr;
    this.#tty = this.#stream.isTTY === true;
  }

  /** Seconds since the bar was created. */
  get elapsed(): number {
    return (performance.now() - this.#start) / 1000;
  }

  /**
   * Records `done` units finished in total and redraws.
   * @param label text before the bar, e.g. "epoch 3/12"
   * @param part the position inside the current part, e.g. [125, 250] steps of the epoch
   * @param stats text after the bar (loss, accuracy, speed)
   */
  update(done: number, label: string, part: [number, number], stats: string, force = false): void {
    this.#done = done;
    const now = performance.now();
    const interval = this.#tty ? 200 : this.#logEvery * 1000;
    if (!force && now - this.#lastDraw < interval) return;
    this.#lastDraw = now;
    const [at, of] = part;
    const filled = of > 0 ? Math.min(this.#width, Math.round((at / of) * this.#width)) : 0;
    const bar = "=".repeat(Math.max(0, filled - 1)) + (filled > 0 ? ">" : "") + " ".repeat(this.#width - filled);
    const rate = this.elapsed > 0 ? this.#done / this.elapsed : 0;
    const eta = rate > 0 ? (this.#total - this.#done) / rate : NaN;
    const line = `${label} [${bar}] ${at}/${of}  ${stats}  elapsed ${formatDuration(this.elapsed)}  ETA ${formatDuration(eta)}`;
    if (this.#tty) {
      this.#stream.write(`\r${line.padEnd(this.#lastLine.length)}`);
    } else {
      this.#stream.write(`${line}\n`);
    }
    this.#lastLine = line;
  }

  /** Prints a message on its own line without breaking the bar. */
  log(message: string): void {
    if (this.#tty && this.#lastLine !== "") this.#stream.write("\n");
    this.#stream.write(`${message}\n`);
    this.#lastLine = "";
    this.#lastDraw = -Infinity;
  }

  /** Ends the bar's line. */
  finish(): void {
    if (this.#tty && this.#lastLine !== "") this.#stream.write("\n");
    this.#lastLine = "";
  }
}
