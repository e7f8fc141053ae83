/* The shared-answer page (/r/<id>): the mood map drawn from the marks the server put in
 * data-map, the language switch, and one player at a time. */

import {LANG_KEY, initialLanguage, isLanguage, translate} from './i18n.js';
import {drawMap} from './moodmap.js';
import {state} from './page.js';

function setLanguage(lang, remember) {
  state.lang = isLanguage(lang) ? lang : 'en';
  document.documentElement.lang = state.lang;
  document.querySelectorAll('.lang-btn').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.lang === state.lang)));
  translate();
  if (remember) {
    try { localStorage.setItem(LANG_KEY, state.lang); } catch { /* private mode: not remembered */ }
  }
}

function init() {
  const map = document.querySelector('#mood-map');
  if (map) {
    let marks = {};
    try { marks = JSON.parse(map.dataset.map || '{}'); } catch { /* drawn empty */ }
    map.toggleAttribute('hidden', !drawMap(map, marks));
  }
  setLanguage(initialLanguage(), false);
  document.querySelectorAll('.lang-btn').forEach((b) => b.addEventListener('click', () => setLanguage(b.dataset.lang, true)));
  document.addEventListener('play', (e) => {
    document.querySelectorAll('audio').forEach((a) => { if (a !== e.target) a.pause(); });
  }, true);
}

init();
