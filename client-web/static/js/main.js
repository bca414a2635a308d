// The app: builds the page shell, owns the connection and the store, routes
// between screens (#/ directory, #/room/<id> a room), joins and resumes rooms,
// turns error codes into kind words, and runs the account dialogs (help,
// start fresh, forget me, facilitator sign-in).

import { Connection } from './protocol.js';
import { Store, storage } from './state.js';
import { h, clear, announce } from './dom.js';
import { t, L, lang, formatWhen, setLanguage, languageEvents, TABLES, nativeName, isRtl } from './i18n.js';
import { modal, inform, confirmAction, field } from './dialogs.js';
import { DirectoryScreen } from './directory.js';
import { RulesScreen } from './rules.js';
import { RoomScreen, resourceList } from './room.js';
import { AlertCenter } from './alerts.js';

const ROOM_ROUTE = /^#\/room\/([^/?#]+)$/;

class App {
  constructor() {
    this.store = new Store();
    this.wishedHandle = null;
    this.activeRoom = null;
    this.takeTokenFromUrl();
    this.conn = new Connection({ credentials: () => this.credentials(), locale: lang });
    this.directory = new DirectoryScreen(this);
    this.rules = new RulesScreen(this);
    this.room = new RoomScreen(this);
    this.alerts = new AlertCenter(this);
    this.buildShell();
    this.wire();
    window.addEventListener('hashchange', () => {
      // A sign-in link opened in a tab that is already running.
      if (location.hash.startsWith('#token=')) {
        const token = location.hash;
        history.replaceState(null, '', location.pathname + location.search + '#/');
        this.switchIdentity(() => {
          storage.staffToken = decodeURIComponent(token.slice('#token='.length).split('&')[0]);
        });
        return;
      }
      this.route();
    });
    this.conn.start();
    this.route();
  }

  // ---- shell -----------------------------------------------------------

  buildShell() {
    this.statusText = h('span', { class: 'conn-text' });
    this.retryBtn = h('button', { type: 'button', class: 'btn btn-quiet btn-small', hidden: true, onclick: () => this.conn.reconnectNow() }, L('statusRetryNow'));
    this.status = h('div', { class: 'conn', role: 'status', dataset: { state: 'connecting' } }, h('span', { class: 'conn-dot', 'aria-hidden': 'true' }), this.statusText, this.retryBtn);
    this.youLong = h('span', { class: 'you-long' }, t('youMenuConnecting'));
    this.youBtn = h('button', { type: 'button', class: 'btn btn-quiet you-btn', 'aria-haspopup': 'dialog', onclick: () => this.openYou() }, h('span', { class: 'you-short' }, L('youTitle')), this.youLong);
    this.toasts = h('div', { class: 'toasts', role: 'status' });
    this.languagePicker = h(
      'select',
      { id: 'language-picker', class: 'language-picker', 'aria-label': L('languagePicker'), onchange: () => this.chooseLanguage(this.languagePicker.value) },
      // Each language by its own name, marked as that language so it is read out in it.
      ...Object.keys(TABLES).map((code) => h('option', { value: code, lang: code, dir: isRtl(code) ? 'rtl' : 'ltr' }, nativeName(code))),
    );
    this.languagePicker.value = lang;
    this.forgotten = h(
      'section',
      { id: 'screen-forgotten', class: 'screen screen-forgotten', 'aria-labelledby': 'forgotten-title', hidden: true },
      h('div', { class: 'card' }, h('h1', { id: 'forgotten-title', tabindex: '-1' }, L('forgottenTitle')), h('p', { text: L('forgottenBody') }), h('button', { type: 'button', class: 'btn btn-primary', onclick: () => this.startAgain() }, L('startAgain'))),
    );
    this.main = h('main', { id: 'main', tabindex: '-1' }, this.directory.el, this.rules.el, this.room.el, this.forgotten);
    const skip = h('a', { class: 'skip-link', href: '#main', onclick: (e) => { e.preventDefault(); this.focusScreen(); } }, L('skipToContent'));
    const header = h(
      'header',
      { class: 'topbar' },
      h('a', { class: 'brand', href: '#/' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), L('appName')),
      this.status,
      h('div', { class: 'topbar-actions' }, this.languagePicker, this.alerts.button, h('button', { type: 'button', class: 'btn help-btn', 'aria-haspopup': 'dialog', onclick: () => this.openHelp() }, L('getHelpNow')), this.youBtn),
    );
    const app = document.getElementById('app');
    clear(app);
    app.append(skip, header, this.toasts, this.main);
  }

  focusScreen() {
    const visible = [...this.main.children].find((el) => !el.hidden);
    const target = visible?.querySelector('h1') || this.main;
    target.focus();
  }

  /** A short, quiet confirmation. One at a time, so they never pile up over the conversation. */
  toast(text) {
    clear(this.toasts);
    clearTimeout(this.toastTimer);
    this.toasts.append(h('p', { class: 'toast', text }));
    this.toastTimer = setTimeout(() => clear(this.toasts), 5000);
  }

  showScreen(name) {
    const screens = { directory: this.directory, rules: this.rules, room: this.room };
    for (const [n, s] of Object.entries(screens)) if (n !== name) s.hide();
    this.forgotten.hidden = name !== 'forgotten';
    document.body.dataset.screen = name;
  }

  // ---- connection ------------------------------------------------------

  credentials() {
    const staff = storage.staffToken;
    if (staff) return { token: staff };
    const token = storage.memberToken;
    if (token) return { token };
    return this.wishedHandle ? { handle: this.wishedHandle } : {};
  }

  /** Take a facilitator token from `#token=…`; true when there was one. */
  takeTokenFromUrl() {
    const m = location.hash.match(/^#token=([^&]+)/);
    if (!m) return false;
    storage.staffToken = decodeURIComponent(m[1]);
    // Never leave a credential in the address bar or history.
    history.replaceState(null, '', location.pathname + location.search + '#/');
    return true;
  }

  wire() {
    const c = this.conn;
    c.addEventListener('status', (e) => this.renderStatus(e.detail));
    c.addEventListener('welcome', (e) => this.onWelcome(e.detail));
    c.addEventListener('hello_error', (e) => this.onHelloError(e.detail));
    c.addEventListener('closed', () => {
      for (const r of this.store.joined.values()) r.active = false;
    });
    c.addEventListener('rejoined', (e) => this.onRejoined(e.detail));
    c.addEventListener('reconnected', (e) => this.onReconnected(e.detail));
    c.addEventListener('frame', (e) => this.onFrame(e.detail));
    this.store.addEventListener('session', () => this.renderSession());
    languageEvents.addEventListener('change', () => this.relocalize());
  }

  renderSession() {
    const s = this.store.session;
    this.youLong.textContent = s && !s.handlePerRoom ? t('youMenu', s.handle) : t('youMenuConnecting');
    document.body.classList.toggle('is-staff', this.store.isStaff);
  }

  /** The picker: use this language from now on, on this device, without reloading. */
  chooseLanguage(code) {
    setLanguage(code, { remember: true });
  }

  /**
   * The language changed (setLanguage has set <html lang dir> and rewritten
   * every L() label): the next hello asks the server for its texts in it, and
   * every screen renders again from the store, keeping drafts and focus.
   */
  relocalize() {
    this.conn.locale = lang;
    this.languagePicker.value = lang;
    if (this.lastStatus) this.renderStatus(this.lastStatus);
    this.renderSession();
    this.alerts.relocalize();
    this.directory.relocalize();
    this.rules.relocalize();
    this.room.relocalize();
  }

  renderStatus({ status, retryInMs, restarting }) {
    let text;
    if (restarting && status === 'online') text = t('statusRestarting');
    else if (status === 'online') text = t('statusOnline');
    else if (status === 'connecting') text = t('statusConnecting');
    else if (status === 'reconnecting') text = restarting ? t('statusRestarting') : t('statusReconnecting', Math.ceil((retryInMs || 0) / 1000));
    else if (status === 'offline') text = t('statusOffline');
    else if (status === 'banned') text = t('statusBanned');
    else text = t('statusEnded');
    this.lastStatus = { status, retryInMs, restarting };
    this.status.dataset.state = restarting && status === 'online' ? 'reconnecting' : status;
    this.statusText.textContent = text;
    this.retryBtn.hidden = !(status === 'reconnecting' && retryInMs > 1500);
  }

  onWelcome(w) {
    if (w.role === 'member' && w.session_token) storage.memberToken = w.session_token;
    if (w.role === 'member' && this.wishedHandle) storage.handleChosen = true;
    this.wishedHandle = null;
    this.store.setSession(w);
    if (this.store.isStaff) this.syncAlerts();
    else if (this.store.alerts.byId.size) this.store.clearAlerts();
    if (this.directory.el.hidden === false) this.directory.refresh();
    this.reconcileRooms();
  }

  /**
   * Staff: right after `welcome` the server sends every open alert in scope
   * again. The reply to a request sent now comes after them, so an alert we
   * still hold open that was not sent again was resolved while we were away.
   * The reply also brings the room names the inbox shows.
   */
  async syncAlerts() {
    this.store.beginAlertSync();
    try {
      const reply = await this.conn.request({ type: 'list_rooms' });
      this.store.setRooms(reply.rooms);
      this.store.endAlertSync();
    } catch {
      /* disconnected again: the next welcome starts over */
    }
  }

  /**
   * At each welcome: the client library resumes the rooms it is in by itself
   * (see onRejoined). Forget any other room, except the one on screen, which
   * is entered (again): a join that was lost, or a new identity's session.
   */
  reconcileRooms() {
    const resumed = new Set(this.conn.rooms);
    const active = this.activeRoom;
    for (const r of [...this.store.joined.values()]) if (!resumed.has(r.id) && r.id !== active) this.store.dropRoom(r.id);
    if (active && !resumed.has(active) && this.joining !== active && this.routeRoom() === active) {
      const r = this.store.room(active);
      if (r) r.active = false;
      this.enterRoom(active);
    }
  }

  /** A room joined again after a reconnect; its missed messages follow, once and in order. */
  onRejoined(j) {
    if (!this.store.room(j.room.id)) return;
    const state = this.store.applyJoined(j, { withHistory: false });
    state.active = true;
    this.room.flushOutbox(state.id);
    if (state.id === this.activeRoom) announce(j.recovered ? t('backOnline') : t('backOnlineGap'));
  }

  /** Rooms that could not be joined again (banned meanwhile, new rules, closed…, or no answer). */
  onReconnected({ rooms }) {
    for (const { room, error } of rooms) {
      if (!error || error.code === 'disconnected') continue;
      if (room !== this.activeRoom) this.store.dropRoom(room);
      else if (error.code === 'timeout') this.enterRoom(room); // still inactive since the drop: joins anew with since
      else this.onJoinError(room, error, { resumed: true });
    }
  }

  onHelloError(body) {
    const code = body?.code;
    if (this.wishedHandle && (code === 'invalid_handle' || code === 'bad_request')) {
      this.wishedHandle = null;
      this.toast(t('errInvalidHandle'));
    } else if (code === 'unauthorized' || code === 'forbidden') {
      if (storage.staffToken) {
        storage.staffToken = null;
        this.toast(t('errStaffToken'));
      } else if (storage.memberToken) {
        storage.memberToken = null;
        this.store.joined.clear();
        this.toast(t('errSessionLost'));
      }
    }
  }

  onFrame(f) {
    if (f.type === 'error') {
      this.toast(this.errorText({ code: f.code, frame: f }, {}));
      return;
    }
    this.store.apply(f);
  }

  maxChars() {
    return this.store.session?.limits?.max_text_chars || 2000;
  }

  /** Send a request whose only outcome to show is success or a kind error. */
  async act(req, { quiet = false } = {}) {
    try {
      await this.conn.request(req);
      if (!quiet) this.toast(t('modDone'));
      return true;
    } catch (err) {
      await inform(t('errGeneric'), this.errorText(err, { room: this.store.room(req.room) }));
      return false;
    }
  }

  // ---- routing ---------------------------------------------------------

  routeRoom() {
    const m = location.hash.match(ROOM_ROUTE);
    return m ? decodeURIComponent(m[1]) : null;
  }

  route() {
    const roomId = this.routeRoom();
    if (roomId) {
      if (roomId !== this.activeRoom) this.enterRoom(roomId);
      return;
    }
    const from = document.body.dataset.screen;
    this.leaveActive();
    this.showScreen('directory');
    this.directory.show();
    // Move focus to the new screen's heading, except on first load.
    if (from && from !== 'directory') this.directory.focus();
  }

  openRoom(id) {
    location.hash = `#/room/${encodeURIComponent(id)}`;
  }

  goDirectory() {
    if (location.hash === '#/' || location.hash === '') this.route();
    else location.hash = '#/';
  }

  leaveActive() {
    const id = this.activeRoom;
    this.activeRoom = null;
    if (!id) return;
    this.store.dropRoom(id);
    this.conn.leave(id);
  }

  summary(id) {
    return this.store.rooms?.find((r) => r.id === id);
  }

  /** Join (or show) a room; on `rules_not_accepted` show the rules first. */
  async enterRoom(id, { acceptRules } = {}) {
    if (this.activeRoom && this.activeRoom !== id) this.leaveActive();
    this.activeRoom = id;
    const existing = this.store.room(id);
    if (existing?.active && acceptRules === undefined) {
      this.showScreen('room');
      this.room.show(id);
      return;
    }
    if (acceptRules === undefined) {
      this.showScreen('room');
      this.room.show(id, { focus: false });
    }
    this.joining = id;
    try {
      await this.conn.whenOnline(60000);
    } catch {
      this.joining = null;
      return; // reconcileRooms() enters it once we are connected
    }
    if (this.activeRoom !== id) {
      this.joining = null;
      return;
    }
    const req = { type: 'join', room: id };
    if (acceptRules !== undefined) req.accept_rules = acceptRules;
    const since = existing?.position();
    if (since) req.since = since;
    try {
      const j = await this.conn.request(req).finally(() => {
        this.joining = null;
      });
      if (this.activeRoom !== id) {
        this.conn.leave(id);
        return;
      }
      const state = this.store.applyJoined(j);
      state.active = true;
      this.showScreen('room');
      this.room.show(id);
    } catch (err) {
      if (this.activeRoom !== id) return;
      if (err.code === 'disconnected' || err.code === 'timeout') return; // entered again at the next welcome (reconcileRooms)
      this.onJoinError(id, err, {});
    }
  }

  onJoinError(id, err, { resumed }) {
    const body = err.frame || {};
    const name = this.store.room(id)?.info?.name || this.summary(id)?.name || id;
    // A locked room takes nobody new: don't have them read and accept the rules first.
    if (err.code === 'rules_not_accepted' && this.summary(id)?.locked) err = { code: 'room_locked', frame: {} };
    if (err.code === 'rules_not_accepted') {
      this.showScreen('rules');
      this.rules.show({ roomId: id, name, version: body.rules_version, rules: body.rules, language: this.summary(id)?.language, updated: !!resumed || !!this.store.room(id)?.info });
      return;
    }
    this.store.dropRoom(id);
    this.activeRoom = null;
    history.replaceState(null, '', location.pathname + location.search + '#/');
    this.showScreen('directory');
    this.directory.show();
    if (err.code === 'room_full') {
      const alternatives = body.alternatives || [];
      const content = [h('p', { text: t('errRoomFull', name) })];
      if (alternatives.length) {
        content.push(h('p', { text: t('errRoomFullAlternatives') }));
        content.push(
          h('ul', { class: 'alternatives' }, ...alternatives.map((a) => h('li', {}, h('button', { type: 'submit', value: `join:${a.id}`, class: 'btn btn-secondary' }, t('joinRoomLabel', a.name)), h('span', { class: 'alt-count' }, t('peopleHere', a.member_count, a.capacity))))),
        );
      } else content.push(h('p', { text: t('errRoomFullNone') }));
      modal({ title: t('errRoomFull', name), content: content.slice(1), actions: [{ label: t('close'), value: '', kind: 'quiet' }] }).then((v) => {
        if (v.startsWith('join:')) this.openRoom(v.slice(5));
      });
      return;
    }
    inform(name, this.errorText(err, { roomName: name }));
  }

  // ---- errors ----------------------------------------------------------

  /** Kind words for an error code. */
  errorText(err, { room, roomName, sending = false } = {}) {
    const body = err.frame || {};
    if (sending && (err.code === 'disconnected' || err.code === 'timeout')) return t('notSentOffline');
    const name = roomName || room?.info?.name || '';
    const secs = Math.max(1, Math.ceil((body.retry_after_ms || 1000) / 1000));
    switch (err.code) {
      case 'rate_limited':
      case 'overloaded':
        return t('errRateLimited', secs);
      case 'slow_mode':
        return t('errSlowMode', secs);
      case 'too_large':
        return t('errTooLarge', this.maxChars());
      case 'muted':
        return body.until ? t('errMutedUntil', formatWhen(body.until)) : t('errMuted');
      case 'not_your_turn':
        return t('errNotYourTurn');
      case 'waiting_for_facilitator':
        return t('errWaitingForFacilitator');
      case 'content_blocked':
        return t('errContentBlocked');
      case 'room_full':
        return t('errRoomFull', name);
      case 'room_closed':
        return body.next_open_at ? `${t('errRoomClosed', name)} ${t('errRoomClosedNext', formatWhen(body.next_open_at))}` : t('errRoomClosed', name);
      case 'room_locked':
        return t('errRoomLocked', name);
      case 'banned':
        return body.until ? t('errBannedUntil', formatWhen(body.until)) : t('errBanned');
      case 'not_found':
        return t('errNotFound');
      case 'forbidden':
      case 'unauthorized':
        return t('errForbidden');
      case 'disconnected':
      case 'timeout':
        return t('errDisconnected');
      case 'unavailable':
      case 'internal':
        return t('errUnavailable');
      default:
        return sending ? t('notSentGeneric') : t('errGeneric');
    }
  }

  // ---- dialogs ---------------------------------------------------------

  openHelp() {
    // The operator's own helplines when the server has sent them; general guidance otherwise.
    const fromServer = this.store.resources.length > 0;
    const content = [
      h('p', { class: 'help-danger', text: t('helpDanger') }),
      h('p', { text: t('helpTalk') }),
      resourceList(fromServer ? this.store.resources : t('helpLines')),
      fromServer ? null : h('p', {}, t('helpFind'), ' ', h('a', { href: t('helpFindUrl'), target: '_blank', rel: 'noopener noreferrer' }, t('helpFindLink'))),
      h('p', { class: 'help-peer', text: t('helpPeer') }),
    ].filter(Boolean);
    return modal({ title: t('helpTitle'), className: 'dialog-help', content, actions: [{ label: t('close'), value: '', kind: 'secondary' }] });
  }

  async openYou() {
    const s = this.store.session;
    const staff = this.store.isStaff;
    const you = !s ? t('statusConnecting') : staff ? t('youAreStaff', s.handle, s.role) : s.handlePerRoom ? t('youArePerRoom') : t('youAre', s.handle);
    const content = [h('p', { text: you })];
    const actions = [];
    if (!staff) {
      content.push(h('p', { class: 'hint', text: `${t('startFresh')}: ${t('startFreshExplain')}` }), h('p', { class: 'hint', text: `${t('forgetMe')}: ${t('forgetMeExplain')}` }));
      actions.push({ label: t('startFresh'), value: 'fresh', kind: 'secondary' }, { label: t('forgetMe'), value: 'forget', kind: 'danger' }, { label: t('staffSignIn'), value: 'signin', kind: 'quiet' });
    } else {
      actions.push({ label: t('staffSignOut'), value: 'signout', kind: 'secondary' });
    }
    actions.push({ label: t('close'), value: '', kind: 'quiet' });
    const v = await modal({ title: t('youTitle'), className: 'dialog-you', content, actions });
    if (v === 'fresh') this.startFresh();
    else if (v === 'forget') this.forgetMe();
    else if (v === 'signin') this.staffSignIn();
    else if (v === 'signout') this.switchIdentity(() => { storage.staffToken = null; });
  }

  /** Leave rooms, change credentials, reconnect, and start from the directory. */
  switchIdentity(change) {
    this.leaveActive();
    this.store.joined.clear();
    this.store.clearAlerts();
    change();
    this.store.setSession(null);
    this.conn.restart();
    this.goDirectory();
  }

  async startFresh() {
    let name = '';
    const v = await modal({
      title: t('startFreshTitle'),
      content: [h('p', { text: t('startFreshExplain') }), field({ label: t('startFreshNameLabel'), name: 'handle', maxlength: this.store.session?.limits?.max_handle_chars || 32 })],
      actions: [
        { label: t('cancel'), value: '', kind: 'quiet' },
        { label: t('startFreshConfirm'), value: 'go', kind: 'primary' },
      ],
      validate: (_v, form) => {
        name = form.elements.handle.value.trim();
        return null;
      },
    });
    if (v !== 'go') return;
    this.switchIdentity(() => {
      storage.memberToken = null;
      storage.handleChosen = false;
      this.wishedHandle = name || null;
    });
  }

  async forgetMe() {
    const ok = await confirmAction({ title: t('forgetMeTitle'), body: [t('forgetMeBody'), t('forgetMeKeep')], confirm: t('forgetMeConfirm'), danger: true });
    if (!ok) return;
    try {
      await this.conn.request({ type: 'forget_me' });
    } catch (err) {
      inform(t('errGeneric'), this.errorText(err));
      return;
    }
    this.conn.stop();
    this.activeRoom = null;
    this.store.forgetLocal();
    this.store.setSession(null);
    history.replaceState(null, '', location.pathname + location.search + '#/');
    this.showScreen('forgotten');
    this.forgotten.querySelector('h1').focus();
  }

  startAgain() {
    this.conn.restart();
    this.route();
  }

  async staffSignIn() {
    let token = '';
    const v = await modal({
      title: t('staffSignInTitle'),
      content: [h('p', { text: t('staffSignInExplain') }), field({ label: t('staffTokenLabel'), name: 'token', required: true, type: 'password' })],
      actions: [
        { label: t('cancel'), value: '', kind: 'quiet' },
        { label: t('staffSignInSubmit'), value: 'go', kind: 'primary' },
      ],
      validate: (_v, form) => {
        token = form.elements.token.value.trim();
        return token ? null : t('staffTokenLabel');
      },
      initialFocus: 'input',
    });
    if (v !== 'go') return;
    this.switchIdentity(() => {
      storage.staffToken = token;
    });
  }
}

// Exposed for the browser tests and for debugging from the console.
window.kindred = new App();
