/* "Make a video": the photo this page still holds, with a song's highlight, made into an MP4 by the server
 * (POST /api/results/<id>/video), then downloaded; where the browser can share files (phones), a "Share the
 * video" button offers it to the share sheet. Each card's status line (aria-live) says what is happening. */

import {translate} from './i18n.js';
import {els, state} from './page.js';
import {h} from './render.js';

const FALLBACK_NAME = 'image2mood.mp4';

// The card's status line: a translated message, or an error as text.
function say(card, key, vars, error = false) {
  const line = card.querySelector('.video-status');
  line.classList.toggle('video-error', error);
  line.replaceChildren(key ? h('span', {i18n: key, vars}) : '');
  translate(line);
  return line;
}

function fileName(res) {
  const match = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
  return match ? match[1] : FALLBACK_NAME;
}

async function errorMessage(res) {
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch { /* not JSON */ }
  return `HTTP ${res.status}`;
}

function download(file) {
  const url = URL.createObjectURL(file);
  const link = h('a', {href: url, download: file.name, hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// Offer the video to the share sheet, where the browser shares files (navigator.share needs a fresh tap).
function offerShare(card, file) {
  if (!(navigator.canShare && navigator.canShare({files: [file]}))) return;
  const button = h('button', {type: 'button', class: 'btn btn-small share-video'}, h('span', {i18n: 'shareVideo'}));
  button.addEventListener('click', () => navigator.share({files: [file]}).catch(() => {}));
  say(card, 'videoReady', {name: file.name}).append(' ', button);
  translate(button);
}

async function makeVideo(button) {
  if (button.getAttribute('aria-busy') === 'true') return;
  const card = button.closest('.song');
  const resultId = state.view && state.view.data.result_id;
  if (!card || !resultId || !state.photoFile) return;
  button.setAttribute('aria-busy', 'true');
  button.setAttribute('aria-disabled', 'true');
  say(card, 'videoBusy');
  const form = new FormData();
  form.append('image', state.photoFile, state.photoFile.name || 'photo.jpg');
  form.append('song', card.dataset.id);
  try {
    const res = await fetch(`/api/results/${encodeURIComponent(resultId)}/video`, {method: 'POST', body: form});
    if (!res.ok) {
      say(card, 'videoFailed', {message: await errorMessage(res)}, true);
      return;
    }
    const file = new File([await res.blob()], fileName(res), {type: 'video/mp4'});
    download(file);
    say(card, 'videoReady', {name: file.name});
    offerShare(card, file);
  } catch {
    say(card, 'network', {}, true);
  } finally {
    button.removeAttribute('aria-busy');
    button.removeAttribute('aria-disabled');
  }
}

// One listener for every card's "Make a video" button (the cards are rebuilt with each answer).
export function initVideo() {
  els.songs.addEventListener('click', (e) => {
    const button = e.target.closest('button.make-video');
    if (button) makeVideo(button);
  });
}
