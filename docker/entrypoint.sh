#!/usr/bin/env bash
# Container start: make sure the model set is in the models volume, then run `image2mood "$@"`.
#
#   IMAGE2MOOD_MODELS       the model-set folder (the image sets /models)
#   IMAGE2MOOD_TINY_MODELS  1: when the real models are missing and cannot be downloaded, run on
#                           tiny random models instead (the code paths are real, the results are
#                           noise); written once to $IMAGE2MOOD_MODELS/tiny
#
# Exit status 78 (EX_CONFIG): the models are missing and could not be downloaded.
set -euo pipefail

models="${IMAGE2MOOD_MODELS:-/models}"

case "${1:-}" in
  models | store | --help | -h | --version)  # need no models
    exec image2mood "$@" ;;
esac

if ! image2mood models check >/dev/null 2>&1; then
  echo "image2mood: no model set in $models yet; downloading CLIP, BLIP and CLAP (about 2 GB) ..." >&2
  # Unset so `models download` fetches the configured hub models rather than the missing folder.
  if env -u IMAGE2MOOD_MODELS image2mood models download "$models"; then
    :
  elif [[ "${IMAGE2MOOD_TINY_MODELS:-0}" == 1 ]]; then
    echo "image2mood: download failed; IMAGE2MOOD_TINY_MODELS=1, so running on TINY RANDOM models" >&2
    [[ -d "$models/tiny" ]] || image2mood models tiny "$models/tiny" >&2
    export IMAGE2MOOD_MODELS="$models/tiny"
  else
    cat >&2 <<MESSAGE
image2mood: the models are not in $models and could not be downloaded (no network to the Hugging Face hub?).
Fix it in one of these ways, then start the container again:
  - give the container network access once: the models are downloaded into the models volume;
  - on a machine with internet run \`image2mood models download DIR\`, then copy DIR's clip/, blip/
    and clap/ folders into the models volume (mounted at $models);
  - to try image2mood without real models, set IMAGE2MOOD_TINY_MODELS=1 (tiny random models:
    the code paths are real, the recommendations are noise).
MESSAGE
    exit 78
  fi
fi

exec image2mood "$@"
