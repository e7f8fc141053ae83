/* The mood map: the query (photo or words) and its songs on the valence × arousal plane, as inline SVG
 * built with DOM calls (no chart library). Used by the main page and the shared-answer page. */

import {translate} from './i18n.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const SIZE = 400;
const MARGIN = 34;
const SPAN = SIZE - 2 * MARGIN;
const MID = SIZE / 2;

// svg('circle', {cx: 1, i18n: 'key'}, ...children): an SVG element; `i18n` marks its text for translate().
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  Object.entries(attrs).forEach(([key, value]) => {
    if (key === 'i18n') el.dataset.i18n = value;
    else el.setAttribute(key, value);
  });
  el.append(...children);
  return el;
}

const placed = (p) => p && typeof p.valence === 'number' && typeof p.arousal === 'number';

// An HTML element whose text is the string `key` names (translated by translate()), or plain text.
function word(key, text) {
  const span = document.createElement('span');
  if (key) span.dataset.i18n = key;
  else span.textContent = text;
  return span;
}

// "slightly pleasant (+0.32)": how far along one axis a place is, in words and as the number.
function degree(value, [low, high, neutral]) {
  const size = Math.abs(value);
  const number = ` (${value >= 0 ? '+' : '−'}${size.toFixed(2)})`;
  if (size < 0.1) return [word(neutral), number];
  return [word(size < 0.5 ? 'mapSlightly' : 'mapVery'), ' ', word(value < 0 ? low : high), number];
}

// The map as text, for screen readers: one item per mark, "Your photo: slightly pleasant (+0.32), very calm (−0.71)".
function describe(list, dots, query, queryKey) {
  const item = (name, place) => {
    const li = document.createElement('li');
    li.append(...name, ': ', ...degree(place.valence, ['mapUnpleasant', 'mapPleasant', 'mapNeutralV']), ', ',
      ...degree(place.arousal, ['mapCalm', 'mapExcited', 'mapNeutralA']));
    return li;
  };
  list.replaceChildren(
    ...(placed(query) ? [item([word(queryKey)], query)] : []),
    ...dots.map((song) => item([`${song.n}. `, song.title ? word(null, song.title) : word('untitled')], song)));
}

const x = (valence) => MARGIN + ((valence + 1) / 2) * SPAN;
const y = (arousal) => MARGIN + ((1 - arousal) / 2) * SPAN;

// Draw into `root` (an <svg>): axes with their words, one numbered dot per song (numbered as the list
// is), and a diamond for the query. `query` and each song carry valence and arousal in [-1, 1].
// `list` (a <ul>), if given, gets the same places as text.
export function drawMap(root, {query, songs, queryKey = 'mapPhoto', list = null}) {
  root.setAttribute('viewBox', `0 0 ${SIZE} ${SIZE}`);
  root.setAttribute('role', 'img');
  root.classList.add('mood-map');
  const dots = (songs || []).map((song, i) => ({...song, n: i + 1})).filter(placed);
  const marks = dots.map((song) => svg('g', {class: 'map-song'},
    svg('title', {}, `${song.n}. ${song.title || ''}`),
    svg('circle', {cx: x(song.valence), cy: y(song.arousal), r: 10}),
    svg('text', {x: x(song.valence), y: y(song.arousal), dy: '0.35em', 'text-anchor': 'middle'}, String(song.n))));
  if (placed(query)) {
    const [qx, qy] = [x(query.valence), y(query.arousal)];
    marks.push(svg('g', {class: 'map-query'},
      svg('title', {i18n: queryKey}),
      svg('path', {d: `M${qx} ${qy - 13}L${qx + 13} ${qy}L${qx} ${qy + 13}L${qx - 13} ${qy}Z`})));
  }
  root.replaceChildren(
    svg('title', {i18n: 'mapTitle'}),
    svg('rect', {class: 'map-plane', x: MARGIN, y: MARGIN, width: SPAN, height: SPAN, rx: 8}),
    svg('line', {class: 'map-axis', x1: MARGIN, y1: MID, x2: SIZE - MARGIN, y2: MID}),
    svg('line', {class: 'map-axis', x1: MID, y1: MARGIN, x2: MID, y2: SIZE - MARGIN}),
    svg('text', {class: 'map-word', x: MID, y: MARGIN - 10, 'text-anchor': 'middle', i18n: 'mapExcited'}),
    svg('text', {class: 'map-word', x: MID, y: SIZE - MARGIN + 22, 'text-anchor': 'middle', i18n: 'mapCalm'}),
    svg('text', {class: 'map-word', x: MARGIN + 6, y: MID - 8, i18n: 'mapUnpleasant'}),
    svg('text', {class: 'map-word', x: SIZE - MARGIN - 6, y: MID - 8, 'text-anchor': 'end', i18n: 'mapPleasant'}),
    ...marks);
  translate(root);
  if (list) {
    describe(list, dots, query, queryKey);
    translate(list);
  }
  return marks.length > 0;
}
