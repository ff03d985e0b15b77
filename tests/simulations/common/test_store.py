"""simulations.common.store: a study's config in the store's own config, files of the earlier layout still read."""

import numpy as np
import pytest

import particles
from particles.io import ResultStore
from simulations.common.store import CONFIG_KEY, open_study_store

CONFIG = {"betas": np.array([1.0, 2.0]), "n": 8, "dynamics": "SA", "seed": 4}


def test_config_is_the_stores_own_and_read_back_from_the_file(tmp_path):
    path = tmp_path / "study.h5"
    store, config = open_study_store(path, "metastability", CONFIG)
    store.save("beta_0000", counts=np.arange(3))
    store, again = open_study_store(path, "metastability")
    assert set(again) == set(CONFIG) and again["seed"] == 4
    np.testing.assert_array_equal(again["betas"], CONFIG["betas"])
    facts = particles.io.info(path)
    assert (facts["kind"], facts["seed"]) == ("metastability", 4)
    assert particles.load(path).config["n"] == 8
    with pytest.raises(ValueError, match="'n'"):
        open_study_store(path, "metastability", {**CONFIG, "n": 9})
    with pytest.raises(ValueError, match="not a histograms file"):
        open_study_store(path, "histograms")
    with pytest.raises(FileNotFoundError):
        open_study_store(tmp_path / "missing.h5", "metastability")


def test_earlier_layout_reads_and_resumes(tmp_path):
    path = tmp_path / "old.h5"
    ResultStore(path, {"study": "metastability"}).save(CONFIG_KEY, **CONFIG)
    store, config = open_study_store(path, "metastability")
    assert config["dynamics"] == "SA" and particles.io.info(path)["kind"] == "metastability"
    store, _ = open_study_store(path, "metastability", CONFIG)
    store.save("beta_0000", counts=np.arange(3))
    with pytest.raises(ValueError, match="'seed'"):
        open_study_store(path, "metastability", {**CONFIG, "seed": 5})
