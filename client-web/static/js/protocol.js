// The wire: one WebSocket to /ws speaking kindred.v1. Owns the hello, request
// ids and promise replies, the app-level heartbeat and reconnecting with
// backoff and jitter. It knows nothing about rooms or screens; resuming rooms
// after a reconnect is the app's job, started from the `welcome` event.

export const SUBPROTOCOL = 'kindred.v1';

/** Close codes after which reconnecting cannot help. */
const FINAL_CLOSES = new Set([4403]);
/** The token was refused: reconnect, but the app must change credentials first. */
const UNAUTHORIZED_CLOSE = 4401;

/** An `error` reply (or a local failure such as `disconnected` / `timeout`). */
export class ProtocolError extends Error {
  constructor(body) {
    super(body.message || body.code);
    this.code = body.code;
    this.body = body;
  }
}

export function wsUrl(loc = location) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

/**
 * Events (all CustomEvent, data in `detail`):
 * - `status`  {status: 'connecting'|'online'|'reconnecting'|'offline'|'stopped'|'banned', retryInMs?, reason?}
 * - `welcome` the welcome frame (every successful hello, first and after reconnects)
 * - `hello_error` the error body of a refused hello
 * - `frame`   every server frame that is not the reply to a request
 * - `closed`  {code, reason}
 */
export class Connection extends EventTarget {
  /**
   * @param {object} opts
   * @param {() => {token?: string, handle?: string}} opts.credentials asked at every hello
   * @param {string} [opts.url]
   * @param {string} [opts.locale]
   */
  constructor({ credentials, url = wsUrl(), locale = 'en', requestTimeoutMs = 15000, baseDelayMs = 500, maxDelayMs = 20000 }) {
    super();
    this.credentials = credentials;
    this.url = url;
    this.locale = locale;
    this.requestTimeoutMs = requestTimeoutMs;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.ws = null;
    this.status = 'idle';
    this.welcome = null;
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.retryTimer = null;
    this.heartbeatTimer = null;
    this.lastFrameAt = 0;
    this.stopped = false;
    this.onlineWaiters = [];
    this._wake = () => {
      if (this.status === 'reconnecting' || this.status === 'offline') this.reconnectNow();
    };
    window.addEventListener('online', this._wake);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this._wake();
    });
    window.addEventListener('offline', () => {
      if (this.status !== 'online') this._setStatus('offline');
    });
  }

  /** Open the connection (and keep it open until stop()). */
  start() {
    this.stopped = false;
    if (!this.ws) this._open();
  }

  /** Close for good: no reconnect (after forget_me, or when banned). */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this._drop(1000, 'client stopped');
    this._setStatus('stopped');
  }

  /** Drop the current socket and connect again at once (new credentials). */
  restart() {
    this.stopped = false;
    this.attempt = 0;
    clearTimeout(this.retryTimer);
    this._drop(1000, 'client restart');
    this._open();
  }

  reconnectNow() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    if (!this.ws) this._open();
  }

  get online() {
    return this.status === 'online';
  }

  /** Resolves when the connection is ready (welcome received), or rejects after timeoutMs. */
  whenOnline(timeoutMs = 30000) {
    if (this.online) return Promise.resolve(this.welcome);
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      w.timer = setTimeout(() => {
        this.onlineWaiters = this.onlineWaiters.filter((x) => x !== w);
        reject(new ProtocolError({ code: 'disconnected', message: 'not connected' }));
      }, timeoutMs);
      this.onlineWaiters.push(w);
    });
  }

  /**
   * Send a request with a fresh id; resolves with the reply frame, rejects
   * with a ProtocolError for an `error` reply, a timeout, or a lost connection.
   */
  request(msg, { timeoutMs = this.requestTimeoutMs } = {}) {
    if (!this.online) {
      return Promise.reject(new ProtocolError({ code: 'disconnected', message: 'not connected' }));
    }
    return this._request(msg, timeoutMs);
  }

  /** Fire-and-forget (typing, raise_hand); false when not connected. */
  send(msg) {
    if (!this.online || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  _request(msg, timeoutMs) {
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ProtocolError({ code: 'timeout', message: 'no reply in time' }));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.ws.send(JSON.stringify({ ...msg, id }));
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new ProtocolError({ code: 'disconnected', message: String(e) }));
      }
    });
  }

  _setStatus(status, extra = {}) {
    this.status = status;
    this.dispatchEvent(new CustomEvent('status', { detail: { status, ...extra } }));
  }

  _open() {
    clearTimeout(this.retryTimer);
    if (navigator.onLine === false) {
      this._setStatus('offline');
      this._scheduleReconnect();
      return;
    }
    this._setStatus(this.welcome ? 'reconnecting' : 'connecting', { retryInMs: 0 });
    let ws;
    try {
      ws = new WebSocket(this.url, [SUBPROTOCOL]);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => this._hello(ws);
    ws.onmessage = (ev) => this._onMessage(ev);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {
      /* onclose follows and handles it */
    };
  }

  async _hello(ws) {
    const { token, handle } = this.credentials() || {};
    const hello = { type: 'hello', locale: this.locale };
    if (token) hello.token = token;
    if (handle) hello.handle = handle;
    let welcome;
    try {
      welcome = await this._request(hello, this.requestTimeoutMs);
    } catch (err) {
      if (ws !== this.ws) return;
      if (err.code !== 'disconnected' && err.code !== 'timeout') {
        this.dispatchEvent(new CustomEvent('hello_error', { detail: err.body }));
      }
      // Retry with whatever credentials the app now gives.
      this._drop(4000, 'hello refused');
      this._scheduleReconnect();
      return;
    }
    if (ws !== this.ws) return;
    this.welcome = welcome;
    this.attempt = 0;
    this._startHeartbeat(welcome.heartbeat_s);
    this._setStatus('online');
    for (const w of this.onlineWaiters) {
      clearTimeout(w.timer);
      w.resolve(welcome);
    }
    this.onlineWaiters = [];
    this.dispatchEvent(new CustomEvent('welcome', { detail: welcome }));
  }

  _onMessage(ev) {
    this.lastFrameAt = Date.now();
    if (typeof ev.data !== 'string') return;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== 'string') return;
    const waiter = frame.id !== undefined && frame.id !== null ? this.pending.get(String(frame.id)) : undefined;
    if (waiter) {
      this.pending.delete(String(frame.id));
      clearTimeout(waiter.timer);
      if (frame.type === 'error') waiter.reject(new ProtocolError(frame));
      else waiter.resolve(frame);
      return;
    }
    if (frame.type === 'pong') return;
    if (frame.type === 'notice' && frame.kind === 'shutdown') {
      this.dispatchEvent(new CustomEvent('status', { detail: { status: 'online', restarting: true } }));
    }
    this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
  }

  _startHeartbeat(seconds) {
    clearInterval(this.heartbeatTimer);
    const periodMs = Math.max(5, Number(seconds) || 25) * 1000;
    this.lastFrameAt = Date.now();
    this.heartbeatTimer = setInterval(() => {
      // Nothing heard for two periods: the socket is dead even if the browser has not noticed.
      if (Date.now() - this.lastFrameAt > periodMs * 2 + 5000) {
        const ws = this.ws;
        this._drop(4000, 'heartbeat timeout');
        this._onClose(ws, 4000, 'heartbeat timeout');
        return;
      }
      this.send({ type: 'ping' });
    }, periodMs);
  }

  /** Detach and close the socket without waiting for its close event. */
  _drop(code, reason) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    clearInterval(this.heartbeatTimer);
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code >= 4000 || code === 1000 ? code : 1000, reason);
    } catch {
      /* already closed */
    }
    this._failPending();
  }

  _failPending() {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ProtocolError({ code: 'disconnected', message: 'connection lost' }));
      this.pending.delete(id);
    }
  }

  _onClose(ws, code, reason) {
    if (ws && ws === this.ws) {
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    } else if (ws && this.ws && ws !== this.ws) {
      return; // an old socket
    }
    clearInterval(this.heartbeatTimer);
    this._failPending();
    this.dispatchEvent(new CustomEvent('closed', { detail: { code, reason } }));
    if (this.stopped) return;
    if (FINAL_CLOSES.has(code)) {
      this.stopped = true;
      this._setStatus('banned');
      return;
    }
    if (code === UNAUTHORIZED_CLOSE) {
      this.dispatchEvent(new CustomEvent('hello_error', { detail: { code: 'unauthorized', message: reason } }));
    }
    this._scheduleReconnect(code === 1012);
  }

  _scheduleReconnect(restarting = false) {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    // Full jitter: a random delay up to an exponentially growing cap, so a
    // room full of clients does not reconnect in one thundering herd.
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** this.attempt);
    const delay = Math.round(250 + Math.random() * cap);
    this.attempt = Math.min(this.attempt + 1, 10);
    const status = navigator.onLine === false ? 'offline' : 'reconnecting';
    this._setStatus(status, { retryInMs: delay, restarting });
    this.retryTimer = setTimeout(() => this._open(), delay);
  }
}
