// Small DOM helpers shared by the chat and the admin console. Text is always set with textContent.

import { t, has } from './i18n.js';

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** Creates an element: `props` may hold className, text (textContent), dataset, and any plain property. */
export function el(tag, props = {}) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node[k] = v;
  }
  return node;
}

export function clear(node) { while (node.firstChild) node.firstChild.remove(); }

/** A message time: hh:mm today, otherwise the date too. */
export function formatTime(ms, locale = document.documentElement.lang || undefined) {
  const d = new Date(ms);
  const now = new Date();
  const hm = d.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? hm : `${d.toLocaleDateString(locale)} ${hm}`;
}

/**
 * A sentence in the page's language for an error. A `WarblerError` (from the server, or warbler-client.js's own:
 * `network`, `not_logged_in`) is told by its `code` from the catalogue (`error.CODE`); the server's own (English)
 * text shows only for a code the catalogue does not know. An error without a code is the page's own, already in
 * the page's language. `login` says the error answers a login, where `unauthorized` means a wrong password or a
 * disabled account.
 */
// Codes whose server text says what exactly (which rule a value broke, which word was refused): that text follows
// the translated one, so the user still learns what to change.
const DETAILED = new Set(['invalid', 'blocked', 'conflict', 'too_large']);

export function describeError(e, { login = false } = {}) {
  if (!e) return '';
  if (!e.code) return e.message || String(e);
  if (login && e.code === 'unauthorized') return t('error.login');
  if (has(`error.${e.code}`)) {
    const text = t(`error.${e.code}`);
    return DETAILED.has(e.code) && e.message && e.message !== e.code ? `${text} (${e.message})` : text;
  }
  if (/^http_\d+$/.test(e.code)) return t('error.http', { status: e.status });
  return e.message || e.code;
}

/**
 * Shows the page's <dialog id="dialog"> with text fields; `onSubmit(values)` may throw to keep it open with the
 * error shown. Resolves when the dialog closes: by OK, Cancel, or Escape (the browser's own close, which must drop
 * this dialog's handlers too, or the next dialog's OK would run this one's `onSubmit` as well).
 */
export function showDialog(title, fields, onSubmit) {
  const dialog = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-error').textContent = '';
  const box = $('dialog-fields');
  clear(box);
  const inputs = {};
  for (const f of fields) {
    const label = el('label', { text: f.label + ' ' });
    // `options` ([{value, label}]) makes a choice list instead of a text field.
    const input = f.options ? el('select', { name: f.name }) : el('input', { name: f.name, type: f.type || 'text', autocomplete: 'off', required: f.required !== false });
    for (const o of f.options || []) input.append(el('option', { value: o.value, text: o.label }));
    input.id = `dialog-${f.name}`;
    if (f.value) input.value = f.value;
    inputs[f.name] = input;
    label.append(input);
    box.append(label);
  }
  if (f0(fields)) setTimeout(() => inputs[fields[0].name].focus(), 0);
  return new Promise((resolve) => {
    const form = $('dialog-form');
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      form.removeEventListener('submit', submit);
      $('dialog-cancel').removeEventListener('click', cancel);
      dialog.removeEventListener('close', closed);
      resolve();
    };
    // Closed by the browser (Escape). A close event while the dialog is open is a late one from an earlier dialog.
    const closed = () => { if (!dialog.open) finish(); };
    const done = () => { if (!finished) { finish(); dialog.close(); } };
    const submit = async (e) => {
      e.preventDefault();
      const values = {};
      for (const [k, input] of Object.entries(inputs)) values[k] = input.value;
      $('dialog-ok').disabled = true;
      try {
        await onSubmit(values);
        done();
      } catch (err) {
        $('dialog-error').textContent = describeError(err);
      } finally {
        $('dialog-ok').disabled = false;
      }
    };
    const cancel = () => done();
    form.addEventListener('submit', submit);
    $('dialog-cancel').addEventListener('click', cancel);
    dialog.addEventListener('close', closed);
    dialog.showModal();
  });
}

function f0(fields) { return fields.length > 0; }
