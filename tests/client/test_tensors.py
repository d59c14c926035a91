"""The client keeps its own Open Inference Protocol datatype -> numpy table (client/tensors.py): it installs and
imports without the service (test_packaging.py), and the service cannot import the client (httpx). The two tables
must still say the same thing."""

from __future__ import annotations

from client.tensors import NUMPY_TYPES
from service.manifest import DATATYPE_TO_NUMPY, DATATYPES


def test_the_client_and_the_service_map_datatypes_alike():
    assert NUMPY_TYPES == {k: v for k, v in DATATYPE_TO_NUMPY.items() if k != "BYTES"}  # BYTES: lists of bytes
    assert DATATYPES == tuple(DATATYPE_TO_NUMPY)
