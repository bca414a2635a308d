// The page's connection. The protocol itself (hello, request ids, heartbeats,
// reconnecting with backoff and jitter, resuming every joined room with each
// message once and in order) is the client library's, kindred-client, served
// at /sdk/ from client-web/sdk/. This thin wrapper adds what only a page
// needs: a status for the banner, trying again at once when the network or the
// tab comes back, and a new client when the identity changes.

import { KindredClient, KindredError } from '../sdk/kindred-client.js';

export function wsUrl(loc = location) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

const notConnected = () => new KindredError({ code: 'disconnected', message: 'not connected' });

/**
 * Events (all CustomEvent, data in `detail`):
 * - `status`  {status: 'connecting'|'online'|'reconnecting'|'offline'|'stopped'|'banned', retryInMs?, restarting?}
 * - `welcome` the welcome frame (every session: the first and after reconnects)
 * - `hello_error` the error frame of a refused token or handle (hello, or 4401 later);
 *   the app changes its credentials, and the connection starts over with them
 * - `rejoined` the `joined` of a room the client joined again after a reconnect;
 *   its missed messages follow as `frame`s
 * - `reconnected` {rooms: [{room, recovered, error?}]} once every room was tried again
 * - `closed`  {code, reason, willReconnect}
 * - `frame`   every other server frame that is not the reply to a request
 */
export class Connection extends EventTarget {
  /**
   * @param {object} opts
   * @param {() => {token?: string, handle?: string}} opts.credentials asked for each new client
   * @param {string} [opts.url]
   * @param {string} [opts.locale]
   */
  constructor({ credentials, url = wsUrl(), locale = 'en' }) {
    super();
    this.credentials = credentials;
    this.url = url;
    this._locale = locale;
    /** @type {KindredClient | null} one per identity */
    this.client = null;
    this.status = 'idle';
    window.addEventListener('online', () => this.reconnectNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.reconnectNow();
    });
    window.addEventListener('offline', () => {
      if (this.status !== 'online') this._setStatus('offline');
    });
  }

  /** The language of the server's texts, from the next hello on. */
  get locale() {
    return this._locale;
  }

  set locale(code) {
    this._locale = code;
    if (this.client) this.client.locale = code;
  }

  /** Open the connection (and keep it open until stop()). */
  start() {
    if (!this.client) this._connect();
  }

  /** Close for good: no reconnect (after forget_me). */
  stop() {
    this._drop();
    this._setStatus('stopped');
  }

  /** Start over with a new client, asking for the credentials again. */
  restart() {
    this._drop();
    this._connect();
  }

  /** Waiting to reconnect: try now. */
  reconnectNow() {
    this.client?.reconnectNow();
  }

  get online() {
    return !!this.client?.connected;
  }

  /** The rooms the client is in and resumes after a reconnect. */
  get rooms() {
    return this.client?.rooms || [];
  }

  /** Resolves when the connection is ready (welcome received), or rejects after timeoutMs. */
  whenOnline(timeoutMs = 30000) {
    if (!this.client) return Promise.reject(notConnected());
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(notConnected()), timeoutMs);
    });
    return Promise.race([this.client.connect(), late]).finally(() => clearTimeout(timer));
  }

  /** A request; resolves with the reply, rejects with a KindredError (an `error` reply, `timeout`, `disconnected`). */
  request(msg) {
    return this.client ? this.client.request(msg) : Promise.reject(notConnected());
  }

  /** Fire-and-forget (typing, raise_hand); false when not connected. */
  send(msg) {
    return !!this.client?.notify(msg);
  }

  /** Leave a room, and don't join it again after a reconnect (even if offline now). */
  leave(room) {
    this.client?.leave(room).catch(() => {});
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setStatus(status, extra = {}) {
    this.status = status;
    this._emit('status', { status, ...extra });
  }

  _drop() {
    const client = this.client;
    this.client = null;
    client?.close();
  }

  _connect() {
    const { token, handle } = this.credentials() || {};
    const client = new KindredClient(this.url, { token, handle, locale: this._locale });
    this.client = client;
    // Events of a client that has been replaced are not ours any more.
    const on = (type, fn) => client.on(type, (detail) => client === this.client && fn(detail));
    on('welcome', (w) => {
      this._setStatus('online');
      this._emit('welcome', w);
    });
    on('joined', (j) => this._emit('rejoined', j));
    on('reconnected', (r) => this._emit('reconnected', r));
    on('reconnecting', ({ delayMs, code }) => this._setStatus(navigator.onLine === false ? 'offline' : 'reconnecting', { retryInMs: delayMs, restarting: code === 1012 }));
    on('closed', (c) => this._onClosed(c));
    on('frame', (f) => {
      if (f.type === 'welcome' || f.type === 'joined') return;
      if (f.type === 'notice' && f.kind === 'shutdown') this._setStatus('online', { restarting: true });
      this._emit('frame', f);
    });
    this._setStatus(navigator.onLine === false ? 'offline' : 'connecting');
    client.connect().catch(() => {
      /* the outcome comes as a `closed` event */
    });
  }

  _onClosed({ code, reason, willReconnect, error }) {
    this._emit('closed', { code, reason, willReconnect });
    if (willReconnect) return;
    if (code === 4403) {
      this._setStatus('banned');
    } else if (code === 4401 || (error && error.code !== 'closed')) {
      // The token or the handle was refused: the app changes its credentials, then a new client starts over.
      const before = JSON.stringify(this.credentials() || {});
      this._emit('hello_error', error?.frame || { code: 'unauthorized', message: reason });
      if (JSON.stringify(this.credentials() || {}) !== before) this.restart();
      else this._setStatus('stopped');
    } else {
      this._setStatus('stopped');
    }
  }
}
