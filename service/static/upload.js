/* A photo in: chosen, taken with the phone's camera, dropped anywhere on the page or pasted. */

import {optionParams, requestStream} from './api.js';
import {closeCamera} from './camera.js';
import {translate} from './i18n.js';
import {$, els, state} from './page.js';
import {mb, renderAlphaOutput, setBusy, show, showError, showPending} from './render.js';

export async function sendPhoto(file) {
  if (!file) return;
  closeCamera();
  if (file.size > state.maxBytes) {
    showError({key: 'tooBig', vars: {name: file.name || 'photo', size: mb(file.size), max: mb(state.maxBytes)}, lead: false});
    return;
  }
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  state.photoFile = file;  // sent again for "Make a video" (video.js)
  state.history = [];
  state.view = null;  // the last view's photo URL is gone
  showPending(state.photoUrl);
  const form = new FormData();
  form.append('image', file, file.name || 'photo.jpg');
  optionParams({withAlpha: true}).forEach((value, name) => form.append(name, value));
  if (els.sharePhoto.checked) form.append('share_photo', 'true');
  form.append('lang', state.lang);  // the caption in the page's language too (English is always there)
  // The image route's songs come first (while the caption is written), then the caption and the refined order.
  const firstSongs = (first) => {
    show({kind: 'photo', data: first, photoUrl: state.photoUrl});
    setBusy('busyRefining');
  };
  const showAnswer = (data) => {
    if (!state.alphaTouched && typeof data.alpha === 'number') els.alpha.value = String(data.alpha);
    show({kind: 'photo', data, photoUrl: state.photoUrl});
    renderAlphaOutput();
  };
  const data = await requestStream('/api/recommend?stream=1', {method: 'POST', body: form}, 'busyPhoto', firstSongs,
    showAnswer);
  if (data) {
    showAnswer(data);  // again with the caption in the page's language, once translated
  } else if (els.error.hidden === false) {
    els.results.hidden = true;
  }
}

function fileFrom(list) {
  return list && list.length ? list[0] : null;
}

// Wire the file inputs, page-wide drag and drop and paste; `coarse`: a touch screen (a phone).
export function initUpload({coarse}) {
  els.sizeLimit.dataset.i18n = 'sizeLimit';
  els.sizeLimit.dataset.i18nVars = JSON.stringify({mb: mb(state.maxBytes)});
  translate(els.sizeLimit);

  [els.photoInput, els.captureInput].forEach((input) => input.addEventListener('change', () => {
    const file = fileFrom(input.files);
    input.value = '';  // choosing the same file again still fires "change"
    sendPhoto(file);
  }));

  // Phones get the native camera through the capture input, and nothing to drag and drop.
  els.captureLabel.hidden = !coarse;
  els.captureInput.hidden = !coarse;  // no tab stop for a control that is not shown
  if (coarse) {
    $('#drop-title').dataset.i18n = 'dropTitleTouch';
    $('#drop-hint').dataset.i18n = 'dropHintTouch';
    translate($('#dropzone'));
  }

  // Drop anywhere on the page.
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  let depth = 0;
  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth += 1;
    els.dropzone.classList.add('dragging');
  });
  document.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) els.dropzone.classList.remove('dragging');
  });
  document.addEventListener('drop', (e) => {
    depth = 0;
    els.dropzone.classList.remove('dragging');
    if (e.target.closest && e.target.closest('input[type="search"], input[type="text"]')) return;
    e.preventDefault();
    const file = fileFrom(e.dataTransfer && e.dataTransfer.files);
    if (file) sendPhoto(file);
    else showError({key: 'dropNotFile', lead: false});
  });

  // Paste a photo from the clipboard.
  document.addEventListener('paste', (e) => {
    const file = fileFrom(e.clipboardData && e.clipboardData.files);
    if (file && file.type.startsWith('image/')) {
      e.preventDefault();
      sendPhoto(file);
    }
  });
}
