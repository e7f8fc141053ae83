/* Language: look up strings, fill in templates, translate marked elements, pick the first language. */

import {state} from './page.js';
import {I18N} from './strings.js';

export const LANG_KEY = 'image2mood.lang';
const I18N_ATTRS = ['placeholder', 'aria-label', 'alt', 'title'];

export function t(key, lang = state.lang) {
  return (I18N[lang] && I18N[lang][key]) ?? I18N.en[key] ?? key;
}

// A template with {name} placeholders as nodes; a var given as {code: '...'} becomes <code>, one given as
// {en: '...', ko: '...'} is the page's language's (English where it has none).
export function format(template, vars = {}) {
  const fragment = document.createDocumentFragment();
  template.split(/(\{\w+\})/).forEach((part) => {
    const match = /^\{(\w+)\}$/.exec(part);
    if (!match || !(match[1] in vars)) {
      if (part) fragment.append(part);
      return;
    }
    const value = vars[match[1]];
    if (value && typeof value === 'object' && 'code' in value) {
      const code = document.createElement('code');
      code.textContent = value.code;
      fragment.append(code);
    } else if (value && typeof value === 'object') {
      fragment.append(String(value[state.lang] || value.en || ''));
    } else {
      fragment.append(String(value));
    }
  });
  return fragment;
}

const plain = (template, vars) => format(template, vars).textContent;

function varsOf(el) {
  try { return el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : {}; } catch { return {}; }
}

// Translate `root` and everything under it: data-i18n (text), data-i18n-<attr>, and data-en/data-ko pairs.
export function translate(root = document) {
  const all = (selector) => [
    ...(root.matches && root.matches(selector) ? [root] : []), ...root.querySelectorAll(selector),
  ];
  all('[data-i18n]').forEach((el) => el.replaceChildren(format(t(el.dataset.i18n), varsOf(el))));
  I18N_ATTRS.forEach((attr) => {
    const data = `data-i18n-${attr}`;
    all(`[${data}]`).forEach((el) => el.setAttribute(attr, plain(t(el.getAttribute(data)), varsOf(el))));
  });
  all('[data-en]').forEach((el) => {
    const word = el.dataset[state.lang] || el.dataset.en;
    el.textContent = word;
    el.lang = el.dataset[state.lang] ? state.lang : 'en';
  });
}

export const isLanguage = (lang) => Boolean(I18N[lang]);

// Switch the page to `lang`: <html lang>, the EN/KO buttons and every marked element; remembered if asked.
export function applyLanguage(lang, remember) {
  state.lang = isLanguage(lang) ? lang : 'en';
  document.documentElement.lang = state.lang;
  document.querySelectorAll('.lang-btn').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.lang === state.lang)));
  translate();
  if (remember) {
    try { localStorage.setItem(LANG_KEY, state.lang); } catch { /* private mode: not remembered */ }
  }
}

export function initialLanguage() {
  try {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved && I18N[saved]) return saved;
  } catch { /* no storage */ }
  const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return wanted.toLowerCase().startsWith('ko') ? 'ko' : 'en';
}
