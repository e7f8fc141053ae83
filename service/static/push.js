/* "Send to my server": the kept answer's songs as a playlist on the music server the service knows.
 * The server's login stays in the service; the page only names the playlist. */

import {format, t} from './i18n.js';
import {els, state} from './page.js';

async function push(event) {
  event.preventDefault();
  const id = state.resultId;
  if (!id) return;
  const name = els.pushName.value.trim();
  els.pushStatus.textContent = t('pushSending');
  try {
    const res = await fetch(`/api/results/${encodeURIComponent(id)}/push`, {
      method: 'POST', body: new URLSearchParams({name}), headers: {Accept: 'application/json'},
    });
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const message = (body && body.error && body.error.message) || `HTTP ${res.status}`;
      els.pushStatus.replaceChildren(format(t('pushFailed'), {message}));
      return;
    }
    els.pushStatus.replaceChildren(format(t('pushDone'), {count: String(body.songs), name: body.name}));
  } catch (error) {
    els.pushStatus.replaceChildren(format(t('pushFailed'), {message: String(error.message || error)}));
  }
}

export function initPush() {
  els.pushForm.addEventListener('submit', push);
}
