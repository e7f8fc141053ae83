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
