"""CIFAR-10/100 and TinyImageNet readers on format-exact synthetic stand-ins (no real data
needed), their backends, their one-line errors, and the benchmark registry."""

import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_compress.benchmarks import BenchmarkSpec, build_stream
from cl_compress.benchmarks.images import load_pickle
from cl_compress.benchmarks.registry import LOADERS
from cl_compress.benchmarks.standin import write_cifar, write_tinyimagenet
from cl_compress.errors import ConfigError, DataError
from cl_compress.settings import BENCHMARKS
from cl_compress.settings.catalogue import catalogue, check_data_files, synthetic_suffix

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin")
    write_cifar("cifar10", root, per_class=6)
    write_cifar("cifar100", root, per_class=3)
    return root


def _same(a, b):
    assert a.input_shape == b.input_shape and a.n_classes == b.n_classes and a.n_tasks == b.n_tasks
    for ea, eb in zip(a.experiences, b.experiences, strict=True):
        assert ea.classes == eb.classes and ea.n_outputs == eb.n_outputs
        for k in ("train_x", "train_y", "test_x", "test_y"):
            assert torch.equal(getattr(ea, k), getattr(eb, k)), (ea.task_id, k)


@pytest.mark.parametrize("name,tasks,scenario", [("split_cifar10", 5, "task"),
                                                 ("split_cifar100", 10, "task"),
                                                 ("split_cifar100", 20, "class")])
def test_cifar_reader_and_backends_agree(standin, name, tasks, scenario):
    spec = dict(name=name, n_tasks=tasks, scenario=scenario, data_root=str(standin))
    n = build_stream(BenchmarkSpec(**spec, backend="native"))
    a = build_stream(BenchmarkSpec(**spec, backend="avalanche"))  # Avalanche's generator
    _same(a, n)
    n_cls = 10 if name == "split_cifar10" else 100
    per = n_cls // tasks
    assert n.input_shape == (3, 32, 32) and n.n_classes == n_cls and n.n_tasks == tasks
    assert n.source == "synthetic stand-in (native)" and a.source == "synthetic stand-in (avalanche)"
    e = n.experiences[1]
    assert e.classes == list(range(per, 2 * per))
    assert sorted(set(e.train_y.tolist())) == (list(range(per)) if scenario == "task" else e.classes)
    # normalised with the dataset's statistics: the stand-in's pixels are not all near 0
    assert n.meta["normalise"] and n.meta["augment"] == "standard" and e.train_x.std() > 0.3


def test_cifar10_through_avalanche_classic_when_torchvision_accepts(standin, monkeypatch):
    """The real files pass torchvision's md5 check and go through Avalanche's SplitCIFAR10;
    the stand-in's do not, so the check is bypassed here to compare the paths."""
    import torchvision.datasets as D
    import torchvision.datasets.cifar as C

    spec = dict(name="split_cifar10", data_root=str(standin), backend="avalanche")
    assert build_stream(BenchmarkSpec(**spec)).meta["reader"] == "cifar-pickle"  # refused by md5
    monkeypatch.setattr(C, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(D.CIFAR10, "_check_integrity", lambda self: True)
    for scenario in ("task", "class"):
        a = build_stream(BenchmarkSpec(**spec, scenario=scenario))
        assert a.meta["reader"] == "torchvision" and a.source == "synthetic stand-in (avalanche-classic)"
        _same(a, build_stream(BenchmarkSpec(**{**spec, "backend": "native"}, scenario=scenario)))


def test_tinyimagenet_reader_and_backends(tmp_path):
    write_tinyimagenet(tmp_path, per_class=1)
    spec = dict(name="split_tinyimagenet", n_tasks=10, data_root=str(tmp_path))
    n = build_stream(BenchmarkSpec(**spec, backend="native"))
    a = build_stream(BenchmarkSpec(**spec, backend="avalanche"))
    _same(a, n)
    assert n.input_shape == (3, 64, 64) and n.n_classes == 200 and n.n_tasks == 10
    assert [len(e.train_y) for e in n.experiences] == [20] * 10
    assert n.source.startswith("synthetic stand-in")


def test_the_standin_is_learnable(standin):
    """Class patterns, not noise: a nearest-class-mean classifier on the pixels already
    beats chance by far (a conv net, which the runs train, does better)."""
    s = build_stream(BenchmarkSpec("split_cifar10", n_tasks=1, scenario="class", backend="native",
                                   data_root=str(standin)))
    e = s.experiences[0]
    means = torch.stack([e.train_x[e.train_y == c].mean(0) for c in range(10)]).flatten(1)
    pred = torch.cdist(e.test_x.flatten(1), means).argmin(1)
    assert (pred == e.test_y).float().mean() > 0.5


@pytest.mark.parametrize("layout", ["cifar10", "cifar100", "tinyimagenet"])
def test_missing_files_fail_in_one_line_naming_them(tmp_path, layout, monkeypatch):
    monkeypatch.delenv("CLC_DATA", raising=False)
    name = {"cifar10": "split_cifar10", "cifar100": "split_cifar100",
            "tinyimagenet": "split_tinyimagenet"}[layout]
    with pytest.raises(DataError) as err:
        check_data_files(name, str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg
    expected = {"cifar10": "data_batch_1", "cifar100": "cifar-100-python/ with train, test, meta",
                "tinyimagenet": "val/val_annotations.txt"}[layout]
    assert expected in msg
    with pytest.raises(DataError):  # build_stream fails the same way
        build_stream(BenchmarkSpec(name, data_root=str(tmp_path)))


def test_malformed_files_fail_in_one_line(tmp_path, standin):
    import shutil

    shutil.copytree(standin / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    (folder / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError) as err:
        check_data_files("split_cifar10", str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "data_batch_3" in msg and "test_batch (not a pickle)" in msg
    # a pickle of the wrong content passes the cheap check and fails in the reader, in one line
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 5), np.uint8),
                                                        "labels": [0, 1]}, protocol=2))
    shutil.copy(standin / "cifar-10-batches-py" / "test_batch", folder / "test_batch")
    with pytest.raises(DataError, match=r"data_batch_3: 'data' must be uint8 of shape \(N, 3072\)") as err:
        build_stream(BenchmarkSpec("split_cifar10", data_root=str(tmp_path), backend="native"))
    assert "\n" not in str(err.value)


def test_pickles_cannot_build_arbitrary_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (subprocess.call, (["true"],))

    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"global \S*call is not allowed"):
        load_pickle(p)
    np_pickle = tmp_path / "ok"
    np_pickle.write_bytes(pickle.dumps({"data": np.arange(6, dtype=np.uint8), "labels": [1]}, protocol=2))
    assert load_pickle(np_pickle)["data"].tolist() == list(range(6))


def test_bad_n_tasks_is_a_config_error_before_loading():
    with pytest.raises(ConfigError, match="n_tasks=3 does not divide the 100 classes"):
        build_stream(BenchmarkSpec("split_cifar100", n_tasks=3, data_root="/nonexistent"))


def test_run_name_says_synthetic(standin, tmp_path):
    assert synthetic_suffix("split_cifar100", str(standin)) == "-synthetic"
    assert synthetic_suffix("split_cifar100", str(tmp_path)) == ""  # missing: precheck reports it
    assert synthetic_suffix("split_digits", None) == ""


def test_registry_static_facts_match_the_loaders_and_yamls():
    """``settings.catalogue`` (read from the source, no torch) agrees with the decorators as
    executed, and every registered benchmark has exactly one YAML (and vice versa)."""
    assert catalogue() == {n: info for n, (info, _) in LOADERS.items()}
    assert list(BENCHMARKS) == list(LOADERS)
    yamls = {p.stem for p in (ROOT / "cl_compress" / "configs" / "benchmark").glob("*.yaml")}
    assert yamls == set(LOADERS)
    from omegaconf import OmegaConf

    for name, (info, _) in LOADERS.items():
        y = OmegaConf.to_container(OmegaConf.load(ROOT / "cl_compress" / "configs" / "benchmark" /
                                                  f"{name}.yaml"))
        assert y["name"] == name and y["n_tasks"] == info.default_tasks
        # the image benchmarks state their augmentation; the others leave the key out (their
        # configs, hashes and resumable checkpoints stay as before; +benchmark.augment=... sets it)
        assert y.get("augment", "none") == info.augment, name


def test_standin_command(tmp_path, capsys):
    from cl_compress.benchmarks.standin import main

    assert main(["cifar10", str(tmp_path), "--per-class", "2"]) == 0
    out = capsys.readouterr().out
    assert "synthetic cifar10 stand-in" in out
    names = sorted(p.name for p in (tmp_path / "cifar-10-batches-py").iterdir())
    assert names == ["SYNTHETIC_STANDIN", "batches.meta", "data_batch_1", "data_batch_2",
                     "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    d = load_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1")
    assert d["data"].dtype == np.uint8 and d["data"].shape == (4, 3072)
