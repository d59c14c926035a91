"""The playground's routes without a browser: redirects, the Content-Security-Policy, only the listed files served,
no key needed for the page while the API keeps its keys, and the read-only model card route."""

from __future__ import annotations

import re
import tomllib

import pytest

from service.api import playground
from tests.conftest import ROOT
from tests.onnx_models import add_sub, write_model

PAGE = ROOT / "service" / "playground"
PNG = (ROOT / "examples" / "cat.png").read_bytes()


@pytest.fixture(scope="module")
def card_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("card-models")
    folder = write_model(root, "carded", add_sub())
    (folder / "README.md").write_text("# carded (model card)\n\n> **NOT a toy.** Or is it.\n")
    (folder / "card.json").write_text('{"name": "carded", "metrics": {"accuracy": 0.5}}')
    (folder / "curves.png").write_bytes(PNG)
    (folder / "fake.png").write_bytes(b"not a png at all")
    (folder / "1" / "inside.png").write_bytes(PNG)
    bare = write_model(root, "bare", add_sub())
    (bare / "README.md").symlink_to(ROOT / "pyproject.toml")  # a card must be a plain file in the folder
    (root / "not-a-model").mkdir()
    (root / "not-a-model" / "README.md").write_text("no manifest here")
    return root


def test_root_and_playground_redirect_to_the_page(client):
    for path in ("/", "/playground"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 307 and response.headers["location"] == "/playground/"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Neuroserve playground</title>" in page.text


def test_every_page_response_carries_a_strict_policy(client):
    for name in ["", *sorted(playground.PAGE_FILES), "examples.json"]:
        response = client.get(f"/playground/{name}")
        assert response.status_code == 200, name
        policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
        assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
        assert "unsafe" not in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "access-control-allow-origin" not in response.headers  # CORS stays as configured (off)


def test_the_page_has_no_inline_script_and_names_nothing_outside_the_server():
    html = (PAGE / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert not re.search(r"\sstyle=", html), "inline style"
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith(("/playground/", "#")) or url == "/docs", url
    for path in PAGE.iterdir():
        if path.suffix in {".js", ".css", ".html"}:
            text = path.read_text()
            # the only absolute URLs: the SVG namespace, and the card reader's test for links it may render
            assert set(re.findall(r"https?://[^\s\"'`)]*", text)) <= {"http://www.w3.org/2000/svg", "https:"}, path.name
            assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|eval\(|new Function", text), path.name


def test_only_the_listed_files_are_served(client):
    assert set(playground.PAGE_FILES) == {p.name for p in PAGE.iterdir() if p.suffix in {".html", ".js", ".css", ".svg"}}
    assert "cat.png" in client.get("/playground/examples.json").json()["examples"]
    assert client.get("/playground/examples/cat.png").headers["content-type"] == "image/png"
    for path in ("/playground/__init__.py", "/playground/..%2Fapp.py", "/playground/%2e%2e/app.py",
                 "/playground/examples/make_examples.py", "/playground/examples/README.md",
                 "/playground/examples/..%2F..%2Fpyproject.toml", "/playground/examples/%2e%2e%2fpyproject.toml",
                 "/playground/app.js%00.png", "/playground/APP.JS"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "[build-system]" not in response.text


def test_the_package_ships_the_page():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service.playground"]
    assert (PAGE / "__init__.py").exists()  # a package, so setuptools' find includes it
    assert {p.suffix for p in PAGE.iterdir() if p.name != "__init__.py"} <= {pattern[1:] for pattern in data}


def test_the_page_loads_without_a_key_while_the_api_keeps_its_keys(make_client, card_repo):
    secured = make_client(models_dir=card_repo, api_keys="page-key-1")
    assert secured.get("/").status_code == 200
    assert secured.get("/playground/app.js").status_code == 200
    assert secured.get("/v1/models").status_code == 401
    assert secured.get("/v1/models/carded/card").status_code == 401
    assert secured.get("/v1/models/carded/card/curves.png").status_code == 401
    assert secured.get("/docs").status_code == 401
    with_key = {"Authorization": "Bearer page-key-1"}
    assert secured.get("/v1/models/carded/card", headers=with_key).status_code == 200


def test_model_card_route(make_client, card_repo):
    app = make_client(models_dir=card_repo)
    card = app.get("/v1/models/carded/card").json()
    assert card["model"] == "carded" and card["readme"].startswith("# carded (model card)")
    assert card["card"] == {"name": "carded", "metrics": {"accuracy": 0.5}}
    assert app.get("/v1/models/bare/card").status_code == 404  # its README is a symlink: not read
    assert app.get("/v1/models/not-a-model/card").status_code == 404
    assert app.get("/v1/models/nope/card").json() == {"error": "unknown model 'nope'"}
    for name in ("..", "..%2F..%2Fetc", "%2e%2e", "Carded", "carded%2F..%2Fcarded"):
        response = app.get(f"/v1/models/{name}/card")
        assert response.status_code in (400, 404), name
        assert "[build-system]" not in response.text
    figure = app.get("/v1/models/carded/card/curves.png")
    assert figure.status_code == 200 and figure.headers["content-type"] == "image/png" and figure.content == PNG
    for name in ("fake.png", "model.onnx", "manifest.json", "README.md", "1%2Finside.png", "..%2F..%2Fexamples%2Fcat.png",
                 "%2e%2e", "missing.png"):
        response = app.get(f"/v1/models/carded/card/{name}")
        assert response.status_code in (400, 404), name
        assert response.headers["content-type"] == "application/json", name
    listed = {m["id"]: m for m in app.get("/v1/models").json()["data"]}
    assert listed["carded"]["priority"] == 0  # the page preselects the task's default (highest priority)
