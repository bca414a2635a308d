// Facilitator tools, shown only when the reader's role in the room is
// facilitator or admin: the raise-hand queue first (with how long each has
// waited), the crisis-alert inbox of every room in scope (alerts.js), open
// reports, the session (start with an agenda, end with a note) and the
// pinned message, room controls (topic, slow mode, lock, structured mode),
// and the dialogs for moderation actions and whispers. The server checks
// every action; this module only offers them.

import { h, clear } from './dom.js';
import { t, L, formatTime } from './i18n.js';
import { modal, field, selectField } from './dialogs.js';
import { minutesLeft } from './session.js';

const SLOW_MODE_STEPS = [0, 10, 30, 60, 120, 300];
const SESSION_MINUTES = [30, 45, 60, 75, 90, 120];

const ACTION_LABEL = {
  warn: 'modWarn',
  mute: 'modMute',
  unmute: 'modUnmute',
  kick: 'modKick',
  ban: 'modBan',
  delete_message: 'modDelete',
};

/** Ask for a reason (and duration) and send one `moderate` request. */
export async function moderateDialog(app, roomId, action, { member, message } = {}) {
  const who = member?.handle || message?.from?.handle || t('someone');
  const content = [];
  if (message) content.push(h('blockquote', { class: 'quote' }, h('p', { class: 'quote-author', text: message.from.handle }), h('p', { class: 'quote-text', text: message.text })));
  const reasonRequired = action === 'warn';
  // The author of a deleted message is not told why (protocol: only
  // message_deleted to the room), so that label promises nothing.
  content.push(field({ label: t(action === 'delete_message' ? 'modDeleteReasonLabel' : 'modReasonLabel'), name: 'reason', multiline: true, required: reasonRequired, maxlength: 500 }));
  if (action === 'mute' || action === 'ban') {
    content.push(selectField({ label: t('modDuration'), name: 'duration', options: t('modDurations').map((d) => ({ value: d.s, label: d.label })), value: action === 'mute' ? 600 : 86400 }));
  }
  let reason = '';
  let duration = 0;
  const v = await modal({
    title: t('modTitle', t(ACTION_LABEL[action]), who),
    content,
    actions: [
      { label: t('cancel'), value: '', kind: 'quiet' },
      { label: t(ACTION_LABEL[action]), value: 'go', kind: action === 'warn' || action === 'unmute' ? 'primary' : 'danger' },
    ],
    validate: (_value, form) => {
      reason = form.elements.reason.value.trim();
      duration = Number(form.elements.duration?.value || 0);
      return reasonRequired && !reason ? t('modReasonRequired') : null;
    },
    initialFocus: 'textarea',
  });
  if (v !== 'go') return false;
  const req = { type: 'moderate', room: roomId, action };
  if (action === 'delete_message') req.message_id = message.message_id;
  else req.member_id = member?.member_id || message?.from?.member_id;
  if (reason) req.reason = reason;
  if ((action === 'mute' || action === 'ban') && duration > 0) req.duration_s = duration;
  return app.act(req);
}

/** Compose a private message to one member (facilitator ↔ member only). */
export async function whisperDialog(app, roomId, to) {
  let text = '';
  const v = await modal({
    title: t('whisperTo', to.handle),
    content: [field({ label: t('whisperToLabel', to.handle), name: 'text', multiline: true, required: true, maxlength: app.maxChars() })],
    actions: [
      { label: t('cancel'), value: '', kind: 'quiet' },
      { label: t('whisperSend'), value: 'send', kind: 'primary' },
    ],
    validate: (_v, form) => {
      text = form.elements.text.value.trim();
      return text ? null : t('modReasonRequired');
    },
    initialFocus: 'textarea',
  });
  if (v !== 'send' || !text) return false;
  const ok = await app.act({ type: 'whisper', room: roomId, to: to.member_id, text }, { quiet: true });
  const r = app.store.room(roomId);
  if (ok && r) {
    const whisper = { room: roomId, outgoing: true, to: to.member_id, toHandle: to.handle, text, ts: new Date().toISOString() };
    r.addWhisper(whisper);
    app.store.emitRoom(r, 'whisper', { whisper });
  }
  return ok;
}

export class StaffTools {
  /** `inbox`: the alert inbox view (alerts.js) shown at the top of the tools. */
  constructor(app, inbox) {
    this.app = app;
    this.inbox = inbox;
    this.topicInput = h('input', { id: 'tools-topic', type: 'text', maxlength: '200', autocomplete: 'off' });
    this.slow = h('select', { id: 'tools-slow', onchange: () => this.setSlowMode() }, ...SLOW_MODE_STEPS.map((s) => h('option', { value: String(s) }, s === 0 ? L('toolsSlowOff') : L('toolsSeconds', s))));
    this.lock = h('input', { id: 'tools-lock', type: 'checkbox', onchange: () => this.toggle(this.lock.checked ? 'lock' : 'unlock') });
    this.structured = h('input', { id: 'tools-structured', type: 'checkbox', onchange: () => this.setMode() });
    this.hands = h('ul', { class: 'tool-list' });
    this.floor = h('div', { class: 'floor' });
    this.reports = h('ul', { class: 'tool-list' });
    // Who has had a chance to speak (the `participation` request): counts
    // only, quietest first, refreshed as messages arrive.
    this.talk = h('ol', { class: 'tool-list participation', 'aria-labelledby': 'tools-participation-title' });
    this.talkTimer = null;
    // The staff back-channel has its own box, apart from the public composer,
    // so a note meant for co-facilitators can never be sent to the room by a
    // leftover tick, nor a welcome to staff only.
    this.backText = h('textarea', { id: 'tools-backchannel', rows: '2', autocomplete: 'off', 'aria-describedby': 'tools-backchannel-feedback' });
    this.backFeedback = h('p', { id: 'tools-backchannel-feedback', class: 'feedback', role: 'status' });
    this.backSend = h('button', { type: 'submit', class: 'btn btn-secondary' }, L('backchannelSend'));
    this.sessionMinutes = h('select', { id: 'tools-session-minutes' }, ...SESSION_MINUTES.map((m) => h('option', { value: String(m) }, L('toolsSessionMinutesOption', m))));
    this.sessionMinutes.value = '90';
    this.sessionAgenda = h('textarea', { id: 'tools-session-agenda', rows: '2', maxlength: '500', autocomplete: 'off' });
    this.sessionStart = h('form', { class: 'session-start', onsubmit: (e) => this.startSession(e) }, h('div', { class: 'field' }, h('label', { for: 'tools-session-minutes' }, L('toolsSessionMinutes')), this.sessionMinutes), h('div', { class: 'field' }, h('label', { for: 'tools-session-agenda' }, L('toolsSessionAgenda')), this.sessionAgenda), h('button', { type: 'submit', class: 'btn btn-secondary' }, L('toolsSessionStart')));
    this.sessionLeft = h('p', {});
    this.sessionAgendaText = h('p', { class: 'tool-note' });
    this.sessionRunning = h('div', { class: 'session-running', hidden: true }, this.sessionLeft, this.sessionAgendaText, h('button', { type: 'button', class: 'btn btn-secondary btn-small', onclick: () => this.endSession() }, L('toolsSessionEnd')));
    this.pinned = h('div', { class: 'tool-pinned' });
    this.el = h(
      'aside',
      { id: 'staff-tools', class: 'panel staff-tools', 'aria-labelledby': 'tools-title', hidden: true },
      h('h2', { id: 'tools-title', class: 'panel-title' }, L('toolsTitle')),
      h('section', { class: 'tool-section tool-hands', 'aria-labelledby': 'tools-hands-title' }, h('h3', { id: 'tools-hands-title' }, L('toolsHands')), this.floor, this.hands),
      h('section', { class: 'tool-section tool-alerts', 'aria-labelledby': inbox.heading.id }, inbox.el),
      h('section', { class: 'tool-section', 'aria-labelledby': 'tools-reports-title' }, h('h3', { id: 'tools-reports-title' }, L('toolsReports')), this.reports),
      h('section', { class: 'tool-section tool-session', 'aria-labelledby': 'tools-session-title' }, h('h3', { id: 'tools-session-title' }, L('toolsSession')), this.sessionRunning, this.sessionStart),
      h('section', { class: 'tool-section', 'aria-labelledby': 'tools-pinned-title' }, h('h3', { id: 'tools-pinned-title' }, L('toolsPinned')), this.pinned),
      h(
        'form',
        { class: 'tool-section tool-backchannel', 'aria-labelledby': 'tools-backchannel-title', onsubmit: (e) => this.sendBackchannel(e) },
        h('h3', { id: 'tools-backchannel-title' }, L('backchannelTitle')),
        h('div', { class: 'field' }, h('label', { for: 'tools-backchannel' }, L('backchannelLabel')), this.backText),
        this.backFeedback,
        this.backSend,
      ),
      h(
        'form',
        { class: 'tool-section tool-topic', onsubmit: (e) => this.setTopic(e) },
        h('div', { class: 'field' }, h('label', { for: 'tools-topic' }, L('toolsTopic')), this.topicInput),
        h('button', { type: 'submit', class: 'btn btn-secondary' }, L('toolsTopicSet')),
      ),
      h('div', { class: 'tool-section' }, h('div', { class: 'field' }, h('label', { for: 'tools-slow' }, L('toolsSlowMode')), this.slow), h('div', { class: 'field field-check' }, this.lock, h('label', { for: 'tools-lock' }, L('toolsLock'))), h('div', { class: 'field field-check' }, this.structured, h('label', { for: 'tools-structured' }, L('toolsStructured')))),
      h('section', { class: 'tool-section', 'aria-labelledby': 'tools-participation-title' }, h('h3', { id: 'tools-participation-title' }, L('toolsParticipation')), this.talk),
    );
  }

  get room() {
    return this.app.store.room(this.roomId);
  }

  /** The language changed: the lists built from the room's state, again. */
  relocalize() {
    this.inbox.relocalize();
    if (this.roomId) this.render(this.roomId);
  }

  render(roomId) {
    this.roomId = roomId;
    const r = this.room;
    this.el.hidden = !r?.isStaff;
    if (!r?.isStaff) return;
    this.renderInfo();
    this.renderHands();
    this.renderReports();
    this.inbox.render();
    this.refreshParticipation(0);
  }

  /** Ask for the room's participation again, at most every second. */
  refreshParticipation(delayMs = 1000) {
    if (this.talkTimer || !this.room?.isStaff) return;
    this.talkTimer = setTimeout(async () => {
      this.talkTimer = null;
      const r = this.room;
      if (!r?.isStaff || !this.app.conn.online) return;
      try {
        const reply = await this.app.conn.request({ type: 'participation', room: r.id });
        if (reply.room === this.roomId) this.renderParticipation(reply.members);
      } catch {
        /* the next message tries again */
      }
    }, delayMs);
  }

  /** `members` from a `participation` reply or event: a list with a bar and the numbers in words. */
  renderParticipation(members) {
    const r = this.room;
    if (!r) return;
    clear(this.talk);
    const most = Math.max(1, ...members.map((m) => m.messages));
    const structured = r.info?.mode === 'structured';
    for (const m of members) {
      const quiet = m.messages === 0;
      const fill = h('span', { class: 'talk-fill' });
      // Through the CSSOM: the CSP allows no inline style attributes.
      fill.style.width = `${Math.round((100 * m.messages) / most)}%`;
      const bar = h('span', { class: 'talk-bar', 'aria-hidden': 'true' }, fill);
      const item = h(
        'li',
        { class: `tool-item talk-item${quiet ? ' is-quiet' : ''}` },
        h('span', { class: 'talk-name', dir: 'auto', text: m.handle }),
        bar,
        h('span', { class: 'talk-count', text: quiet ? t('notSpokenYet') : t('participationCount', m.messages) }),
      );
      if (structured && !r.members.get(m.member_id)?.has_floor) {
        item.append(h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `${t('giveFloor')}: ${m.handle}`, onclick: () => this.app.act({ type: 'moderate', room: r.id, action: 'give_floor', member_id: m.member_id }, { quiet: true }) }, t('giveFloor')));
      }
      this.talk.append(item);
    }
  }

  renderInfo() {
    const info = this.room?.info;
    if (!info) return;
    if (document.activeElement !== this.topicInput) this.topicInput.value = info.topic_now || '';
    const s = String(info.slow_mode_s || 0);
    if (![...this.slow.options].some((o) => o.value === s)) this.slow.append(h('option', { value: s }, t('toolsSeconds', s)));
    this.slow.value = s;
    this.lock.checked = !!info.locked;
    this.structured.checked = info.mode === 'structured';
    this.renderSession();
    this.renderPinned();
  }

  renderSession() {
    clearTimeout(this.sessionTimer);
    const r = this.room;
    const info = r?.info;
    if (!info) return;
    const s = info.session;
    this.sessionStart.hidden = !!s;
    this.sessionRunning.hidden = !s;
    if (s) {
      this.sessionLeft.textContent = t('toolsSessionRunning', minutesLeft(Date.parse(s.ends_at)));
      this.sessionAgendaText.hidden = !s.agenda;
      this.sessionAgendaText.textContent = s.agenda ? t('sessionAgenda', s.agenda) : '';
      if (!this.el.hidden) this.sessionTimer = setTimeout(() => this.renderSession(), 30000);
    }
  }

  renderPinned() {
    const r = this.room;
    const info = r?.info;
    if (!info) return;
    clear(this.pinned);
    const p = info.pinned;
    if (!p) this.pinned.append(h('p', { class: 'tool-empty', text: t('toolsPinnedNone') }));
    else {
      this.pinned.append(
        h('blockquote', { class: 'quote' }, h('p', { class: 'quote-author', text: p.from.handle }), h('p', { class: 'quote-text', text: p.cw ? t('contentNote', p.cw) : p.text })),
        h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => this.app.act({ type: 'moderate', room: r.id, action: 'unpin' }, { quiet: true }) }, t('unpinMessage')),
      );
    }
  }

  async startSession(e) {
    e.preventDefault();
    const req = { type: 'moderate', room: this.roomId, action: 'start_session', minutes: Number(this.sessionMinutes.value) };
    const agenda = this.sessionAgenda.value.trim();
    if (agenda) req.agenda = agenda;
    if (await this.app.act(req, { quiet: true })) this.sessionAgenda.value = '';
  }

  async endSession() {
    let note = '';
    const v = await modal({
      title: t('toolsEndTitle'),
      content: [h('p', { text: t('toolsEndIntro') }), field({ label: t('toolsEndNote'), name: 'note', multiline: true, maxlength: 500 })],
      actions: [
        { label: t('cancel'), value: '', kind: 'quiet' },
        { label: t('toolsSessionEnd'), value: 'end', kind: 'primary' },
      ],
      validate: (_v, form) => {
        note = form.elements.note.value.trim();
        return null;
      },
      initialFocus: 'textarea',
    });
    if (v !== 'end') return false;
    const req = { type: 'moderate', room: this.roomId, action: 'end_session' };
    if (note) req.note = note;
    return this.app.act(req, { quiet: true });
  }

  renderHands() {
    clearTimeout(this.handsTimer);
    const r = this.room;
    if (!r) return;
    clear(this.floor);
    const holder = [...r.members.values()].find((m) => m.has_floor);
    if (holder) {
      this.floor.append(h('p', { text: t('toolsFloorHolder', holder.handle) }), h('button', { type: 'button', class: 'btn btn-secondary btn-small', onclick: () => this.app.act({ type: 'moderate', room: r.id, action: 'end_floor', member_id: holder.member_id }, { quiet: true }) }, t('endFloor')));
    }
    clear(this.hands);
    const queue = r.hands.length ? r.hands : [...r.members.values()].filter((m) => m.hand_raised).map((m) => m.member_id);
    if (!queue.length) this.hands.append(h('li', { class: 'tool-empty', text: t('toolsHandsNone') }));
    const now = Date.now();
    for (const id of queue) {
      const handle = r.memberHandle(id) || t('someone');
      const since = r.handSince.get(id) ?? now;
      const waited = h('span', { class: 'hand-waited', text: t('handWaiting', Math.floor((now - since) / 60000)) });
      this.hands.append(h('li', { class: 'tool-item tool-hand' }, h('span', { class: 'hand-who' }, h('span', { class: 'hand-name', text: handle }), waited), h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `${t('giveFloor')}: ${handle}`, onclick: () => this.app.act({ type: 'moderate', room: r.id, action: 'give_floor', member_id: id }, { quiet: true }) }, t('giveFloor'))));
    }
    // How long each has waited moves on by the minute (not a live region).
    if (queue.length && !this.el.hidden) this.handsTimer = setTimeout(() => this.renderHands(), 30000);
  }

  renderReports() {
    const r = this.room;
    if (!r) return;
    clear(this.reports);
    if (!r.reports.size) this.reports.append(h('li', { class: 'tool-empty', text: t('toolsReportsNone') }));
    for (const rep of r.reports.values()) {
      const resolve = async (resolution) => {
        if (await this.app.act({ type: 'resolve_report', room: r.id, report_id: rep.id, resolution })) {
          r.reports.delete(rep.id);
          this.renderReports();
        }
      };
      this.reports.append(
        h(
          'li',
          { class: 'tool-item tool-report' },
          h('blockquote', { class: 'quote' }, h('p', { class: 'quote-author', text: `${rep.message.from.handle} · ${formatTime(rep.message.ts)}` }), h('p', { class: 'quote-text', text: rep.message.text })),
          h('p', { class: 'tool-note', text: t('toolsReportBy', rep.reason) }),
          h(
            'div',
            { class: 'tool-actions' },
            h('button', { type: 'button', class: 'btn btn-danger btn-small', onclick: async () => { if (await moderateDialog(this.app, r.id, 'delete_message', { message: rep.message })) resolve('acted'); } }, t('modDelete')),
            h('button', { type: 'button', class: 'btn btn-secondary btn-small', onclick: () => resolve('acted') }, t('resolveReport')),
            h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => resolve('dismissed') }, t('dismissReport')),
          ),
        ),
      );
    }
  }

  async sendBackchannel(e) {
    e.preventDefault();
    const text = this.backText.value.trim();
    if (!text || this.backSending || !this.roomId) return;
    this.backSending = true;
    this.backFeedback.textContent = '';
    try {
      await this.app.conn.request({ type: 'send', room: this.roomId, text, staff: true });
      this.backText.value = '';
    } catch (err) {
      this.backFeedback.textContent = this.app.errorText(err, { room: this.room, sending: true });
    } finally {
      this.backSending = false;
    }
  }

  async setTopic(e) {
    e.preventDefault();
    await this.app.act({ type: 'moderate', room: this.roomId, action: 'set_topic', text: this.topicInput.value.trim() }, { quiet: true });
  }

  async setSlowMode() {
    const ok = await this.app.act({ type: 'moderate', room: this.roomId, action: 'slow_mode', seconds: Number(this.slow.value) }, { quiet: true });
    if (!ok) this.renderInfo();
  }

  async toggle(action) {
    const ok = await this.app.act({ type: 'moderate', room: this.roomId, action }, { quiet: true });
    if (!ok) this.renderInfo();
  }

  async setMode() {
    const ok = await this.app.act({ type: 'moderate', room: this.roomId, action: 'set_mode', mode: this.structured.checked ? 'structured' : 'open' }, { quiet: true });
    if (!ok) this.renderInfo();
  }
}
