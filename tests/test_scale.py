"""Paper-scale pieces that need no long run: the ResNet backbones' shapes and sizes, the
float32 strategy hooks under bf16-mixed, the batched crop+flip and the preset plans of
``make bench-gpu`` (its CPU smoke run is slow)."""

import lightning as L
import pytest
import torch

from cl_compress.errors import ConfigError
from cl_compress.models import ContinualModel, build_backbone
from cl_compress.settings.validate import check_model


@pytest.mark.parametrize("name, kw, feat, params", [
    ("resnet18", {}, 160, 1_093_140),  # reduced (nf=20): GEM / Ada-QPacknet, 1.1M
    ("resnet18", {"nf": 64}, 512, 11_168_832),  # full ResNet-18, 11.2M
    ("resnet56", {}, 64, 852_368),  # LRPET's CIFAR ResNet-56, 0.85M
    ("resnet56", {"depth": 20}, 64, 269_072),  # ResNet-20, 0.27M
])
def test_resnet_sizes(name, kw, feat, params):
    body, f = build_backbone(name, (3, 32, 32), **kw)
    assert f == feat and sum(p.numel() for p in body.parameters()) == params
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())


def test_resnet_configs_validate():
    check_model({"name": "resnet56", "nf": 16, "depth": 56})
    check_model({"name": "resnet18", "nf": 64})
    with pytest.raises(ConfigError, match="model.depth"):
        check_model({"name": "resnet56", "depth": 0})
    with pytest.raises(ConfigError, match="6n\\+2"):
        build_backbone("resnet56", (3, 32, 32), depth=51)


def test_strategy_hooks_run_in_float32_under_bf16_mixed():
    """Lightning's bf16-mixed autocasts the whole training step; the strategy's loss
    regulariser and per-step hooks (masks, projections, SVDs) compute in float32."""
    from cl_compress.benchmarks import make_loader
    from cl_compress.engine.system import ContinualSystem
    from cl_compress.strategies import Phase, StreamInfo, TrainSettings, get_strategy

    seen = {}

    class Probe(get_strategy("naive")):
        def training_loss(self, loss, logits, batch):
            seen["logits"] = logits.dtype
            seen["loss_mm"] = (torch.ones(4, 4) @ torch.ones(4, 4)).dtype
            return loss

        def after_backward(self):
            seen["backward_mm"] = (torch.ones(4, 4) @ torch.ones(4, 4)).dtype

        def after_optimizer_step(self, step):
            seen["step_mm"] = (torch.ones(4, 4) @ torch.ones(4, 4)).dtype
            seen["svd"] = torch.linalg.svdvals(torch.ones(4, 4) @ torch.ones(4, 4)).dtype

    body, feat = build_backbone("resnet18", (1, 8, 8), nf=4)
    model = ContinualModel(body, feat, [2], multi_head=True)
    strat = Probe.from_config({}, TrainSettings(batch_size=8))
    strat.setup(model, StreamInfo(1, "task", (1, 8, 8), [2]))
    system = ContinualSystem(model, strat)
    system.set_phase(0, Phase(epochs=1))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 2, (8,))
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(system, make_loader(x, y, 0, 8, shuffle=False))
    assert seen["logits"] == torch.bfloat16  # the forward is mixed precision
    assert {seen[k] for k in ("loss_mm", "backward_mm", "step_mm", "svd")} == {torch.float32}, seen
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_crop_flip_is_a_seeded_batched_crop_and_flip():
    from experiments.bench_gpu import crop_flip

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    a = crop_flip(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, crop_flip(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, x)
    # every output pixel is an input pixel of the same image and channel, or padding (0)
    for i in range(2):
        for c in range(3):
            assert set(a[i, c].unique().tolist()) <= set(x[i, c].unique().tolist()) | {0.0}
    # no shift and the flip alone: pad=0 gives x or x mirrored, per image
    b = crop_flip(x, torch.Generator().manual_seed(3), pad=0)
    assert all(torch.equal(b[i], x[i]) or torch.equal(b[i], x[i].flip(-1)) for i in range(2))


def test_bench_gpu_plans_and_projection():
    from experiments.bench_gpu import preset_plan, presets, projected_hours

    names = presets()
    assert "recipe_packnet" in names and "resnet18_cifar100" in names
    plan = preset_plan("resnet18_cifar100", ["naive", "packnet"])
    assert plan["model"] == "resnet18" and plan["steps_per_task"] == 3900
    assert plan["n_tasks"] == 10 and plan["seeds"] == 3 and plan["batch"] == 64
    assert plan["strategies"] == ["naive", "packnet"] and plan["variants"] == 1
    ips = {"naive": 1000.0, "packnet": 500.0}
    images = 3900 * 10 * 3 * 64
    want = (images / 1000 + images / 500 + images / 1000) / 3600  # + 1 variant (naive's rate)
    assert projected_hours(plan, ips) == pytest.approx(want)
    assert preset_plan("recipe_packnet", [])["strategies"] == ["packnet", "individual", "naive"]


def test_bench_gpu_stops_in_one_line_without_cuda(capsys):
    from experiments.bench_gpu import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(["--steps", "1"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "CUDA" in out[0]


@pytest.mark.slow
def test_bench_gpu_cpu_smoke(tmp_path):
    from experiments.bench_gpu import main

    out = tmp_path / "gpu.md"
    assert main(["--device", "cpu", "--steps", "2", "--batch", "8", "--nf", "4",
                 "--strategies", "naive,packnet", "--precisions", "32-true,bf16-mixed",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| packnet | bf16-mixed |" in text and "| resnet18_cifar100 | resnet18 |" in text


def test_sync_batchnorm_is_refused_on_cpu_and_converts_once():
    from types import SimpleNamespace

    from cl_compress.engine.system import sync_batchnorm
    from cl_compress.settings.validate import check_trainer

    with pytest.raises(ConfigError, match="trainer.sync_batchnorm=true needs trainer.accelerator=gpu"):
        check_trainer({"accelerator": "cpu", "devices": 1, "sync_batchnorm": True})
    body, feat = build_backbone("resnet18", (1, 8, 8), nf=4)
    model = ContinualModel(body, feat, [2], multi_head=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sync_batchnorm(model, SimpleNamespace(sync_batchnorm=True))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
