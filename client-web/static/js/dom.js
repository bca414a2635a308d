// Building DOM safely: every node is made with createElement and every piece
// of data goes in through textContent or a property, never as HTML.

import { Live, bindLive } from './i18n.js';

/**
 * h('button', {class: 'x', onclick: fn, 'aria-label': 'y'}, 'text', child…)
 * Attributes starting with "on" become listeners; `class`, `hidden`,
 * `disabled`, `value`, `checked` and `text` are set as properties; others as
 * attributes. Children are nodes or strings (as text); null/false are skipped.
 * A label made with L('key') (i18n.js), as `text`, an attribute or a child,
 * is rewritten when the language changes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v instanceof Live) {
      if (k === 'text') el.textContent = bindLive(el, null, v);
      else el.setAttribute(k, bindLive(el, k, v));
    } else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'hidden' || k === 'disabled' || k === 'checked' || k === 'value' || k === 'open') el[k] = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, ...children);
  return el;
}

export function append(el, ...children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    if (c instanceof Live) {
      const node = document.createTextNode('');
      node.textContent = bindLive(node, null, c);
      el.append(node);
    } else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

/** Text as paragraphs (blank lines split them), each set with textContent. */
export function paragraphs(text, cls) {
  return String(text || '')
    .split(/\n\s*\n/)
    .filter((p) => p.trim())
    .map((p) => h('p', { class: cls, text: p.trim() }));
}

/** An http(s) URL from the server, or null: never javascript: or data:. */
export function safeUrl(url) {
  try {
    const u = new URL(url, location.href);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

let announceTimer = null;
/** Say something through the polite live region (new messages, outcomes). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  // Append rather than replace so quick successive messages are all read.
  region.append(h('p', { text }));
  while (region.childNodes.length > 5) region.removeChild(region.firstChild);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => clear(region), 15000);
}
