// The room directory: search and filters (topic or tag, language, open now),
// and a card per room with its live member count and, for scheduled rooms,
// the next session in the reader's local time. Cards are updated in place
// when the list refreshes so keyboard focus is never lost.

import { h, clear } from './dom.js';
import { t, formatWhen, formatTime, languageName } from './i18n.js';

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
    this.search = h('input', { id: 'dir-search', type: 'search', placeholder: t('searchPlaceholder'), autocomplete: 'off', oninput: () => this.render() });
    this.topic = h('select', { id: 'dir-topic', onchange: () => this.render() });
    this.language = h('select', { id: 'dir-language', onchange: () => this.render() });
    this.openNow = h('input', { id: 'dir-open', type: 'checkbox', onchange: () => this.render() });
    this.count = h('p', { class: 'dir-count', role: 'status' });
    this.list = h('ul', { class: 'room-list', 'aria-labelledby': 'dir-title' });
    this.empty = h('div', { class: 'dir-empty', hidden: true }, h('p', { text: t('roomsNone') }), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.clearFilters() }, t('clearFilters')));
    this.identity = h('p', { class: 'dir-identity' });

    this.el = h(
      'section',
      { id: 'screen-directory', class: 'screen screen-directory', 'aria-labelledby': 'dir-title', hidden: true },
      h('div', { class: 'dir-intro' }, h('h1', { id: 'dir-title', tabindex: '-1' }, t('directoryTitle')), h('p', { text: t('directoryIntro') }), this.identity),
      h(
        'form',
        { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
        h('div', { class: 'field field-search' }, h('label', { for: 'dir-search' }, t('searchLabel')), this.search),
        h('div', { class: 'field' }, h('label', { for: 'dir-topic' }, t('filterTopic')), this.topic),
        h('div', { class: 'field' }, h('label', { for: 'dir-language' }, t('filterLanguage')), this.language),
        h('div', { class: 'field field-check' }, this.openNow, h('label', { for: 'dir-open' }, t('filterOpenNow'))),
      ),
      this.count,
      this.list,
      this.empty,
    );
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

  syncOptions(select, values, allLabel, labelOf = (v) => v) {
    const wanted = ['', ...values];
    const current = [...select.options].map((o) => o.value);
    if (wanted.length === current.length && wanted.every((v, i) => v === current[i])) return;
    const keep = select.value;
    clear(select);
    for (const v of wanted) select.append(h('option', { value: v }, v === '' ? allLabel : labelOf(v)));
    select.value = wanted.includes(keep) ? keep : '';
  }

  render() {
    const rooms = this.app.store.rooms;
    if (!rooms) {
      this.count.textContent = t('roomsLoading');
      return;
    }
    const topics = [...new Set(rooms.flatMap((r) => [r.topic, ...(r.tags || [])]).filter(Boolean))].sort((a, b) => a.localeCompare(b));
    const languages = [...new Set(rooms.map((r) => r.language).filter(Boolean))].sort();
    this.syncOptions(this.topic, topics, t('filterTopicAll'));
    this.syncOptions(this.language, languages, t('filterLanguageAll'), languageName);

    const q = this.search.value.trim().toLowerCase();
    const topic = this.topic.value;
    const language = this.language.value;
    const openOnly = this.openNow.checked;
    const shown = rooms.filter((r) => {
      if (topic && r.topic !== topic && !(r.tags || []).includes(topic)) return false;
      if (language && r.language !== language) return false;
      if (openOnly && !r.open) return false;
      if (!q) return true;
      const hay = [r.name, r.topic, r.description, ...(r.tags || [])].join(' ').toLowerCase();
      return q.split(/\s+/).every((w) => hay.includes(w));
    });
    // Open rooms first, then by name, so "somewhere to talk now" is at the top.
    shown.sort((a, b) => Number(b.open) - Number(a.open) || a.name.localeCompare(b.name));

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
    const parts = {
      name: h('h2', { class: 'room-name', id: titleId }),
      meta: h('p', { class: 'room-meta' }),
      desc: h('p', { class: 'room-desc' }),
      tags: h('ul', { class: 'tags', 'aria-label': t('filterTopic') }),
      when: h('p', { class: 'room-when' }),
      schedule: h('p', { class: 'room-schedule' }),
      people: h('p', { class: 'room-people' }),
      join: h('button', { type: 'button', class: 'btn btn-primary room-join', onclick: () => this.app.openRoom(room.id) }, t('joinRoom')),
    };
    const el = h(
      'li',
      { class: 'room-card', 'aria-labelledby': titleId },
      h('div', { class: 'room-head' }, parts.name, parts.meta),
      parts.desc,
      parts.tags,
      h('div', { class: 'room-foot' }, h('div', { class: 'room-status' }, parts.when, parts.schedule, parts.people), parts.join),
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
      for (const tag of tags) parts.tags.append(h('li', { class: 'tag' }, tag));
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
