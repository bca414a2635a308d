// kindred-client: a client for Kindred's wire protocol (kindred.v1), for
// browsers and Node (any runtime with a standard WebSocket). No dependencies.
//
// It owns the connection: hello, request ids and promise replies, heartbeats,
// reconnecting with backoff and jitter as the close code says, and resuming
// every joined room after a reconnect so that each message is delivered once
// and in order. See docs/clients.md and docs/protocol.md.

/** The WebSocket subprotocol of this protocol version. */
export const SUBPROTOCOL = 'kindred.v1';

/**
 * Close codes after which reconnecting cannot help (docs/protocol.md, "Close
 * codes"): a normal end (after `forget_me`, or our own close), a broken
 * protocol, a frame too big, a token that stopped working, a service-wide ban.
 * Every other code, and a connection lost without one (1006), is retried.
 */
export const FINAL_CLOSE_CODES = Object.freeze([1000, 1008, 1009, 4401, 4403]);

/** Refusals of a `hello` that may pass on a later try; any other refusal is final. */
const RETRYABLE_HELLO = new Set(['overloaded', 'unavailable', 'internal', 'rate_limited']);

/** The close code the server uses for the same refusal during a session. */
const HELLO_REFUSAL_CLOSE = { unauthorized: 4401, banned: 4403 };
/** The error code of a session ended by a close code (`closed` for the others). */
const CLOSE_ERROR = { 4401: 'unauthorized', 4403: 'banned' };

const DEFAULTS = {
  requestTimeoutMs: 15000,
  baseDelayMs: 500,
  maxDelayMs: 30000,
  stableAfterMs: 10000,
  pingIntervalMs: undefined,
  pongTimeoutMs: undefined,
};

/**
 * An `error` frame from the server (`code`, `frame`, `retryAfterMs`), or a
 * failure of the client itself: `disconnected` (no connection, or it was lost
 * before the reply), `timeout` (no reply in time), `closed` (the client was
 * closed for good).
 */
export class KindredError extends Error {
  /** @param {{code: string, message?: string, retry_after_ms?: number}} frame */
  constructor(frame) {
    super(frame.message || frame.code);
    this.name = 'KindredError';
    /** @type {string} the error code, such as `rate_limited` or `disconnected` */
    this.code = frame.code;
    /** @type {object} the whole `error` frame (extra fields such as `rules`, `until`, `alternatives`) */
    this.frame = frame;
    /** @type {number | undefined} how long to wait before trying again, when the server said */
    this.retryAfterMs = frame.retry_after_ms ?? undefined;
  }
}

const localError = (code, message) => new KindredError({ type: 'error', code, message });

/** @param {unknown} url @returns {(attempt: number) => string} */
function urlPicker(url) {
  if (typeof url === 'function') return url;
  const list = Array.isArray(url) ? url : [url];
  if (!list.length || list.some((u) => typeof u !== 'string')) throw new TypeError('url must be a string, a list of strings or a function');
  return (attempt) => list[attempt % list.length];
}

/** Order of messages within one history: by seq, staff notes after the room message they follow. */
const bySeq = (a, b) => a.seq - b.seq || (a.staff_seq ?? -1) - (b.staff_seq ?? -1);

/**
 * A connection to a Kindred server that stays up: it reconnects by itself and
 * resumes the rooms it had joined.
 *
 * Events (`on(type, fn)`): every server frame that is not the reply to a
 * request, by its `type` (`message`, `presence`, `typing`, `notice`, …, and
 * `error` for errors that answer no request); `welcome` at the start of every
 * session; `joined` for each room the client joins again by itself after a
 * reconnect, before that room's missed messages; and the client's own:
 * `reconnecting` {attempt, delayMs, code}, `reconnected` {rooms, welcome},
 * `closed` {code, reason, willReconnect, error?}, and `frame` for every frame
 * passed to the other listeners.
 */
export class KindredClient {
  /**
   * @param {string | string[] | ((attempt: number) => string)} url the server's
   *   WebSocket endpoint (`wss://host/ws`); a list of the nodes of a cluster,
   *   tried in turn (each reconnect moves on to the next one); or a function
   *   that gives the URL for each connection attempt (0, 1, 2, …)
   * @param {object} [options]
   * @param {string} [options.token] a `session_token` from an earlier welcome, or a staff JWT; kept up to date from every `welcome`
   * @param {string} [options.handle] the wished-for display name (new members only)
   * @param {string} [options.locale] BCP 47 tag for the server's texts
   * @param {typeof WebSocket} [options.WebSocket] a WebSocket constructor where there is no global one
   * @param {number} [options.requestTimeoutMs] how long `request` waits for a reply (15 s)
   * @param {number} [options.baseDelayMs] first reconnect delay cap; doubles per failure (0.5 s)
   * @param {number} [options.maxDelayMs] largest reconnect delay cap (30 s)
   * @param {number} [options.stableAfterMs] a session that lasted this long starts the backoff over (10 s)
   * @param {number} [options.pingIntervalMs] how often to send `ping` (welcome's `heartbeat_s`)
   * @param {number} [options.pongTimeoutMs] silence after a ping that means the socket is dead (`heartbeat_s`)
   */
  constructor(url, options = {}) {
    const { token, handle, locale, WebSocket: Socket, ...tuning } = options;
    this._pickUrl = urlPicker(url);
    /** @type {string | undefined} presented at the next hello; replaced by each welcome's `session_token` */
    this.token = token;
    /** @type {string | undefined} */
    this.handle = handle;
    /** @type {string | undefined} read at every hello */
    this.locale = locale;
    this._Socket = Socket || globalThis.WebSocket;
    if (typeof this._Socket !== 'function') throw new TypeError('no WebSocket: pass options.WebSocket (on Node 20, run with --experimental-websocket)');
    this._opts = { ...DEFAULTS, ...tuning };
    this._listeners = new Map();
    this._ws = null;
    this._state = 'idle';
    this._welcome = null;
    this._sessions = 0;
    this._attempt = 0;
    this._urlIndex = 0;
    this._pending = new Map();
    this._nextId = 1;
    this._waiters = [];
    this._rooms = new Map();
    this._hold = new Map();
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._lastFrameAt = 0;
    this._connectedAt = 0;
    this._retryAfterMs = 0;
    this._finalError = null;
  }

  // ---- public API ------------------------------------------------------

  /**
   * `idle` (before connect), `connecting`, `open` (after welcome),
   * `reconnecting` (waiting or trying again) or `closed` (for good).
   * @returns {'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'}
   */
  get state() {
    return this._state;
  }

  /** Whether a session is up (a welcome was received on the current socket). */
  get connected() {
    return this._state === 'open';
  }

  /** The latest welcome frame, or null before the first. */
  get welcome() {
    return this._welcome;
  }

  /** The rooms this client is in and resumes after a reconnect. */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /**
   * Where the client is in a room's history: the `since` of its next resume.
   * @param {string} room
   * @returns {{epoch: string, seq: number} | undefined}
   */
  position(room) {
    const t = this._rooms.get(room);
    return t && { epoch: t.epoch, seq: t.seq };
  }

  /**
   * Connect (the first call), or wait for the current session. Resolves with
   * the `welcome` frame once a session is up; while the server cannot be
   * reached it keeps trying (see `reconnecting`). Rejects with a KindredError
   * when the hello is refused for good (`unauthorized`, `invalid_handle`,
   * `banned`, …), when the server closes with a code that forbids reconnecting,
   * or when `close()` is called.
   * @returns {Promise<object>} the welcome frame
   */
  connect() {
    if (this._state === 'closed') return Promise.reject(this._finalError || localError('closed', 'the client is closed'));
    if (this._state === 'open') return Promise.resolve(this._welcome);
    const p = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    if (this._state === 'idle') this._open();
    return p;
  }

  /**
   * Join a room. Resolves with the `joined` frame (its `history` is the
   * room's recent messages: they are not emitted as `message` events), then
   * the client keeps the room: it follows its position and resumes it after
   * every reconnect, accepting the rules version it was let in with again.
   * @param {string} room
   * @param {{acceptRules?: number, since?: {epoch: string, seq: number}}} [options]
   *   `acceptRules`: the `rules_version` the person read and accepted (after `rules_not_accepted`);
   *   `since`: a position kept from before (messages after it come in `history`)
   * @returns {Promise<object>} the joined frame; rejects with the error (such as `rules_not_accepted`, `room_full`)
   */
  join(room, { acceptRules, since } = {}) {
    const frame = { type: 'join', room };
    if (acceptRules !== undefined) frame.accept_rules = acceptRules;
    if (since) frame.since = since;
    return this.request(frame);
  }

  /**
   * Leave a room. It is forgotten at once, connected or not: it is not
   * resumed after a reconnect (a connection that ended left every room).
   * @param {string} room
   * @returns {Promise<object>} the left frame
   */
  leave(room) {
    return this.request({ type: 'leave', room });
  }

  /**
   * Send a message to a room.
   * @param {string} room
   * @param {string} text
   * @param {{replyTo?: string, cw?: string, staff?: boolean}} [options]
   *   `replyTo`: the `message_id` this answers; `cw`: a content-warning tag; `staff`: facilitators' back channel
   * @returns {Promise<object>} the sent frame ({message_id, seq}); rejects with the error (`rate_limited` carries `retryAfterMs`)
   */
  send(room, text, { replyTo, cw, staff } = {}) {
    const frame = { type: 'send', room, text };
    if (replyTo !== undefined) frame.reply_to = replyTo;
    if (cw !== undefined) frame.cw = cw;
    if (staff) frame.staff = true;
    return this.request(frame);
  }

  /**
   * Send any request with a fresh `id` and wait for its reply.
   * @param {object} frame a client frame such as `{type: 'list_rooms'}` (an `id` is added)
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<object>} the reply frame; rejects with a KindredError for an
   *   `error` reply, a `timeout`, or `disconnected` (not connected, or lost before the reply)
   */
  request(frame, { timeoutMs = this._opts.requestTimeoutMs } = {}) {
    if (frame.type === 'leave') this._rooms.delete(frame.room);
    if (!this.connected) return Promise.reject(localError('disconnected', 'not connected'));
    return this._request(frame, timeoutMs);
  }

  /**
   * Send a frame that has no success reply (`typing`, `raise_hand`,
   * `lower_hand`); a refusal comes as an `error` event.
   * @param {object} frame
   * @returns {boolean} false when not connected (nothing was sent)
   */
  notify(frame) {
    if (!this.connected) return false;
    return this._write(this._ws, frame);
  }

  /**
   * Listen to an event (see the class description for the list).
   * @param {string} type
   * @param {(detail: any) => void} fn
   * @returns {this}
   */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return this;
  }

  /**
   * Stop listening.
   * @param {string} type
   * @param {(detail: any) => void} fn
   * @returns {this}
   */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
    return this;
  }

  /** While waiting to reconnect, try now (for example when the network comes back). */
  reconnectNow() {
    if (this._state !== 'reconnecting' || this._ws) return;
    this._open();
  }

  /** Close for good: no reconnect; pending requests fail with `closed`. */
  close() {
    if (this._state === 'closed') return;
    const ws = this._ws;
    this._detach();
    this._stop({ code: 1000, reason: 'client closed', error: localError('closed', 'the client is closed') });
    try {
      ws?.close(1000, 'client closed');
    } catch {
      /* already closing */
    }
  }

  // ---- events ----------------------------------------------------------

  _emit(type, detail) {
    for (const fn of [...(this._listeners.get(type) || [])]) {
      try {
        fn(detail);
      } catch (err) {
        // A listener's bug must not break the connection; report it out of band.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  /** A server frame for the listeners: by its type, and to `frame`. */
  _deliver(frame) {
    this._emit(frame.type, frame);
    this._emit('frame', frame);
  }

  // ---- the socket --------------------------------------------------------

  _open() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._state === 'idle') this._state = 'connecting';
    let ws;
    try {
      ws = new this._Socket(this._pickUrl(this._urlIndex), [SUBPROTOCOL]);
    } catch (err) {
      this._lost(1006, String(err?.message || err));
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._hello(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev);
    ws.onclose = (ev) => {
      if (ws === this._ws) this._lost(ev.code || 1006, ev.reason || '');
    };
    // An error is always a failed connection (1006). The close event that should follow
    // does not come with every runtime (Node 20's, for a refused connection): don't wait for it.
    ws.onerror = () => {
      if (ws === this._ws) this._lost(1006, 'connection failed');
    };
  }

  _write(ws, frame) {
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Forget the current socket without waiting for its close event; fails what waits on it. */
  _detach() {
    const ws = this._ws;
    this._ws = null;
    clearInterval(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._hold.clear();
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    for (const p of [...this._pending.values()]) p.reject(localError('disconnected', 'the connection was lost'));
  }

  /** The socket ended (closed by the server, lost, or found dead). */
  _lost(code, reason) {
    const wasUp = this._state === 'open';
    this._detach();
    if (FINAL_CLOSE_CODES.includes(code)) {
      this._stop({ code, reason, error: localError(CLOSE_ERROR[code] || 'closed', reason || `closed with ${code}`) });
      return;
    }
    if (wasUp && Date.now() - this._connectedAt >= this._opts.stableAfterMs) this._attempt = 0;
    this._emit('closed', { code, reason, willReconnect: true });
    this._retry(code);
  }

  /**
   * Wait, then connect again: a random delay up to a cap that doubles with
   * each failure (full jitter, so that clients dropped together come back
   * spread out), and after a flood (4429) or a busy server at least the
   * `retry_after_ms` it gave.
   */
  _retry(code) {
    this._state = 'reconnecting';
    const cap = Math.min(this._opts.maxDelayMs, this._opts.baseDelayMs * 2 ** Math.min(this._attempt, 30));
    const floor = code === 4429 || code === 1013 ? this._retryAfterMs : 0;
    const delayMs = Math.max(floor, Math.round(Math.random() * cap));
    this._retryAfterMs = 0;
    this._attempt += 1;
    this._urlIndex += 1;
    this._emit('reconnecting', { attempt: this._attempt, delayMs, code });
    this._retryTimer = setTimeout(() => this._open(), delayMs);
  }

  /** Ended for good: tell the listeners and whoever waits on connect(). */
  _stop({ code, reason, error }) {
    clearTimeout(this._retryTimer);
    this._state = 'closed';
    this._finalError = error;
    this._rooms.clear();
    for (const w of this._waiters.splice(0)) w.reject(error);
    this._emit('closed', { code, reason, willReconnect: false, error });
  }

  async _hello(ws) {
    const hello = { type: 'hello' };
    if (this.token) hello.token = this.token;
    if (this.handle) hello.handle = this.handle;
    if (this.locale) hello.locale = this.locale;
    let welcome;
    try {
      welcome = await this._request(hello, this._opts.requestTimeoutMs, ws);
    } catch (err) {
      if (ws !== this._ws) return;
      if (err.code === 'disconnected') return; // the close event handles it
      this._detach();
      ws.close(1000, 'hello refused');
      if (err.code === 'timeout' || RETRYABLE_HELLO.has(err.code)) {
        // 1013: "try again later", the standard code for a busy server.
        this._retryAfterMs = err.retryAfterMs || 0;
        this._lost(1013, err.message);
      } else {
        this._stop({ code: HELLO_REFUSAL_CLOSE[err.code] || 1008, reason: err.message, error: err });
      }
      return;
    }
    if (ws !== this._ws) return;
    const again = this._sessions > 0;
    this._sessions += 1;
    this._welcome = welcome;
    if (welcome.session_token) this.token = welcome.session_token;
    this._state = 'open';
    this._connectedAt = Date.now();
    this._heartbeat(ws, welcome.heartbeat_s);
    for (const w of this._waiters.splice(0)) w.resolve(welcome);
    this._deliver(welcome);
    if (again) this._resume(ws, welcome);
  }

  _heartbeat(ws, heartbeatS) {
    const periodMs = (Number(heartbeatS) || 25) * 1000;
    const every = this._opts.pingIntervalMs ?? periodMs;
    const patience = this._opts.pongTimeoutMs ?? periodMs;
    this._lastFrameAt = Date.now();
    this._pingTimer = setInterval(() => {
      const sentAt = Date.now();
      this._write(ws, { type: 'ping' });
      clearTimeout(this._pongTimer);
      this._pongTimer = setTimeout(() => {
        // Nothing at all since the ping: the socket is dead even if the runtime has not noticed.
        if (ws === this._ws && this._lastFrameAt < sentAt) {
          try {
            ws.close(4000, 'heartbeat timeout');
          } catch {
            /* already closing */
          }
          this._lost(1006, 'heartbeat timeout');
        }
      }, patience);
    }, every);
  }

  /**
   * @param {object} frame
   * @param {number} timeoutMs
   * @param {WebSocket} [ws]
   * @param {boolean} [resume] a join of ours after a reconnect: its missed messages are emitted
   */
  _request(frame, timeoutMs, ws = this._ws, resume = false) {
    const id = `k${this._nextId++}`;
    // Until a join is answered, its room's frames wait, so that none comes before `joined`.
    if (frame.type === 'join' && !this._hold.has(frame.room)) this._hold.set(frame.room, []);
    const held = frame.type === 'join' ? this._hold.get(frame.room) : undefined;
    return new Promise((resolve, reject) => {
      const entry = { held, resume, room: frame.room };
      const settle = () => {
        clearTimeout(entry.timer);
        this._pending.delete(id);
      };
      entry.resolve = (reply) => {
        settle();
        resolve(reply);
      };
      entry.reject = (error) => {
        settle();
        this._release(frame.room, held, false);
        reject(error);
      };
      entry.timer = setTimeout(() => entry.reject(localError('timeout', 'no reply in time')), timeoutMs);
      this._pending.set(id, entry);
      if (!this._write(ws, { ...frame, id })) entry.reject(localError('disconnected', 'the connection was lost'));
    });
  }

  _onMessage(ws, ev) {
    if (ws !== this._ws) return;
    this._lastFrameAt = Date.now();
    if (typeof ev.data !== 'string') return;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== 'string') return;
    if (frame.type === 'error' && frame.retry_after_ms) this._retryAfterMs = frame.retry_after_ms;
    const key = frame.id === undefined || frame.id === null ? undefined : String(frame.id);
    const waiter = key && this._pending.get(key);
    if (waiter) {
      this._reply(waiter, frame);
      return;
    }
    this._dispatch(frame);
  }

  /** A reply to one of our requests: keep the book of rooms, then settle the promise. */
  _reply({ resolve, reject, held, resume, room }, reply) {
    if (reply.type === 'error') {
      reject(new KindredError(reply));
      return;
    }
    if (reply.type === 'joined') {
      const missed = this._track(reply);
      if (resume) {
        // Ours, after a reconnect: `joined`, then what was missed, once and in order, then what came meanwhile.
        this._deliver(reply);
        for (const m of missed) this._deliver({ type: 'message', ...m });
        this._release(room, held, true);
      } else {
        // The caller's: its history is in the reply. Let the caller see `joined` before the room's next frames.
        setTimeout(() => this._release(room, held, true));
      }
    }
    resolve(reply);
  }

  /** A frame that answers no request. Frames of a room being joined wait for its `joined`. */
  _dispatch(frame) {
    const held = typeof frame.room === 'string' ? this._hold.get(frame.room) : undefined;
    if (held) {
      held.push(frame);
      return;
    }
    if (frame.type === 'message') {
      const t = this._rooms.get(frame.room);
      if (t && !this._isNew(t, frame)) return;
    } else if (frame.type === 'removed') {
      this._rooms.delete(frame.room);
    }
    this._deliver(frame);
  }

  /**
   * A join is over: let its room's held frames through, unless the join was
   * refused or lost and we are not in the room. `held` is the list this join
   * held; a later join (after another reconnect) holds a list of its own.
   */
  _release(room, held, joined) {
    if (!held || this._hold.get(room) !== held) return;
    this._hold.delete(room);
    if (!joined && !this._rooms.has(room)) return;
    for (const f of held) this._dispatch(f);
  }

  // ---- rooms: position, dedupe, resume ---------------------------------

  /** Start or update the book of a room from its `joined`; returns its messages that are new to us, in order. */
  _track(j) {
    const id = j.room.id;
    let t = this._rooms.get(id);
    if (!t || t.epoch !== j.epoch) {
      // A new epoch is a new history: its seqs start over.
      t = { epoch: j.epoch, seq: -1, ids: new Set(), rulesVersion: undefined };
      this._rooms.set(id, t);
    }
    t.rulesVersion = j.room.rules_version;
    const fresh = [...(j.history || [])].sort(bySeq).filter((m) => this._isNew(t, m));
    if (j.seq > t.seq) {
      t.seq = j.seq;
      t.ids = new Set();
    }
    return fresh;
  }

  /**
   * Whether a message is new to this client, noting it if so. Within a
   * history seq only grows, and staff notes share the seq of the message
   * before them, so: new when its seq is past ours, or equal and its id unseen.
   */
  _isNew(t, m) {
    if (m.seq < t.seq) return false;
    if (m.seq > t.seq) {
      t.seq = m.seq;
      t.ids = new Set();
    } else if (t.ids.has(m.message_id)) {
      return false;
    }
    t.ids.add(m.message_id);
    return true;
  }

  /** After a reconnect: join every room again from where we were, then say how it went. */
  async _resume(ws, welcome) {
    const rooms = [...this._rooms.keys()];
    const results = await Promise.all(rooms.map((room) => this._resumeRoom(ws, room)));
    if (ws !== this._ws) return; // lost again: the next welcome resumes again
    this._emit('reconnected', { rooms: results, welcome });
  }

  async _resumeRoom(ws, room) {
    const t = this._rooms.get(room);
    const join = { type: 'join', room, since: { epoch: t.epoch, seq: t.seq } };
    // The server forgets accepted rules when it restarts: accept again the version we were let in with.
    if (t.rulesVersion !== undefined) join.accept_rules = t.rulesVersion;
    let j;
    try {
      j = await this._request(join, this._opts.requestTimeoutMs, ws, true);
    } catch (error) {
      if (error.code !== 'disconnected') this._rooms.delete(room); // refused (banned, rules changed, closed…): not in it any more
      return { room, recovered: false, error };
    }
    return { room, recovered: j.recovered };
  }
}
