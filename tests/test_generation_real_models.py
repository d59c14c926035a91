"""The committed generation models (models/translate-en-de, models/chat-dailydialog) behind the real endpoints.

Skipped, with the reason, while a model folder is absent.
"""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

MODELS = ROOT / "models"
TRANSLATOR, CHAT = "translate-en-de", "chat-dailydialog"


def _served(name: str):
    if not (MODELS / name / "manifest.json").exists():
        pytest.skip(f"models/{name} is not in the repository (yet)")
    return name


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    present = [name for name in (TRANSLATOR, CHAT) if (MODELS / name / "manifest.json").exists()]
    if not present:
        pytest.skip("neither models/translate-en-de nor models/chat-dailydialog is in the repository (yet)")
    from tests.conftest import _open_client

    client = _open_client(MODELS, load_models=present, warmup_runs=1)
    yield client
    client.__exit__(None, None, None)


def test_real_models_load(real):
    failed = real.get("/v2/health/ready").json()["failed"]
    assert failed == {}, failed


def test_real_translation_greedy_and_beam(real):
    _served(TRANSLATOR)
    texts = ["A man in a blue shirt is standing on a ladder.", "Two dogs are playing in the snow."]
    for beam in (1, 4):
        response = real.post("/v1/text/translate", json={"texts": texts, "source": "en", "target": "de", "beam_size": beam})
        assert response.status_code == 200, response.text
        german = response.json()["translations"]
        assert "Mann" in german[0] and "Hunde" in german[1], german
    too_long = real.post("/v1/text/translate", json={"texts": ["word " * 300]})
    assert too_long.status_code == 422 and "tokens long" in too_long.json()["error"]


def test_real_chat_replies_end_cleanly(real):
    _served(CHAT)
    response = real.post("/v1/chat/completions", json={
        "model": CHAT, "temperature": 0, "messages": [{"role": "user", "content": "Hi, how are you today?"}]})
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"].strip()
    assert "<" not in choice["message"]["content"]  # no special token leaks into the text
    streamed = real.post("/v1/chat/completions", json={
        "model": CHAT, "temperature": 0.8, "seed": 3, "stream": True, "max_tokens": 40,
        "messages": [{"role": "system", "content": "ignored: the model has no system role"},
                     {"role": "user", "content": "What do you want to do this weekend?"}]})
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")


def test_real_translator_answers_alike_with_float_matmuls():
    """device_dequantize=on (what auto picks under CUDA): the INT8 graphs run as float MatMuls (service/dequantize.py).
    On 200 validation sentences, beam 4: BLEU 39.98 against the INT8 graphs' 39.66, 182 of 200 translations identical."""
    _served(TRANSLATOR)
    from tests.conftest import _open_client

    client = _open_client(MODELS, load_models=[TRANSLATOR], warmup_runs=1, device_dequantize="on")
    try:
        texts = ["A man in a blue shirt is standing on a ladder.", "Two dogs are playing in the snow."]
        response = client.post("/v1/text/translate", json={"texts": texts, "source": "en", "target": "de", "beam_size": 4})
        assert response.status_code == 200, response.text
        german = response.json()["translations"]
        assert "Mann" in german[0] and "Hunde" in german[1], german
    finally:
        client.__exit__(None, None, None)
