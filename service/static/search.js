/* The two other ways in: words describing a mood, and "More like this" on a song. */

import {optionParams, request} from './api.js';
import {els, state} from './page.js';
import {show, showError} from './render.js';

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

async function moreLike(songId) {
  const params = optionParams({withAlpha: false});
  const data = await request(`/api/songs/${encodeURIComponent(songId)}/similar?${params}`, {method: 'GET'}, 'busySimilar');
  if (data) {
    if (state.view) state.history.push(state.view);
    show({kind: 'similar', data}, {focus: true});
  }
}

export function initSearch() {
  els.searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    searchText(els.searchInput.value);
  });
  // Every song card's "More like this" button (render.js) asks for the songs near that card's song.
  els.songs.addEventListener('click', (e) => {
    const button = e.target.closest('button.more');
    if (button) moreLike(button.closest('.song').dataset.id);
  });
}
