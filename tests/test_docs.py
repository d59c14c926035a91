"""The README documents every setting (its table is generated from service.settings)."""

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
