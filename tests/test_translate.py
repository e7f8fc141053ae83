"""The NLLB translator in the model set: the tiny one `models tiny` writes, loading it offline with clear
errors, translating (batched, cached, per target language), `models check` and `models download`'s flag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from image2mood.config import CAPTION_LANGUAGES, Settings
from image2mood.errors import ModelLoadError, ModelNotFoundError
from image2mood.models import factory
from image2mood.models.precision import Int8Linear
from image2mood.models.resolve import resolve_model
from image2mood.models.translator import ENGLISH, Translator
from media_captions import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
KOREAN = CAPTION_LANGUAGES["ko"]


@pytest.fixture(scope="module")
def translator(tiny_models: Path) -> Translator:
    return Translator(resolve_model("translator", str(tiny_models / "translator")))


def test_the_tiny_set_holds_an_nllb_translator_of_the_real_architecture(tiny_models: Path,
                                                                          translator: Translator) -> None:
    config = json.loads((tiny_models / "translator" / "config.json").read_text())
    assert config["model_type"] == "m2m_100" and config["architectures"] == ["M2M100ForConditionalGeneration"]
    assert type(translator.tokenizer).__name__ == "NllbTokenizer"
    assert len(translator.tokenizer) == config["vocab_size"]  # 204 language codes among them
    for code in (ENGLISH, KOREAN, "jpn_Jpan", "zho_Hant"):
        assert translator.language_id(code) != translator.tokenizer.unk_token_id
    assert any(isinstance(m, Int8Linear) for m in translator.model.modules())  # auto on a CPU: int8 weights
    settings = Settings(_env_file=None, models=tiny_models)
    assert settings.model_spec("translator") == str(tiny_models / "translator")
    assert factory.translator(settings) is factory.translator(settings)  # loaded once per process


def test_translations_depend_on_the_text_and_come_one_per_text(translator: Translator) -> None:
    texts = ["a dog on the beach at sunset", "people dancing at a party", "a dog on the beach at sunset"]
    out = translator.translate(texts, ENGLISH, KOREAN)
    assert len(out) == 3 and all(out) and out[0] == out[2] and out[0] != out[1]
    assert out[0] != texts[0]
    korean, japanese = (translator.translate(["a red sky at night"], ENGLISH, code) for code in (KOREAN, "jpn_Jpan"))
    assert korean != japanese  # the target's code, forced first, steers it
    assert translator.translate(texts[:1], ENGLISH, ENGLISH) == texts[:1]  # nothing to do


def test_a_translation_is_generated_once_then_served_from_the_cache(tiny_models: Path) -> None:
    fresh = Translator(resolve_model("translator", str(tiny_models / "translator")))
    generated: list[list[str]] = []
    real = fresh._generate
    fresh._generate = lambda texts, src, tgt: generated.append(list(texts)) or real(texts, src, tgt)  # type: ignore
    first = fresh.translate(["a red sky", "a blue sea"], ENGLISH, KOREAN)
    again = fresh.translate(["a blue sea", "a red sky", "a green tree"], ENGLISH, KOREAN)
    assert again[:2] == first[::-1]
    assert generated == [["a red sky", "a blue sea"], ["a green tree"]]  # cached by (caption, target)
    fresh.translate(["a red sky"], ENGLISH, "jpn_Jpan")
    assert generated[-1] == ["a red sky"]  # another target is another translation


def test_an_unknown_language_code_is_named(translator: Translator) -> None:
    with pytest.raises(ValueError, match="'kor_Kore' is not a language code"):
        translator.translate(["a dog"], ENGLISH, "kor_Kore")


def test_a_missing_translator_names_its_setting_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("translator", "facebook/nllb-200-distilled-600M")  # HF_HUB_OFFLINE=1, not cached
    message = str(caught.value)
    assert "NLLB translator model 'facebook/nllb-200-distilled-600M'" in message
    assert "models download --with-translator" in message and "IMAGE2MOOD_TRANSLATOR" in message
    with pytest.raises(ModelNotFoundError, match="NLLB translator model folder .*nowhere does not exist"):
        resolve_model("translator", str(tmp_path / "nowhere"))


def test_a_folder_with_another_tokenizer_is_refused(tiny_models: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_models / "translator", tmp_path / "mixed")
    for name in ("tokenizer.json", "tokenizer_config.json"):  # BLIP's WordPiece tokenizer in its place
        shutil.copy(tiny_models / "blip" / name, folder / name)
    with pytest.raises(ModelLoadError, match="NLLB translator .* no language code eng_Latn"):
        Translator(resolve_model("translator", str(folder)))


def test_models_check_shows_the_translator(tiny_models: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    shown = run_cli(["models", "check"], cli_env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"NLLB  ok       {tiny_models / 'translator'}" in shown.stdout
    missing = run_cli(["models", "check"], {**cli_env, "IMAGE2MOOD_TRANSLATOR": str(tmp_path / "none")}, tmp_path)
    assert missing.returncode == 0, missing.stdout  # optional while BLIP writes English
    assert "NLLB  missing" in missing.stdout and "captions are shown in English only" in missing.stdout


def test_models_download_offers_the_translator(cli_env: dict[str, str], tmp_path: Path) -> None:
    shown = run_cli(["models", "download", "--help"], cli_env, tmp_path)
    assert "--with-translator" in shown.stdout and "IMAGE2MOOD_TRANSLATOR" in shown.stdout
