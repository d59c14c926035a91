"""The pieces a CIFAR GPU run uses, checked on the CPU: the JPEG pack (exact pixels back), the airbench96-class
options (depth 3, cutout, translate 4, time budget, data_file), the slim fp16 checkpoints that come back, and a
training path that imports neither tqdm nor onnx nor matplotlib."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.cli import main
from training.data import cifar10 as data

REPO = Path(__file__).resolve().parents[2]


def _collect_module():
    spec = importlib.util.spec_from_file_location("gpu_cifar_collect", REPO / "scripts" / "gpu_cifar_collect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_jpeg_pack_gives_the_exact_pixels_back(tiny_data, tmp_path):
    x, y = data.load_npz(tiny_data / "cifar10" / "train.npz")
    stats = data.write_jpeg_pack(x[:100], y[:100], tmp_path / "pack.npz")
    assert stats["images"] == 100 and stats["header_bytes"] > 300  # the shared JPEG header is stored once
    x2, y2 = data.load_npz(tmp_path / "pack.npz")
    assert np.array_equal(x2, x[:100]) and np.array_equal(y2, y[:100])
    without = data.write_jpeg_pack(x[:100], y[:100], tmp_path / "lossy.npz", residual=False)
    x3, _ = data.load_npz(tmp_path / "lossy.npz")
    assert abs(np.abs(x3.astype(int) - x[:100]).mean() - without["jpeg_mae"]) < 1e-9


def test_airbench96_options_train_from_a_pack_and_come_back_as_fp16(tiny_data, tmp_path, capsys):
    x, y = data.load_npz(tiny_data / "cifar10" / "train.npz")
    data.write_jpeg_pack(x, y, tiny_data / "cifar10" / "train_jpeg_test.npz")
    args = ["train", "cifar10-small", "--epochs", "3", "--batch-size", "64", "--limit", "256", "--quiet",
            "--data-dir", str(tiny_data), "--checkpoint-dir", str(tmp_path / "ck"), "--time-budget", "0.001",
            "--set", "widths=8,16,16", "--set", "depth=3", "--set", "cutout=8", "--set", "translate=4",
            "--set", "data_file=train_jpeg_test.npz"]
    assert main(args) == 0
    assert "-> 1 epochs" in capsys.readouterr().out  # the budget cut 3 epochs to what fits
    path = tmp_path / "ck" / "cifar10-small" / "last.pt"
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["meta"]["config"]["depth"] == 3 and ckpt["meta"]["config"]["epochs"] == 1
    assert "block1.conv3.weight" in ckpt["recipe"]["model"]
    slim = _collect_module().slim(ckpt)
    assert slim["recipe"]["model"]["block2.conv3.weight"].dtype == torch.float16
    torch.save(slim, tmp_path / "slim.pt")
    from training.recipes import get_recipe

    recipe = get_recipe("cifar10-small")
    full, _ = recipe.load_trained(argparse.Namespace(checkpoint=str(path)))
    half, _ = recipe.load_trained(argparse.Namespace(checkpoint=str(tmp_path / "slim.pt")))
    images = torch.randn(4, 3, 32, 32)
    assert torch.allclose(full(images), half(images), atol=1e-2)


def test_cutout_zeroes_one_square_per_image():
    from training.recipes.cifar10 import augment

    x = torch.ones(6, 3, 32, 32)
    out = augment(x, torch.zeros(6, dtype=torch.bool), 0, torch.Generator().manual_seed(0), cutout=12)
    assert ((out == 0).sum(dim=(1, 2, 3)) == 3 * 12 * 12).all()


BLOCKER = """
import sys
for name in ('tqdm', 'onnx', 'onnxruntime', 'onnxscript', 'matplotlib', 'fastapi', 'pydantic'):
    sys.modules[name] = None  # 'import name' raises ImportError; find_spec(name) says it is not there
from training.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(120)
def test_training_needs_no_tqdm_onnx_or_matplotlib(tiny_data, tmp_path):
    out = subprocess.run([sys.executable, "-c", BLOCKER, "train", "cifar10-small", "--epochs", "1", "--limit", "128",
                          "--batch-size", "64", "--set", "widths=8,16,16", "--data-dir", str(tiny_data),
                          "--checkpoint-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=110)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "cifar10-small" / "last.pt").exists()


@pytest.mark.parametrize("level", [0, 1, 2])
def test_tta_stays_on_the_inputs_device(level):
    """Every CUDA run's final TTA evaluation once died on a CPU constant in tta_logits ("Expected all tensors to be
    on the same device"). The meta device stands in for CUDA here: any tensor made on the CPU on that path fails."""
    from training.nets.airbench import AirbenchNet
    from training.recipes.cifar10 import predict_logits, tta_logits

    net = AirbenchNet((8, 16, 16)).to("meta").eval()
    x = torch.empty(5, 3, 32, 32, device="meta")
    out = tta_logits(net, x, level)
    assert out.device.type == "meta" and tuple(out.shape) == (5, 10)
    assert predict_logits(net, x, tta=level, batch_size=4).device.type == "meta"
    assert predict_logits(net, x[:0], tta=level).device.type == "meta"
