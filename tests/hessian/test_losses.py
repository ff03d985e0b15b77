"""Losses against torch.nn.functional on the selected positions (theory note §1.1, §3.2)."""

import pytest
import torch
import torch.nn.functional as F

from hessian import CrossEntropyLoss, MSELoss

gen = torch.Generator().manual_seed(0)


def test_mse_normalisation_and_one_hot():
    out = torch.randn(2, 18, 12, generator=gen, dtype=torch.float64)
    Y = torch.randn(2, 18, 12, generator=gen, dtype=torch.float64)
    assert MSELoss()(out, Y).item() == pytest.approx(F.mse_loss(out, Y).item(), rel=1e-14)
    tokens = torch.randint(0, 12, (2, 18), generator=gen)
    want = ((out[:, 11:17] - F.one_hot(tokens[:, 11:17], 12)) ** 2).sum()
    assert MSELoss(reduction="sum", positions=(11, 17))(out, tokens).item() == pytest.approx(want.item(), rel=1e-14)


def test_cross_entropy_on_answer_positions():
    out = torch.randn(3, 18, 12, generator=gen, dtype=torch.float64)
    tokens = torch.randint(0, 12, (3, 18), generator=gen)
    # the reference LossModule: logits[:, -7:-1] scored against tokens[:, 12:18]
    want = F.cross_entropy(out[:, -7:-1].reshape(-1, 12), tokens[:, 12:].reshape(-1))
    got = CrossEntropyLoss(positions=(11, 17), target_shift=1)(out, tokens)
    assert got.item() == pytest.approx(want.item(), rel=1e-14)
    assert CrossEntropyLoss()(out, tokens).item() == pytest.approx(
        F.cross_entropy(out.reshape(-1, 12), tokens.reshape(-1)).item(), rel=1e-14
    )


def test_bad_losses():
    with pytest.raises(ValueError, match="reduction"):
        MSELoss(reduction="max")
    with pytest.raises(ValueError, match="positions"):
        CrossEntropyLoss(positions=(5, 2))
    with pytest.raises(ValueError, match="target_shift"):
        CrossEntropyLoss(target_shift=-1)
    with pytest.raises(ValueError, match="needs at least 20 positions"):
        CrossEntropyLoss(positions=(11, 20))(torch.zeros(1, 18, 12), torch.zeros(1, 18, dtype=torch.long))
    with pytest.raises(TypeError, match="integer classes"):
        CrossEntropyLoss()(torch.zeros(1, 4, 3), torch.zeros(1, 4))
