"""Translation and chat endpoints, the OIP text face and generation model loading, in process.

The models are tiny but trained (tests/generation_models.py): they answer their training sentences
exactly, so the tests can check real outputs, not only shapes.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.generation_models import DIALOGUES, TRANSLATIONS, require_generation_models

pytestmark = pytest.mark.usefixtures("generation_models")


@pytest.fixture(scope="session")
def generation_models(repo_dir):
    require_generation_models(repo_dir)
    return repo_dir


def chat(client, messages, **fields):
    return client.post("/v1/chat/completions", json={"messages": messages, **fields})


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ----- translation -----

@pytest.mark.parametrize("beam_size", [None, 1, 2, 5, 8])
def test_translations_of_the_training_sentences(client, beam_size):
    body = {"texts": [s for s, _ in TRANSLATIONS], "source": "en", "target": "de"}
    if beam_size is not None:
        body["beam_size"] = beam_size
    response = client.post("/v1/text/translate", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"model": "tiny-translate", "version": "1", "translations": [t for _, t in TRANSLATIONS]}


def test_translation_options_and_the_model_choice(client):
    one = client.post("/v1/text/translate", json={"texts": ["the house is small"], "max_tokens": 2, "beam_size": 1})
    short = one.json()["translations"][0]
    assert "das haus ist klein".startswith(short) and 2 <= len(short) < len("das haus ist klein")
    named = client.post("/v1/text/translate", json={"texts": ["thank you"], "model": "tiny-translate:1",
                                                    "length_penalty": 2.0, "target": "DE"})
    assert named.json()["translations"] == ["danke schön"]


@pytest.mark.parametrize("body,status,fragment", [
    ({"texts": ["hi"], "source": "fr", "target": "de"}, 422, "no translation model for fr->de; available: en->de"),
    ({"texts": ["hi"], "target": "it", "model": "tiny-translate"}, 422, "the model translates en->de"),
    ({"texts": ["hi"], "beam_size": 9}, 422, "beam_size 9 exceeds this model's maximum of 8"),
    ({"texts": ["hi"], "beam_size": 0}, 422, "beam_size"),
    ({"texts": ["hi"], "beam_size": "4"}, 422, "beam_size"),
    ({"texts": ["hi"], "max_tokens": 25}, 422, "max_tokens 25 exceeds this model's maximum of 24"),
    ({"texts": ["good morning " * 40]}, 422, "tokens long; this model takes at most 32"),
    ({"texts": ["good morning " * 150] * 32}, 422, "tokens long"),  # tokenized on a thread (much text)
    ({"texts": ["x" * 2001]}, 422, "texts.0"),
    ({"texts": ["hi"] * 65}, 422, "texts"),
    ({"texts": ["  "]}, 422, "blank"),
    ({"texts": []}, 422, "texts"),
    ({"texts": ["hi"], "source": "english!"}, 422, "source"),
    ({"texts": ["hi"], "length_penalty": 9}, 422, "length_penalty"),
    ({"texts": ["hi"], "temperature": 1}, 422, "temperature"),
    ({"texts": ["hi"], "model": "tiny-chat"}, 400, "serves task 'chat'"),
    ({"texts": ["hi"], "model": "nope"}, 404, "unknown model"),
])
def test_translation_bad_requests_are_clear_4xx(client, body, status, fragment):
    response = client.post("/v1/text/translate", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_open_inference_protocol_face_of_the_generation_models(client):
    def infer(model, texts):
        return client.post(f"/v2/models/{model}/infer", json={"inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]})

    translated = infer("tiny-translate", ["good night", "i love you"])
    assert translated.status_code == 200
    assert translated.json()["outputs"][0] == {"name": "text", "datatype": "BYTES", "shape": [2],
                                               "data": ["gute nacht", "ich liebe dich"]}
    assert infer("tiny-chat", ["what is your name"]).json()["outputs"][0]["data"] == ["my name is tiny"]
    assert infer("tiny-chat", [" "]).status_code == 400
    assert "tokens long" in infer("tiny-translate", ["good morning " * 40]).json()["error"]
    assert "has room for" in infer("tiny-chat", ["hi " * 9000]).json()["error"]  # tokenized on a thread
    meta = client.get("/v2/models/tiny-translate").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}] and meta["parameters"]["task"] == "translation"
    assert client.get("/v2/models/tiny-translate/stats").json()["model_stats"][0]["inference_count"] >= 1


# ----- chat -----

@pytest.mark.parametrize("dialogue", DIALOGUES, ids=lambda d: d[-2][1])
def test_chat_replies_end_cleanly(client, dialogue):
    messages = [{"role": role, "content": text} for role, text in dialogue[:-1]]
    response = chat(client, messages, model="tiny-chat", temperature=0)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "tiny-chat"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": dialogue[-1][1]},
                                "logprobs": None, "finish_reason": "stop"}]
    usage = body["usage"]
    assert usage["completion_tokens"] >= 2 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_stop_max_tokens_n_seed_and_ignored_fields(client):
    story = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "tell me a story"}]
    stopped = chat(client, story, temperature=0, stop=["time", "cat"]).json()
    assert stopped["choices"][0]["message"]["content"] == "once upon a " and stopped["choices"][0]["finish_reason"] == "stop"
    cut = chat(client, story, temperature=0, max_tokens=2).json()
    assert cut["choices"][0]["finish_reason"] == "length" and cut["usage"]["completion_tokens"] == 2
    content = cut["choices"][0]["message"]["content"]
    assert "once upon a time there was a cat".startswith(content) and 0 < len(content) < 15
    assert chat(client, story, temperature=0, max_completion_tokens=1).json()["usage"]["completion_tokens"] == 1
    sampled = chat(client, user("hi"), temperature=1.8, top_p=1, top_k=0, n=3, seed=11, user="u1", frequency_penalty=0.5,
                   logprobs=False, tools=None).json()
    assert [c["index"] for c in sampled["choices"]] == [0, 1, 2]
    again = chat(client, user("hi"), temperature=1.8, top_p=1, top_k=0, n=3, seed=11).json()
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in sampled["choices"]]
    parts = chat(client, [{"role": "user", "content": [{"type": "text", "text": "how are "}, {"type": "text", "text": "you"}]}],
                 temperature=0).json()
    assert parts["choices"][0]["message"]["content"] == "i am fine thanks"
    # null means the default, as in OpenAI's API (its python client sends "n": null when given None)
    nulls = chat(client, user("hi"), temperature=0, n=None, stream=None).json()
    assert len(nulls["choices"]) == 1 and nulls["object"] == "chat.completion"


def test_long_conversations_lose_their_oldest_turns(client):
    history = [{"role": "system", "content": "be brief"}]
    for _ in range(30):
        history += [{"role": "user", "content": "how are you"}, {"role": "assistant", "content": "i am fine thanks"}]
    response = chat(client, history + user("what is your name"), temperature=0, max_tokens=16)
    assert response.status_code == 200
    assert 80 < response.json()["usage"]["prompt_tokens"] <= 128 - 16
    runtime = client.app.state.repository.get("tiny-chat").session
    roles = runtime.params.role_ids
    prompt = runtime.prompt([(m["role"], m["content"]) for m in history + user("what is your name")], 16)
    assert len(prompt) <= 112 and prompt[0] == 1 and prompt[1] == roles["system"] and prompt[-1] == roles["assistant"]
    first_turn = prompt[prompt.index(2) + 1]  # after the system turn's end
    assert first_turn == roles["user"]  # the kept dialogue starts with a user turn
    whole = runtime.prompt([("user", "hi"), ("assistant", "hello there"), ("user", "bye")], 16)
    assert whole.count(roles["user"]) == 2 and whole.count(2) == 3


@pytest.mark.parametrize("body,status,param,fragment", [
    ({"model": "gpt-4o", "messages": user("hi")}, 404, None, "unknown model 'gpt-4o'"),
    ({"model": "tiny-translate", "messages": user("hi")}, 400, None, "serves task 'translation'"),
    ({"messages": []}, 422, "messages", "at least 1"),
    ({"messages": user("hi"), "temperature": 3}, 422, "temperature", "less than or equal to 2"),
    ({"messages": user("hi"), "n": 9}, 422, "n", "less than or equal to 8"),
    ({"messages": user("hi"), "max_tokens": 65}, 422, "max_tokens", "exceeds this model's maximum of 64"),
    ({"messages": user("hi"), "stop": ["a", "b", "c", "d", "e"]}, 422, "stop", "at most 4"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 422, "messages.0.role", "role 'tool' is not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 422, "messages.0.content", "only text parts"),
    ({"messages": user("how are you " * 60)}, 422, "messages", "has room for"),
    # strict types: OpenAI's own clients send these as numbers and booleans (schemathesis found seed=false accepted)
    ({"messages": user("hi"), "seed": False}, 422, "seed", "valid integer"),
    ({"messages": user("hi"), "n": 2.0}, 422, "n", "valid integer"),
    ({"messages": user("hi"), "stream": "true"}, 422, "stream", "valid boolean"),
])
def test_chat_errors_in_openai_shape(client, body, status, param, fragment):
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and fragment in error["message"], error
    assert error["param"] == param
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert error["code"] == {404: "model_not_found"}.get(status, "context_length_exceeded" if "room" in fragment else None)


def test_malformed_json_on_the_chat_route_is_400_in_openai_shape(client):
    response = client.post("/v1/chat/completions", content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def sse_events(text: str) -> list:
    events = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_chat_stream_as_server_sent_events(client):
    body = {"messages": user("how are you"), "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(response.text)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "i am fine thanks"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    several = sse_events(client.post("/v1/chat/completions", json={**body, "n": 2, "stream_options": None}).text)
    finished = [c["choices"][0]["index"] for c in several if c["choices"][0]["finish_reason"]]
    assert sorted(finished) == [0, 1] and "usage" not in several[0]


def test_models_list_is_openai_shaped(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    rows = {m["id"]: m for m in body["data"]}
    for row in rows.values():
        assert row["object"] == "model" and isinstance(row["created"], int) and row["owned_by"] == "neuroserve"
        assert row["created"] > 1_600_000_000  # when the manifest was written, as OpenAI's unix seconds
    assert rows["tiny-chat"]["task"] == "chat" and rows["tiny-translate"]["ready"] is True


def test_generation_metrics(client):
    chat(client, user("hi"), temperature=0)
    text = client.get("/metrics").text
    assert 'neuroserve_generation_finished_total{model="tiny-chat",reason="done"}' in text
    assert 'neuroserve_generation_rows{model="tiny-chat"} 0.0' in text
    assert 'neuroserve_generation_step_rows_count{model="tiny-translate"}' in text


# ----- loading -----

def _copy(src, root, name, edit=None):
    folder = root / name
    shutil.copytree(src, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["name"] = name
    if edit:
        edit(folder, manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("edit,fragment", [
    (lambda f, m: m.update(task="tensor"), "'tensor' is not a generation task"),
    (lambda f, m: m["graphs"].pop("encoder"), "has graphs ['decoder', 'encoder']"),
    (lambda f, m: m["graphs"].update(encoder="../x.onnx"), "not a plain .onnx file name"),
    (lambda f, m: (f / "1" / "encoder.onnx").unlink(), "encoder.onnx is missing"),
    (lambda f, m: m["graphs"].update(encoder="decoder.onnx"), "not in the graph"),
    (lambda f, m: m["parameters"].update(layers=5), "the manifest's parameters (layers, heads, head_dim, vocab_size) say [5,"),
    (lambda f, m: m["parameters"].update(vocab_size=20), "the tokenizer has"),
    (lambda f, m: m["parameters"].pop("heads"), "heads"),
    (lambda f, m: m["parameters"].update(max_beam_size=2), "default_beam_size exceeds max_beam_size"),
    (lambda f, m: (f / "tokenizer.json").unlink(), "tokenizer file 'tokenizer.json' is missing"),
    (lambda f, m: m.update(outputs=[{"name": "ids", "datatype": "INT64", "shape": [-1]}]), "one BYTES tensor 'text'"),
])
def test_a_broken_generation_model_fails_to_load_with_a_reason(make_client, repo_dir, tmp_path, edit, fragment):
    root = tmp_path / "models"
    _copy(repo_dir / "tiny-translate", root, "broken-translate", edit)
    _copy(repo_dir / "tiny-chat", root, "tiny-chat")
    client = make_client(models_dir=root, warmup_runs=1)
    failed = client.get("/v2/health/ready").json()["failed"]
    assert fragment in failed.get("broken-translate", ""), failed
    assert client.post("/v1/text/translate", json={"texts": ["hi"]}).status_code == 503
    assert chat(client, user("hi"), temperature=0).json()["choices"][0]["message"]["content"] == "hello there"
