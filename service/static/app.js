/* image2mood web page: a photo (file, drop, paste or camera) in, songs from the library out.
 * Vanilla JS, no build step, nothing loaded from outside this server. */
(() => {
  'use strict';

  // Every UI string, in both languages. {name} is filled in by format(); mood words come from the API.
  const I18N = {
    en: {
      skip: 'Skip to content',
      tagline: 'Drop in a photo and get songs from your own library that fit its mood.',
      inputHeading: 'Your photo',
      dropTitle: 'Drop a photo here',
      dropHint: 'or paste one, or choose below',
      dropTitleTouch: 'Find songs for a photo',
      dropHintTouch: 'choose one or take one',
      sizeLimit: 'up to {mb} MB',
      pick: 'Choose a photo',
      capture: 'Take a photo',
      camera: 'Camera',
      cameraPreview: 'Camera preview',
      shoot: 'Take photo',
      cancel: 'Cancel',
      searchLabel: 'Describe a mood',
      searchPlaceholder: 'or describe a mood…',
      searchBtn: 'Find songs',
      options: 'Options',
      alpha: 'Picture ↔ caption balance',
      alphaAuto: 'auto',
      alphaHint: '0 = the caption alone chooses, 1 = the picture alone',
      top: 'Songs',
      maxPerArtist: 'Max per artist',
      artist: 'Artist',
      genre: 'Genre',
      resultsHeading: 'Results',
      busyPhoto: 'Listening to your photo…',
      busySearch: 'Finding songs for that mood…',
      busySimilar: 'Finding similar songs…',
      back: 'Back',
      songsHeading: 'Songs',
      footer: 'Your photo goes only to this image2mood server and is not kept; the songs play from your own library.',
      kindPhoto: 'What the photo shows',
      kindSearch: 'The mood you described',
      kindSimilar: 'More like this song',
      photoAlt: 'Your photo: {caption}',
      photoAltPending: 'Your photo',
      moodsLabel: 'Moods',
      songMoods: 'Moods of {title}',
      face: 'Face:',
      note: 'Note:',
      answered: 'Answered in {s} s',
      found: 'Found {n} songs.',
      found1: 'Found 1 song.',
      noSongs: 'No songs matched. Try other options.',
      more: 'More like this',
      listen: 'Listen to {title}',
      unknownArtist: 'Unknown artist',
      untitled: 'Untitled',
      errorLead: 'Could not get songs',
      tooBig: '{name} is {size} MB; the limit is {max} MB. Choose a smaller photo.',
      network: 'Could not reach the image2mood server. Is it still running?',
      badResponse: 'The server sent an answer this page cannot read (HTTP {status}).',
      cameraDenied: 'The camera is blocked. Allow it in the browser, or choose a photo instead.',
      cameraError: 'The camera did not start ({reason}). Choose a photo instead.',
      tinyModels: 'Demo models with random weights: results are not meaningful.',
      emptyLibrary: 'No songs indexed yet: run {cmd}',
      unreachable: 'The server did not answer {url}; results may fail.',
      searchEmpty: 'Type a few words about a mood first.',
      dropNotFile: 'Drop a photo file (not a link or text).',
    },
    ko: {
      skip: '본문으로 건너뛰기',
      tagline: '사진을 올리면 내 음악 라이브러리에서 그 분위기에 맞는 노래를 찾아 드려요.',
      inputHeading: '내 사진',
      dropTitle: '여기에 사진을 끌어다 놓으세요',
      dropHint: '붙여넣거나 아래에서 고를 수도 있어요',
      dropTitleTouch: '사진에 어울리는 노래 찾기',
      dropHintTouch: '사진을 고르거나 찍어 보세요',
      sizeLimit: '최대 {mb} MB',
      pick: '사진 고르기',
      capture: '사진 찍기',
      camera: '카메라',
      cameraPreview: '카메라 미리보기',
      shoot: '촬영',
      cancel: '취소',
      searchLabel: '분위기 설명',
      searchPlaceholder: '분위기를 적어 보세요…',
      searchBtn: '노래 찾기',
      options: '옵션',
      alpha: '사진 ↔ 캡션 비중',
      alphaAuto: '자동',
      alphaHint: '0 = 캡션만으로 고르기, 1 = 사진만으로 고르기',
      top: '노래 수',
      maxPerArtist: '아티스트당 최대',
      artist: '아티스트',
      genre: '장르',
      resultsHeading: '결과',
      busyPhoto: '사진의 분위기를 읽는 중…',
      busySearch: '그 분위기에 맞는 노래를 찾는 중…',
      busySimilar: '비슷한 노래를 찾는 중…',
      back: '뒤로',
      songsHeading: '노래',
      footer: '사진은 이 image2mood 서버로만 보내지고 저장되지 않아요. 노래는 내 라이브러리에서 재생돼요.',
      kindPhoto: '사진 설명',
      kindSearch: '내가 적은 분위기',
      kindSimilar: '이 노래와 비슷한 곡',
      photoAlt: '내 사진: {caption}',
      photoAltPending: '내 사진',
      moodsLabel: '분위기',
      songMoods: '{title}의 분위기',
      face: '표정:',
      note: '참고:',
      noteCaptionOnly: '사진 투영 체크포인트가 설정되지 않아 캡션만으로 노래를 골랐어요.',
      answered: '{s}초 만에 답했어요',
      found: '노래 {n}곡을 찾았어요.',
      found1: '노래 1곡을 찾았어요.',
      noSongs: '맞는 노래가 없어요. 옵션을 바꿔 보세요.',
      more: '비슷한 노래',
      listen: '{title} 듣기',
      unknownArtist: '알 수 없는 아티스트',
      untitled: '제목 없음',
      errorLead: '노래를 가져오지 못했어요',
      tooBig: '{name} 파일은 {size} MB라서 너무 커요 (최대 {max} MB). 더 작은 사진을 골라 주세요.',
      network: 'image2mood 서버에 연결하지 못했어요. 서버가 실행 중인지 확인해 주세요.',
      badResponse: '서버 응답을 읽을 수 없어요 (HTTP {status}).',
      cameraDenied: '카메라 권한이 없어요. 브라우저에서 허용하거나 사진을 골라 주세요.',
      cameraError: '카메라를 켜지 못했어요 ({reason}). 사진을 골라 주세요.',
      tinyModels: '무작위 가중치의 데모 모델이에요: 결과에 의미가 없어요.',
      emptyLibrary: '아직 색인된 노래가 없어요: {cmd} 를 실행하세요',
      unreachable: '서버가 {url} 에 답하지 않아요. 결과를 못 받을 수 있어요.',
      searchEmpty: '먼저 분위기를 몇 단어로 적어 주세요.',
      dropNotFile: '사진 파일을 놓아 주세요 (링크나 글자 말고요).',
    },
  };
  const LANG_KEY = 'image2mood.lang';
  const I18N_ATTRS = ['placeholder', 'aria-label', 'alt', 'title'];

  const $ = (selector) => document.querySelector(selector);
  const els = {
    notices: $('#notices'), dropzone: $('#dropzone'), sizeLimit: $('#size-limit'),
    photoInput: $('#photo-input'), captureInput: $('#capture-input'), captureLabel: $('#capture-label'),
    cameraBtn: $('#camera-btn'), cameraPanel: $('#camera-panel'), video: $('#camera-video'),
    canvas: $('#camera-canvas'), shootBtn: $('#shoot-btn'), cameraCancel: $('#camera-cancel'),
    searchForm: $('#search-form'), searchInput: $('#search-input'),
    alpha: $('#opt-alpha'), alphaOut: $('#alpha-out'), top: $('#opt-top'), maxPerArtist: $('#opt-max-per-artist'),
    artist: $('#opt-artist'), genre: $('#opt-genre'),
    error: $('#error'), busy: $('#busy'), busyText: $('#busy-text'), status: $('#status'),
    results: $('#results'), summary: $('#results .summary'), figure: $('#photo-figure'), photo: $('#photo'),
    backBtn: $('#back-btn'), kind: $('#query-kind'), caption: $('#caption'), moods: $('#moods'),
    face: $('#face'), note: $('#note'), timing: $('#timing'), noSongs: $('#no-songs'), songs: $('#songs'),
  };

  const state = {
    lang: 'en',
    maxBytes: (parseFloat(document.body.dataset.maxUploadMb) || 20) * 1024 * 1024,
    health: null,
    controller: null,   // the request in flight (a new one aborts it)
    view: null,         // what the results show now: {kind, data, photoUrl}
    history: [],        // earlier views, for "Back"
    photoUrl: null,     // object URL of the current photo
    alphaTouched: false,
    stream: null,       // camera stream while the camera panel is open
  };

  /* ---------- language ---------- */

  function t(key, lang = state.lang) {
    return (I18N[lang] && I18N[lang][key]) ?? I18N.en[key] ?? key;
  }

  // A template with {name} placeholders as nodes; a var given as {code: '...'} becomes <code>.
  function format(template, vars = {}) {
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
  function translate(root = document) {
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

  function setLanguage(lang, remember) {
    state.lang = I18N[lang] ? lang : 'en';
    document.documentElement.lang = state.lang;
    document.querySelectorAll('.lang-btn').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.lang === state.lang)));
    translate();
    renderNotices();
    renderAlphaOutput();
    if (remember) {
      try { localStorage.setItem(LANG_KEY, state.lang); } catch { /* private mode: not remembered */ }
    }
  }

  function initialLanguage() {
    try {
      const saved = localStorage.getItem(LANG_KEY);
      if (saved && I18N[saved]) return saved;
    } catch { /* no storage */ }
    const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
    return wanted.toLowerCase().startsWith('ko') ? 'ko' : 'en';
  }

  /* ---------- small helpers ---------- */

  // h('p', {class: 'x', i18n: 'key', vars: {...}, 'aria-label': '...'}, ...children)
  function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    Object.entries(props).forEach(([key, value]) => {
      if (value === null || value === undefined || value === false) return;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key === 'i18n') el.dataset.i18n = value;
      else if (key === 'vars') el.dataset.i18nVars = JSON.stringify(value);
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? '' : value);
    });
    el.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
    return el;
  }

  const mb = (bytes) => String(Math.round((bytes / 1024 / 1024) * 10) / 10);

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

  function renderNotices() {
    const health = state.health;
    els.notices.replaceChildren();
    if (!health) return;
    const add = (key, vars) => els.notices.append(
      h('p', {class: 'notice notice-warn'}, format(t(key), vars)));
    if (health.unreachable) add('unreachable', {url: {code: '/api/health'}});
    if (health.tiny_models) add('tinyModels');
    if (health.store && health.store.songs === 0) add('emptyLibrary', {cmd: {code: 'image2mood index MUSIC_DIR'}});
  }

  async function loadHealth() {
    try {
      const res = await fetch('/api/health', {headers: {Accept: 'application/json'}});
      state.health = res.ok ? await res.json() : {unreachable: true};
    } catch {
      state.health = {unreachable: true};
    }
    renderNotices();
  }

  // A server message is shown as it is (it names the file or field); a client message is translated.
  function showError({key, vars, message, lead = true}) {
    const body = key ? h('span', {i18n: key, vars}) : h('span', {class: 'error-message', text: message});
    els.error.replaceChildren(...(lead ? [h('strong', {i18n: 'errorLead'})] : []), body);
    translate(els.error);
    els.error.hidden = false;
  }

  function clearError() {
    els.error.hidden = true;
    els.error.replaceChildren();
  }

  function setBusy(key) {
    els.busy.hidden = !key;
    els.results.setAttribute('aria-busy', String(Boolean(key)));
    els.figure.classList.toggle('loading', Boolean(key));
    if (key) {
      els.busyText.dataset.i18n = key;
      translate(els.busyText);
      els.status.textContent = '';
    }
  }

  /* ---------- requests ---------- */

  class ApiError extends Error {}

  // fetch JSON; on failure show the error and return null. A newer request aborts this one.
  async function request(url, init, busyKey) {
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    clearError();
    setBusy(busyKey);
    const started = performance.now();
    try {
      const res = await fetch(url, {...init, signal: controller.signal, headers: {Accept: 'application/json'}});
      let body = null;
      try { body = await res.json(); } catch { /* not JSON */ }
      if (!res.ok) {
        const message = body && body.error && body.error.message;
        if (message) throw new ApiError(message);
        throw Object.assign(new ApiError(''), {status: res.status});
      }
      if (!body || !Array.isArray(body.songs)) throw Object.assign(new ApiError(''), {status: res.status});
      body.elapsedMs = performance.now() - started;
      return body;
    } catch (err) {
      if (err.name === 'AbortError') return null;
      if (err instanceof ApiError && err.message) showError({message: err.message});
      else if (err instanceof ApiError) showError({key: 'badResponse', vars: {status: err.status}});
      else showError({key: 'network'});
      return null;
    } finally {
      if (state.controller === controller) {
        state.controller = null;
        setBusy(null);
      }
    }
  }

  function optionParams({withAlpha}) {
    const params = new URLSearchParams();
    const add = (name, input) => { const v = input.value.trim(); if (v) params.set(name, v); };
    add('top', els.top);
    add('max_per_artist', els.maxPerArtist);
    add('artist', els.artist);
    add('genre', els.genre);
    if (withAlpha && state.alphaTouched) params.set('alpha', els.alpha.value);
    return params;
  }

  /* ---------- the three ways in ---------- */

  async function sendPhoto(file) {
    if (!file) return;
    closeCamera();
    if (file.size > state.maxBytes) {
      showError({key: 'tooBig', vars: {name: file.name || 'photo', size: mb(file.size), max: mb(state.maxBytes)}, lead: false});
      return;
    }
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photoUrl = URL.createObjectURL(file);
    state.history = [];
    state.view = null;  // the last view's photo URL is gone
    showPending(state.photoUrl);
    const form = new FormData();
    form.append('image', file, file.name || 'photo.jpg');
    optionParams({withAlpha: true}).forEach((value, name) => form.append(name, value));
    const data = await request('/api/recommend', {method: 'POST', body: form}, 'busyPhoto');
    if (data) {
      if (!state.alphaTouched && typeof data.alpha === 'number') els.alpha.value = String(data.alpha);
      show({kind: 'photo', data, photoUrl: state.photoUrl});
      renderAlphaOutput();
    } else if (els.error.hidden === false) {
      els.results.hidden = true;
    }
  }

  async function searchText(text) {
    const q = text.trim();
    if (!q) {
      showError({key: 'searchEmpty', lead: false});
      els.searchInput.focus();
      return;
    }
    const params = optionParams({withAlpha: false});
    params.set('q', q);
    const data = await request(`/api/search?${params}`, {method: 'GET'}, 'busySearch');
    if (data) {
      state.history = state.view ? [...state.history, state.view] : state.history;
      show({kind: 'search', data}, {focus: false});
    }
  }

  async function moreLike(song) {
    const params = optionParams({withAlpha: false});
    const data = await request(`/api/songs/${encodeURIComponent(song.id)}/similar?${params}`, {method: 'GET'}, 'busySimilar');
    if (data) {
      if (state.view) state.history.push(state.view);
      show({kind: 'similar', data}, {focus: true});
    }
  }

  /* ---------- results ---------- */

  // The photo is shown at once, dimmed, while the server works on it.
  function showPending(photoUrl) {
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
    els.songs.replaceChildren();
    $('#song-count').textContent = '';
    els.results.scrollIntoView({behavior: 'smooth', block: 'nearest'});
  }

  function show(view, {focus = false} = {}) {
    state.view = view;
    const {kind, data} = view;
    els.results.hidden = false;
    const hasPhoto = kind === 'photo';
    els.figure.hidden = !hasPhoto;
    els.summary.classList.toggle('no-photo', !hasPhoto);
    if (hasPhoto) {
      if (els.photo.getAttribute('src') !== view.photoUrl) els.photo.src = view.photoUrl;
      els.photo.dataset.i18nAlt = 'photoAlt';
      els.photo.dataset.i18nVars = JSON.stringify({caption: data.caption || ''});
    }
    els.backBtn.hidden = state.history.length === 0;
    els.kind.dataset.i18n = {photo: 'kindPhoto', search: 'kindSearch', similar: 'kindSimilar'}[kind];

    let headline = '';
    if (kind === 'photo') headline = data.caption || '';
    else if (kind === 'search') headline = `“${data.query || ''}”`;
    else if (data.song) headline = [data.song.title, data.song.artist].filter(Boolean).join(' — ');
    els.caption.textContent = headline;
    if (kind === 'photo') els.caption.lang = 'en';  // BLIP writes English
    else els.caption.removeAttribute('lang');

    els.moods.replaceChildren(...(data.moods || []).map(moodChip));

    els.face.hidden = !data.face;
    if (data.face) {
      const pct = typeof data.face.probability === 'number' ? ` (${Math.round(data.face.probability * 100)}%)` : '';
      els.face.replaceChildren(h('span', {i18n: 'face'}), ' ',
        h('strong', {'data-en': data.face.en || data.face.expression, 'data-ko': data.face.ko || ''}), pct);
    }

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
    els.status.replaceChildren(h('span', songs.length === 1 ? {i18n: 'found1'} : {i18n: 'found', vars: {n: songs.length}}));
    $('#song-count').textContent = String(songs.length);
    translate(els.results);
    translate(els.status);
    if (focus) {
      els.results.scrollIntoView({behavior: 'smooth', block: 'start'});
      els.caption.setAttribute('tabindex', '-1');
      els.caption.focus({preventScroll: true});
    }
  }

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
      h('audio', {controls: true, preload: 'none', src: song.audio_url, 'data-i18n-aria-label': 'listen', vars}),
      h('div', {class: 'song-actions'},
        h('button', {type: 'button', class: 'btn btn-small more', 'data-i18n-aria-label': 'more', vars,
          onclick: () => moreLike(song)},
        h('span', {'aria-hidden': 'true', text: '↻ '}), h('span', {i18n: 'more'}))));
  }

  function goBack() {
    const previous = state.history.pop();
    if (!previous) return;
    clearError();
    show(previous, {focus: true});
  }

  function renderAlphaOutput() {
    els.alphaOut.textContent = state.alphaTouched
      ? Number(els.alpha.value).toFixed(2)
      : `${t('alphaAuto')}${state.view && typeof state.view.data.alpha === 'number' ? ` · ${state.view.data.alpha.toFixed(2)}` : ''}`;
  }

  /* ---------- camera (laptops: getUserMedia; phones: the capture input) ---------- */

  async function openCamera() {
    clearError();
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({
        video: {facingMode: 'environment', width: {ideal: 1280}, height: {ideal: 960}}, audio: false});
    } catch (err) {
      const denied = err && (err.name === 'NotAllowedError' || err.name === 'SecurityError');
      showError(denied ? {key: 'cameraDenied', lead: false}
        : {key: 'cameraError', vars: {reason: (err && (err.message || err.name)) || '?'}, lead: false});
      return;
    }
    els.video.srcObject = state.stream;
    els.cameraPanel.hidden = false;
    els.dropzone.hidden = true;
    els.shootBtn.focus();
  }

  function closeCamera() {
    if (!state.stream) return;
    state.stream.getTracks().forEach((track) => track.stop());
    state.stream = null;
    els.video.srcObject = null;
    els.cameraPanel.hidden = true;
    els.dropzone.hidden = false;
  }

  function shoot() {
    const {video, canvas} = els;
    if (!video.videoWidth) return;  // no frame yet
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    canvas.toBlob((blob) => {
      if (!blob) return;
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
      sendPhoto(new File([blob], `camera-${stamp}.jpg`, {type: 'image/jpeg'}));
      els.cameraBtn.focus();
    }, 'image/jpeg', 0.9);
  }

  /* ---------- wiring ---------- */

  function fileFrom(list) {
    return list && list.length ? list[0] : null;
  }

  function init() {
    setLanguage(initialLanguage(), false);
    els.sizeLimit.dataset.i18n = 'sizeLimit';
    els.sizeLimit.dataset.i18nVars = JSON.stringify({mb: mb(state.maxBytes)});
    translate(els.sizeLimit);

    document.querySelectorAll('.lang-btn').forEach((b) => b.addEventListener('click', () => setLanguage(b.dataset.lang, true)));

    [els.photoInput, els.captureInput].forEach((input) => input.addEventListener('change', () => {
      const file = fileFrom(input.files);
      input.value = '';  // choosing the same file again still fires "change"
      sendPhoto(file);
    }));

    // Phones get the native camera through the capture input; laptops get getUserMedia, where available.
    const coarse = window.matchMedia && window.matchMedia('(pointer: coarse)').matches;
    const media = Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
    els.captureLabel.hidden = !coarse;
    if (coarse) {  // nothing to drag and drop on a phone
      $('#drop-title').dataset.i18n = 'dropTitleTouch';
      $('#drop-hint').dataset.i18n = 'dropHintTouch';
      translate($('#dropzone'));
    }
    els.cameraBtn.hidden = coarse || !media;
    els.cameraBtn.addEventListener('click', openCamera);
    els.shootBtn.addEventListener('click', shoot);
    els.cameraCancel.addEventListener('click', () => { closeCamera(); els.cameraBtn.focus(); });
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && state.stream) { closeCamera(); els.cameraBtn.focus(); } });

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

    els.searchForm.addEventListener('submit', (e) => {
      e.preventDefault();
      searchText(els.searchInput.value);
    });

    els.alpha.addEventListener('input', () => { state.alphaTouched = true; renderAlphaOutput(); });
    els.backBtn.addEventListener('click', goBack);

    // One song plays at a time.
    document.addEventListener('play', (e) => {
      document.querySelectorAll('audio').forEach((a) => { if (a !== e.target) a.pause(); });
    }, true);

    loadHealth();
  }

  init();
})();
