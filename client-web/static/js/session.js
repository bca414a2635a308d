// What a facilitator's session adds to the room screen: the pinned message
// at the top, the session bar (agenda and time left, told to screen readers
// at 10 and 1 minutes left, never every second), and the quiet reaction row
// under messages. Message text is only ever set with textContent.

import { h, clear, announce } from './dom.js';
import { t } from './i18n.js';

/** Every reaction the protocol knows, in the order they are shown. */
export const REACTIONS = ['support', 'hug', 'same'];

/** Minutes left at which screen readers are told, once each. */
const ANNOUNCE_AT = [10, 1];

/** The reactions this server takes (welcome.limits.reactions, empty when off; all three from a server that predates them). */
export function allowedReactions(app) {
  const list = app.store.session?.limits?.reactions;
  return Array.isArray(list) ? REACTIONS.filter((k) => list.includes(k)) : REACTIONS;
}

/**
 * The row of reaction buttons under a message: each shows its kind and count
 * and is a toggle (aria-pressed) named by what it shows ("Hug 2 people").
 * `onToggle(kind, on)`.
 */
export function reactionRow({ kinds, counts = {}, pressed, label, onToggle }) {
  if (!kinds.length) return null;
  const names = t('reactionName');
  const row = h('div', { class: 'reactions', role: 'group', 'aria-label': label });
  for (const kind of kinds) {
    const n = Number(counts?.[kind]) || 0;
    const on = pressed(kind);
    row.append(
      h(
        'button',
        {
          type: 'button',
          class: `reaction${n > 0 ? ' has-count' : ''}`,
          'aria-pressed': String(on),
          dataset: { reaction: kind },
          onclick: () => onToggle(kind, !on),
        },
        // Words, not emoji: they need no emoji font, and they translate.
        // The name is what is seen ("Hug 2") and, for screen readers, "people".
        h('span', { class: 'reaction-name' }, names[kind] || kind),
        n > 0 ? ' ' : null,
        n > 0 ? h('span', { class: 'reaction-count' }, String(n)) : null,
        n > 0 ? h('span', { class: 'visually-hidden' }, ` ${t('reactionPeople', n)}`) : null,
      ),
    );
  }
  return row;
}

/** The pinned message, at the top of the room; staff get Unpin. */
export class PinnedBar {
  constructor(app) {
    this.app = app;
    this.el = h('section', { class: 'pinned', 'aria-label': t('pinnedRegion'), hidden: true });
  }

  render(r) {
    clear(this.el);
    const m = r?.info?.pinned;
    this.el.hidden = !m;
    if (!m) return;
    this.el.append(
      h('p', { class: 'pinned-meta' }, h('span', { class: 'pinned-tag' }, t('pinnedBy', m.from.handle))),
      h('p', { class: 'pinned-text', text: m.cw ? t('contentNote', m.cw) : m.text }),
      r.isStaff ? h('button', { type: 'button', class: 'btn btn-quiet btn-small pinned-unpin', onclick: () => this.app.act({ type: 'moderate', room: r.id, action: 'unpin' }, { quiet: true }) }, t('unpinMessage')) : null,
    );
  }
}

/** Whole minutes left until `endsAt` (ms), rounded up; 0 or less when over. */
export function minutesLeft(endsAt, now = Date.now()) {
  return Math.ceil((endsAt - now) / 60000);
}

/**
 * The session bar: agenda and time left. The visible time changes every
 * half minute without a live region; at 10 and 1 minutes left one polite
 * announcement says so.
 */
export class SessionBar {
  constructor() {
    this.left = h('span', { class: 'session-left' });
    this.agenda = h('p', { class: 'session-agenda', hidden: true });
    this.el = h('section', { class: 'session-bar', 'aria-label': t('sessionRegion'), hidden: true }, h('p', { class: 'session-line' }, h('span', { class: 'session-tag' }, t('sessionLabel')), this.left), this.agenda);
    this.key = null;
    this.told = new Set();
  }

  render(r) {
    clearTimeout(this.timer);
    const s = r?.info?.session;
    this.el.hidden = !s;
    if (!s) {
      this.key = null;
      return;
    }
    const key = `${r.id}|${s.started_at}`;
    const endsAt = Date.parse(s.ends_at);
    if (key !== this.key) {
      // A new session: thresholds already passed are not announced late.
      this.key = key;
      this.told = new Set(ANNOUNCE_AT.filter((m) => minutesLeft(endsAt) <= m));
    }
    this.agenda.hidden = !s.agenda;
    this.agenda.textContent = s.agenda ? t('sessionAgenda', s.agenda) : '';
    this.tick(endsAt);
  }

  tick(endsAt) {
    const min = minutesLeft(endsAt);
    this.left.textContent = min > 0 ? t('sessionLeft', min) : t('sessionOver');
    this.el.classList.toggle('is-over', min <= 0);
    for (const at of ANNOUNCE_AT) {
      if (min <= at && min > 0 && !this.told.has(at)) {
        this.told.add(at);
        announce(t('sessionAnnounceLeft', at));
      }
    }
    for (const at of ANNOUNCE_AT) if (min <= at) this.told.add(at);
    // Wake at the next minute boundary (or in 30 s), never every second.
    const untilNextMinute = ((endsAt - Date.now()) % 60000 + 60000) % 60000;
    this.timer = setTimeout(() => this.tick(endsAt), Math.min(30000, untilNextMinute + 50));
  }

  stop() {
    clearTimeout(this.timer);
  }
}
