/* The shared-answer page (/r/<id>): the mood map drawn from the marks the server put in
 * data-map, the language switch, and one player at a time. */

import {applyLanguage, initialLanguage} from './i18n.js';
import {drawMap} from './moodmap.js';

function init() {
  const map = document.querySelector('#mood-map');
  if (map) {
    let marks = {};
    try { marks = JSON.parse(map.dataset.map || '{}'); } catch { /* drawn empty */ }
    map.toggleAttribute('hidden', !drawMap(map, {...marks, list: document.querySelector('#map-list')}));
  }
  applyLanguage(initialLanguage(), false);
  document.querySelectorAll('.lang-btn').forEach((b) => b.addEventListener('click', () => applyLanguage(b.dataset.lang, true)));
  document.addEventListener('play', (e) => {
    document.querySelectorAll('audio').forEach((a) => { if (a !== e.target) a.pause(); });
  }, true);
}

init();
