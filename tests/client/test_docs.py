"""docs/client.md's examples run against the real server (the test models stand in for the real ones)."""

from __future__ import annotations

import re
import shlex

import pytest

from client import cli
from client.images import png_bytes
from tests.conftest import ROOT
from tests.generation_models import require_generation_models

DOC = (ROOT / "docs" / "client.md").read_text()
STAND_INS = {"cifar10-resnet": "tiny-cnn"}
GENERATION = ("ns.translate(", "ns.chat(", "neuroserve translate", "neuroserve chat")
NOT_RUN = ("neuroserve serve", "neuroserve chat  ")  # the server itself; an interactive conversation


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def _needs_generation(text: str, repo_dir) -> None:
    if any(marker in text for marker in GENERATION):
        require_generation_models(repo_dir)


@pytest.fixture
def workdir(tmp_path, monkeypatch, server, rgb_array):
    for name in ("cat.png", "dog.png", "scan.png"):
        (tmp_path / name).write_bytes(png_bytes(rgb_array))
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the doc's inputs, as a checkout has them
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEUROSERVE_URL", server.url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("NEUROSERVE_API_KEY", raising=False)
    return tmp_path


def _localise(text: str, url: str) -> str:
    text = text.replace("http://127.0.0.1:8000", url)
    for real, stand_in in STAND_INS.items():
        text = text.replace(real, stand_in)
    return text


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_examples_run(index, workdir, server, repo_dir, capsys):
    _needs_generation(blocks("python")[index], repo_dir)
    exec(compile(_localise(blocks("python")[index], server.url), f"docs/client.md python block {index}", "exec"), {})
    assert capsys.readouterr().out


def test_the_not_found_example_prints_what_the_doc_says(workdir, server, capsys):
    block = next(b for b in blocks("python") if "NotFoundError" in b)
    exec(_localise(block, server.url), {})
    assert capsys.readouterr().out.splitlines()[0] == "404 unknown model 'no-such-model'"


def test_cli_examples_run(workdir, server, repo_dir, capsys):
    lines = [line for block in blocks("bash") for line in block.splitlines()
             if line.startswith("neuroserve ") and not line.startswith(NOT_RUN)]
    _needs_generation("\n".join(lines), repo_dir)
    commands = [shlex.split(_localise(line.split("  #")[0].strip(), server.url)) for line in lines]
    assert len(commands) >= 8
    for argv in commands:
        assert cli.main(argv[1:]) == 0, argv
        assert capsys.readouterr().out.strip(), argv
