// Modal dialogs on the native <dialog> element: focus is trapped while open,
// Escape closes, and focus goes back to the control that opened it. Every
// dialog of the app (help, confirmations, reports, moderation) goes through
// `modal`.

import { h } from './dom.js';
import { t } from './i18n.js';

let seq = 0;

/**
 * Open a modal. Resolves with the `value` of the action chosen ('' when
 * dismissed). `validate(value, form)` may return an error text to keep it open.
 * @param {{title: string, content?: Node[], actions?: {label: string, value: string, kind?: string}[],
 *          validate?: (value: string, form: HTMLFormElement) => string|null, className?: string,
 *          initialFocus?: string}} opts
 */
export function modal({ title, content = [], actions, validate, className = '', initialFocus }) {
  const id = `dlg-${++seq}`;
  const opener = document.activeElement;
  const error = h('p', { class: 'dialog-error', role: 'alert', hidden: true });
  const buttons = (actions || [{ label: t('close'), value: '', kind: 'quiet' }]).map((a) =>
    h('button', { type: 'submit', value: a.value, class: `btn btn-${a.kind || 'secondary'}`, formnovalidate: a.value === '' ? true : undefined }, a.label),
  );
  const form = h(
    'form',
    { method: 'dialog', class: 'dialog-form' },
    h('h2', { id: `${id}-title`, class: 'dialog-title', tabindex: '-1' }, title),
    h('div', { class: 'dialog-body' }, ...content),
    error,
    h('div', { class: 'dialog-actions' }, ...buttons),
  );
  const dialog = h('dialog', { class: `dialog ${className}`, 'aria-labelledby': `${id}-title` }, form);
  document.body.append(dialog);

  form.addEventListener('submit', (e) => {
    const value = e.submitter ? e.submitter.value : '';
    if (validate && value) {
      const problem = validate(value, form);
      if (problem) {
        e.preventDefault();
        error.textContent = problem;
        error.hidden = false;
        return;
      }
    }
    dialog.returnValue = value;
  });

  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const v = dialog.returnValue || '';
      dialog.remove();
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      resolve(v);
    });
    dialog.showModal();
    const target = initialFocus ? form.querySelector(initialFocus) : null;
    if (target) target.focus();
  });
}

/** A labelled text field for dialogs. */
export function field({ label, name, multiline = false, value = '', required = false, maxlength, placeholder, type = 'text', autocomplete = 'off' }) {
  const id = `f-${++seq}`;
  const input = multiline
    ? h('textarea', { id, name, rows: '3', required, maxlength, placeholder, autocomplete })
    : h('input', { id, name, type, required, maxlength, placeholder, autocomplete, spellcheck: 'false' });
  input.value = value;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

/** A labelled select for dialogs; options are {value, label}. */
export function selectField({ label, name, options, value }) {
  const id = `f-${++seq}`;
  const select = h('select', { id, name }, ...options.map((o) => h('option', { value: String(o.value) }, o.label)));
  if (value !== undefined) select.value = String(value);
  return h('div', { class: 'field' }, h('label', { for: id }, label), select);
}

/** A simple message with one "Okay" button. */
export function inform(title, ...content) {
  return modal({ title, content: content.map((c) => (typeof c === 'string' ? h('p', { text: c }) : c)), actions: [{ label: t('okay'), value: 'ok', kind: 'primary' }] });
}

/** A yes/cancel question. Resolves true when confirmed. */
export async function confirmAction({ title, body = [], confirm, danger = false }) {
  const v = await modal({
    title,
    content: body.map((c) => (typeof c === 'string' ? h('p', { text: c }) : c)),
    actions: [
      { label: t('cancel'), value: '', kind: 'quiet' },
      { label: confirm, value: 'yes', kind: danger ? 'danger' : 'primary' },
    ],
    initialFocus: 'button[value=""]',
  });
  return v === 'yes';
}

