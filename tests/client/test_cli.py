"""The `neuroserve` command line: main(argv) against the real server (every command), and against stubs for
the exact requests chat and translate send."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from client import NeuroserveClient, RetryPolicy, cli
from tests.conftest import ROOT, free_port
from tests.onnx_models import CIFAR_LABELS


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich tables would fold long temporary paths at 80
    monkeypatch.delenv("NEUROSERVE_URL", raising=False)
    monkeypatch.delenv("NEUROSERVE_API_KEY", raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_image_table_and_json(server, capsys, png_file):
    code, out, _ = run(capsys, "predict", "image", str(png_file), str(png_file), "--top-k", "2", "--url", server.url)
    assert code == 0 and "tiny-cnn v1" in out and out.count("cat.png") == 2
    assert any(label in out for label in CIFAR_LABELS)
    code, out, _ = run(capsys, "--url", server.url, "--json", "predict", "image", str(png_file), "--top-k", "4")
    body = json.loads(out)
    assert code == 0 and body["model"] == "tiny-cnn" and len(body["results"][0]["top_k"]) == 4


def test_predict_tumor_and_sentiment(server, capsys, png_file):
    code, out, _ = run(capsys, "predict", "tumor", str(png_file), "--url", server.url)
    assert code == 0 and "tiny-tumor v1" in out and ("yes" in out or "no" in out)
    code, out, _ = run(capsys, "sentiment", "good great", "bad awful", "--url", server.url)
    assert code == 0 and "positive" in out and "negative" in out and "good great" in out
    code, out, _ = run(capsys, "sentiment", "good", "--json", "--url", server.url)
    assert json.loads(out)["results"][0]["label"] == "positive"


@pytest.fixture
def generation(server, repo_dir):
    from tests.generation_models import require_generation_models

    require_generation_models(repo_dir)
    return server


def test_translate_and_chat_against_the_real_server(generation, capsys, monkeypatch):
    url = ["--url", generation.url]
    code, out, _ = run(capsys, "translate", "good morning", "thank you", "--beam-size", "2", *url)
    assert code == 0 and "guten morgen" in out and "danke schön" in out and "tiny-translate" in out
    code, out, _ = run(capsys, "--json", "translate", "good night", *url)
    assert json.loads(out)["translations"] == ["gute nacht"]
    code, out, _ = run(capsys, "chat", "hi", "--temperature", "0", *url)  # one shot
    assert code == 0 and out.strip() == "hello there"
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\nbye\n/exit\n"))  # interactive, streamed, with history
    code, out, _ = run(capsys, "chat", "--temperature", "0", *url)
    assert code == 0 and "hello there" in out and "goodbye friend" in out
    code, _, err = run(capsys, "translate", "hi", "--target", "fr", *url)
    assert code != 0 and "no translation model for en->fr" in err


def test_models_and_health(server, capsys, monkeypatch):
    monkeypatch.setenv("NEUROSERVE_URL", server.url)  # the environment stands in for --url
    code, out, _ = run(capsys, "models")
    assert code == 0 and "tiny-cnn" in out and "image-classification" in out and "ready" in out
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0 and "tiny-sentiment" in [m["id"] for m in json.loads(out)["data"]]
    code, out, _ = run(capsys, "health")
    assert code == 0 and "live" in out and "ready" in out and "yes" in out
    code, out, _ = run(capsys, "health", "--json")
    assert code == 0 and json.loads(out) == {"live": True, "ready": True, "loading": [], "failed": {}}


def test_errors_print_the_server_message_and_exit_non_zero(server, capsys, png_file, tmp_path):
    code, out, err = run(capsys, "sentiment", "good", "--model", "no-such-model", "--url", server.url)
    assert code == 2 and out == "" and "404" in err and "no-such-model" in err
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    code, _, err = run(capsys, "predict", "image", str(junk), "--url", server.url)
    assert code == 2 and "415" in err and "PNG, JPEG or WebP" in err
    code, _, err = run(capsys, "predict", "image", str(tmp_path / "missing.png"), "--url", server.url)
    assert code == 2 and "missing.png" in err
    code, _, err = run(capsys, "models", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert code == 1 and "cannot connect" in err
    with pytest.raises(SystemExit) as usage:
        cli.main(["predict", "image"])  # no file: argparse's usage error
    assert usage.value.code == 2


def test_exit_code_of_each_error_kind():
    from client import errors

    assert cli.exit_code(errors.BadRequestError("x", status=422)) == 2
    assert cli.exit_code(errors.AuthenticationError("x", status=401)) == 2
    assert cli.exit_code(errors.ServiceUnavailableError("x", status=429)) == 1
    assert cli.exit_code(errors.ServerError("x", status=500)) == 1
    assert cli.exit_code(errors.NeuroserveConnectionError("x")) == 1


@pytest.fixture
def stubbed(monkeypatch, stub):
    """Point the CLI at the stub server (chat, translate)."""
    monkeypatch.setattr(cli, "make_client", lambda args: NeuroserveClient(
        "http://stub", transport=stub.transport(), retry=RetryPolicy(max_retries=0)))
    return stub


def test_translate(stubbed, capsys):
    code, out, _ = run(capsys, "translate", "good morning", "--target", "fr")
    assert code == 0 and "[fr] good morning" in out and "en -> fr" in out
    code, out, _ = run(capsys, "translate", "hi", "--json")
    assert json.loads(out)["translations"] == ["[de] hi"]


def test_chat_streams_and_keeps_the_conversation(stubbed, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello big world\n\nsecond turn\n/exit\nnever sent\n"))
    code, out, _ = run(capsys, "chat", "--system", "be brief", "--max-tokens", "8")
    assert code == 0 and "hello big world" in out and "second turn" in out
    assert len(stubbed.requests) == 2
    last = stubbed.body()
    assert last["stream"] is True and last["max_tokens"] == 8
    assert last["messages"] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "hello big world"},
                                {"role": "assistant", "content": "hello big world "},
                                {"role": "user", "content": "second turn"}]
    monkeypatch.setattr(sys, "stdin", io.StringIO("only line\n"))  # Ctrl-D (end of input) quits too
    assert run(capsys, "chat")[0] == 0 and len(stubbed.requests) == 3


def test_chat_one_shot_and_json(stubbed, capsys):
    code, out, _ = run(capsys, "chat", "say", "this")
    assert code == 0 and out.strip() == "say this"
    code, out, _ = run(capsys, "chat", "say", "this", "--json")
    assert json.loads(out)["choices"][0]["message"]["content"] == "say this"


def test_serve_without_the_server_extra_says_so(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as on a client-only install
    code, _, err = run(capsys, "serve", "--port", "1")
    assert code == 2 and "server extra" in err and "uvicorn" in err
    code, _, err = run(capsys, "--url", "http://x", "serve", "--port", "1")  # global options before serve
    assert code == 2 and "server extra" in err


def test_serve_help_is_the_servers_and_the_script_runs(server):
    out = subprocess.run([sys.executable, "-m", "client.cli", "serve", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "--limit-concurrency" in out.stdout and "--models" in out.stdout
    out = subprocess.run([sys.executable, "-m", "client.cli", "health", "--url", server.url], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "ready" in out.stdout
