"""All optional extras import together beside the CPU torch wheel, without torchvision
(PyPI's torchvision does not import beside it and then breaks transformers)."""

import importlib
import importlib.metadata
import importlib.util
import os

import pytest


def test_torchvision_is_absent():
    assert importlib.util.find_spec("torchvision") is None


@pytest.mark.parametrize(
    "module, distribution",
    [
        ("curvlinops", "curvlinops-for-pytorch"),
        ("transformers", "transformers"),
        ("imageio_ffmpeg", "imageio-ffmpeg"),
        ("distributed", "distributed"),
        ("h5py", "h5py"),
        ("numba", "numba"),
        ("torch", "torch"),
    ],
)
def test_extra_imports(module, distribution):
    # The module imports, and it is the installed distribution's (not a stray copy).
    imported = importlib.import_module(module)
    files = importlib.metadata.files(distribution)
    assert any(str(imported.__file__).endswith(str(f)) for f in files)


def test_movie_extra_ships_ffmpeg():
    import imageio_ffmpeg

    assert os.path.isfile(imageio_ffmpeg.get_ffmpeg_exe())


def test_transformers_sees_torch():
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    model = transformers.BertModel(config)
    out = model(torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    assert len(out.hidden_states) == 2
