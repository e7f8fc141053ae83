/* The camera: laptops get getUserMedia in the page; phones get the native camera through the
 * capture input (wired in upload.js). */

import {els, state} from './page.js';
import {clearError, showError} from './render.js';

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

export function closeCamera() {
  if (!state.stream) return;
  state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  els.video.srcObject = null;
  els.cameraPanel.hidden = true;
  els.dropzone.hidden = false;
}

// The current frame as a JPEG file, handed to `send`.
function shoot(send) {
  const {video, canvas} = els;
  if (!video.videoWidth) return;  // no frame yet
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    if (!blob) return;
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
    send(new File([blob], `camera-${stamp}.jpg`, {type: 'image/jpeg'}));
    els.cameraBtn.focus();
  }, 'image/jpeg', 0.9);
}

// Show the camera button where the page can use a camera itself (not on phones); photos go to `send`.
export function initCamera(send, {coarse}) {
  const media = Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  els.cameraBtn.hidden = coarse || !media;
  els.cameraBtn.addEventListener('click', openCamera);
  els.shootBtn.addEventListener('click', () => shoot(send));
  els.cameraCancel.addEventListener('click', () => { closeCamera(); els.cameraBtn.focus(); });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && state.stream) { closeCamera(); els.cameraBtn.focus(); } });
}
