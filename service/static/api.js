/* Talking to the server: the health check and the JSON requests behind every search. */

import {els, state} from './page.js';
import {clearError, renderNotices, setBusy, showError} from './render.js';

class ApiError extends Error {}

export async function loadHealth() {
  try {
    const res = await fetch('/api/health', {headers: {Accept: 'application/json'}});
    state.health = res.ok ? await res.json() : {unreachable: true};
  } catch {
    state.health = {unreachable: true};
  }
  renderNotices();
}

// fetch JSON; on failure show the error and return null. A newer request aborts this one.
export async function request(url, init, busyKey) {
  return guarded(busyKey, async (signal, started) => {
    const res = await fetch(url, {...init, signal, headers: {Accept: 'application/json'}});
    let body = null;
    try { body = await res.json(); } catch { /* not JSON */ }
    return answer(res, body, started);
  });
}

// fetch a streamed answer (JSON lines): `onSongs` gets the first songs (no caption yet) as soon as they come,
// `onAnswer` the answer (songs ranked, caption in English and the captioner's language); a `captions` event after
// it adds the caption in the page's language. The answer with every caption is returned as request() returns it.
// The same errors, busy line and aborting as request().
export async function requestStream(url, init, busyKey, onSongs, onAnswer) {
  return guarded(busyKey, async (signal, started) => {
    const res = await fetch(url, {...init, signal, headers: {Accept: 'application/x-ndjson'}});
    if (!res.ok || !res.body) {
      let body = null;
      try { body = await res.json(); } catch { /* not JSON */ }
      return answer(res, body, started);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    let final = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffered += value;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines.filter((l) => l.trim())) {
        const event = JSON.parse(line);
        if (event.event === 'error') throw new ApiError((event.error && event.error.message) || '');
        if (event.event === 'answer') {
          final = answer(res, event, started);
          onAnswer(final);
        }
        if (event.event === 'captions' && final && event.result_id === final.result_id) {
          final = {...final, captions: {...final.captions, ...event.captions}, caption_note: event.caption_note};
        }
        if (event.event === 'songs' && Array.isArray(event.songs)) {
          onSongs({...event, elapsedMs: performance.now() - started});
        }
      }
    }
    if (final) return final;
    throw Object.assign(new ApiError(''), {status: res.status});  // the stream ended without an answer
  });
}

function answer(res, body, started) {
  if (!res.ok) {
    const message = body && body.error && body.error.message;
    if (message) throw new ApiError(message);
    throw Object.assign(new ApiError(''), {status: res.status});
  }
  if (!body || !Array.isArray(body.songs)) throw Object.assign(new ApiError(''), {status: res.status});
  body.elapsedMs = performance.now() - started;
  return body;
}

// Run `work(signal, started)` with the busy line shown; its errors are shown, and null returned.
async function guarded(busyKey, work) {
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  clearError();
  setBusy(busyKey);
  const started = performance.now();
  try {
    return await work(controller.signal, started);
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

// The options panel as query fields (alpha only once the user has moved the slider).
export function optionParams({withAlpha}) {
  const params = new URLSearchParams();
  const add = (name, input) => { const v = input.value.trim(); if (v) params.set(name, v); };
  add('top', els.top);
  add('max_per_artist', els.maxPerArtist);
  add('artist', els.artist);
  add('genre', els.genre);
  if (withAlpha && state.alphaTouched) params.set('alpha', els.alpha.value);
  return params;
}
