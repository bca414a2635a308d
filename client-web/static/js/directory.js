// The room directory: search and filters (topic or tag, language, open now),
// and a card per room with its live member count and, for scheduled rooms,
// the next session in the reader's local time. Cards are updated in place
// when the list refreshes so keyboard focus is never lost.
//
// Rooms come in several languages: the language filter offers every language
// in the directory (the member's own first), rooms in the member's languages
// come first, and search matches names, topics and tags in any language
// without regard to accents or case ("perdida" finds "pérdida").

import { h, clear } from './dom.js';
import { t, L, formatWhen, formatTime, languageName, memberLanguages, lang } from './i18n.js';

const REFRESH_MS = 15000;

export class DirectoryScreen {
  constructor(app) {
    this.app = app;
    this.cards = new Map(); // room id -> {el, parts}
    this.timer = null;
    this.build();
    app.store.addEventListener('rooms', () => this.render());
    app.store.addEventListener('session', () => this.renderIdentity());
  }

  build() {
    this.search = h('input', { id: 'dir-search', type: 'search', placeholder: L('searchPlaceholder'), autocomplete: 'off', oninput: () => this.render() });
    this.topic = h('select', { id: 'dir-topic', onchange: () => this.render() });
    this.language = h('select', { id: 'dir-language', onchange: () => this.render() });
    this.openNow = h('input', { id: 'dir-open', type: 'checkbox', onchange: () => this.render() });
    this.count = h('p', { class: 'dir-count', role: 'status' });
    this.list = h('ul', { class: 'room-list', 'aria-labelledby': 'dir-title' });
    this.empty = h('div', { class: 'dir-empty', hidden: true }, h('p', { text: L('roomsNone') }), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.clearFilters() }, L('clearFilters')));
    this.identity = h('p', { class: 'dir-identity' });

    this.el = h(
      'section',
      { id: 'screen-directory', class: 'screen screen-directory', 'aria-labelledby': 'dir-title', hidden: true },
      h('div', { class: 'dir-intro' }, h('h1', { id: 'dir-title', tabindex: '-1' }, L('directoryTitle')), h('p', { text: L('directoryIntro') }), this.identity),
      h(
        'form',
        { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
        h('div', { class: 'field field-search' }, h('label', { for: 'dir-search' }, L('searchLabel')), this.search),
        h('div', { class: 'field' }, h('label', { for: 'dir-topic' }, L('filterTopic')), this.topic),
        h('div', { class: 'field' }, h('label', { for: 'dir-language' }, L('filterLanguage')), this.language),
        h('div', { class: 'field field-check' }, this.openNow, h('label', { for: 'dir-open' }, L('filterOpenNow'))),
      ),
      this.count,
      this.list,
      this.empty,
    );
  }

  /** The language changed: options and cards again in the new language. */
  relocalize() {
    for (const select of [this.topic, this.language]) select.dataset.labels = '';
    for (const card of this.cards.values()) card.el.remove();
    this.cards.clear();
    this.renderIdentity();
    this.render();
  }

  renderIdentity() {
    const s = this.app.store.session;
    this.identity.textContent = !s ? '' : s.handlePerRoom ? t('youAppearPerRoom') : t('youAppearAs', s.handle);
  }

  show() {
    this.el.hidden = false;
    this.renderIdentity();
    this.render();
    this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  hide() {
    this.el.hidden = true;
    clearInterval(this.timer);
    this.timer = null;
  }

  focus() {
    this.el.querySelector('#dir-title').focus();
  }

  async refresh() {
    if (!this.app.conn.online) return;
    try {
      const reply = await this.app.conn.request({ type: 'list_rooms' });
      this.app.store.setRooms(reply.rooms);
    } catch {
      /* the next refresh (or reconnect) tries again */
    }
  }

  clearFilters() {
    this.search.value = '';
    this.topic.value = '';
    this.language.value = '';
    this.openNow.checked = false;
    this.render();
    this.search.focus();
  }

  syncOptions(select, values, allLabel, labelOf = (v) => v, attrsOf = () => ({})) {
    const wanted = ['', ...values];
    const current = [...select.options].map((o) => o.value);
    if (select.dataset.labels === lang && wanted.length === current.length && wanted.every((v, i) => v === current[i])) return;
    const keep = select.value;
    clear(select);
    for (const v of wanted) select.append(h('option', { value: v, ...(v === '' ? {} : attrsOf(v)) }, v === '' ? allLabel : labelOf(v)));
    select.value = wanted.includes(keep) ? keep : '';
    select.dataset.labels = lang;
  }

  render() {
    const rooms = this.app.store.rooms;
    if (!rooms) {
      this.count.textContent = t('roomsLoading');
      return;
    }
    // The member's languages first (the interface's, then the browser's), then the others by name.
    const mine = memberLanguages();
    const rank = (code) => {
      const i = mine.indexOf(baseLanguage(code));
      return i < 0 ? mine.length : i;
    };
    const languages = [...new Set(rooms.map((r) => r.language).filter(Boolean))].sort((a, b) => rank(a) - rank(b) || languageName(a).localeCompare(languageName(b), lang));
    this.syncOptions(this.language, languages, t('filterLanguageAll'), languageName, (code) => ({ lang: code }));
    const language = this.language.value;
    // Topics of the rooms in the chosen language (every topic when none is chosen).
    const inLanguage = language ? rooms.filter((r) => r.language === language) : rooms;
    const topics = [...new Set(inLanguage.flatMap((r) => [r.topic, ...(r.tags || [])]).filter(Boolean))].sort((a, b) => a.localeCompare(b, lang));
    this.syncOptions(this.topic, topics, t('filterTopicAll'));

    const words = fold(this.search.value).split(/\s+/).filter(Boolean);
    const topic = this.topic.value;
    const openOnly = this.openNow.checked;
    const shown = rooms.filter((r) => {
      if (topic && r.topic !== topic && !(r.tags || []).includes(topic)) return false;
      if (language && r.language !== language) return false;
      if (openOnly && !r.open) return false;
      if (!words.length) return true;
      // The room's language by name too, in ours and its own ("español" finds the Spanish rooms).
      const hay = fold([r.name, r.topic, r.description, ...(r.tags || []), languageName(r.language), nativeLanguageName(r.language)].join(' '));
      return words.every((w) => hay.includes(w));
    });
    // Open rooms first, then rooms in the member's languages, then by name,
    // so "somewhere to talk now, in my language" is at the top.
    shown.sort((a, b) => Number(b.open) - Number(a.open) || rank(a.language) - rank(b.language) || a.name.localeCompare(b.name, lang));

    this.count.textContent = t('roomsCount', shown.length);
    this.empty.hidden = shown.length > 0;

    const ids = new Set(shown.map((r) => r.id));
    for (const [id, card] of this.cards) {
      if (!ids.has(id)) {
        card.el.remove();
        this.cards.delete(id);
      }
    }
    shown.forEach((room, i) => {
      let card = this.cards.get(room.id);
      if (!card) {
        card = this.makeCard(room);
        this.cards.set(room.id, card);
      }
      this.updateCard(card, room);
      // Move only when out of place: moving a node would drop its focus.
      if (this.list.children[i] !== card.el) this.list.insertBefore(card.el, this.list.children[i] || null);
    });
  }

  makeCard(room) {
    const titleId = `room-title-${room.id}`;
    // The room's own words (name, description, tags) are in the room's
    // language and direction, whatever the interface's.
    const own = { dir: 'auto', lang: room.language || null };
    const parts = {
      name: h('h2', { class: 'room-name', id: titleId, ...own }),
      meta: h('p', { class: 'room-meta' }),
      desc: h('p', { class: 'room-desc', ...own }),
      tags: h('ul', { class: 'tags', 'aria-label': t('filterTopic') }),
      when: h('p', { class: 'room-when' }),
      schedule: h('p', { class: 'room-schedule', dir: 'auto' }),
      people: h('p', { class: 'room-people' }),
      // Scheduled rooms: the sessions as an iCalendar file any calendar app opens.
      calendar: h('a', { class: 'room-calendar', href: `/rooms/${encodeURIComponent(room.id)}/calendar.ics`, download: `${room.id}.ics`, type: 'text/calendar', hidden: true }, t('addToCalendar')),
      join: h('button', { type: 'button', class: 'btn btn-primary room-join', onclick: () => this.app.openRoom(room.id) }, t('joinRoom')),
    };
    const el = h(
      'li',
      { class: 'room-card', 'aria-labelledby': titleId },
      h('div', { class: 'room-head' }, parts.name, parts.meta),
      parts.desc,
      parts.tags,
      h('div', { class: 'room-foot' }, h('div', { class: 'room-status' }, parts.when, parts.schedule, parts.calendar, parts.people), parts.join),
    );
    return { el, parts };
  }

  updateCard({ el, parts }, room) {
    parts.name.textContent = room.name;
    const meta = [languageName(room.language)];
    if (room.mode === 'structured') meta.push(t('structuredMode'));
    parts.meta.textContent = meta.join(' · ');
    parts.desc.textContent = room.description;
    const tags = [...new Set([room.topic, ...(room.tags || [])].filter(Boolean))];
    if (parts.tags.dataset.tags !== tags.join('|')) {
      clear(parts.tags);
      for (const tag of tags) parts.tags.append(h('li', { class: 'tag', dir: 'auto', lang: room.language || null }, tag));
      parts.tags.dataset.tags = tags.join('|');
    }
    const s = room.schedule;
    el.classList.toggle('is-open', !!room.open);
    el.classList.toggle('is-closed', !room.open);
    if (room.kind === 'always_open') {
      parts.when.textContent = room.open ? t('alwaysOpen') : t('closedNoSchedule');
      parts.schedule.hidden = true;
    } else if (room.open) {
      parts.when.textContent = s?.closes_at ? t('openUntil', formatTime(s.closes_at)) : t('openNow');
      parts.schedule.textContent = s?.description || '';
      parts.schedule.hidden = !s?.description;
    } else {
      parts.when.textContent = s?.next_open_at ? `${t('nextSession', formatWhen(s.next_open_at))} ${t('yourTime')}` : t('closedNoSchedule');
      parts.schedule.textContent = s?.description || '';
      parts.schedule.hidden = !s?.description;
    }
    parts.calendar.hidden = room.kind !== 'scheduled';
    parts.calendar.setAttribute('aria-label', t('addToCalendarLabel', room.name));
    // Locked: say so here, before the rules, and offer no Join.
    el.classList.toggle('is-locked', !!room.locked);
    if (room.locked) {
      parts.when.textContent = t('directoryLocked');
      parts.schedule.hidden = true;
    }
    const full = room.capacity && room.member_count >= room.capacity;
    parts.people.textContent = full ? t('roomIsFull') : t('peopleHere', room.member_count, room.capacity);
    if (room.requires_facilitator && room.open) parts.people.textContent += ` · ${t('needsFacilitator')}`;
    parts.join.hidden = !room.open || !!room.locked;
    parts.join.setAttribute('aria-label', t('joinRoomLabel', room.name));
  }
}

/** Lower case without accents or other marks, for search: "Pérdida" → "perdida", "الحُزن" → "الحزن". */
export function fold(text) {
  return String(text || '')
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/ß/g, 'ss')
    .trim();
}

function baseLanguage(code) {
  return String(code || '').toLowerCase().split('-')[0];
}

function nativeLanguageName(code) {
  try {
    return new Intl.DisplayNames([code], { type: 'language' }).of(code) || '';
  } catch {
    return '';
  }
}
