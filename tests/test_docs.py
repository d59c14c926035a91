"""The README documents every setting (its table is generated from service.settings)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from scripts.settings_table import settings_table

ROOT = Path(__file__).resolve().parent.parent


def test_readme_settings_table_is_current():
    assert settings_table() in (ROOT / "README.md").read_text(), "run scripts/settings_table.py and paste its output"


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["./scripts/serve.sh", "./scripts/test.sh"]
    assert (ROOT / "scripts" / "serve.sh").exists() and (ROOT / "scripts" / "test.sh").exists()
    assert "./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_exported_openapi_reference_is_current():
    import json

    from scripts.export_openapi import TARGET, openapi_document

    assert json.loads(TARGET.read_text()) == json.loads(json.dumps(openapi_document())), \
        "run .venv/bin/python -m scripts.export_openapi"


def test_models_index_is_current():
    from scripts.models_index import TARGET, models_index

    assert TARGET.read_text() == models_index(), "run .venv/bin/python -m scripts.models_index"


def _commands(block: str) -> list[str]:
    """Shell commands of a ```bash block: comments dropped, backslash continuations joined."""
    commands, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        commands.append(current.strip())
        current = ""
    return commands


def _tour() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## A five-minute tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]


def _cli_lines() -> list[str]:
    """The README's `neuroserve ...` examples and docs/client.md's first command-line block."""
    readme = (ROOT / "README.md").read_text()
    terminal = readme.split("From a terminal:", 1)[1].split("\n\n", 1)[0]
    inline = [c for c in re.findall(r"`(neuroserve [^`]+)`", terminal) if c != "neuroserve chat"]
    client_md = (ROOT / "docs" / "client.md").read_text().split("## Command line", 1)[1]
    block = _commands(client_md.split("```bash", 1)[1].split("```", 1)[0])
    return inline + [line.split("  #", 1)[0].strip() for line in block]


def test_readme_tour_runs_verbatim_against_a_real_server(models_server, monkeypatch, capsys):
    """A fresh clone's first commands, as written (only the port differs): the tour's block as one bash script, then
    the command-line examples, each through `neuroserve`'s own main (in this process: a second each saved); each
    answers, and without an error."""
    tour = _tour()
    assert "examples/cat.png" in tour and "@cat.png" not in tour and "scan.png" not in tour
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "NEUROSERVE_URL": models_server.url}

    def run(script: str) -> str:
        script = script.replace("localhost:8000", f"127.0.0.1:{models_server.port}").replace(
            "127.0.0.1:8000", f"127.0.0.1:{models_server.port}")
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (script, done.stdout[-800:], done.stderr[-800:])
        assert done.stdout.strip() and '"error"' not in done.stdout, (script, done.stdout[-800:])
        return done.stdout

    out = run(tour)
    for answer in ('"ready":true', '"label":"cat"', '"tumor":true', '"label":"positive"', '"translations"',
                   '"timestamps"', "data: [DONE]", '"outputs"'):
        assert answer in out, answer
    assert out.count('"forecast"') == 2  # price and traffic
    from client.cli import main

    lines = _cli_lines()
    assert any("examples/scan-tumor.png" in line for line in lines)
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("NEUROSERVE_URL", models_server.url)
    capsys.readouterr()
    for line in dict.fromkeys(lines):
        assert "cat.png" not in line or "examples/" in line, line
        argv = shlex.split(line.replace("127.0.0.1:8000", f"127.0.0.1:{models_server.port}"))
        assert argv[0] == "neuroserve", line
        assert main(argv[1:]) == 0, (line, capsys.readouterr())
        shown = capsys.readouterr().out
        assert shown.strip() and '"error"' not in shown, (line, shown[-500:])
