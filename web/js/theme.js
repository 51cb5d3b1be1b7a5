// The colour theme: the system's (prefers-color-scheme, the default), light or dark. A choice is kept in this browser
// (localStorage `warbler.theme`) and set as <html data-theme="light|dark">; warbler.css does the rest, so without a
// choice the page follows the system setting as it changes, with no script involved. Shared by both pages;
// theme-boot.js applies a saved choice before the page is first drawn.
import { el } from './ui.js';
import { t } from './i18n.js';

const KEY = 'warbler.theme';

/** The choices, in the order the switch offers them. */
export const themes = ['system', 'light', 'dark'];

/** The user's choice: 'system', 'light' or 'dark'. */
export function theme() {
  const saved = localStorage.getItem(KEY);
  return saved === 'light' || saved === 'dark' ? saved : 'system';
}

/** Sets the page's theme from the saved choice, and every switch on the page to it. */
export function applyTheme() {
  const choice = theme();
  if (choice === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
  for (const select of document.querySelectorAll('select.theme-select')) select.value = choice;
}

/** Keeps `choice` ('system' forgets any earlier one) and applies it. */
export function setTheme(choice) {
  if (choice === 'light' || choice === 'dark') localStorage.setItem(KEY, choice);
  else localStorage.removeItem(KEY);
  applyTheme();
}

/** Fills a <select class="theme-select"> with the choices (labelled through i18n, so a language switch relabels them). */
export function wireThemeSelect(select) {
  for (const choice of themes) {
    select.append(el('option', { value: choice, text: t(`theme.${choice}`), dataset: { i18n: `theme.${choice}` } }));
  }
  select.value = theme();
  select.addEventListener('change', () => setTheme(select.value));
}

// A choice made in another tab of this site (the chat and the console share it) applies here too.
window.addEventListener('storage', (e) => { if (e.key === KEY || e.key === null) applyTheme(); });
applyTheme();
