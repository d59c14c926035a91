"""The playground: a static page at /playground that tries every task in a browser (GET / redirects to it).

The page needs no API key to load (it asks for one when the API answers 401; every API route keeps its key check)
and never talks to anything but this server: each answer carries a strict Content-Security-Policy. Files are served
from a listing made at import time (the package's playground/ folder and the checkout's examples/ folder, when
there is one), so a request can only ever name one of those files.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from service.errors import NotFound
from service.responses import JSONBytes

PAGE_DIR = Path(__file__).resolve().parent.parent / "playground"
# A checkout's examples/ (an installed wheel has none; its site-packages/examples, if any, belongs to someone else)
CHECKOUT = PAGE_DIR.parent.parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".json": "application/json",
         ".csv": "text/csv; charset=utf-8"}
FILE_RE = re.compile(rf"^[a-z0-9][a-z0-9_-]*\.({'|'.join(suffix[1:] for suffix in TYPES)})$")


def _listing(folder: Path, suffixes: set[str]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.is_symlink() and FILE_RE.fullmatch(p.name) and p.suffix in suffixes}


PAGE_FILES = _listing(PAGE_DIR, {".html", ".js", ".css", ".svg"})
EXAMPLE_FILES = (_listing(CHECKOUT / "examples", {".png", ".jpg", ".json", ".csv"})  # .jpg: the road-sign photo
                 if (CHECKOUT / "pyproject.toml").is_file() else {})

router = APIRouter(include_in_schema=False)


def _file(files: dict[str, Path], name: str) -> Response:
    path = files.get(name)
    if path is None:
        raise NotFound(f"no such file {name!r}")
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/playground/", status_code=307)


@router.get("/playground")
async def playground_slash() -> RedirectResponse:
    return RedirectResponse("/playground/", status_code=307)


@router.get("/playground/")
async def playground() -> Response:
    return _file(PAGE_FILES, "index.html")


@router.get("/playground/examples.json")
async def examples() -> JSONBytes:
    return JSONBytes({"examples": sorted(EXAMPLE_FILES)}, headers=HEADERS)


@router.get("/playground/examples/{name}")
async def example(name: str) -> Response:
    return _file(EXAMPLE_FILES, name)


@router.get("/playground/{name}")
async def page_file(name: str) -> Response:
    return _file(PAGE_FILES, name)
