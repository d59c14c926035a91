"""The backend interface (service/backends.py): one choice from the manifest, the same face for both kinds."""

from __future__ import annotations

import pytest

from service.backends import BACKENDS, GenerationBackend, OnnxBackend, backend_for
from service.errors import ModelLoadError
from service.manifest import Manifest


def test_the_manifest_picks_the_backend_in_one_place():
    assert backend_for(Manifest(name="m", task="tensor")) is OnnxBackend
    assert backend_for(Manifest(name="m", task="chat", graphs={"decoder": "decoder.onnx"})) is GenerationBackend
    with pytest.raises(ModelLoadError, match=r'a translation model names its graphs in the manifest: \{"encoder"'):
        backend_for(Manifest(name="m", task="translation"))
    assert set(BACKENDS) == {"onnx", "generation"}


def test_every_loaded_version_is_served_through_the_interface(client):
    repo = client.app.state.repository
    kinds = {}
    for entry in repo.entries.values():
        for version in entry.versions.values():
            backend = version.backend
            kinds[backend.kind] = kinds.get(backend.kind, 0) + 1
            assert version.session is backend.session and version.batcher is backend.batcher
            assert backend.inputs and backend.outputs and backend.provider == "CPUExecutionProvider"
            assert backend.graphs and all(g.provider == backend.provider for g in backend.graphs)
            assert backend.stats()["kind"] == backend.kind
    assert kinds["onnx"] >= 10
    if any(e.task in ("translation", "chat") for e in repo.entries.values()):
        assert kinds["generation"] >= 1
