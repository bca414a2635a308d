// The room screen: header (name, topic, room state), the message timeline
// (history, live messages, replies, content-note folding, whispers), the
// composer (replies, content notes, staff back-channel, raise hand), the
// people list, safety notices, and facilitator tools for staff. Message text
// is only ever set with textContent.

import { h, clear, announce, safeUrl } from './dom.js';
import { t, L, formatTime, formatWhen, formatList } from './i18n.js';
import { modal, selectField, field, confirmAction } from './dialogs.js';
import { StaffTools, moderateDialog, whisperDialog } from './staff.js';
import { AlertInboxView } from './alerts.js';
import { isStaffRole } from './state.js';
import { PinnedBar, SessionBar, reactionRow, allowedReactions } from './session.js';

const TYPING_SEND_EVERY_MS = 3000;
const NEAR_BOTTOM_PX = 120;

const ROLE_LABEL = { facilitator: 'roleFacilitator', admin: 'roleAdmin' };

export class RoomScreen {
  constructor(app) {
    this.app = app;
    this.roomId = null;
    this.replyTo = null;
    this.lastTypingSent = 0;
    this.typingTimer = null;
    this.outbox = []; // {roomId, msg, el}: written while offline, sent after the rejoin
    this.staff = new StaffTools(app, new AlertInboxView(app, { title: L('toolsAlerts'), level: 3 }));
    this.stuck = true; // whether the reader is at the latest message
    this.build();
    // Keep the latest message in view when the timeline shrinks (a phone
    // keyboard opening, a notice appearing, a rotation).
    new ResizeObserver(() => {
      if (this.stuck) this.timeline.scrollTop = this.timeline.scrollHeight;
    }).observe(this.timeline);
    app.store.addEventListener('room', (e) => {
      if (e.detail.room.id === this.roomId) this.onRoomEvent(e.detail);
    });
    app.store.addEventListener('notice', (e) => this.onNotice(e.detail));
  }

  get state() {
    return this.roomId ? this.app.store.room(this.roomId) : null;
  }

  build() {
    this.title = h('h1', { id: 'room-title', class: 'room-title', tabindex: '-1', dir: 'auto' });
    this.topic = h('p', { class: 'room-topic', hidden: true, dir: 'auto' });
    this.flags = h('p', { class: 'room-flags', hidden: true });
    this.peopleToggle = h('button', { type: 'button', class: 'btn btn-quiet panel-toggle', 'aria-controls': 'people-panel', 'aria-expanded': 'false', onclick: () => this.togglePanel(this.people, this.peopleToggle) });
    this.toolsCount = h('span', { class: 'count-badge', 'aria-hidden': 'true', hidden: true });
    this.toolsCountText = h('span', { class: 'visually-hidden' });
    this.toolsToggle = h('button', { type: 'button', class: 'btn btn-quiet panel-toggle', 'aria-controls': 'staff-tools', 'aria-expanded': 'false', hidden: true, onclick: () => this.togglePanel(this.staff.el, this.toolsToggle) }, L('toolsToggle'), this.toolsCount, this.toolsCountText);

    // One tab stop for the whole list (roving tabindex): Tab reaches the
    // current message's controls and then leaves; arrow keys move between
    // messages. Otherwise every message's "⋯" is a Tab press.
    this.list = h('ol', { class: 'messages', 'aria-label': L('messagesLabel'), onkeydown: (e) => this.onListKey(e), onfocusin: (e) => this.onListFocus(e) });
    this.emptyNote = h('p', { class: 'timeline-empty', hidden: true, text: L('emptyRoom') });
    this.notices = h('div', { class: 'notices' });
    this.timeline = h('div', { class: 'timeline', role: 'region', 'aria-label': L('messagesLabel'), tabindex: '0', onscroll: () => this.onScroll() }, this.emptyNote, this.list, this.notices);
    this.jump = h('button', { type: 'button', class: 'btn btn-secondary jump-latest', hidden: true, onclick: () => this.scrollToBottom() }, L('newMessagesBelow'));
    this.typingLine = h('p', { class: 'typing', 'aria-hidden': 'true' });
    this.pinnedBar = new PinnedBar(this.app);
    this.sessionBar = new SessionBar();

    // Composer
    this.replyBar = h('div', { class: 'reply-bar', hidden: true });
    this.cwInput = h('input', { id: 'composer-cw', type: 'text', maxlength: '40', list: 'cw-suggestions', autocomplete: 'off' });
    this.cwRow = h('div', { class: 'field cw-row', hidden: true }, h('label', { for: 'composer-cw' }, L('contentNoteLabel')), this.cwInput, h('datalist', { id: 'cw-suggestions' }, ...['self-harm', 'suicide', 'loss', 'abuse', 'addiction', 'medical'].map((v) => h('option', { value: v }))));
    this.text = h('textarea', { id: 'composer-text', class: 'composer-text', rows: '2', placeholder: L('composerPlaceholder'), 'aria-describedby': 'composer-block composer-hint composer-feedback', oninput: () => this.onInput(), onkeydown: (e) => this.onKey(e) });
    this.cwToggle = h('button', { type: 'button', class: 'btn btn-quiet btn-small', 'aria-expanded': 'false', 'aria-controls': 'composer-cw', onclick: () => this.toggleCw() }, L('addContentNote'));
    this.hand = h('button', { type: 'button', class: 'btn btn-secondary btn-small', hidden: true, 'aria-pressed': 'false', onclick: () => this.toggleHand() }, L('raiseHand'));
    this.counter = h('span', { class: 'counter', 'aria-live': 'off' });
    this.sendBtn = h('button', { type: 'submit', class: 'btn btn-primary send' }, L('send'));
    this.feedback = h('p', { id: 'composer-feedback', class: 'feedback', role: 'status' });
    // Why the composer is closed for now (muted, slow mode, waiting for the
    // floor), with a countdown; not a live region (it ticks every second):
    // the change itself is announced once.
    this.blockLine = h('p', { id: 'composer-block', class: 'composer-block', hidden: true });
    this.composer = h(
      'form',
      { class: 'composer', onsubmit: (e) => this.onSubmit(e) },
      this.replyBar,
      this.cwRow,
      h('label', { for: 'composer-text', class: 'visually-hidden' }, L('composerLabel')),
      this.blockLine,
      this.text,
      h('div', { class: 'composer-row' }, this.cwToggle, this.hand, h('span', { class: 'spacer' }), this.counter, this.sendBtn),
      h('p', { id: 'composer-hint', class: 'hint' }, L('composerHint')),
      this.feedback,
    );
    this.removedCard = h('div', { class: 'card removed-card', hidden: true });

    this.peopleList = h('ul', { class: 'people-list' });
    this.peopleTitle = h('h2', { id: 'people-title', class: 'panel-title' }, L('peopleTitle'));
    this.people = h('aside', { id: 'people-panel', class: 'panel people', 'aria-labelledby': 'people-title' }, this.peopleTitle, this.peopleList);

    // On narrow screens the panels are drawers: each gets a close button, and Escape closes them.
    for (const [panel, btn] of [[this.people, this.peopleToggle], [this.staff.el, this.toolsToggle]]) {
      panel.prepend(h('button', { type: 'button', class: 'btn btn-secondary btn-small panel-close', onclick: () => { this.closePanels(); btn.focus(); } }, L('close')));
      panel.addEventListener('keydown', (e) => {
        if (e.key === 'Escape' && panel.classList.contains('open')) {
          this.closePanels();
          btn.focus();
        }
      });
    }
    this.el = h(
      'section',
      { id: 'screen-room', class: 'screen screen-room', 'aria-labelledby': 'room-title', hidden: true },
      h(
        'div',
        { class: 'room-bar' },
        h('button', { type: 'button', class: 'btn btn-quiet back', onclick: () => this.app.goDirectory() }, h('span', { class: 'back-arrow', 'aria-hidden': 'true' }, '←'), L('backToRooms')),
        h('div', { class: 'room-heading' }, this.title, this.topic, this.flags),
        h('div', { class: 'room-bar-actions' }, this.peopleToggle, this.toolsToggle),
      ),
      h(
        'div',
        { class: 'room-body' },
        h('div', { class: 'chat' }, this.sessionBar.el, this.pinnedBar.el, this.timeline, this.jump, this.typingLine, this.removedCard, this.composer),
        h('div', { class: 'side' }, this.people, this.staff.el),
      ),
    );
  }

  // ---- lifecycle -------------------------------------------------------

  /** Show a room. `joining` while the join is in flight (no state yet). */
  show(roomId, { focus = true } = {}) {
    const changed = roomId !== this.roomId;
    this.roomId = roomId;
    // Back in a room one was removed from (a kick is not a ban): the server let
    // us in again, so the removal card and the hidden composer go.
    if (!changed && this.removed && this.state?.active) {
      this.removedCard.hidden = true;
      this.removed = false;
    }
    if (changed) {
      this.replyTo = null;
      this.renderReply();
      clear(this.notices);
      this.removedCard.hidden = true;
      this.removed = false;
      this.slowUntil = 0;
      this.blockKind = null;
      this.mutedShown = !!this.state?.me?.muted;
      this.feedback.textContent = '';
      this.text.value = '';
      this.closePanels();
    }
    this.el.hidden = false;
    this.renderAll();
    this.scrollToBottom();
    // On a phone, focusing the composer opens the keyboard over half the
    // screen before the member has read anything: focus the room's title.
    if (focus && this.state?.info) {
      if (matchMedia('(max-width: 50rem), (pointer: coarse)').matches) {
        this.title.setAttribute('tabindex', '-1');
        this.title.focus({ preventScroll: true });
      } else this.text.focus();
    }
  }

  hide() {
    this.el.hidden = true;
    this.sessionBar.stop();
    this.closePanels();
    clearTimeout(this.typingTimer);
  }

  /** The language changed: render the room again in it, keeping the draft, the reply and the notices. */
  relocalize() {
    this.cwToggle.textContent = this.cwRow.hidden ? t('addContentNote') : t('removeContentNote');
    if (!this.sending) this.sendBtn.textContent = t('send');
    this.staff.relocalize();
    if (!this.roomId) return;
    const stuck = this.stuck;
    const top = this.timeline.scrollTop;
    this.renderAll();
    this.renderReply();
    if (stuck) this.scrollToBottom();
    else this.timeline.scrollTop = top;
  }

  closePanels() {
    for (const [panel, btn] of [[this.people, this.peopleToggle], [this.staff.el, this.toolsToggle]]) {
      panel.classList.remove('open');
      btn.setAttribute('aria-expanded', 'false');
    }
    if (this.drawerTrap) document.removeEventListener('keydown', this.drawerTrap, true);
    this.drawerTrap = null;
  }

  /**
   * An open drawer (narrow screens, where it covers the page) keeps focus:
   * Tab and Shift+Tab wrap inside it, and Escape closes it from anywhere.
   */
  trapDrawer(panel, btn) {
    this.drawerTrap = (e) => {
      if (!panel.classList.contains('open') || getComputedStyle(panel).position !== 'fixed' || document.querySelector('dialog[open]')) return;
      if (e.key === 'Escape') {
        e.preventDefault();
        this.closePanels();
        btn.focus();
        return;
      }
      if (e.key !== 'Tab') return;
      const items = [...panel.querySelectorAll('button, [href], input, select, textarea, summary, [tabindex]:not([tabindex="-1"])')].filter((el) => !el.disabled && el.offsetParent !== null);
      if (!items.length) return;
      // Move focus ourselves, wrapping at both ends.
      e.preventDefault();
      const active = document.activeElement;
      const n = items.length;
      let i = items.indexOf(active);
      if (i >= 0) i = (i + (e.shiftKey ? n - 1 : 1)) % n;
      else if (panel.contains(active)) {
        const after = (el) => active.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING;
        i = e.shiftKey ? items.findLastIndex((el) => !after(el)) : items.findIndex(after);
        if (i < 0) i = e.shiftKey ? n - 1 : 0;
      } else i = e.shiftKey ? n - 1 : 0;
      items[i].focus();
    };
    document.addEventListener('keydown', this.drawerTrap, true);
  }

  togglePanel(panel, btn) {
    const open = !panel.classList.contains('open');
    this.closePanels();
    panel.classList.toggle('open', open);
    btn.setAttribute('aria-expanded', String(open));
    if (open) panel.querySelector('h2')?.setAttribute('tabindex', '-1');
    if (open) panel.querySelector('h2')?.focus();
    if (open) this.trapDrawer(panel, btn);
  }

  /** Open crisis alerts (every room in scope), shown on the tools button. */
  setAlertCount(n) {
    // The badge is seen; screen readers hear the words after the button's name.
    this.toolsCount.hidden = n === 0;
    this.toolsCount.textContent = n > 0 ? String(n) : '';
    this.toolsCountText.textContent = n > 0 ? t('toolsToggleAlerts', n) : '';
  }

  onRoomEvent(d) {
    switch (d.what) {
      case 'reset':
        this.renderAll();
        this.scrollToBottom();
        break;
      case 'message':
        this.onMessage(d.message);
        this.staff.refreshParticipation();
        break;
      case 'deleted': {
        const el = this.list.querySelector(`li[data-id="${CSS.escape(d.messageId)}"]`);
        if (el) {
          if (el.contains(document.activeElement)) this.text.focus();
          el.remove();
        }
        this.updateEmpty();
        this.staff.renderReports();
        break;
      }
      case 'members':
        if (d.updated && d.updated.member_id === this.state?.me?.member_id) this.onMeUpdated(d.updated);
        this.renderPeople();
        this.renderHeader();
        this.renderComposerState();
        this.staff.renderHands();
        this.staff.refreshParticipation();
        break;
      case 'info':
        this.renderHeader();
        this.renderComposerState();
        this.staff.renderInfo();
        this.staff.refreshParticipation(0);
        break;
      case 'typing':
        this.renderTyping();
        break;
      case 'reactions':
        this.renderReactions(d.messageId);
        break;
      case 'hands':
        this.staff.renderHands();
        break;
      case 'reports':
        this.staff.renderReports();
        if (d.report) announce(t('reportNew'));
        break;
      case 'whisper':
        this.appendItem(this.whisperEl(d.whisper));
        if (!d.whisper.outgoing) announce(t('whisperFrom', d.whisper.from.handle) + ': ' + d.whisper.text);
        break;
      case 'hidden':
        this.renderAll();
        break;
      case 'removed':
        this.onRemoved(d.removed);
        break;
      default:
    }
  }

  // ---- rendering -------------------------------------------------------

  renderAll() {
    const r = this.state;
    this.renderHeader();
    clear(this.list);
    if (r) {
      const items = [...r.messages];
      let gapShown = false;
      items.forEach((m, i) => {
        if (!gapShown && r.gapAfterOrder !== null && i > 0 && m.order > r.gapAfterOrder) {
          this.list.append(this.systemEl(t('historyGap')));
          gapShown = true;
        }
        if (!this.app.store.isHidden(r.id, m.from.member_id) || m.from.member_id === r.me?.member_id) this.list.append(this.messageEl(m));
      });
      for (const w of r.whispers) this.list.append(this.whisperEl(w));
      for (const q of this.outbox) if (q.roomId === r.id) this.list.append(q.el);
    }
    this.updateEmpty();
    this.renderPeople();
    this.renderTyping();
    this.renderComposerState();
    this.staff.render(this.roomId);
    this.toolsToggle.hidden = !r?.isStaff;
  }

  updateEmpty() {
    const r = this.state;
    this.emptyNote.hidden = !r?.info || this.list.children.length > 0;
    this.updateRoving();
  }

  /** Messages with controls, in order. */
  rovingItems() {
    return [...this.list.children].filter((li) => li.querySelector(ROVING_CONTROLS));
  }

  /**
   * One tab stop for the whole list: one control of the current message
   * (its "⋯" unless another of its controls, such as a reaction, was used
   * last). The current message is the latest unless focus is in the list.
   */
  updateRoving(current, control) {
    const items = this.rovingItems();
    if (current) this.currentItem = current;
    else if (!this.list.contains(document.activeElement) || !items.includes(this.currentItem)) this.currentItem = items[items.length - 1] || null;
    if (control) this.currentControl = control;
    for (const li of items) {
      const controls = [...li.querySelectorAll(ROVING_CONTROLS)];
      let stop = null;
      if (li === this.currentItem) stop = controls.includes(this.currentControl) ? this.currentControl : li.querySelector('.msg-more') || controls[0];
      for (const c of controls) {
        const tab = c === stop ? '0' : '-1';
        if (c.getAttribute('tabindex') !== tab) c.setAttribute('tabindex', tab);
      }
    }
  }

  onListFocus(e) {
    const li = e.target.closest?.('ol.messages > li');
    if (li && e.target.matches?.(ROVING_CONTROLS) && (li !== this.currentItem || e.target !== this.currentControl)) this.updateRoving(li, e.target);
    else if (li && li !== this.currentItem && li.querySelector(ROVING_CONTROLS)) this.updateRoving(li);
  }

  onListKey(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    // Left and right move between one message's controls (its reactions and "⋯").
    if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
      const li = e.target.closest?.('ol.messages > li');
      if (!li || !e.target.matches?.(ROVING_CONTROLS)) return;
      const controls = [...li.querySelectorAll(ROVING_CONTROLS)];
      const i = controls.indexOf(e.target);
      const forward = (e.key === 'ArrowRight') !== (getComputedStyle(li).direction === 'rtl');
      const next = controls[i + (forward ? 1 : -1)];
      if (i < 0 || !next) return;
      e.preventDefault();
      this.updateRoving(li, next);
      next.focus();
      return;
    }
    if (!['ArrowUp', 'ArrowDown', 'Home', 'End'].includes(e.key)) return;
    const li = e.target.closest?.('ol.messages > li');
    if (!li || e.target === li) return;
    const items = this.rovingItems();
    const i = items.indexOf(li);
    if (i < 0) return;
    const j = e.key === 'Home' ? 0 : e.key === 'End' ? items.length - 1 : e.key === 'ArrowUp' ? i - 1 : i + 1;
    if (j < 0 || j >= items.length) return;
    e.preventDefault();
    const next = items[j];
    const target = next.querySelector('.msg-more') || next.querySelector(ROVING_CONTROLS);
    this.updateRoving(next, target);
    target.focus();
    target.scrollIntoView({ block: 'nearest' });
  }

  renderHeader() {
    const r = this.state;
    const info = r?.info;
    const summary = this.app.store.rooms?.find((x) => x.id === this.roomId);
    this.title.textContent = info?.name || summary?.name || t('joining');
    this.topic.hidden = !info?.topic_now;
    this.topic.textContent = info?.topic_now ? t('topicNow', info.topic_now) : '';
    const flags = [];
    if (info?.locked) flags.push(t('roomLocked'));
    if (info?.slow_mode_s) flags.push(t('slowModeOn', info.slow_mode_s));
    if (info?.mode === 'structured') flags.push(r?.me?.has_floor ? t('youHaveFloor') : t('structuredOn'));
    this.flags.textContent = flags.join(' · ');
    this.flags.hidden = flags.length === 0;
    this.pinnedBar.render(r);
    this.sessionBar.render(r);
    this.peopleToggle.textContent = t('peopleToggle', r ? r.members.size : 0);
  }

  roleBadge(role) {
    return ROLE_LABEL[role] ? h('span', { class: `badge badge-${role}` }, t(ROLE_LABEL[role])) : null;
  }

  messageEl(m) {
    const r = this.state;
    const mine = m.from.member_id === r?.me?.member_id;
    const cls = ['msg'];
    if (mine) cls.push('msg-mine');
    if (m.staff) cls.push('msg-staff');
    if (isStaffRole(m.from.role)) cls.push('msg-from-staff');
    const meta = h(
      'p',
      { class: 'msg-meta' },
      h('span', { class: 'msg-author', dir: 'auto' }, m.from.handle),
      mine ? h('span', { class: 'msg-you' }, ` (${t('you')})`) : null,
      this.roleBadge(m.from.role),
      this.firstTimeBadge(r?.members.get(m.from.member_id)),
      m.staff ? h('span', { class: 'badge badge-staff-only' }, t('staffOnlyTag')) : null,
      h('time', { class: 'msg-time', datetime: m.ts }, formatTime(m.ts)),
    );
    let replyRef = null;
    if (m.reply_to) {
      const orig = r?.byId.get(m.reply_to);
      replyRef = orig
        ? h('button', { type: 'button', class: 'msg-reply-ref', onclick: () => this.focusMessage(orig.message_id) }, h('span', { class: 'reply-label' }, t('inReplyTo', orig.from.handle)), h('span', { class: 'reply-snippet', dir: 'auto' }, orig.cw ? t('contentNote', orig.cw) : snippet(orig.text)))
        : h('p', { class: 'msg-reply-ref msg-reply-missing' }, t('inReplyToUnknown'));
    }
    let body;
    if (m.cw) {
      body = h('details', { class: 'msg-cw' }, h('summary', {}, h('span', { class: 'cw-tag' }, t('contentNote', m.cw)), h('span', { class: 'cw-open' }, ` · ${t('contentNoteOpen')}`)), h('p', { class: 'msg-text', dir: 'auto' }, m.text));
    } else {
      body = h('p', { class: 'msg-text', dir: 'auto' }, m.text);
    }
    const more = h('button', { type: 'button', class: 'msg-more', 'aria-label': t('messageOptions', m.from.handle), 'aria-haspopup': 'dialog', onclick: () => this.messageOptions(m) }, h('span', { 'aria-hidden': 'true' }, '⋯'));
    return h('li', { class: cls.join(' '), tabindex: '-1', dataset: { id: m.message_id, seq: String(m.seq), order: String(m.order) } }, h('div', { class: 'msg-main' }, meta, replyRef, body, this.reactionsEl(m)), more);
  }

  /** The quiet reaction row under a message the whole room sees. */
  reactionsEl(m) {
    const r = this.state;
    if (!r || m.staff) return null;
    return reactionRow({
      kinds: allowedReactions(this.app),
      counts: m.reactions,
      pressed: (kind) => r.hasReacted(m.message_id, kind),
      label: t('reactionsLabel', m.from.handle),
      onToggle: (kind, on) => this.react(m, kind, on),
    });
  }

  renderReactions(messageId) {
    const r = this.state;
    const m = r?.byId.get(messageId);
    const li = this.list.querySelector(`li[data-id="${CSS.escape(messageId)}"]`);
    const old = li?.querySelector('.reactions');
    if (!m || !old) return;
    // Keep focus on the same button when it is replaced.
    const focused = old.contains(document.activeElement) ? document.activeElement.dataset.reaction : null;
    const row = this.reactionsEl(m);
    old.replaceWith(row);
    this.updateRoving();
    if (focused) row.querySelector(`[data-reaction="${focused}"]`)?.focus();
  }

  async react(m, kind, on) {
    const r = this.state;
    if (!r) return;
    r.setReacted(m.message_id, kind, on);
    this.renderReactions(m.message_id);
    const ok = await this.app.act({ type: 'react', room: r.id, message_id: m.message_id, reaction: kind, on }, { quiet: true });
    if (!ok) {
      r.setReacted(m.message_id, kind, !on);
      this.renderReactions(m.message_id);
    }
  }

  /** "new here", for staff only, on a member the server marked as new to the room. */
  firstTimeBadge(member) {
    if (!this.state?.isStaff || !member?.first_time) return null;
    return h('span', { class: 'badge badge-new', title: t('firstTimeLabel') }, t('firstTimeBadge'));
  }

  whisperEl(w) {
    const r = this.state;
    const label = w.outgoing ? t('whisperTo', w.toHandle || r?.memberHandle(w.to) || t('someone')) : t('whisperFrom', w.from.handle);
    const canReply = !w.outgoing && w.from;
    return h(
      'li',
      { class: 'msg msg-whisper', dataset: { whisper: '1' } },
      h(
        'div',
        { class: 'msg-main' },
        h('p', { class: 'msg-meta' }, h('span', { class: 'badge badge-whisper' }, label), h('time', { class: 'msg-time', datetime: w.ts }, formatTime(w.ts))),
        h('p', { class: 'msg-text', dir: 'auto' }, w.text),
        canReply ? h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => whisperDialog(this.app, this.roomId, w.from) }, t('whisperReply')) : null,
      ),
    );
  }

  systemEl(text) {
    return h('li', { class: 'msg-system' }, h('p', { text }));
  }

  addSystemLine(text) {
    this.appendItem(this.systemEl(text));
  }

  appendItem(el) {
    const stick = this.nearBottom();
    this.list.append(el);
    this.updateEmpty();
    if (stick) this.scrollToBottom();
  }

  onMessage(m) {
    const r = this.state;
    if (!r) return;
    const mine = m.from.member_id === r.me?.member_id;
    if (this.app.store.isHidden(r.id, m.from.member_id) && !mine) return;
    const stick = mine || this.nearBottom();
    const el = this.messageEl(m);
    // Keep seq order even if a message arrives out of order.
    let before = null;
    for (let i = this.list.children.length - 1; i >= 0; i--) {
      const c = this.list.children[i];
      if (c.dataset.order === undefined) continue;
      if (Number(c.dataset.order) > m.order) before = c;
      else break;
    }
    this.list.insertBefore(el, before);
    this.updateEmpty();
    this.renderTyping();
    if (stick) this.scrollToBottom();
    else this.jump.hidden = false;
    if (!mine) announce(m.cw ? t('messageFromCw', m.from.handle, m.cw) : t('messageFrom', m.from.handle, snippet(m.text, 300)));
  }

  renderPeople() {
    const r = this.state;
    clear(this.peopleList);
    if (!r) return;
    this.peopleTitle.textContent = `${t('peopleTitle')} (${r.members.size})`;
    const order = { admin: 0, facilitator: 1, member: 2 };
    const members = [...r.members.values()].sort((a, b) => (order[a.role] ?? 3) - (order[b.role] ?? 3) || a.handle.localeCompare(b.handle));
    for (const m of members) {
      const me = m.member_id === r.me?.member_id;
      const hidden = this.app.store.isHidden(r.id, m.member_id);
      const badges = [
        this.roleBadge(m.role),
        m.has_floor ? h('span', { class: 'badge badge-floor' }, t('floorBadge')) : null,
        m.hand_raised ? h('span', { class: 'badge badge-hand' }, t('handBadge')) : null,
        this.firstTimeBadge(m),
        m.muted ? h('span', { class: 'badge badge-muted' }, t('mutedBadge')) : null,
        hidden ? h('span', { class: 'badge badge-hidden' }, t('hiddenBadge')) : null,
      ];
      this.peopleList.append(
        h(
          'li',
          { class: 'person' },
          h('div', { class: 'person-info' }, h('span', { class: 'person-name' }, h('span', { dir: 'auto' }, m.handle), me ? ` (${t('you')})` : ''), ...badges),
          me ? null : h('button', { type: 'button', class: 'btn btn-quiet btn-small person-more', 'aria-label': t('memberOptions', m.handle), 'aria-haspopup': 'dialog', onclick: () => this.memberOptions(m) }, h('span', { 'aria-hidden': 'true' }, '⋯')),
        ),
      );
    }
    this.peopleToggle.textContent = t('peopleToggle', r.members.size);
  }

  renderTyping() {
    const r = this.state;
    clearTimeout(this.typingTimer);
    if (!r) {
      this.typingLine.textContent = '';
      return;
    }
    const now = Date.now();
    const names = [];
    let next = Infinity;
    for (const [id, until] of r.typing) {
      if (until <= now || !r.members.has(id) || this.app.store.isHidden(r.id, id)) {
        r.typing.delete(id);
        continue;
      }
      names.push(r.memberHandle(id));
      next = Math.min(next, until);
    }
    this.typingLine.textContent = names.length === 0 ? '' : names.length === 1 ? t('typingOne', names[0]) : names.length === 2 ? t('typingTwo', formatList(names)) : t('typingMany');
    if (next !== Infinity) this.typingTimer = setTimeout(() => this.renderTyping(), next - now + 50);
  }

  renderComposerState() {
    const r = this.state;
    const info = r?.info;
    // No composer until joined (nothing could be sent), nor after being removed.
    this.composer.hidden = !info || !!this.removed;
    const structured = info?.mode === 'structured' && !r?.isStaff;
    this.hand.hidden = !structured || !!r?.me?.has_floor;
    const raised = !!r?.me?.hand_raised;
    this.hand.textContent = raised ? t('lowerHand') : t('raiseHand');
    this.hand.setAttribute('aria-pressed', String(raised));
    this.updateCounter();
    this.renderBlock();
  }

  /** Why the member cannot send right now, or null: muted, slow mode, or no floor in structured mode. */
  blockReason() {
    const r = this.state;
    const info = r?.info;
    if (!r || !info || r.isStaff) return null;
    const now = Date.now();
    if (r.me?.muted) {
      const until = r.me.muted_until ? Date.parse(r.me.muted_until) : NaN;
      return { kind: 'muted', text: until > now ? t('composerMutedUntil', countdown(until - now)) : t('composerMuted'), tick: until > now };
    }
    if (info.mode === 'structured' && !r.me?.has_floor) return { kind: 'floor', text: t('composerNoFloor') };
    if (info.slow_mode_s > 0 && this.slowUntil > now) return { kind: 'slow', text: t('composerSlow', countdown(this.slowUntil - now)), tick: true };
    return null;
  }

  renderBlock() {
    clearTimeout(this.blockTimer);
    const b = this.blockReason();
    const kind = b?.kind || null;
    this.blockLine.hidden = !b;
    this.blockLine.textContent = b ? b.text : '';
    this.text.readOnly = !!b;
    if (b) this.text.setAttribute('aria-disabled', 'true');
    else this.text.removeAttribute('aria-disabled');
    this.sendBtn.disabled = !!b;
    this.composer.classList.toggle('is-blocked', !!b);
    if (kind !== this.blockKind) {
      const before = this.blockKind;
      this.blockKind = kind;
      if (b) announce(b.text);
      // The state that caused an error ended: the error is stale.
      if (before && !b) {
        clearTimeout(this.feedbackTimer);
        this.feedback.textContent = '';
      }
    }
    if (b?.tick) this.blockTimer = setTimeout(() => this.renderBlock(), 1000);
  }

  // ---- scrolling -------------------------------------------------------

  nearBottom() {
    const tl = this.timeline;
    return tl.scrollHeight - tl.scrollTop - tl.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.timeline.scrollTop = this.timeline.scrollHeight;
    this.jump.hidden = true;
    this.stuck = true;
  }

  onScroll() {
    this.stuck = this.nearBottom();
    if (this.stuck) this.jump.hidden = true;
  }

  focusMessage(id) {
    const el = this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (!el) return;
    el.scrollIntoView({ block: 'center', behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
    el.focus({ preventScroll: true });
  }

  // ---- composer --------------------------------------------------------

  onKey(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      this.composer.requestSubmit();
    } else if (e.key === 'Escape' && this.replyTo) {
      this.replyTo = null;
      this.renderReply();
    }
  }

  onInput() {
    this.updateCounter();
    const now = Date.now();
    if (this.text.value.trim() && now - this.lastTypingSent > TYPING_SEND_EVERY_MS && this.state?.info && !this.blockReason()) {
      this.lastTypingSent = now;
      this.app.conn.send({ type: 'typing', room: this.roomId });
    }
  }

  updateCounter() {
    const max = this.app.maxChars();
    const left = max - [...this.text.value].length;
    this.counter.textContent = left < max * 0.2 ? t('charsLeft', left) : '';
    this.counter.classList.toggle('over', left < 0);
  }

  toggleCw() {
    const open = this.cwRow.hidden;
    this.cwRow.hidden = !open;
    this.cwToggle.textContent = open ? t('removeContentNote') : t('addContentNote');
    this.cwToggle.setAttribute('aria-expanded', String(open));
    if (open) this.cwInput.focus();
    else {
      this.cwInput.value = '';
      this.text.focus();
    }
  }

  renderReply() {
    clear(this.replyBar);
    const m = this.replyTo;
    this.replyBar.hidden = !m;
    if (!m) return;
    this.replyBar.append(
      h('p', { class: 'reply-bar-text' }, h('span', { class: 'reply-label' }, t('replyingTo', m.from.handle)), h('span', { class: 'reply-snippet', dir: 'auto' }, m.cw ? t('contentNote', m.cw) : snippet(m.text))),
      h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => { this.replyTo = null; this.renderReply(); this.text.focus(); } }, t('cancelReply')),
    );
  }

  /**
   * Written while offline: kept, shown as waiting, and sent once after the
   * reconnect (the welcome and this room's rejoin). Only messages that never
   * left the browser are queued, so nothing is sent twice.
   */
  queueOffline(r, msg) {
    const el = h('li', { class: 'msg msg-pending', dataset: { pending: 'true' } }, h('p', { class: 'msg-meta' }, h('span', { class: 'badge badge-pending' }, t('pendingTag'))), h('p', { class: 'msg-text', dir: 'auto', text: msg.text }));
    this.outbox.push({ roomId: r.id, msg, el });
    this.appendItem(el);
    this.text.value = '';
    this.replyTo = null;
    this.renderReply();
    if (!this.cwRow.hidden) this.toggleCw();
    this.updateCounter();
    this.feedback.textContent = t('queuedOffline');
  }

  /** Send what was queued for `roomId` while offline; called once the room is rejoined. */
  async flushOutbox(roomId) {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const q of this.outbox.filter((x) => x.roomId === roomId)) {
        try {
          await this.app.conn.request(q.msg);
        } catch (err) {
          if (err.code === 'disconnected') return; // never left: the next rejoin sends it
          if (roomId === this.roomId) {
            if (!this.text.value) this.text.value = q.msg.text;
            this.feedback.textContent = this.app.errorText(err, { room: this.app.store.room(roomId), sending: true });
          }
        }
        this.outbox = this.outbox.filter((x) => x !== q);
        q.el.remove();
        this.updateEmpty();
      }
      if (roomId === this.roomId && this.feedback.textContent === t('queuedOffline')) this.feedback.textContent = '';
    } finally {
      this.flushing = false;
    }
  }

  async onSubmit(e) {
    e.preventDefault();
    const r = this.state;
    const text = this.text.value.trim();
    if (!text || !r || this.sending || this.blockReason()) return;
    const max = this.app.maxChars();
    if ([...text].length > max) {
      this.feedback.textContent = t('tooLong', max);
      return;
    }
    const msg = { type: 'send', room: r.id, text };
    if (this.replyTo) msg.reply_to = this.replyTo.message_id;
    const cw = this.cwInput.value.trim();
    if (!this.cwRow.hidden && cw) msg.cw = cw;
    if (!this.app.conn.online) {
      this.queueOffline(r, msg);
      return;
    }
    this.sending = true;
    this.sendBtn.textContent = t('sending');
    this.sendBtn.setAttribute('aria-disabled', 'true');
    this.feedback.textContent = '';
    try {
      await this.app.conn.request(msg);
      if (!r.isStaff && r.info?.slow_mode_s > 0) this.slowUntil = Date.now() + r.info.slow_mode_s * 1000;
      this.text.value = '';
      this.replyTo = null;
      this.renderReply();
      if (!this.cwRow.hidden) this.toggleCw();
      this.updateCounter();
      this.text.focus();
    } catch (err) {
      this.feedback.textContent = this.app.errorText(err, { room: r, sending: true });
      if (err.code === 'slow_mode' && err.retryAfterMs) this.slowUntil = Date.now() + err.retryAfterMs;
      if (err.retryAfterMs) {
        clearTimeout(this.feedbackTimer);
        this.feedbackTimer = setTimeout(() => { this.feedback.textContent = ''; }, Math.min(err.retryAfterMs + 500, 60000));
      }
    } finally {
      this.sending = false;
      this.sendBtn.textContent = t('send');
      this.sendBtn.removeAttribute('aria-disabled');
      this.renderBlock();
    }
  }

  async toggleHand() {
    const r = this.state;
    if (!r) return;
    const raised = !!r.me?.hand_raised;
    const ok = this.app.conn.send({ type: raised ? 'lower_hand' : 'raise_hand', room: r.id });
    if (ok) {
      r.me = { ...r.me, hand_raised: !raised };
      this.renderComposerState();
      if (!raised) announce(t('handRaised'));
    } else {
      this.feedback.textContent = t('errDisconnected');
    }
  }

  // ---- options ---------------------------------------------------------

  async messageOptions(m) {
    const r = this.state;
    if (!r) return;
    const mine = m.from.member_id === r.me?.member_id;
    const actions = [{ label: t('reply'), value: 'reply', kind: 'secondary' }];
    if (!mine) {
      actions.push({ label: t('report'), value: 'report', kind: 'secondary' });
      actions.push({ label: t('hideMember', m.from.handle), value: 'hide', kind: 'secondary' });
    }
    if (r.isStaff && !m.staff) {
      const pinned = r.info?.pinned?.message_id === m.message_id;
      actions.push(pinned ? { label: t('unpinMessage'), value: 'unpin', kind: 'secondary' } : { label: t('pinMessage'), value: 'pin', kind: 'secondary' });
    }
    if (mine) actions.push({ label: t('deleteMine'), value: 'unsend', kind: 'danger' });
    if (r.isStaff && !mine) {
      actions.push({ label: t('modDelete'), value: 'delete_message', kind: 'danger' });
      if (!mine) {
        actions.push({ label: t('whisper'), value: 'whisper', kind: 'secondary' });
        for (const a of ['warn', 'mute', 'kick', 'ban']) actions.push({ label: t(ACTION_KEYS[a]), value: a, kind: a === 'warn' ? 'secondary' : 'danger' });
      }
    }
    actions.push({ label: t('close'), value: '', kind: 'quiet' });
    const v = await modal({
      title: t('optionsTitle'),
      className: 'dialog-options',
      content: [h('blockquote', { class: 'quote' }, h('p', { class: 'quote-author', dir: 'auto', text: m.from.handle }), h('p', { class: 'quote-text', dir: 'auto', text: m.cw ? t('contentNote', m.cw) : snippet(m.text, 200) }))],
      actions,
    });
    switch (v) {
      case 'reply':
        this.replyTo = m;
        this.renderReply();
        this.text.focus();
        break;
      case 'report':
        await this.report(m);
        break;
      case 'hide':
        this.app.store.setHidden(r.id, m.from.member_id, true);
        announce(t('hiddenNotice', m.from.handle));
        this.text.focus();
        break;
      case 'whisper':
        await whisperDialog(this.app, r.id, m.from);
        break;
      case 'delete_message':
        await moderateDialog(this.app, r.id, 'delete_message', { message: m });
        break;
      case 'unsend':
        await this.unsend(m);
        break;
      case 'pin':
        await this.app.act({ type: 'moderate', room: r.id, action: 'pin', message_id: m.message_id }, { quiet: true });
        break;
      case 'unpin':
        await this.app.act({ type: 'moderate', room: r.id, action: 'unpin' }, { quiet: true });
        break;
      case 'warn':
      case 'mute':
      case 'kick':
      case 'ban':
        await moderateDialog(this.app, r.id, v, { message: m, member: r.members.get(m.from.member_id) || m.from });
        break;
      default:
    }
  }

  /** Take back one of my own messages, after a confirmation. */
  async unsend(m) {
    const ok = await confirmAction({
      title: t('deleteMineTitle'),
      body: [h('blockquote', { class: 'quote' }, h('p', { class: 'quote-text', text: m.cw ? t('contentNote', m.cw) : snippet(m.text, 200) })), t('deleteMineBody')],
      confirm: t('deleteMineConfirm'),
      danger: true,
    });
    if (!ok) return;
    if (await this.app.act({ type: 'unsend', room: this.roomId, message_id: m.message_id }, { quiet: true })) {
      announce(t('deleteMineDone'));
      this.text.focus();
    }
  }

  async memberOptions(m) {
    const r = this.state;
    if (!r) return;
    const hidden = this.app.store.isHidden(r.id, m.member_id);
    const actions = [{ label: hidden ? t('unhideMember', m.handle) : t('hideMember', m.handle), value: hidden ? 'unhide' : 'hide', kind: 'secondary' }];
    if (r.isStaff || isStaffRole(m.role)) actions.push({ label: t('whisper'), value: 'whisper', kind: 'secondary' });
    if (r.isStaff) {
      if (r.info?.mode === 'structured') actions.push(m.has_floor ? { label: t('endFloor'), value: 'end_floor', kind: 'secondary' } : { label: t('giveFloor'), value: 'give_floor', kind: 'secondary' });
      actions.push({ label: t('modWarn'), value: 'warn', kind: 'secondary' });
      actions.push(m.muted ? { label: t('modUnmute'), value: 'unmute', kind: 'secondary' } : { label: t('modMute'), value: 'mute', kind: 'danger' });
      actions.push({ label: t('modKick'), value: 'kick', kind: 'danger' });
      actions.push({ label: t('modBan'), value: 'ban', kind: 'danger' });
    }
    actions.push({ label: t('close'), value: '', kind: 'quiet' });
    const v = await modal({ title: t('memberOptionsTitle', m.handle), className: 'dialog-options', actions });
    switch (v) {
      case 'hide':
      case 'unhide':
        this.app.store.setHidden(r.id, m.member_id, v === 'hide');
        announce(v === 'hide' ? t('hiddenNotice', m.handle) : t('unhiddenNotice', m.handle));
        break;
      case 'whisper':
        await whisperDialog(this.app, r.id, m);
        break;
      case 'give_floor':
      case 'end_floor':
        await this.app.act({ type: 'moderate', room: r.id, action: v, member_id: m.member_id });
        break;
      case 'warn':
      case 'mute':
      case 'unmute':
      case 'kick':
      case 'ban':
        await moderateDialog(this.app, r.id, v, { member: m });
        break;
      default:
    }
  }

  async report(m) {
    const reasons = t('reportReasons');
    let reason = '';
    const v = await modal({
      title: t('reportTitle'),
      content: [
        h('p', { text: t('reportIntro') }),
        h('blockquote', { class: 'quote' }, h('p', { class: 'quote-author', dir: 'auto', text: m.from.handle }), h('p', { class: 'quote-text', dir: 'auto', text: snippet(m.text, 300) })),
        selectField({ label: t('reportReasonLabel'), name: 'reason', options: [{ value: '', label: '—' }, ...reasons.map((x) => ({ value: x, label: x }))] }),
        field({ label: t('reportDetailsLabel'), name: 'details', multiline: true, maxlength: 500 }),
      ],
      actions: [
        { label: t('cancel'), value: '', kind: 'quiet' },
        { label: t('reportSend'), value: 'send', kind: 'primary' },
      ],
      validate: (_v, form) => {
        reason = [form.elements.reason.value, form.elements.details.value.trim()].filter(Boolean).join(': ');
        return null;
      },
      initialFocus: 'select',
    });
    if (v !== 'send') return;
    const ok = await this.app.act({ type: 'report', room: this.roomId, message_id: m.message_id, reason }, { quiet: true });
    if (ok) this.app.toast(t('reportThanks'));
  }

  // ---- notices ---------------------------------------------------------

  /** The member's own mute lifted: say so, and take the old "muted" warning away. */
  onMeUpdated(me) {
    const was = this.mutedShown;
    this.mutedShown = !!me.muted;
    if (was && !me.muted) {
      for (const old of this.notices.querySelectorAll('.notice-warning')) old.remove();
      this.showNotice('notice-info', null, t('unmutedNotice'));
    }
  }

  onNotice(n) {
    if (n.room && n.room !== this.roomId) return;
    if (this.el.hidden && n.kind !== 'crisis_resources') return;
    switch (n.kind) {
      case 'crisis_resources':
        this.showCrisis(n);
        break;
      case 'pii_warning':
        this.showNotice('notice-pii', null, n.text || t('pii'));
        break;
      case 'warning':
        this.showNotice('notice-warning', t('warningTitle'), n.text);
        break;
      case 'system':
        this.addSystemLine(n.text);
        announce(n.text);
        break;
      default:
    }
  }

  showNotice(cls, title, text) {
    for (const old of this.notices.querySelectorAll(`.${cls}`)) old.remove();
    const card = h(
      'div',
      { class: `notice ${cls}` },
      h('div', { class: 'notice-body' }, title ? h('p', { class: 'notice-title', text: title }) : null, h('p', { text })),
      h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => { card.remove(); this.text.focus(); } }, t('dismiss')),
    );
    this.appendNotice(card);
    announce(title ? `${title}: ${text}` : text);
  }

  showCrisis(n) {
    for (const old of this.notices.querySelectorAll('.notice-crisis')) old.remove();
    // The server's text says whether a facilitator was told (facilitators_alerted);
    // ours only stands in when it sent none.
    const alerted = typeof n.facilitators_alerted === 'number' ? n.facilitators_alerted : null;
    const text = n.text || (alerted === 0 ? t('crisisIntroNobody') : t('crisisIntro'));
    const card = h(
      'section',
      { class: 'notice notice-crisis', 'aria-labelledby': 'crisis-title', dataset: alerted === null ? {} : { facilitatorsAlerted: String(alerted) } },
      h(
        'div',
        { class: 'notice-body' },
        h('h2', { id: 'crisis-title', class: 'notice-title', tabindex: '-1' }, t('crisisTitle')),
        h('p', { class: 'crisis-text', text }),
        resourceList(n.resources || []),
        h(
          'div',
          { class: 'notice-actions' },
          h('button', { type: 'button', class: 'btn btn-secondary btn-small', onclick: () => this.app.openHelp() }, t('getHelpNow')),
          h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => { card.remove(); this.text.focus(); } }, t('crisisDismiss')),
        ),
      ),
    );
    this.appendNotice(card);
    card.scrollIntoView({ block: 'nearest' });
    announce(`${t('crisisTitle')}. ${text}`);
  }

  appendNotice(card) {
    const stick = this.nearBottom();
    this.notices.append(card);
    if (stick) this.scrollToBottom();
  }

  onRemoved(f) {
    clear(this.removedCard);
    // Only words a facilitator wrote: never "null" or "undefined".
    const note = typeof f.note === 'string' && f.note.trim() && f.note !== 'null' && f.note !== 'undefined' ? f.note : '';
    let text;
    if (f.reason === 'kicked') text = t('removedKicked');
    else if (f.reason === 'banned') text = f.until ? t('removedBannedUntil', formatWhen(f.until)) : t('removedBanned');
    else text = t('removedClosed');
    this.removedCard.append(
      h('p', { class: 'removed-title', tabindex: '-1', text }),
      note ? h('p', { text: t('removedNote', note) }) : null,
      h('button', { type: 'button', class: 'btn btn-primary', onclick: () => this.app.goDirectory() }, t('rulesBack')),
    );
    this.removedCard.hidden = false;
    this.removed = true;
    this.composer.hidden = true;
    this.removedCard.firstChild.focus();
    announce(text + (note ? ` ${t('removedNote', note)}` : ''));
  }
}

const ROVING_CONTROLS = 'button, summary, a[href]';

/** "4:05" or "35 s" for a wait in milliseconds. */
function countdown(ms) {
  const s = Math.max(1, Math.ceil(ms / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}` : t('secondsShort', s);
}

const ACTION_KEYS = { warn: 'modWarn', mute: 'modMute', kick: 'modKick', ban: 'modBan' };

export function snippet(text, max = 80) {
  const s = String(text || '').replace(/\s+/g, ' ').trim();
  const chars = [...s];
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : s;
}

// A phone number inside a helpline's contact text: digit groups joined by
// single spaces, dots or hyphens, 3 to 15 digits, optionally after a "+",
// and not part of a word or web address ("988lifeline.org").
const PHONE = /(?<![\p{L}\p{N}_./@-])\+?\d(?:[ .-]?\d){2,14}(?![\p{L}\p{N}_@]|[.-]\d)/gu;
// Words that say how to use the number, in the languages helplines are
// written in; a number with none takes the previous number's ("112 in
// Europe, 911 in North America"), and the first defaults to calling.
const CALL_WORDS = /\b(call|phone|ring|dial|tel|llam\p{L}*|telefon\p{L}*|appel\p{L}*|anruf\p{L}*|ruf|chiam\p{L}*|lig\p{L}*|bel)\b/iu;
const TEXT_WORDS = /\b(text|texting|sms|txt|texto|mensaje|whatsapp)\b/iu;

/**
 * The numbers in a helpline contact, each with how to use it:
 * "Call or text 988" → [{number: '988', tel: 'tel:988', sms: 'sms:988'}].
 * The hrefs hold only digits and a leading "+".
 */
export function contactNumbers(contact) {
  const found = [];
  const seen = new Set();
  let last = 0;
  let kinds = null;
  for (const m of String(contact || '').matchAll(PHONE)) {
    const before = contact.slice(last, m.index);
    last = m.index + m[0].length;
    const call = CALL_WORDS.test(before);
    const text = TEXT_WORDS.test(before);
    if (call || text) kinds = { call, text };
    else if (!kinds) kinds = { call: true, text: false };
    const digits = (m[0].startsWith('+') ? '+' : '') + m[0].replace(/\D/g, '');
    if (seen.has(digits)) continue;
    seen.add(digits);
    found.push({ number: m[0], tel: kinds.call ? `tel:${digits}` : null, sms: kinds.text ? `sms:${digits}` : null });
  }
  return found;
}

/**
 * Helplines as a list: names and contacts as text; a "Call …" (tel:) or
 * "Text …" (sms:) link for every number in a contact, so it is one tap on
 * a phone; web links only for http(s).
 */
export function resourceList(resources) {
  const ul = h('ul', { class: 'resources' });
  for (const r of resources) {
    const url = r.url ? safeUrl(r.url) : null;
    const host = url ? new URL(url).host.replace(/^www\./, '') : null;
    const link = url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, host) : null;
    // A contact that is just the web address becomes the link itself.
    const contactIsLink = link && r.contact && r.contact.replace(/^https?:\/\/|^www\.|\/$/g, '') === host;
    const actions = [];
    for (const n of contactNumbers(contactIsLink ? '' : r.contact)) {
      if (n.tel) actions.push(h('a', { class: 'btn btn-secondary btn-small resource-call', href: n.tel }, t('callNumber', n.number)));
      if (n.sms) actions.push(h('a', { class: 'btn btn-secondary btn-small resource-text', href: n.sms }, t('textNumber', n.number)));
    }
    ul.append(
      h(
        'li',
        {},
        h('span', { class: 'resource-name', dir: 'auto' }, r.name),
        r.contact && !contactIsLink ? h('span', { class: 'resource-contact', dir: 'auto' }, r.contact) : null,
        link,
        actions.length ? h('span', { class: 'resource-actions' }, ...actions) : null,
      ),
    );
  }
  return ul;
}
