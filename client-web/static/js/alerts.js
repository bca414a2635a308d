// Crisis alerts for facilitators and admins: one inbox across every room the
// staff token covers, whether or not the facilitator joined the room. The
// store keeps the alerts (state.js, AlertInbox); this module shows them (in
// the facilitator tools panel and in a dialog opened from the header), counts
// the open ones in the tab title and on buttons, tells screen readers about
// new ones, and can play a soft tone. Resolving is `resolve_alert`: the
// server closes the alert for everyone, and every other staff connection
// hears who resolved it.

import { h, clear, announce } from './dom.js';
import { t, L, formatWhen, formatTime } from './i18n.js';
import { modal, field, inform } from './dialogs.js';
import { whisperDialog } from './staff.js';
import { storage } from './state.js';

const MAX_NOTE_CHARS = 500;
/** New alerts that arrive together (the replay after `welcome`) are announced once. */
const BATCH_MS = 400;

let viewSeq = 0;

export function reducedMotion() {
  return typeof matchMedia === 'function' && matchMedia('(prefers-reduced-motion: reduce)').matches;
}

let audio = null;

/**
 * A short, soft two-note chime made with the Web Audio API (no file, no
 * network). Only when the facilitator turned it on, and never when the
 * device asks for reduced motion.
 */
export function playAlertTone({ force = false } = {}) {
  if ((!force && !storage.alertSound) || reducedMotion()) return;
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return;
  try {
    audio = audio || new AC();
    const play = () => {
      const start = audio.currentTime + 0.02;
      [659.25, 880].forEach((freq, i) => {
        const at = start + i * 0.18;
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = 'sine';
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, at);
        gain.gain.exponentialRampToValueAtTime(0.06, at + 0.03);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.32);
        osc.connect(gain).connect(audio.destination);
        osc.start(at);
        osc.stop(at + 0.35);
      });
    };
    if (audio.state === 'running') play();
    else
      audio
        .resume()
        .then(() => audio.state === 'running' && play())
        .catch(() => {});
  } catch {
    /* no audio on this device: the visual count and the announcement remain */
  }
}

/** The room's display name from the directory, or its id. */
function roomName(app, id) {
  return app.store.rooms?.find((r) => r.id === id)?.name || app.store.room(id)?.info?.name || id;
}

/**
 * The inbox: open alerts (the longest waiting first), then the latest
 * resolved ones with who resolved them, then the sound setting. Items are
 * kept by `alert_id` and updated in place, so a new alert never takes
 * keyboard focus away from the one being read.
 *
 * opts: `title` (heading of the open list), `level` (heading level),
 * `onOpenRoom(id)` (after "Go to room" was chosen).
 */
export class AlertInboxView {
  constructor(app, { title = L('alertsOpenTitle'), level = 3, onOpenRoom } = {}) {
    this.app = app;
    this.onOpenRoom = onOpenRoom;
    this.prefix = `alerts-${++viewSeq}`;
    this.items = new Map(); // alert_id -> li
    const hl = `h${Math.min(6, level)}`;
    const hl2 = `h${Math.min(6, level + 1)}`;
    this.heading = h(hl, { id: `${this.prefix}-title`, class: 'alerts-heading', tabindex: '-1' }, title);
    this.scopeNote = h('p', { class: 'tool-note', text: L('alertsAllRooms') });
    this.empty = h('p', { class: 'tool-empty alerts-empty', text: L('alertsNone') });
    this.list = h('ul', { class: 'tool-list alert-list', 'aria-labelledby': `${this.prefix}-title` });
    this.resolvedList = h('ul', { class: 'alert-resolved-list', 'aria-labelledby': `${this.prefix}-resolved` });
    this.resolvedBox = h('div', { class: 'alerts-resolved', hidden: true }, h(hl2, { id: `${this.prefix}-resolved`, class: 'alerts-subheading' }, L('alertsResolvedTitle')), this.resolvedList);
    this.sound = h('input', { id: `${this.prefix}-sound`, type: 'checkbox', checked: storage.alertSound, onchange: () => this.setSound(this.sound.checked) });
    this.soundHint = h('p', { id: `${this.prefix}-sound-hint`, class: 'tool-note', hidden: !reducedMotion(), text: L('alertSoundReduced') });
    if (reducedMotion()) this.sound.setAttribute('aria-describedby', this.soundHint.id);
    this.el = h(
      'div',
      { class: 'alert-inbox' },
      this.heading,
      this.scopeNote,
      this.empty,
      this.list,
      this.resolvedBox,
      h('div', { class: 'field field-check alert-sound' }, this.sound, h('label', { for: this.sound.id }, L('alertSound'))),
      this.soundHint,
    );
    this.listeners = [
      ['alerts', () => this.render()],
      ['rooms', () => this.render()],
      ['session', () => this.render()],
      ['room', (e) => (e.detail.what === 'reset' || e.detail.what === 'removed') && this.render()],
      ['alert_sound', () => { this.sound.checked = storage.alertSound; }],
    ];
    for (const [type, fn] of this.listeners) app.store.addEventListener(type, fn);
    this.render();
  }

  dispose() {
    for (const [type, fn] of this.listeners) this.app.store.removeEventListener(type, fn);
  }

  /** The language changed: build the items again in it. */
  relocalize() {
    const focused = this.el.contains(document.activeElement);
    for (const li of this.items.values()) li.remove();
    this.items.clear();
    this.render();
    if (focused && !this.el.contains(document.activeElement) && this.el.isConnected) this.heading.focus();
  }

  setSound(on) {
    storage.alertSound = on;
    this.app.store.emit('alert_sound');
    // Turned on with a click: let them hear it once (this also unlocks audio).
    if (on) playAlertTone();
  }

  render() {
    const inbox = this.app.store.alerts;
    const open = inbox.open;
    const wanted = new Set(open.map((a) => a.alert_id));
    let lostFocus = false;
    for (const [id, li] of this.items) {
      if (wanted.has(id)) continue;
      if (li.contains(document.activeElement)) lostFocus = true;
      li.remove();
      this.items.delete(id);
    }
    let prev = null;
    for (const a of open) {
      let li = this.items.get(a.alert_id);
      if (!li) {
        li = this.itemEl(a);
        this.items.set(a.alert_id, li);
      } else this.renderActions(li, a);
      const at = prev ? prev.nextSibling : this.list.firstChild;
      if (at !== li) this.list.insertBefore(li, at);
      prev = li;
    }
    this.empty.hidden = open.length > 0;
    this.list.hidden = open.length === 0;
    this.renderResolved(inbox.resolved);
    if (lostFocus && this.el.isConnected) this.heading.focus();
  }

  itemEl(a) {
    const from = a.message.from || {};
    const handle = from.handle || t('someone');
    const id = `${this.prefix}-${a.alert_id}`;
    const quote = h('blockquote', { class: 'quote' });
    if (a.message.cw) quote.append(h('p', { class: 'quote-cw', text: t('contentNote', a.message.cw) }));
    quote.append(a.message.text ? h('p', { class: 'quote-text', dir: 'auto', text: a.message.text }) : h('p', { class: 'quote-text quote-erased', text: t('alertTextErased') }));
    const li = h(
      'li',
      { class: 'tool-item tool-alert alert-item', 'aria-labelledby': `${id}-title`, dataset: { alertId: a.alert_id, room: a.room } },
      h('p', { id: `${id}-title`, class: 'tool-alert-title', text: t('toolsAlertText', handle) }),
      h(
        'p',
        { class: 'alert-meta' },
        h('span', { class: 'alert-room', dir: 'auto', text: roomName(this.app, a.room) }),
        h('span', { 'aria-hidden': 'true' }, ' · '),
        h('time', { datetime: a.at, text: formatWhen(a.at) }),
      ),
      h('p', { class: 'tool-note alert-reach', text: t('alertReached', a.facilitators_alerted) }),
      quote,
      h('div', { class: 'tool-actions' }),
    );
    this.renderActions(li, a);
    return li;
  }

  /** Whisper when we are in that room now; otherwise a way there. Rebuilt only when that changes. */
  renderActions(li, a) {
    const name = roomName(this.app, a.room);
    const here = this.app.activeRoom === a.room && !!this.app.store.room(a.room)?.active;
    const canWhisper = here && !!this.app.store.room(a.room)?.isStaff && !!a.message.from?.member_id;
    const key = `${here}/${canWhisper}/${name}`;
    if (li.dataset.actions === key) return;
    li.dataset.actions = key;
    li.querySelector('.alert-room').textContent = name;
    const handle = a.message.from?.handle || t('someone');
    const box = li.querySelector('.tool-actions');
    clear(box);
    if (canWhisper) box.append(h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `${t('whisper')}: ${handle}`, onclick: () => whisperDialog(this.app, a.room, a.message.from) }, t('whisper')));
    if (!here) box.append(h('button', { type: 'button', class: 'btn btn-secondary btn-small alert-open-room', 'aria-label': t('alertOpenRoomLabel', name), onclick: () => this.openRoom(a.room) }, t('alertOpenRoom')));
    box.append(h('button', { type: 'button', class: 'btn btn-primary btn-small alert-resolve', 'aria-label': t('alertResolveLabel', handle, name), onclick: () => this.resolve(a) }, t('alertResolve')));
  }

  renderResolved(resolved) {
    clear(this.resolvedList);
    this.resolvedBox.hidden = resolved.length === 0;
    for (const a of resolved) {
      const handle = a.message.from?.handle || t('someone');
      this.resolvedList.append(
        h(
          'li',
          { class: 'alert-resolved', dataset: { alertId: a.alert_id } },
          h('span', { class: 'alert-resolved-who', text: t('alertResolvedItem', handle, roomName(this.app, a.room)) }),
          h('span', { class: 'alert-resolved-by', text: a.resolved.by ? t('alertResolvedBy', a.resolved.by) : t('alertResolvedAway') }),
          h('time', { class: 'alert-resolved-at', datetime: a.resolved.at, text: formatTime(a.resolved.at) }),
        ),
      );
    }
  }

  openRoom(id) {
    this.el.closest('dialog')?.close();
    if (this.onOpenRoom) this.onOpenRoom(id);
    this.app.openRoom(id);
  }

  async resolve(a) {
    const handle = a.message.from?.handle || t('someone');
    const name = roomName(this.app, a.room);
    let note = '';
    const v = await modal({
      title: t('alertResolveTitle', handle),
      content: [
        h('p', { text: t('alertResolveIntro', name) }),
        field({ label: t('alertNoteLabel'), name: 'note', multiline: true, maxlength: MAX_NOTE_CHARS }),
      ],
      actions: [
        { label: t('cancel'), value: '', kind: 'quiet' },
        { label: t('alertResolve'), value: 'go', kind: 'primary' },
      ],
      validate: (_v, form) => {
        note = form.elements.note.value.trim();
        return null;
      },
      initialFocus: 'textarea',
    });
    if (v !== 'go') return;
    const req = { type: 'resolve_alert', room: a.room, alert_id: a.alert_id };
    if (note) req.note = note;
    try {
      const reply = await this.app.conn.request(req);
      this.app.store.resolveAlert(a.alert_id, reply.by || this.app.store.session?.handle, { mine: true });
      this.app.toast(t('alertResolvedDone'));
    } catch (err) {
      if (err.code === 'not_found') {
        // Someone else closed it first (their `alert_resolved` may still be on its way).
        this.app.store.resolveAlert(a.alert_id, null);
        const by = this.app.store.alerts.get(a.alert_id)?.resolved?.by;
        this.app.toast(by ? t('alertAlreadyResolvedBy', by) : t('alertAlreadyResolved'));
        return;
      }
      await inform(t('errGeneric'), err.code === 'forbidden' ? t('errForbidden') : this.app.errorText(err, { roomName: name }));
    }
  }
}

/**
 * The staff's view of the count: "Alerts (2)" in the header (opens the
 * inbox from anywhere, the directory included), "(2) Kindred" in the tab
 * title, a badge on the room's tools button, polite announcements, and the
 * optional tone.
 */
export class AlertCenter {
  constructor(app) {
    this.app = app;
    this.baseTitle = t('appName');
    this.pending = [];
    this.batchTimer = null;
    this.button = h('button', { type: 'button', class: 'btn alerts-btn', hidden: true, 'aria-haspopup': 'dialog', onclick: () => this.openInbox() }, t('alertsButton', 0));
    app.store.addEventListener('alerts', (e) => this.onAlerts(e.detail));
    app.store.addEventListener('session', () => this.renderCount());
    // Open reports count in the tab title too: a facilitator in another tab sees them waiting.
    app.store.addEventListener('room', (e) => {
      if (['reports', 'deleted', 'reset', 'removed'].includes(e.detail.what)) this.renderCount();
    });
  }

  /** Open reports in the rooms this tab has joined as staff. */
  get openReports() {
    let n = 0;
    for (const r of this.app.store.joined?.values() || []) if (r.isStaff) n += r.reports.size;
    return n;
  }

  get count() {
    return this.app.store.isStaff ? this.app.store.alerts.openCount : 0;
  }

  relocalize() {
    this.baseTitle = t('appName');
    this.renderCount();
  }

  renderCount() {
    const n = this.count;
    this.button.hidden = !this.app.store.isStaff;
    this.button.textContent = t('alertsButton', n);
    this.button.classList.toggle('has-open', n > 0);
    const waiting = n + (this.app.store.isStaff ? this.openReports : 0);
    document.title = waiting > 0 ? t('titleWithAlerts', waiting, this.baseTitle) : this.baseTitle;
    this.app.room?.setAlertCount(n);
  }

  onAlerts({ added = [], resolved = [], whileAway = false }) {
    this.renderCount();
    if (!this.app.store.isStaff) return;
    if (added.length) {
      this.pending.push(...added);
      clearTimeout(this.batchTimer);
      this.batchTimer = setTimeout(() => this.flush(), BATCH_MS);
    }
    if (!whileAway) {
      for (const a of resolved) {
        if (a.resolved.mine || !a.resolved.by) continue;
        announce(t('alertResolvedAnnounce', a.message.from?.handle || t('someone'), roomName(this.app, a.room), a.resolved.by));
      }
    }
  }

  flush() {
    const fresh = this.pending.filter((a) => !a.resolved);
    this.pending = [];
    if (!fresh.length) return;
    if (fresh.length === 1) {
      const a = fresh[0];
      announce(t('alertNew', a.message.from?.handle || t('someone'), roomName(this.app, a.room)));
    } else announce(t('alertsNewMany', fresh.length));
    playAlertTone();
  }

  async openInbox() {
    const view = new AlertInboxView(this.app, { title: t('alertsOpenTitle'), level: 3 });
    try {
      await modal({ title: t('alertsTitle'), className: 'dialog-alerts', content: [view.el], actions: [{ label: t('close'), value: '', kind: 'secondary' }], initialFocus: '.dialog-title' });
    } finally {
      view.dispose();
    }
  }
}
