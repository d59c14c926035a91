"""A model's card, read-only: GET /v1/models/{name}/card -> its README.md and card.json, and
GET /v1/models/{name}/card/{figure}.png -> a figure the README shows (for the playground's card dialog)."""

from __future__ import annotations

import json
import re

from fastapi import APIRouter, Depends, Path, Response

from service.api.deps import ModelName, RepositoryDep
from service.errors import NotFound
from service.responses import JSONBytes
from service.security import require_api_key

router = APIRouter(tags=["ops"])
CARD_FILES = ("README.md", "card.json")  # the only files this route reads: nothing else in the folder is reachable
MAX_CARD_BYTES = 1 << 20
FIGURE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*\.png$")  # a PNG directly in the model folder, nothing else
MAX_FIGURE_BYTES = 8 << 20


def _read(folder, file: str) -> str | None:
    path = folder / file
    if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_CARD_BYTES:
        return None
    return path.read_text(encoding="utf-8", errors="replace")


def _card_folder(repo, model_name: str):
    folder = repo.model_folder(model_name)  # validates the name ([a-z0-9][a-z0-9._-]*) and stays inside the repository
    if not (folder / "manifest.json").is_file():
        raise NotFound(f"unknown model {model_name!r}")
    return folder


@router.get("/v1/models/{model_name}/card", summary="A model's card: README.md (markdown) and card.json",
            dependencies=[Depends(require_api_key)],
            responses={400: {"description": "Invalid model name"}, 401: {"description": "Missing or wrong API key"},
                       404: {"description": "Unknown model, or a model without a card"}})
async def model_card(model_name: ModelName, repo: RepositoryDep) -> JSONBytes:
    folder = _card_folder(repo, model_name)
    readme, card = (_read(folder, file) for file in CARD_FILES)
    if readme is None and card is None:
        raise NotFound(f"model {model_name!r} has no card (README.md or card.json)")
    try:
        card_data = json.loads(card) if card is not None else None
    except ValueError:
        card_data = None
    return JSONBytes({"model": model_name, "readme": readme or "", "card": card_data})


@router.get("/v1/models/{model_name}/card/{figure}", summary="A figure of a model's card (a PNG in the model's folder)",
            dependencies=[Depends(require_api_key)], response_class=Response,
            responses={200: {"content": {"image/png": {}}}, 400: {"description": "Invalid model name"},
                       401: {"description": "Missing or wrong API key"}, 404: {"description": "No such model or figure"}})
async def card_figure(model_name: ModelName, repo: RepositoryDep,
                      figure: str = Path(description="file name, e.g. confusion_matrix.png",
                                         json_schema_extra={"pattern": FIGURE_RE.pattern})) -> Response:
    folder = _card_folder(repo, model_name)
    path = folder / figure
    if (not FIGURE_RE.fullmatch(figure) or not path.is_file() or path.is_symlink()
            or path.stat().st_size > MAX_FIGURE_BYTES):
        raise NotFound(f"model {model_name!r} has no figure {figure!r}")
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise NotFound(f"model {model_name!r} has no figure {figure!r}")
    return Response(data, media_type="image/png", headers={"X-Content-Type-Options": "nosniff"})
