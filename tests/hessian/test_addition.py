"""The addition data: format, arithmetic, determinism, the rare-carry enrichment, guards."""

import numpy as np
import pytest
import torch

from hessian.addition import EQUALS, PLUS, addition_data, answer_positions


def _number(digits):
    return int("".join(str(int(d)) for d in digits))


def test_format_and_sums_are_correct():
    data = addition_data(16, num_batches=3, seed=7)
    assert data.shape == (3, 16, 18) and data.dtype == torch.int64
    assert int(data.min()) >= 0 and int(data.max()) <= 11
    for seq in data.reshape(-1, 18):
        assert seq[5] == PLUS and seq[11] == EQUALS
        a, b = answer_positions()
        assert (a, b) == (12, 18)
        assert _number(seq[:5]) + _number(seq[6:11]) == _number(seq[a:b])


def test_other_digit_counts():
    seq = addition_data(4, num_digits=2, seed=0)[0]
    assert seq.shape == (4, 9)
    for s in seq:
        assert _number(s[:2]) + _number(s[3:5]) == _number(s[6:9])


def test_deterministic_and_seed_dependent():
    assert torch.equal(addition_data(8, num_batches=2, seed=3), addition_data(8, num_batches=2, seed=3))
    assert not torch.equal(addition_data(8, seed=3), addition_data(8, seed=4))


def test_rare_carry_enrichment_rate():
    # P(column sums to 9) is 0.1 for uniform digits; an enriched batch (prob 0.2) rewrites 20% of the
    # columns to 9, giving 0.2 + 0.8 * 0.1 = 0.28; overall 0.8 * 0.1 + 0.2 * 0.28 = 0.136. Over 500 batches of
    # 40 columns the standard deviation of the observed rate is about 0.004 (batch coin and binomial);
    # the tolerance 0.02 is 5 of them, and far from the un-enriched 0.1.
    data = addition_data(8, num_batches=500, seed=11)
    nines = (data[..., :5] + data[..., 6:11]) == 9
    assert abs(float(nines.float().mean()) - 0.136) < 0.02
    per_batch = nines.float().mean(dim=(1, 2)).numpy()
    assert np.mean(per_batch > 0.22) > 0.08  # enriched batches exist (expected about 0.2 * P(rate > 0.22))


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(batch_size=0), ValueError),
        (dict(batch_size=2.0), TypeError),
        (dict(batch_size=2, num_batches=0), ValueError),
        (dict(batch_size=2, num_digits=18), ValueError),
        (dict(batch_size=2, seed="1"), TypeError),
    ],
)
def test_guards(kwargs, err):
    with pytest.raises(err):
        addition_data(**kwargs)
