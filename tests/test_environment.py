"""All optional extras import together beside the CPU torch wheel, without torchvision
(PyPI's torchvision does not import beside it and then breaks transformers)."""
import importlib.util

import pytest


def test_torchvision_is_absent():
    assert importlib.util.find_spec("torchvision") is None


@pytest.mark.parametrize("module", ["curvlinops", "transformers", "imageio_ffmpeg", "distributed",
                                    "h5py", "numba", "torch"])
def test_extra_imports(module):
    __import__(module)


def test_transformers_sees_torch():
    import torch
    import transformers

    config = transformers.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16)
    model = transformers.BertModel(config)
    out = model(torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    assert len(out.hidden_states) == 2
