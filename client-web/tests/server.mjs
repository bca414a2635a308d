// Starts the real Kindred server for browser tests: `$KINDRED_BIN serve` on
// 127.0.0.1 with a fresh data directory, serving the web client from disk
// (KINDRED_WEB_DIR). It can stop and restart on the same port and data dir,
// which is how the reconnect test takes the server away and brings it back.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
export const WEB_DIR = resolve(here, '..', 'static');
const LISTENING = /kindred listening on (http:\/\/[^\s]+)/;
const START_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 10000;

export function kindredBin() {
  const bin = process.env.KINDRED_BIN;
  if (!bin) throw new Error('set KINDRED_BIN to the path of the kindred binary (e.g. target/debug/kindred)');
  return bin;
}

export class KindredServer {
  constructor({ dataDir, env = {}, args = [] } = {}) {
    this.dataDir = dataDir || mkdtempSync(join(tmpdir(), 'kindred-web-test-'));
    this.ownsDataDir = !dataDir;
    this.env = env;
    this.args = args;
    this.port = 0;
    this.url = null;
    this.proc = null;
    this.log = [];
  }

  /** Start on `port` (0 = any free port; restarts reuse the first one). */
  async start() {
    const listen = `127.0.0.1:${this.port}`;
    // After a stop the port can take a moment to be free again; try a few times.
    let lastError;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.spawnOnce(listen);
        return this;
      } catch (err) {
        lastError = err;
        if (this.port === 0) break;
        await new Promise((r) => setTimeout(r, 300 * (attempt + 1)));
      }
    }
    throw lastError;
  }

  spawnOnce(listen) {
    return new Promise((resolvePromise, reject) => {
      const proc = spawn(kindredBin(), ['serve', '--listen', listen, '--data-dir', this.dataDir, ...this.args], {
        env: { ...process.env, KINDRED_WEB_DIR: WEB_DIR, ...this.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.proc = proc;
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`kindred did not report listening within ${START_TIMEOUT_MS} ms\n${this.tail()}`));
      }, START_TIMEOUT_MS);
      const onLine = (line) => {
        this.log.push(line);
        if (this.log.length > 400) this.log.shift();
        const m = line.match(LISTENING);
        if (m && !this.url) {
          clearTimeout(timer);
          this.url = m[1].replace(/\/$/, '');
          this.port = Number(new URL(this.url).port);
          resolvePromise();
        }
      };
      createInterface({ input: proc.stdout }).on('line', onLine);
      createInterface({ input: proc.stderr }).on('line', (l) => {
        this.log.push(l);
        if (this.log.length > 400) this.log.shift();
      });
      proc.once('exit', (code, signal) => {
        this.exited = { code, signal };
        if (!this.url) {
          clearTimeout(timer);
          reject(new Error(`kindred exited before listening (code ${code}, signal ${signal})\n${this.tail()}`));
        }
      });
    });
  }

  tail(n = 40) {
    return this.log.slice(-n).join('\n');
  }

  /** Stop the process (SIGTERM, then SIGKILL after a timeout). Keeps port and data dir. */
  async stop() {
    const proc = this.proc;
    this.proc = null;
    this.url = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise((resolvePromise) => {
      const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
      proc.once('exit', () => {
        clearTimeout(timer);
        resolvePromise();
      });
      proc.kill('SIGTERM');
    });
  }

  /** Kill the process at once (SIGKILL: no close frames, nothing flushed on the way out). Keeps port and data dir. */
  async kill() {
    const proc = this.proc;
    this.proc = null;
    this.url = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise((resolvePromise) => {
      proc.once('exit', resolvePromise);
      proc.kill('SIGKILL');
    });
  }

  /** Stop (or with `kill`, SIGKILL) and start again on the same port with the same data dir. */
  async restart({ kill = false } = {}) {
    const port = this.port;
    await (kill ? this.kill() : this.stop());
    this.port = port;
    return this.start();
  }

  /** The WebSocket endpoint. */
  get wsUrl() {
    return this.url && `${this.url.replace(/^http/, 'ws')}/ws`;
  }

  /** Stop and remove the data dir if we made it. */
  async dispose() {
    await this.stop();
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export async function startServer(opts) {
  return new KindredServer(opts).start();
}
