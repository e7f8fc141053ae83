/* image2mood web page: a photo (file, drop, paste or camera) in, songs from the library out.
 * Vanilla JS modules, no build step, nothing loaded from outside this server. */

import {loadHealth} from './api.js';
import {initCamera} from './camera.js';
import {initPush} from './push.js';
import {applyLanguage, initialLanguage} from './i18n.js';
import {els, state} from './page.js';
import {goBack, renderAlphaOutput, renderNotices} from './render.js';
import {initSearch} from './search.js';
import {initUpload, sendPhoto} from './upload.js';
import {initVideo} from './video.js';

function setLanguage(lang, remember) {
  applyLanguage(lang, remember);
  renderNotices();
  renderAlphaOutput();
}

function init() {
  setLanguage(initialLanguage(), false);
  document.querySelectorAll('.lang-btn').forEach((b) => b.addEventListener('click', () => setLanguage(b.dataset.lang, true)));

  const coarse = Boolean(window.matchMedia && window.matchMedia('(pointer: coarse)').matches);
  initUpload({coarse});
  initCamera(sendPhoto, {coarse});
  initSearch();
  initPush();
  initVideo();

  els.alpha.addEventListener('input', () => { state.alphaTouched = true; renderAlphaOutput(); });
  els.backBtn.addEventListener('click', goBack);

  // One song plays at a time.
  document.addEventListener('play', (e) => {
    document.querySelectorAll('audio').forEach((a) => { if (a !== e.target) a.pause(); });
  }, true);

  loadHealth();
}

init();
