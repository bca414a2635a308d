// What the client knows: the session, the room directory, and for each joined
// room its info, members and an ordered, de-duplicated message history. It
// applies server frames and emits change events; it never touches the DOM or
// the socket.

const STAFF_ROLES = new Set(['facilitator', 'admin']);
export const isStaffRole = (role) => STAFF_ROLES.has(role);

const TOKEN_KEY = 'kindred.session_token';
const STAFF_KEY = 'kindred.staff_token';
const HIDDEN_KEY = 'kindred.hidden';
const CHOSEN_KEY = 'kindred.handle_chosen';
const ALERT_SOUND_KEY = 'kindred.alert_sound';
/** How many resolved alerts the inbox keeps to show who resolved what. */
const RESOLVED_KEPT = 10;
let resolvedSeq = 0;

// Whispers are private: kept in sessionStorage (this tab only), never localStorage.
const WHISPER_KEY = 'kindred.whispers.';
// Which reactions this member gave in a room (the server tells no one, not
// even the member), for the tab's session only, like whispers.
const REACTED_KEY = 'kindred.reacted.';
const WHISPERS_KEPT = 200;

function loadReacted(roomId) {
  try {
    const list = JSON.parse(sessionStorage.getItem(REACTED_KEY + roomId) || '[]');
    return new Set(Array.isArray(list) ? list : []);
  } catch {
    return new Set();
  }
}

function loadWhispers(roomId) {
  try {
    const list = JSON.parse(sessionStorage.getItem(WHISPER_KEY + roomId) || '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

/** A yes/no setting kept in localStorage ("1" or absent); no if storage is disabled. */
function readFlag(key) {
  try {
    return localStorage.getItem(key) === '1';
  } catch {
    return false;
  }
}

function writeFlag(key, on) {
  try {
    if (on) localStorage.setItem(key, '1');
    else localStorage.removeItem(key);
  } catch {
    /* storage disabled: the setting lasts this visit only */
  }
}

/** Local persistence: the member token survives visits; a staff token lives only in this tab. */
export const storage = {
  get memberToken() {
    try {
      return localStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  },
  set memberToken(v) {
    try {
      if (v) localStorage.setItem(TOKEN_KEY, v);
      else localStorage.removeItem(TOKEN_KEY);
    } catch {
      /* storage disabled: the identity lasts this visit only */
    }
  },
  get staffToken() {
    try {
      return sessionStorage.getItem(STAFF_KEY);
    } catch {
      return null;
    }
  },
  set staffToken(v) {
    try {
      if (v) sessionStorage.setItem(STAFF_KEY, v);
      else sessionStorage.removeItem(STAFF_KEY);
    } catch {
      /* ignore */
    }
  },
  /** Whether the member chose a name (used in every room) rather than taking
   * the server's generated ones (a different one in each room). */
  get handleChosen() {
    return readFlag(CHOSEN_KEY);
  },
  set handleChosen(on) {
    writeFlag(CHOSEN_KEY, on);
  },
  /** Members hidden by this reader, as "room/member_id" keys. */
  get hidden() {
    try {
      return new Set(JSON.parse(localStorage.getItem(HIDDEN_KEY) || '[]'));
    } catch {
      return new Set();
    }
  },
  set hidden(set) {
    try {
      localStorage.setItem(HIDDEN_KEY, JSON.stringify([...set]));
    } catch {
      /* ignore */
    }
  },
  /** Staff setting: a soft tone for new crisis alerts (off unless chosen). */
  get alertSound() {
    return readFlag(ALERT_SOUND_KEY);
  },
  set alertSound(on) {
    writeFlag(ALERT_SOUND_KEY, on);
  },
  forgetAll() {
    this.memberToken = null;
    this.handleChosen = false;
    try {
      localStorage.removeItem(HIDDEN_KEY);
    } catch {
      /* ignore */
    }
  },
};

/** Sort key of a message: the history it belongs to, then its seq. */
export const orderOf = (epochIndex, seq) => epochIndex * 1e12 + Number(seq);

/** One joined room. Messages are kept sorted by `seq`, one per message_id. */
export class RoomState {
  constructor(id) {
    this.id = id;
    this.info = null;
    this.me = null;
    this.members = new Map();
    this.messages = []; // sorted by seq
    this.byId = new Map();
    this.epoch = null;
    this.seq = 0; // the last seq seen in this room
    this.typing = new Map(); // member_id -> expiry ms
    this.hands = [];
    this.reports = new Map();
    this.whispers = loadWhispers(id);
    this.gap = false;
    this.gapAfterOrder = null; // a resume could not fill the stretch after this point
    this.epochIndex = 0; // how many times the room's history started over while we watched
    this.handSince = new Map(); // member_id -> when this client first saw the hand raised (ms)
    this.reacted = loadReacted(id); // "message_id|kind" this member gave
  }

  /** Whether this member gave `kind` to a message (as far as this tab knows). */
  hasReacted(messageId, kind) {
    return this.reacted.has(`${messageId}|${kind}`);
  }

  setReacted(messageId, kind, on) {
    const key = `${messageId}|${kind}`;
    if (on) this.reacted.add(key);
    else this.reacted.delete(key);
    try {
      sessionStorage.setItem(REACTED_KEY + this.id, JSON.stringify([...this.reacted].slice(-500)));
    } catch {
      /* storage full or disabled: kept until reload */
    }
  }

  /** The raise-hand queue, noting when each hand was first seen raised. */
  setHands(queue) {
    this.hands = queue;
    const now = Date.now();
    for (const id of queue) if (!this.handSince.has(id)) this.handSince.set(id, now);
    for (const id of [...this.handSince.keys()]) if (!queue.includes(id)) this.handSince.delete(id);
  }

  get isStaff() {
    return isStaffRole(this.me?.role);
  }

  /** Keep a whisper (in or out) for this tab's session: a reload keeps the thread, closing the tab ends it. */
  addWhisper(w) {
    this.whispers.push(w);
    if (this.whispers.length > WHISPERS_KEPT) this.whispers.splice(0, this.whispers.length - WHISPERS_KEPT);
    try {
      sessionStorage.setItem(WHISPER_KEY + this.id, JSON.stringify(this.whispers));
    } catch {
      /* storage full or disabled: the thread lasts until reload */
    }
  }

  position() {
    return this.epoch ? { epoch: this.epoch, seq: this.seq } : undefined;
  }

  /**
   * Apply a `joined` reply. Returns {reset, added}: reset when the local
   * history was replaced (first join, new epoch, or a gap that could not be
   * filled), added = messages that are new to this client. Without
   * `withHistory` (a resume by the client library, which then delivers the
   * missed messages one by one) only the room, its members and where a gap is
   * are taken from it.
   */
  applyJoined(j, { withHistory = true } = {}) {
    this.info = j.room;
    this.me = j.me;
    this.members = new Map((j.members || []).map((m) => [m.member_id, m]));
    if (this.me) this.members.set(this.me.member_id, { ...this.members.get(this.me.member_id), ...this.me });
    const history = [...(j.history || [])].sort((a, b) => a.seq - b.seq);
    const hadMessages = this.messages.length > 0;
    let reset = false;
    let gap = false;
    if (this.epoch === null) {
      this.messages = [];
      this.byId.clear();
      this.seq = 0;
      this.gapAfterOrder = null;
      reset = true;
    } else if (this.epoch !== j.epoch) {
      // The room's history started over (a server restart without a
      // persistent broker). Keep what this member already read, and continue
      // after it with the new sequence.
      this.epochIndex += 1;
      this.seq = 0;
      reset = true;
      if (hadMessages && history.length && history[0].seq > 1) {
        this.gapAfterOrder = this.lastOrder();
        gap = true;
      }
    } else if (!j.recovered) {
      // Same history, but the stretch we missed could not be sent: keep what
      // we have and mark where the missing part is.
      const firstNew = history.find((m) => !this.byId.has(m.message_id));
      if (hadMessages && firstNew && firstNew.seq > this.seq + 1) {
        this.gapAfterOrder = orderOf(this.epochIndex, this.seq);
        gap = true;
      }
      reset = true;
    }
    this.epoch = j.epoch;
    const added = [];
    if (withHistory) for (const m of history) if (this.addMessage(m)) added.push(m);
    this.seq = Math.max(this.seq, Number(j.seq) || 0);
    this.gap = gap;
    return { reset, added, gap };
  }

  lastOrder() {
    return this.messages.length ? this.messages[this.messages.length - 1].order : 0;
  }

  /** Insert in (epoch, seq) order; false when already known (a duplicate). */
  addMessage(m) {
    if (!m || this.byId.has(m.message_id)) return false;
    m.order = orderOf(this.epochIndex, m.seq);
    this.byId.set(m.message_id, m);
    const arr = this.messages;
    let i = arr.length;
    while (i > 0 && arr[i - 1].order > m.order) i--;
    arr.splice(i, 0, m);
    if (m.seq > this.seq) this.seq = m.seq;
    this.typing.delete(m.from?.member_id);
    return true;
  }

  deleteMessage(id) {
    if (!this.byId.has(id)) return false;
    this.byId.delete(id);
    this.messages = this.messages.filter((m) => m.message_id !== id);
    for (const r of this.reports.values()) if (r.message?.message_id === id) this.reports.delete(r.id);
    return true;
  }

  memberHandle(memberId) {
    return this.members.get(memberId)?.handle;
  }
}

/**
 * Crisis alerts for staff, across every room in the token's scope, joined or
 * not: one entry per `alert_id`, open until an `alert_resolved` (ours or
 * anyone's) closes it for good. Resolved entries are kept (the latest few) so
 * the inbox can say who resolved what.
 */
export class AlertInbox {
  constructor() {
    this.byId = new Map(); // alert_id -> {alert_id, room, kind, message, at, facilitators_alerted, resolved: null | {by, at}}
    this.syncing = null; // alert ids open before a reconnect, not yet sent again
    this.dropped = new Set(); // resolved ids no longer listed: never open again
  }

  /** Open alerts, the longest waiting first. */
  get open() {
    return [...this.byId.values()].filter((a) => !a.resolved).sort((x, y) => String(x.at).localeCompare(String(y.at)));
  }

  /** Resolved alerts, the latest first. */
  get resolved() {
    return [...this.byId.values()].filter((a) => a.resolved).sort((x, y) => y.resolved.seq - x.resolved.seq);
  }

  get openCount() {
    let n = 0;
    for (const a of this.byId.values()) if (!a.resolved) n++;
    return n;
  }

  get(id) {
    return this.byId.get(id);
  }

  /** An `alert` frame; the entry when it is new, null for one already known (open or resolved). */
  add(f) {
    if (!f?.alert_id) return null;
    this.syncing?.delete(f.alert_id);
    if (this.byId.has(f.alert_id) || this.dropped.has(f.alert_id)) return null;
    const entry = { alert_id: f.alert_id, room: f.room, kind: f.kind, message: f.message || {}, at: f.at || f.message?.ts || new Date().toISOString(), facilitators_alerted: Number(f.facilitators_alerted) || 0, resolved: null };
    this.byId.set(f.alert_id, entry);
    return entry;
  }

  /** Closed for good (`by` null when we only know it is no longer open); the entry if it was open. */
  resolve(id, by, { mine = false } = {}) {
    const a = this.byId.get(id);
    if (!a || a.resolved) return null;
    a.resolved = { by: by || null, at: new Date().toISOString(), mine, seq: ++resolvedSeq };
    for (const old of this.resolved.slice(RESOLVED_KEPT)) {
      this.byId.delete(old.alert_id);
      this.dropped.add(old.alert_id);
    }
    return a;
  }

  /**
   * After a reconnect the server sends every alert still open again. Call
   * `beginSync` at `welcome` and `endSync` once a later request has been
   * answered (which comes after that replay): alerts open here but not sent
   * again were resolved while we were away.
   */
  beginSync() {
    this.syncing = new Set(this.open.map((a) => a.alert_id));
  }

  endSync() {
    const gone = [...(this.syncing || [])];
    this.syncing = null;
    return gone.map((id) => this.resolve(id, null)).filter(Boolean);
  }

  clear() {
    this.byId.clear();
    this.dropped.clear();
    this.syncing = null;
  }
}

/**
 * Events: `session`, `rooms`, `alerts` {added?, resolved?}, `room` {room,
 * what, ...}. `what` is one of reset, message, deleted, members, info,
 * typing, hands, reports, whisper, notice, removed.
 */
export class Store extends EventTarget {
  constructor() {
    super();
    this.session = null; // the welcome frame
    this.rooms = null; // RoomSummary[] or null before the first list
    this.joined = new Map();
    this.hidden = storage.hidden;
    this.resources = []; // the latest crisis resources from the server
    this.alerts = new AlertInbox(); // staff: crisis alerts of every room in scope
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  emitRoom(room, what, extra = {}) {
    this.emit('room', { room, what, ...extra });
  }

  setSession(welcome) {
    // A member who chose no name has a different generated one in each room;
    // `welcome.handle` is then only the name for outside rooms.
    this.session = welcome && { ...welcome, handlePerRoom: welcome.role === 'member' && !storage.handleChosen };
    this.emit('session', welcome);
  }

  get isStaff() {
    return isStaffRole(this.session?.role);
  }

  setRooms(rooms) {
    this.rooms = rooms || [];
    for (const r of this.rooms) {
      const joined = this.joined.get(r.id);
      if (joined?.info) Object.assign(joined.info, { member_count: r.member_count, open: r.open });
    }
    this.emit('rooms', this.rooms);
  }

  room(id) {
    return this.joined.get(id);
  }

  ensureRoom(id) {
    let r = this.joined.get(id);
    if (!r) {
      r = new RoomState(id);
      this.joined.set(id, r);
    }
    return r;
  }

  applyJoined(j, options) {
    const id = j.room.id;
    const r = this.ensureRoom(id);
    const result = r.applyJoined(j, options);
    this.emitRoom(r, 'reset', result);
    return r;
  }

  dropRoom(id) {
    this.joined.delete(id);
  }

  isHidden(roomId, memberId) {
    return this.hidden.has(`${roomId}/${memberId}`);
  }

  setHidden(roomId, memberId, hide) {
    const key = `${roomId}/${memberId}`;
    if (hide) this.hidden.add(key);
    else this.hidden.delete(key);
    storage.hidden = this.hidden;
    const r = this.room(roomId);
    if (r) this.emitRoom(r, 'hidden', { memberId, hide });
  }

  forgetLocal() {
    storage.forgetAll();
    this.hidden = new Set();
    this.joined.clear();
    this.clearAlerts();
  }

  /** Another identity (sign-in, sign-out): its alerts are not ours. */
  clearAlerts() {
    this.alerts.clear();
    this.emit('alerts', { added: [], resolved: [] });
  }

  /** Mark an alert resolved (by us after `resolve_alert`, or as learned otherwise). */
  resolveAlert(id, by, opts) {
    const a = this.alerts.resolve(id, by, opts);
    if (a) this.emit('alerts', { added: [], resolved: [a] });
    return a;
  }

  beginAlertSync() {
    this.alerts.beginSync();
  }

  endAlertSync() {
    const gone = this.alerts.endSync();
    if (gone.length) this.emit('alerts', { added: [], resolved: gone, whileAway: true });
  }

  /** Apply one unsolicited server frame. */
  apply(f) {
    const r = f.room && typeof f.room === 'string' ? this.room(f.room) : null;
    switch (f.type) {
      case 'message': {
        if (!r) return;
        if (r.addMessage(f)) this.emitRoom(r, 'message', { message: f });
        return;
      }
      case 'reactions': {
        const m = r?.byId.get(f.message_id);
        if (!m) return;
        m.reactions = f.counts && Object.keys(f.counts).length ? f.counts : undefined;
        this.emitRoom(r, 'reactions', { messageId: f.message_id });
        return;
      }
      case 'message_deleted': {
        if (r && r.deleteMessage(f.message_id)) this.emitRoom(r, 'deleted', { messageId: f.message_id });
        return;
      }
      case 'presence': {
        if (!r) return;
        if (f.joined) r.members.set(f.joined.member_id, f.joined);
        if (f.left) {
          r.members.delete(f.left);
          r.typing.delete(f.left);
        }
        if (r.info && typeof f.member_count === 'number') r.info.member_count = f.member_count;
        this.emitRoom(r, 'members', { joined: f.joined, left: f.left });
        return;
      }
      case 'member_update': {
        if (!r) return;
        r.members.set(f.member.member_id, f.member);
        if (r.me && f.member.member_id === r.me.member_id) r.me = { ...r.me, ...f.member };
        this.emitRoom(r, 'members', { updated: f.member });
        return;
      }
      case 'room_update': {
        if (!r) return;
        r.info = f.info;
        this.emitRoom(r, 'info');
        return;
      }
      case 'typing': {
        if (!r || f.member_id === r.me?.member_id) return;
        r.typing.set(f.member_id, Date.now() + 6000);
        this.emitRoom(r, 'typing');
        return;
      }
      case 'hands': {
        if (!r) return;
        r.setHands(f.queue || []);
        this.emitRoom(r, 'hands');
        return;
      }
      case 'report_filed': {
        if (!r) return;
        r.reports.set(f.report.id, f.report);
        this.emitRoom(r, 'reports', { report: f.report });
        return;
      }
      case 'report_resolved': {
        if (!r) return;
        r.reports.delete(f.report_id);
        this.emitRoom(r, 'reports');
        return;
      }
      case 'alert': {
        // Every room in scope, joined or not; the same alert may come twice.
        const a = this.alerts.add(f);
        if (a) this.emit('alerts', { added: [a], resolved: [] });
        return;
      }
      case 'alert_resolved': {
        this.resolveAlert(f.alert_id, f.by);
        return;
      }
      case 'whisper': {
        if (!r) return;
        r.addWhisper(f);
        this.emitRoom(r, 'whisper', { whisper: f });
        return;
      }
      case 'removed': {
        if (!r) return;
        this.joined.delete(f.room);
        this.emitRoom(r, 'removed', { removed: f });
        return;
      }
      case 'notice': {
        if (f.kind === 'crisis_resources' && Array.isArray(f.resources)) this.resources = f.resources;
        this.emit('notice', f);
        return;
      }
      default:
        this.emit('frame', f);
    }
  }
}
