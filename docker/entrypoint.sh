#!/usr/bin/env bash
# Container start: make sure the model set (CLIP, BLIP, CLAP and the projection head) is in the models
# volume, then run `image2mood "$@"`; `init` only does the first part (compose's models-init service).
#
#   IMAGE2MOOD_MODELS       the model-set folder (the image sets /models)
#   IMAGE2MOOD_TINY_MODELS  1: when the real models are missing and cannot be downloaded, run on
#                           tiny random models instead (the code paths are real, the results are
#                           noise); written once to $IMAGE2MOOD_MODELS/tiny
#
# One download at a time: a start that finds the models missing takes a lock in the models folder,
# and one that waited on it finds them there when it gets it.
# Exit status 78 (EX_CONFIG): the models are missing and could not be downloaded.
set -euo pipefail

models="${IMAGE2MOOD_MODELS:-/models}"

case "${1:-}" in
  models | store | --help | -h | --version)  # need no models
    exec image2mood "$@" ;;
esac

ready() {  # the models are here and, unless turned off, the projection head too
  local check
  check=$(image2mood models check 2>/dev/null) && ! grep -q "none: caption route only" <<<"$check"
}

fetch_models() {
  if image2mood models check >/dev/null 2>&1; then
    echo "image2mood: the models in $models have no projection head; training it (minutes on a CPU) ..." >&2
    image2mood models head >&2
    return
  fi
  echo "image2mood: no model set in $models yet; downloading CLIP, BLIP and CLAP (about 2 GB) ..." >&2
  # Unset so `models download` fetches the configured hub models rather than the missing folder; it ends
  # by training the projection head.
  if env -u IMAGE2MOOD_MODELS image2mood models download "$models" >&2; then
    return
  fi
  if [[ "${IMAGE2MOOD_TINY_MODELS:-0}" == 1 ]]; then
    echo "image2mood: download failed; IMAGE2MOOD_TINY_MODELS=1, so running on TINY RANDOM models" >&2
    [[ -d "$models/tiny" ]] || image2mood models tiny "$models/tiny" >&2
    export IMAGE2MOOD_MODELS="$models/tiny"
    return
  fi
  cat >&2 <<MESSAGE
image2mood: the models are not in $models and could not be downloaded (no network to the Hugging Face hub?).
Fix it in one of these ways, then start the container again:
  - give the container network access once: the models are downloaded into the models volume;
  - on a machine with internet run \`image2mood models download DIR\`, then copy DIR's clip/, blip/,
    clap/ and projection.pt into the models volume (mounted at $models);
  - to try image2mood without real models, set IMAGE2MOOD_TINY_MODELS=1 (tiny random models:
    the code paths are real, the recommendations are noise).
MESSAGE
  exit 78
}

if ! ready; then
  mkdir -p "$models"
  exec 9>"$models/.download.lock"
  if ! flock -n 9; then
    echo "image2mood: another container is fetching the models into $models; waiting for it ..." >&2
    flock 9
  fi
  ready || fetch_models
  exec 9>&-  # the lock is for the download, not for the command's lifetime
fi
[[ "${1:-}" == init ]] && exit 0

exec image2mood "$@"
