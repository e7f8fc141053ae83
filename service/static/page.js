/* The page's elements and the state the modules share. */

export const $ = (selector) => document.querySelector(selector);

export const els = {
  sharePhoto: $('#share-photo'), shareBar: $('#share-bar'), savePlaylist: $('#save-playlist'),
  shareLink: $('#share-link'), mapPanel: $('#map-panel'), moodMap: $('#mood-map'), mapList: $('#map-list'),
  pushForm: $('#push-form'), pushName: $('#push-name'), pushStatus: $('#push-status'),
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
  face: $('#face'), faceBoxes: $('#face-boxes'), note: $('#note'), timing: $('#timing'), noSongs: $('#no-songs'), songs: $('#songs'),
};

export const state = {
  lang: 'en',
  maxBytes: (parseFloat(document.body.dataset.maxUploadMb) || 20) * 1024 * 1024,
  health: null,
  resultId: null,     // the kept answer on show (for "Send to my server")
  controller: null,   // the request in flight (a new one aborts it)
  view: null,         // what the results show now: {kind, data, photoUrl}
  history: [],        // earlier views, for "Back"
  photoUrl: null,     // object URL of the current photo
  photoFile: null,    // the current photo itself (File), for "Make a video"
  alphaTouched: false,
  stream: null,       // camera stream while the camera panel is open
};
