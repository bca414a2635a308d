// The ground-rules step: shown when a join is answered `rules_not_accepted`.
// Accepting joins again with `accept_rules` set to the version shown.

import { h, clear } from './dom.js';
import { t, L } from './i18n.js';

export class RulesScreen {
  constructor(app) {
    this.app = app;
    this.title = h('h1', { id: 'rules-title', tabindex: '-1' });
    this.intro = h('p', { class: 'rules-intro' });
    this.text = h('div', { class: 'rules-text' });
    this.accept = h('button', { type: 'button', class: 'btn btn-primary', id: 'rules-accept', onclick: () => this.onAccept() }, L('rulesAccept'));
    this.back = h('button', { type: 'button', class: 'btn btn-quiet', onclick: () => app.goDirectory() }, L('rulesBack'));
    this.feedback = h('p', { class: 'feedback', role: 'status' });
    this.el = h(
      'section',
      { id: 'screen-rules', class: 'screen screen-rules', 'aria-labelledby': 'rules-title', hidden: true },
      h('div', { class: 'card rules-card' }, this.title, this.intro, this.text, this.feedback, h('div', { class: 'actions' }, this.accept, this.back)),
    );
  }

  /** @param {{roomId: string, name: string, version: number, rules: string, language?: string, updated: boolean}} p */
  show(p) {
    this.current = p;
    this.title.textContent = t('rulesTitle', p.name);
    this.intro.textContent = p.updated ? t('rulesUpdated') : t('rulesIntro');
    clear(this.text);
    // The rules are in the room's language, which may not be the interface's.
    if (p.language) this.text.lang = p.language;
    else this.text.removeAttribute('lang');
    const lines = String(p.rules || '').split('\n').map((l) => l.trim()).filter(Boolean);
    const numbered = lines.length > 1 && lines.every((l) => /^(\d+[.)]|[-*•])\s+/.test(l));
    if (numbered) {
      const list = h('ol', { class: 'rules-list' });
      for (const l of lines) list.append(h('li', { dir: 'auto', text: l.replace(/^(\d+[.)]|[-*•])\s+/, '') }));
      this.text.append(list);
    } else {
      for (const l of lines) this.text.append(h('p', { dir: 'auto', text: l }));
    }
    this.feedback.textContent = '';
    this.accept.disabled = false;
    this.accept.textContent = t('rulesAccept');
    this.el.hidden = false;
    this.title.focus();
  }

  hide() {
    this.el.hidden = true;
  }

  /** The language changed: the same rules, our words around them in the new language (focus stays put). */
  relocalize() {
    const p = this.current;
    if (!p) return;
    this.title.textContent = t('rulesTitle', p.name);
    this.intro.textContent = p.updated ? t('rulesUpdated') : t('rulesIntro');
    if (!this.accept.disabled) this.accept.textContent = t('rulesAccept');
  }

  async onAccept() {
    const p = this.current;
    if (!p) return;
    this.accept.disabled = true;
    this.accept.textContent = t('joining');
    await this.app.enterRoom(p.roomId, { acceptRules: p.version });
    if (!this.el.hidden) {
      this.accept.disabled = false;
      this.accept.textContent = t('rulesAccept');
    }
  }
}
