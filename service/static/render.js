/* Rendering: notices, errors, the busy line and the results (summary and song cards). */

import {format, isLanguage, t, translate} from './i18n.js';
import {drawMap, svg} from './moodmap.js';
import {$, els, state} from './page.js';

// h('p', {class: 'x', i18n: 'key', vars: {...}, 'aria-label': '...'}, ...children)
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  Object.entries(props).forEach(([key, value]) => {
    if (value === null || value === undefined || value === false) return;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'i18n') el.dataset.i18n = value;
    else if (key === 'vars') el.dataset.i18nVars = JSON.stringify(value);
    else el.setAttribute(key, value === true ? '' : value);
  });
  el.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// Scrolling jumps instead of gliding when the person asked for less motion.
const scrolling = () => (matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth');

export const mb = (bytes) => String(Math.round((bytes / 1024 / 1024) * 10) / 10);

function duration(seconds) {
  if (typeof seconds !== 'number' || !isFinite(seconds) || seconds < 0) return '';
  const total = Math.round(seconds);
  const s = String(total % 60).padStart(2, '0');
  const m = Math.floor(total / 60);
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function moodChip(mood) {
  return h('li', {class: 'mood', 'data-en': mood.en || mood.key, 'data-ko': mood.ko || '',
    'data-key': mood.key, title: typeof mood.score === 'number' ? mood.score.toFixed(2) : null});
}

/* ---------- notices, errors, busy ---------- */

export function renderNotices() {
  const health = state.health;
  els.notices.replaceChildren();
  if (!health) return;
  const add = (key, vars) => els.notices.append(
    h('p', {class: 'notice notice-warn'}, format(t(key), vars)));
  if (health.unreachable) add('unreachable', {url: {code: '/api/health'}});
  if (health.tiny_models) add('tinyModels');
  if (health.models && !health.models.projection) add('noHead', {cmd: {code: 'image2mood models head'}});
  if (health.store && health.store.songs === 0) add('emptyLibrary', {cmd: {code: 'image2mood index MUSIC_DIR'}});
}

// A server message is shown as it is (it names the file or field); a client message is translated.
export function showError({key, vars, message, lead = true}) {
  const body = key ? h('span', {i18n: key, vars}) : h('span', {class: 'error-message', text: message});
  els.error.replaceChildren(...(lead ? [h('strong', {i18n: 'errorLead'})] : []), body);
  translate(els.error);
  els.error.hidden = false;
}

export function clearError() {
  els.error.hidden = true;
  els.error.replaceChildren();
}

export function setBusy(key) {
  els.busy.hidden = !key;
  els.results.setAttribute('aria-busy', String(Boolean(key)));
  els.figure.classList.toggle('loading', Boolean(key));
  if (key) {
    els.busyText.dataset.i18n = key;
    translate(els.busyText);
    els.status.textContent = '';
  }
}

/* ---------- results ---------- */

// The photo is shown at once, dimmed, while the server works on it.
export function showPending(photoUrl) {
  els.results.hidden = false;
  els.summary.classList.remove('no-photo');
  els.figure.hidden = false;
  els.photo.src = photoUrl;
  els.photo.dataset.i18nAlt = 'photoAltPending';
  els.photo.removeAttribute('data-i18n-vars');
  translate(els.photo);
  els.backBtn.hidden = true;
  els.kind.replaceChildren();
  els.caption.textContent = '';
  els.moods.replaceChildren();
  [els.face, els.note, els.timing, els.noSongs].forEach((el) => { el.hidden = true; });
  els.faceBoxes.toggleAttribute('hidden', true);
  els.shareBar.hidden = true;
  els.mapPanel.hidden = true;
  els.songs.replaceChildren();
  $('#song-count').textContent = '';
  els.results.scrollIntoView({behavior: scrolling(), block: 'nearest'});
}

export function show(view, {focus = false} = {}) {
  state.view = view;
  const {kind, data} = view;
  els.results.hidden = false;
  const hasPhoto = kind === 'photo';
  els.figure.hidden = !hasPhoto;
  els.summary.classList.toggle('no-photo', !hasPhoto);
  if (hasPhoto) {
    if (els.photo.getAttribute('src') !== view.photoUrl) els.photo.src = view.photoUrl;
    els.photo.dataset.i18nAlt = 'photoAlt';
    // The alt text names the caption in the page's language, as the caption under the photo does.
    els.photo.dataset.i18nVars = JSON.stringify({caption: data.captions || {en: data.caption || ''}});
  }
  els.backBtn.hidden = state.history.length === 0;
  els.kind.dataset.i18n = {photo: 'kindPhoto', search: 'kindSearch', similar: 'kindSimilar'}[kind];

  let headline = '';
  if (kind === 'photo') headline = data.caption || '';
  else if (kind === 'search') headline = `“${data.query || ''}”`;
  else if (data.song) headline = [data.song.title, data.song.artist].filter(Boolean).join(' — ');
  els.caption.textContent = headline;
  ['en', 'ko'].forEach((lang) => els.caption.removeAttribute(`data-${lang}`));
  if (kind === 'photo') {
    // The caption in each language the server sent (data-en, data-ko): the language switch picks one.
    const captions = data.captions || {en: data.caption || ''};
    Object.entries(captions).filter(([lang]) => isLanguage(lang)).forEach(([lang, text]) => {
      els.caption.dataset[lang] = text;
    });
    if (els.caption.dataset.en) translate(els.caption);
    else els.caption.lang = Object.keys(captions).find((lang) => captions[lang] === data.caption) || 'en';
  } else els.caption.removeAttribute('lang');

  els.moods.replaceChildren(...(data.moods || []).map(moodChip));

  renderFaces(kind === 'photo' ? data : {});
  renderWaysOut(kind, data);

  els.note.hidden = !data.note;
  if (data.note) {
    // The server's note is English; the one it sends when only the caption chose the songs has a Korean twin.
    const words = data.route === 'caption' ? {'data-en': data.note, 'data-ko': t('noteCaptionOnly', 'ko')}
      : {text: data.note, lang: 'en'};
    els.note.replaceChildren(h('strong', {i18n: 'note'}), ' ', h('span', words));
  }

  els.timing.hidden = typeof data.elapsedMs !== 'number';
  if (!els.timing.hidden) {
    els.timing.replaceChildren(h('span', {i18n: 'answered', vars: {s: (data.elapsedMs / 1000).toFixed(2)}}));
    if (data.timings_ms) {
      els.timing.title = Object.entries(data.timings_ms).map(([k, v]) => `${k} ${v} ms`).join(' · ');
    } else {
      els.timing.removeAttribute('title');
    }
  }

  const songs = data.songs || [];
  els.songs.replaceChildren(...songs.map(songCard));
  els.noSongs.hidden = songs.length > 0;
  if (!songs.length) {
    const empty = state.health && state.health.store && state.health.store.songs === 0;
    els.noSongs.replaceChildren(empty
      ? h('span', {i18n: 'emptyLibrary', vars: {cmd: {code: 'image2mood index MUSIC_DIR'}}})
      : h('span', {i18n: 'noSongs'}));
  }
  // The polite live region announces the answer: how many songs, and the faces seen ("2 faces: happy, surprised").
  const faces = kind === 'photo' ? data.faces || [] : [];
  els.status.replaceChildren(h('span', songs.length === 1 ? {i18n: 'found1'} : {i18n: 'found', vars: {n: songs.length}}),
    ...(faces.length ? [' ', ...facesLine(faces), '.'] : []));
  $('#song-count').textContent = String(songs.length);
  translate(els.results);
  translate(els.status);
  if (focus) {
    els.results.scrollIntoView({behavior: scrolling(), block: 'start'});
    els.caption.setAttribute('tabindex', '-1');
    els.caption.focus({preventScroll: true});
  }
}

/* ---------- the ways out and the mood map ---------- */

const QUERY_KEYS = {photo: 'mapPhoto', search: 'mapWords', similar: 'mapSong'};

// A kept answer (it has a result_id) gets "Save playlist" and "Share"; every answer gets its mood map.
function renderWaysOut(kind, data) {
  const id = data.result_id;
  els.shareBar.hidden = !id;
  state.resultId = id || null;
  els.pushForm.hidden = !(id && state.health && state.health.music_server);
  els.pushStatus.textContent = '';
  if (id) {
    els.pushName.value = (data.caption || data.query || 'image2mood').slice(0, 200);
    els.savePlaylist.href = `/api/results/${encodeURIComponent(id)}/playlist.m3u8`;
    els.shareLink.href = `/r/${encodeURIComponent(id)}`;
  }
  els.mapPanel.hidden = !drawMap(els.moodMap, {query: data, songs: data.songs, queryKey: QUERY_KEYS[kind], list: els.mapList});
}

/* ---------- faces ---------- */

function faceWord(face) {
  return {'data-en': face.en || face.expression, 'data-ko': face.ko || ''};
}

function facePercent(face) {
  const p = face.probabilities && face.probabilities[face.expression];
  return typeof p === 'number' ? ` (${Math.round(p * 100)}%)` : '';
}

// "2 faces: happy (93%), surprised (71%)" as nodes (translated by translate()).
function facesLine(faces) {
  return [h('span', {i18n: faces.length > 1 ? 'faces' : 'face', vars: {n: faces.length}}), ' ',
    ...faces.flatMap((face, i) => [i ? ', ' : '', h('strong', faceWord(face)), facePercent(face)])];
}

// The faces the server found: a line naming their expressions, and a box with a label on each in the photo.
function renderFaces(data) {
  const faces = data.faces || [];
  els.face.hidden = !faces.length;
  els.face.replaceChildren(...facesLine(faces));
  const [width, height] = data.photo_size || [];
  const boxed = faces.filter((face) => Array.isArray(face.box));
  els.faceBoxes.toggleAttribute('hidden', !(boxed.length && width && height));
  if (!boxed.length || !width || !height) return;
  els.faceBoxes.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const line = Math.max(2, Math.round(Math.max(width, height) / 250));
  const font = Math.max(12, Math.round(Math.max(width, height) / 28));
  els.faceBoxes.replaceChildren(...boxed.map(({box: [x1, y1, x2, y2], ...face}) => {
    const above = y1 > font * 1.2;  // the label sits above the box, or inside its top when there is no room
    return svg('g', {class: 'face-box'},
      svg('rect', {x: x1, y: y1, width: x2 - x1, height: y2 - y1, 'stroke-width': line}),
      svg('text', {x: x1 + line, y: above ? y1 - line * 1.5 : y1 + font, 'font-size': font,
        'stroke-width': Math.max(2, font / 6), ...faceWord(face)}));
  }));
}

// A song's card; its "More like this" button (class "more") is handled by main.js through the list.
function songCard(song) {
  const title = song.title || null;
  const vars = {title: title || t('untitled')};
  const meta = [song.artist, song.album].filter(Boolean).join(' · ');
  const time = duration(song.duration);
  return h('li', {class: 'song', 'data-id': song.id},
    h('div', {class: 'song-head'},
      h('h3', {class: 'song-title'}, title ? title : h('span', {i18n: 'untitled'})),
      time ? h('span', {class: 'song-duration', text: time}) : null),
    h('p', {class: 'song-meta'}, meta ? meta : h('span', {i18n: 'unknownArtist'})),
    (song.moods && song.moods.length)
      ? h('ul', {class: 'chips', 'data-i18n-aria-label': 'songMoods', vars}, ...song.moods.map(moodChip))
      : null,
    // The player starts at the song's highlight (a media fragment), marked under it.
    h('audio', {controls: true, preload: 'none', src: song.highlight ? `${song.audio_url}#t=${song.highlight.start}` : song.audio_url,
      'data-i18n-aria-label': 'listen', vars}),
    song.highlight ? highlightMark(song) : null,
    h('div', {class: 'song-actions'},
      h('button', {type: 'button', class: 'btn btn-small more', 'data-i18n-aria-label': 'more', vars},
        h('span', {'aria-hidden': 'true', text: '↻ '}), h('span', {i18n: 'more'})),
      videoHere() ? h('button', {type: 'button', class: 'btn btn-small make-video',
        'data-i18n-aria-label': 'makeVideoLabel', vars}, h('span', {i18n: 'makeVideo'})) : null),
    videoHere() ? h('p', {class: 'video-status', 'aria-live': 'polite'}) : null);
}

// The highlight on a bar as long as the song (an SVG: no inline style, which the page's CSP forbids), and in
// words for everyone: "Best part 0:30–0:45".
function highlightMark(song) {
  const {start, end} = song.highlight;
  const total = song.duration > 0 ? song.duration : end;
  return h('div', {class: 'highlight'},
    svg('svg', {class: 'highlight-bar', viewBox: '0 0 1000 6', preserveAspectRatio: 'none', 'aria-hidden': 'true'},
      svg('rect', {class: 'highlight-track', width: 1000, height: 6}),
      svg('rect', {class: 'highlight-mark', x: Math.round((start / total) * 1000), height: 6,
        width: Math.max(4, Math.round(((end - start) / total) * 1000))})),
    h('p', {class: 'highlight-text', i18n: 'bestPart', vars: {from: duration(start), to: duration(end)}}));
}

// "Make a video" (video.js) needs a kept photo answer and the photo it was for, still held by this page.
const videoHere = () => Boolean(state.view && state.view.kind === 'photo' && state.view.data.result_id && state.photoFile);

export function goBack() {
  const previous = state.history.pop();
  if (!previous) return;
  clearError();
  show(previous, {focus: true});
}

export function renderAlphaOutput() {
  els.alphaOut.textContent = state.alphaTouched
    ? Number(els.alpha.value).toFixed(2)
    : `${t('alphaAuto')}${state.view && typeof state.view.data.alpha === 'number' ? ` · ${state.view.data.alpha.toFixed(2)}` : ''}`;
}
