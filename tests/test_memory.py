"""Memory prediction: hand-computed small networks, identities on zoo models, a real CPU run."""

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from zoo.catalogue import cards
from zoo.catalogue.build import build
from zoo.catalogue.entries import Entry
from zoo.measure import memory
from zoo.store import tables

KIB = 1024
P = 1024 * 1024 * 4      # one Linear(1024, 1024, bias=False) weight in fp32: 4 MiB
A = 128 * 1024 * 4       # one activation at batch 128: 512 KiB
SCALAR = 512             # a 4-byte scalar takes one 512-byte block


def mlp():
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(1024, 1024, bias=False), nn.ReLU(),
                             nn.Linear(1024, 1024, bias=False))


def totals(tracker):
    out = []
    for row in tracker.timeline:
        if not out or sum(row) != out[-1]:
            out.append(sum(row))
    return out


def column(tracker, name):
    return np.array(tracker.timeline)[:, memory.CATEGORIES.index(name)]


def test_mlp_forward_backward_by_hand():
    t = memory.simulate(mlp, (1024,), 128, "training", workspace=0)
    # saved for backward: the input x (for W1's gradient) and ReLU's output r (for ReLU's and
    # W2's gradients); the first layer's output h is freed once ReLU has read it
    assert column(t, "activations").max() == 2 * A
    assert column(t, "gradients")[-1] == 2 * P
    # the peak comes as W1's gradient is made: 2 weights, W2's gradient, W1's gradient, x, the
    # gradient flowing into W1 (batch x 1024), the loss and its seed gradient (two scalars)
    assert np.array(t.timeline).sum(axis=1).max() == 2 * P + P + P + A + A + 2 * SCALAR


@pytest.mark.parametrize("optimizer, state, step_temporaries", [
    ("sgd", 0, 0),
    ("momentum", 2 * P, 0),                     # one momentum buffer per weight
    ("adamw", 4 * P, 2 * P),                    # two moments per weight (the step counts stay
])                                              # on the host); foreach Adam makes one sqrt(v)
                                                # per weight
def test_mlp_training_step_by_hand(optimizer, state, step_temporaries):
    step = memory.simulate_step(mlp, optimizer)
    assert column(step, "optimizer")[-1] == state
    pred = memory.predict(mlp, (1024,), "training", optimizer=optimizer, workspace=0)
    peak, parts = pred.at(128)
    fwd_bwd = 4 * P + 2 * A + 2 * SCALAR + state       # the forward/backward peak above + state
    in_step = 2 * P + 2 * P + state + step_temporaries + A   # weights, grads, state, temps, input
    assert peak == max(fwd_bwd, in_step)
    assert parts["optimizer"] == state


def small_cnn():
    with torch.device("meta"):
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


def test_cnn_saved_activations_by_hand():
    n = 4
    x = n * 3 * 16 * 16 * 4
    conv_out = n * 8 * 16 * 16 * 4      # saved by BatchNorm (its input)
    stats = 2 * SCALAR                  # BatchNorm's saved mean and inverse std (8 floats each)
    relu_out = n * 8 * 16 * 16 * 4      # saved by ReLU (its output) and max pooling (its input)
    indices = n * 8 * 8 * 8 * 8         # max pooling's int64 argmax indices
    pool_out = n * 8 * 8 * 8 * 4        # saved by the Linear layer (flattened view, same storage)
    t = memory.simulate(small_cnn, (3, 16, 16), n, "training", workspace=0)
    assert column(t, "activations").max() == x + conv_out + stats + relu_out + indices + pool_out
    params = [8 * 3 * 9 * 4, 8 * 4, 8 * 4, 10 * 512 * 4, 10 * 4]
    assert column(t, "parameters")[0] == sum(memory.block_bytes(b) for b in params)
    assert column(t, "buffers")[0] == 3 * SCALAR  # running mean, running var, batch count


def test_workspace_once_per_thread_of_matrix_products():
    t = memory.simulate(mlp, (1024,), 128, "training")
    assert column(t, "workspace").max() == 2 * memory.CUBLAS_WORKSPACE   # forward + backward
    t = memory.simulate(mlp, (1024,), 128, "inference")
    assert column(t, "workspace").max() == memory.CUBLAS_WORKSPACE


@pytest.mark.parametrize("make, shape", [(mlp, (1024,)), (small_cnn, (3, 16, 16))])
def test_simulation_equals_the_same_tracker_on_real_cpu_tensors(make, shape):
    fake = memory.simulate(make, shape, 8, "training")
    real = memory.simulate(make, shape, 8, "training", fake=False)
    # the same memory after every op, and the same peak per category (autograd may file a saved
    # tensor a moment earlier or later relative to the op's output on fake tensors)
    assert totals(fake) == totals(real)
    assert np.array_equal(np.array(fake.timeline).max(axis=0), np.array(real.timeline).max(axis=0))
    assert fake.timeline[-1] == real.timeline[-1]
    for opt in memory.OPTIMIZERS:
        assert memory.simulate_step(make, opt).timeline == \
            memory.simulate_step(make, opt, fake=False).timeline


def test_simulation_equals_real_cpu_run_of_a_zoo_model():
    entry = Entry("torchvision", "squeezenet1_1", "IMAGENET1K_V1", 224)
    make = lambda: build(entry, "meta")  # noqa: E731
    fake = memory.simulate(make, (3, 64, 64), 2, "training")
    real = memory.simulate(make, (3, 64, 64), 2, "training", fake=False)
    assert np.array(fake.timeline).sum(axis=1).max() == np.array(real.timeline).sum(axis=1).max()


# ---- identities on real zoo models -----------------------------------------------------------

R18 = Entry("torchvision", "resnet18", "IMAGENET1K_V1", 224)


@pytest.fixture(scope="module")
def r18():
    make = lambda: build(R18, "meta")  # noqa: E731
    shape = (3, 224, 224)
    preds = {p: memory.predict(make, shape, "training", p) for p in ("fp32", "amp-fp16", "amp-bf16")}
    steps = {o: np.array(memory.simulate_step(make, o).timeline, dtype=float)
             for o in memory.OPTIMIZERS}
    return make, preds, steps


def test_parameter_bytes_are_four_per_parameter(r18):
    make, preds, _ = r18
    model = make()
    params = sum(p.numel() for p in model.parameters())
    blocks = sum(memory.block_bytes(4 * p.numel()) for p in model.parameters())
    _, parts = preds["fp32"].at(8)
    assert parts["parameters"] == blocks
    assert 4 * params <= blocks <= 4 * params + 512 * len(list(model.parameters()))


def test_optimizer_state_is_0_1_2_times_parameters(r18):
    _, preds, steps = r18
    weights = preds["fp32"].at(1)[1]["parameters"]
    state = {o: steps[o][-1, memory.CATEGORIES.index("optimizer")] for o in memory.OPTIMIZERS}
    # Adam's step counts stay on the host (torch.optim.adam hosts ``step`` on the CPU unless
    # capturable or fused): exactly the source document's 0x, 1x and 2x the weights
    assert state == {"sgd": 0, "momentum": weights, "adamw": 2 * weights}


def test_activations_grow_linearly_with_batch(r18):
    _, preds, _ = r18
    act = [preds["fp32"].at(b)[1]["activations"] for b in (8, 16, 32)]
    assert act[2] - act[1] == pytest.approx(2 * (act[1] - act[0]), rel=1e-6)
    assert act[0] > 0


def test_amp_reduces_saved_activations(r18):
    _, preds, _ = r18
    fp32 = preds["fp32"].at(32)[1]["activations"]
    for p in ("amp-fp16", "amp-bf16"):
        assert preds[p].at(32)[1]["activations"] < 0.75 * fp32


@contextlib.contextmanager
def _inplace(model):
    """Every module with an inplace switch runs in place while inside."""
    from zoo.stages.memory import _set_inplace, _switchable

    with _set_inplace(_switchable(model, False), True):
        yield model


def test_inplace_and_checkpointing_never_increase_the_peak():
    entry = Entry("timm", "resnet18", "a1_in1k", 224)
    make = lambda: build(entry, "meta")  # noqa: E731
    base = memory.predict(make, (3, 96, 96), "training").at(16)[0]
    with _inplace(make()) as model:
        inplace = memory.predict(lambda: model, (3, 96, 96), "training").at(16)[0]
    ckpt = memory.predict(make, (3, 96, 96), "training", checkpointing=True).at(16)[0]
    assert inplace <= base and ckpt < base
    # one simulator for all variants (as the memory stage runs them) gives the same figures
    sim = memory.Simulator(make())
    assert memory.predict(sim, (3, 96, 96), "training").at(16)[0] == base
    assert memory.predict(sim, (3, 96, 96), "training", checkpointing=True).at(16)[0] == ckpt
    with _inplace(sim.model):
        assert memory.predict(sim, (3, 96, 96), "training").at(16)[0] == inplace
    assert memory.predict(sim, (3, 96, 96), "training").at(16)[0] == base


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown precision"):
        memory.simulate(mlp, (1024,), 2, "training", "fp8")
    with pytest.raises(ValueError, match="unknown optimizer"):
        memory.predict(mlp, (1024,), "training", optimizer="lion")


def test_fp16_and_bf16_autocast_need_the_same_memory(r18):
    # the memory stage simulates bf16 once and reports it for fp16 too
    _, preds, _ = r18
    for b in (1, 16, 64):
        assert preds["amp-fp16"].at(b) == preds["amp-bf16"].at(b)
    entry = Entry("torchvision", "vit_b_16", "IMAGENET1K_V1", 224)
    make = lambda: build(entry, "meta")  # noqa: E731
    amp = [memory.simulate(make, (3, 224, 224), 2, "inference", p).timeline
           for p in ("amp-fp16", "amp-bf16")]
    assert amp[0] == amp[1]
    # and so do weights in fp16 and in bf16 (model.half(), model.bfloat16())
    half = [memory.simulate(make, (3, 224, 224), 2, "inference", p).timeline for p in ("fp16", "bf16")]
    assert half[0] == half[1]


def test_memory_stage_writes_rows_and_records_failures(tmp_path):
    import io

    import pandas as pd

    from zoo.stages import memory as memory_stage

    good = Entry("torchvision", "squeezenet1_1", "IMAGENET1K_V1", 224)
    sibling = Entry("torchvision", "squeezenet1_1", "OTHER_WEIGHTS", 224)  # same architecture
    broken = Entry("torchvision", "no_such_builder", "IMAGENET1K_V1", 224)
    log = io.StringIO()
    summary = memory_stage.run([broken, good, sibling], tmp_path, workers=1, log=log)
    assert summary["failed"] == 1
    assert pd.read_csv(tmp_path / "memory-failures.csv")["arch"].tolist() == ["no_such_builder"]
    every = tables.read(tmp_path, "memory.csv")
    rows = every[every.weights == "IMAGENET1K_V1"]
    # inference in fp32, AMP fp16 and bf16, fp16 and bf16 weights; training in 3 precisions x 3
    # optimizers
    assert len(rows) == len(memory_stage.BATCHES) * (5 + 3 * 3)
    other = every[every.weights == "OTHER_WEIGHTS"]
    assert other.drop(columns="weights").reset_index(drop=True).equals(
        rows.drop(columns="weights").reset_index(drop=True))
    parts = rows[[f"{c}_bytes" for c in memory.CATEGORIES]].sum(axis=1)
    assert (parts == rows["peak_bytes"]).all()
    fits = pd.read_csv(tmp_path / "memory-fit.csv")
    by_size = sorted(cards.FIT_CARDS, key=lambda c: c.capacity)
    sizes = [f"max_batch_{c.slug}" for c in by_size]
    assert (fits[sizes].diff(axis=1).fillna(0) >= 0).all().all()  # a bigger card fits more
    searched = fits["optimizer"].fillna("").isin(memory_stage.FIT_OPTIMIZERS)
    assert fits.loc[searched, sizes].notna().all().all()
    assert fits.loc[~searched, sizes].isna().all().all()  # SGD's: zoo memory --optimizer sgd
    # the allocator's replay: max_memory_reserved holds max_memory_allocated, which holds the
    # tensors' blocks at the peak (a block not split is counted whole)
    assert (rows["reserved_bytes"] >= rows["allocated_bytes"]).all()
    assert (rows["allocated_bytes"] >= rows["peak_bytes"]).all()
    assert fits["worst_residual"].max() < 0.1
    lines = log.getvalue().splitlines()
    assert "1 failed" in lines[-2] and lines[-1].startswith("memory largest process: ")


def test_largest_batch_is_the_largest_that_fits(r18):
    """The search (doubling, then bisection) against a plain scan of every batch size."""
    _, preds, _ = r18
    pred = preds["fp32"]
    for budget in (pred.at(1)[0] - 1, pred.at(1)[0], pred.at(37)[0], pred.at(37)[0] + 1,
                   pred.at(300)[0] - 1):
        scan = max((b for b in range(1, 400) if pred.at(b)[0] <= budget), default=0)
        assert pred.largest_batch(budget) == scan
    assert pred.largest_batch(10**18, limit=1024) == 1024  # the cap: callers say it is one


def test_fit_columns_by_hand(tmp_path):
    # the MLP: weights 2P, gradients 2P, momentum state 2P, saved activations 2 x 1024 floats
    pred = memory.predict(mlp, (1024,), "training", optimizer="momentum", workspace=0)
    parts = pred.parts(128)
    assert (parts["parameters"], parts["gradients"], parts["optimizer"]) == (2 * P, 2 * P, 2 * P)
    assert pred.activations_per_sample() == 2 * 1024 * 4


def test_interpolated_peak_equals_a_simulation_at_that_batch():
    """The law (batches 2 and 4, interpolated) against a simulation run at batch 32 itself."""
    entry = Entry("timm", "resnet18", "a1_in1k", 224)
    sim = memory.Simulator(build(entry, "meta"))
    for mode in ("inference", "training"):
        law = memory.predict(sim, (3, 96, 96), mode).at(32)
        direct = memory.predict(sim, (3, 96, 96), mode, batches=(32,)).at(32)
        assert abs(law[0] - direct[0]) <= 4 * memory.BLOCK and law[1].keys() == direct[1].keys()
    with pytest.raises(ValueError, match="batch 32 only"):
        memory.predict(sim, (3, 96, 96), "inference", batches=(32,)).at(8)


@pytest.mark.parametrize("arch, size", [("resnet18", 64), ("densenet121", 64),
                                        ("mobilenet_v3_small", 64), ("swin_t", 64),
                                        ("vit_b_16", 64), ("timm:vit_tiny_patch16_224", 224),
                                        ("timm:efficientnet_b0", 96),
                                        ("timm:convnext_atto", 96)])
def test_shortcuts_give_what_fake_tensor_mode_gives(arch, size):
    """The simulator's shortcuts (outputs remade from earlier calls' shapes, meta kernels run
    without FakeTensorMode's dispatch) against the mode's own dispatch: the same memory after
    every op, in training and inference, fp32 and AMP. (Storages freed together, e.g. a graph's
    saved tensors, may be freed in another order: only the state after such a run is compared.)"""
    library, _, arch = arch.rpartition(":")
    entry = (Entry("timm", arch, "", size) if library == "timm" else
             Entry("torchvision", arch, "IMAGENET1K_V1", size))
    fast = memory.Simulator(build(entry, "meta"))
    reference = memory.Simulator(build(entry, "meta"), shortcuts=False)
    for mode in ("training", "inference"):
        for precision in ("fp32", "amp-bf16"):
            for batch in (2, 4):  # the second: outputs remade from the first's checked kinds
                got = fast.run((3, size, size), batch, mode, precision).timeline
                want = reference.run((3, size, size), batch, mode, precision).timeline
                assert after_frees(got) == after_frees(want), (mode, precision, batch)
    fast = memory.Simulator(build(entry, "meta"), dtype=torch.float16)
    reference = memory.Simulator(build(entry, "meta"), shortcuts=False, dtype=torch.float16)
    got = fast.run((3, size, size), 2, "inference", "fp16").timeline
    assert after_frees(got) == after_frees(
        reference.run((3, size, size), 2, "inference", "fp16").timeline)


@pytest.mark.parametrize("arch, size, mode, precision, checkpointing", [
    ("resnet18", 64, "training", "fp32", False),
    ("timm:vit_tiny_patch16_224", 224, "training", "amp-bf16", True),
    ("swin_t", 64, "inference", "amp-bf16", False),
    ("timm:efficientnet_b0", 96, "inference", "fp32", False)])
def test_one_simulation_at_the_probe_batch_gives_each_batchs_trace(arch, size, mode, precision,
                                                                  checkpointing):
    """The step simulated once at batch PROBE, each tensor's bytes there split into a fixed and a
    per-sample part, against the step simulated at each batch: the same memory after every op
    and the same allocations, at both batches."""
    library, _, arch = arch.rpartition(":")
    entry = (Entry("timm", arch, "", size) if library == "timm" else
             Entry("torchvision", arch, "IMAGENET1K_V1", size))
    shape = (3, size, size)
    probe = memory.Simulator(build(entry, "meta"))
    once = probe.run(shape, memory.PROBE, mode, precision, checkpointing=checkpointing,
                     batches=(2, 4)).traces()  # (not the fallback: this raises if it fails)
    each = memory.Simulator(build(entry, "meta"), probe=False).runs(
        shape, (2, 4), mode, precision, checkpointing=checkpointing)
    assert len(once) == len(each) == 2
    for got, want in zip(once, each):
        assert after_frees(got.timeline) == after_frees(want.timeline)
        assert (memory.frees_in_serial_order(got.events).tolist()
                == memory.frees_in_serial_order(want.events).tolist())
        assert (got.run_start, got.workspace_ids, got.grad_ids) == (
            want.run_start, want.workspace_ids, want.grad_ids)
    assert once[0].timeline != once[1].timeline  # (the batch shows)


class Gram(nn.Module):
    """A (batch x batch) output: memory that grows faster than the batch."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        h = self.fc(x)
        return h @ h.T


def gram():
    with torch.device("meta"):
        return Gram()


def test_memory_that_is_not_affine_in_the_batch_is_simulated_at_each_batch(capfd):
    sim = memory.Simulator(gram())
    with pytest.raises(RuntimeError, match="overflow"):  # batch x batch floats at PROBE
        sim.run((16,), memory.PROBE, "training", batches=(2, 4))
    capfd.readouterr()
    got = sim.runs((16,), (2, 4), "training")
    assert "Traceback" not in capfd.readouterr().err  # the fallback is not a failure to report
    want = memory.Simulator(gram(), probe=False).runs((16,), (2, 4), "training")
    assert [t.timeline for t in got] == [t.timeline for t in want]
    # the output, at batch 2 and 4: 2 x 2 and 4 x 4 floats, in one block each
    assert max(r[memory.CATEGORIES.index("temporaries")] for r in got[1].timeline) >= 512


def after_frees(timeline):
    """The timeline without the rows inside a run of frees (total lower than before and than
    after): the order in which storages freed together go does not matter."""
    t = [sum(r) for r in timeline]
    return [r for i, r in enumerate(timeline)
            if not (0 < i < len(t) - 1 and t[i] < t[i - 1] and t[i + 1] < t[i])]


# ---- the caching allocator's replay, weights in half precision, in-place activations ------------

def test_largest_batch_by_replay_is_the_boundary_and_below_the_allocated_bound(r18):
    from zoo.measure import allocator

    make, _, _ = r18
    sim = memory.Simulator(make())
    for mode, optimizer in (("training", "sgd"), ("inference", None)):
        pred = memory.predict(sim, (3, 224, 224), mode, "fp32", optimizer)
        for gib in (1.5, 3):
            capacity = int(gib * 2**30)
            best = pred.largest_batch_replayed(capacity)
            assert 0 < best <= pred.largest_batch(capacity)
            pred.replay(best, capacity)  # runs
            with pytest.raises(allocator.OutOfMemory):
                pred.replay(best + 1, capacity)


def test_replay_counts_what_the_allocator_hands_out(r18):
    _, preds, _ = r18
    pred = preds["fp32"]
    for b in (1, 32):
        r = pred.replay(b)
        # every block is at least the tensor's 512-byte block, and segments hold the blocks
        assert r.max_reserved >= r.max_allocated >= pred.at(b)[0]
        # a 2 MiB or 20 MiB segment, or a request rounded to 2 MiB, each
        assert r.max_reserved % (2 << 20) == 0


def test_weights_in_half_precision_halve_parameters_and_activations(r18):
    make, _, _ = r18
    model = make()
    fp32 = memory.predict(make, (3, 224, 224), "inference", "fp32").at(32)[1]
    half = memory.predict(make, (3, 224, 224), "inference", "fp16").at(32)[1]
    assert half["parameters"] == sum(memory.block_bytes(2 * p.numel()) for p in model.parameters())
    assert fp32["parameters"] == sum(memory.block_bytes(4 * p.numel()) for p in model.parameters())
    # the largest moment of the temporaries, at batch 32: in fp32, the stem's convolution, with
    # the image and the convolution's output alive as batch norm writes its own (ReLU then runs
    # in place); in fp16, the max pool, with the image, the stem's output and the pool's output
    # alive, and the pool's int64 indices (CUDA makes them in inference too)
    image, stem, pooled = 32 * 3 * 224 * 224, 32 * 64 * 112 * 112, 32 * 64 * 56 * 56
    assert fp32["temporaries"] == 4 * (image + 2 * stem)
    assert half["temporaries"] == 2 * (image + stem + pooled) + 8 * pooled
    with pytest.raises(ValueError, match="weights in torch.float16"):
        memory.Simulator(make()).run((3, 224, 224), 2, "inference", "fp16")


def _tiny(act):
    def make():
        with torch.device("meta"):
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), act, nn.Conv2d(8, 8, 3, padding=1),
                                 nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    return make


def test_inplace_savings_say_which_case_holds():
    from zoo.stages.memory import SAVINGS_BATCH, _inplace_savings

    def savings(act):
        sim = memory.Simulator(_tiny(act)())
        base = memory.predict(sim, (3, 32, 32), "training", "fp32", "adamw")
        return _inplace_savings(sim, (3, 32, 32), base, base.at(SAVINGS_BATCH)[0])

    already, could, gelu = savings(nn.ReLU(inplace=True)), savings(nn.ReLU()), savings(nn.GELU())
    assert [already["inplace_case"], could["inplace_case"], gelu["inplace_case"]] == \
        ["already in place", "saves", "not possible"]
    # both ReLU models compare the same two variants, all in place and all out of place
    assert already["inplace_vs_out_of_place_bytes"] == could["inplace_vs_out_of_place_bytes"] \
        == could["saved_by_inplace_bytes"] >= 0
    assert already["saved_by_inplace_bytes"] == gelu["saved_by_inplace_bytes"] == 0
    assert gelu["inplace_vs_out_of_place_bytes"] is None


def test_frees_go_in_serial_order_within_a_run_and_the_allocator_ends_the_same():
    events = [(0, 100), (1, 200), (2, 300), (1, -1), (0, -1), (3, 50), (2, -1), (3, -1)]
    assert memory.frees_in_serial_order(events).tolist() == [
        [0, 100], [1, 200], [2, 300], [0, -1], [1, -1], [3, 50], [2, -1], [3, -1]]
    # the claim it rests on: a run of frees leaves the allocator in one state, in any order
    from zoo.measure import allocator

    rng = np.random.default_rng(0)
    sizes = rng.choice([700, 4096, 300_000, 1_500_000, 3_000_000, 12_000_000], 60)
    trace, live = [], []
    for i, n in enumerate(sizes):
        trace.append((i, int(n)))
        live.append(i)
        if i % 7 == 6:  # free five of the live blocks together
            for j in rng.choice(len(live), min(5, len(live)), replace=False):
                trace.append((live[j], -1))
            live = [b for b in live if (b, -1) not in trace]
    canonical = [tuple(e) for e in memory.frees_in_serial_order(trace).tolist()]
    assert canonical != trace  # the runs were out of order
    tail = [(100 + k, n) for k, n in enumerate([1_400_000, 600, 9_000_000, 2_100_000])]
    assert allocator.replay(trace + tail) == allocator.replay(canonical + tail)


def test_cpu_autocast_casts_as_cuda_autocast_does_inside_the_lists():
    """The emulated lists against CUDA's own autocast kernels: each call runs forward on fake CUDA
    tensors under CUDA autocast (no GPU needed; the autograd engine is not involved) and on CPU
    tensors under CPU autocast with ``cuda_autocast_lists``; the outputs' dtypes must agree, and
    without the lists some of them must not (layer_norm and softmax stay bf16 on the CPU)."""
    import torch.nn.functional as F

    from zoo.torch_private import FakeTensorMode, cuda_autocast_lists

    calls = {
        "exp": lambda x, w: x.exp(), "log": lambda x, w: x.log(), "rsqrt": lambda x, w: x.rsqrt(),
        "pow": lambda x, w: x ** 2, "reciprocal": lambda x, w: x.reciprocal(),
        "softplus": lambda x, w: F.softplus(x), "gelu": lambda x, w: F.gelu(x),
        "layer_norm": lambda x, w: F.layer_norm(x, (8,)),
        "group_norm": lambda x, w: F.group_norm(x, 2),
        "softmax": lambda x, w: x.softmax(-1), "log_softmax": lambda x, w: F.log_softmax(x, -1),
        "softmax_dtype": lambda x, w: x.softmax(-1, dtype=torch.bfloat16),
        "sum": lambda x, w: x.sum(), "sum_dim": lambda x, w: x.sum(1), "mean": lambda x, w: x.mean(1),
        "cumsum": lambda x, w: x.cumsum(1), "logsumexp": lambda x, w: x.logsumexp(1),
        "norm": lambda x, w: torch.linalg.vector_norm(x, dim=1),
        "nearest": lambda x, w: F.interpolate(x, scale_factor=2),
        "bilinear": lambda x, w: F.interpolate(x, scale_factor=2, mode="bilinear"),
        "conv": lambda x, w: F.conv2d(x, w), "linear": lambda x, w: x @ w[:, :, 0, 0],
        "einsum": lambda x, w: torch.einsum("bchw,dc->bdhw", x, w[:, :, 0, 0]),
        "addcmul": lambda x, w: torch.addcmul(x, x.bfloat16(), x),
        "cosine": lambda x, w: F.cosine_similarity(x, x, dim=1),
        "reflect": lambda x, w: F.pad(x, (1, 1, 1, 1), mode="reflect"),
        "max_pool": lambda x, w: F.max_pool2d(x, 2), "cat": lambda x, w: torch.cat([x, x.bfloat16()]),
    }

    def dtypes(device, lists):
        out = {}
        for dtype in (torch.float32, torch.bfloat16):
            for name, call in calls.items():
                x = torch.randn(2, 8, 8, 8, dtype=dtype, device=device)
                w = torch.randn(8, 8, 1, 1, device=device)
                if device == "cuda":  # autocast("cuda") turns itself off without CUDA
                    torch.set_autocast_enabled("cuda", True)
                    torch.set_autocast_dtype("cuda", torch.bfloat16)
                    try:
                        out[name, dtype] = call(x, w).dtype
                    finally:
                        torch.set_autocast_enabled("cuda", False)
                else:
                    with lists(), torch.autocast("cpu", dtype=torch.bfloat16):
                        out[name, dtype] = call(x, w).dtype
        return out

    with FakeTensorMode(allow_non_fake_inputs=True):
        cuda = dtypes("cuda", None)
    emulated = dtypes("cpu", cuda_autocast_lists)
    cpu = dtypes("cpu", contextlib.nullcontext)
    assert emulated == cuda
    assert cuda["layer_norm", torch.bfloat16] == cuda["softmax", torch.bfloat16] == torch.float32
    assert cpu["layer_norm", torch.bfloat16] == cpu["softmax", torch.bfloat16] == torch.bfloat16
    # and outside the lists, CPU autocast is the CPU's again
    assert dtypes("cpu", contextlib.nullcontext) == cpu


def test_the_emulated_lists_cover_every_op_only_cuda_autocast_casts():
    """Each op with an AutocastCUDA kernel and none at AutocastCPU has a policy (or is CUDA's
    alone), and none of the listed ops has a CPU kernel that the lists would replace: a torch
    that moves an op between the lists fails here."""
    from zoo import torch_private as tp

    def has(name, key):
        return torch._C._dispatch_has_kernel_for_dispatch_key(name, key)

    names = torch._C._dispatch_get_all_op_names()
    cuda_only = {n.removeprefix("aten::") for n in names if n.startswith("aten::")
                 and has(n, "AutocastCUDA") and not has(n, "AutocastCPU")}
    listed = {n for names_ in tp.CUDA_AUTOCAST.values() for n in names_}
    assert cuda_only - listed - set(tp.CUDA_ONLY_OPS) == set()
    for name in listed:
        assert not has(f"aten::{name}", "AutocastCPU"), name
    for name in tp.CPU_ONLY_AUTOCAST:
        assert has(f"aten::{name}", "AutocastCPU") and not has(f"aten::{name}", "AutocastCUDA"), name


def test_fake_tensors_made_without_the_constructor_are_the_constructors():
    """``torch_private._wrap`` (fake tensors made without FakeTensor's constructor) against the
    constructor, which makes a mode's first tensor: the same attributes and dispatch keys."""
    from zoo import torch_private

    cpu = torch.device("cpu")
    for mode in (torch_private.FakeTensorMode(), torch_private.FakeTensorMode()):
        first, second = (torch_private._fake_empty(mode, (2, 3), (3, 1), torch.float32, cpu)
                         for _ in range(2))
        assert type(second) is type(first) is torch_private.FakeTensor
        assert second.__dict__ == first.__dict__ and second.fake_mode is mode
        assert torch._C._dispatch_keys(second) == torch._C._dispatch_keys(first)
        assert second.untyped_storage() is not first.untyped_storage()


def test_kernel_invocation_sets_what_torchs_own_sets():
    """``torch_private._InKernel`` against FakeTensorMode's ``in_kernel_invocation_manager``: the
    same mode flag and dispatch keys inside, and all restored after."""
    from torch._subclasses.fake_tensor import in_kernel_invocation_manager

    from zoo import torch_private

    mode = torch_private.FakeTensorMode()

    def state():
        return (mode.in_kernel_invocation, torch._C._meta_in_tls_dispatch_include(),
                str(torch._C._dispatch_tls_local_include_set()),
                str(torch._C._dispatch_tls_local_exclude_set()))

    before = state()
    with in_kernel_invocation_manager(mode):
        want = state()
    with torch_private._InKernel(mode):
        got = state()
    assert got == want != before and state() == before


class _MaskedAttention(nn.Module):
    """Attention over 256 tokens with a learned mask (a relative-position bias)."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2, 256, 256))

    def forward(self, x):
        return nn.functional.scaled_dot_product_attention(x, x, x, attn_mask=self.bias)


@pytest.mark.parametrize("precision", ["fp32", "amp-bf16"])
def test_attention_in_inference_allocates_its_output_alone(precision, monkeypatch):
    """In inference, attention allocates what CUDA's fused kernels allocate: its output, not the
    batch x heads x 256 x 256 matrix that the CPU's math path (taken for this mask under no_grad)
    would make."""
    scores = 2 * 2 * 256 * 256 * (4 if precision == "fp32" else 2)  # batch 2, 2 heads

    def largest(sim):
        events = sim.run((2, 256, 8), 2, "inference", precision).events
        return max(size for _, size in events[1:])  # (the first: the input)

    # (under AMP, the largest: the mask cast to bf16 as CUDA's autocast casts it, half the scores)
    assert largest(memory.Simulator(_MaskedAttention().to("meta"))) <= scores / 2
    # the premise: without it the math path runs, and its matrix is seen
    monkeypatch.setattr(memory, "attention_as_one_op", contextlib.nullcontext)
    assert largest(memory.Simulator(_MaskedAttention().to("meta"))) >= scores


def _shape_rule_cases():
    conv, conv_back = torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default
    bn, bn_back = torch.ops.aten.native_batch_norm.default, torch.ops.aten.native_batch_norm_backward.default
    f32, bf16 = torch.float32, torch.bfloat16
    cases = []
    # (op, arguments: shapes (contiguous fake tensors, with their dtype) or values)
    for dtype in (f32, bf16):
        # strides, padding and dilation differing by dimension; a depthwise one; a 1-d one
        for x, w, stride, padding, dilation, groups in [
                ((2, 3, 17, 19), (8, 3, 3, 5), [2, 1], [1, 2], [1, 2], 1),
                ((2, 8, 9, 9), (8, 1, 3, 3), [2, 2], [1, 1], [1, 1], 8),
                ((2, 4, 30), (6, 4, 7), [3], [0], [2], 1)]:
            out = [x[0], w[0]] + [(n + 2 * p - d * (k - 1) - 1) // s + 1
                                  for n, k, s, p, d in zip(x[2:], w[2:], stride, padding, dilation)]
            common = [stride, padding, dilation, False, [0] * len(stride), groups]
            cases.append((conv, [(x, dtype), (w, dtype), ((w[0],), dtype), *common]))
            for mask in ([True, True, True], [False, True, False]):
                cases.append((conv_back, [(tuple(out), dtype), (x, dtype), (w, dtype), [w[0]],
                                          *common, mask]))
        for training in (True, False):
            stats = [((8,), f32)] * 2
            cases.append((bn, [((2, 8, 5, 5), dtype), ((8,), f32), ((8,), f32), *stats,
                               training, 0.1, 1e-5]))
        cases.append((bn_back, [((2, 8, 5, 5), dtype), ((2, 8, 5, 5), dtype), ((8,), f32),
                                *[((8,), f32)] * 4, True, 1e-5, [True, True, True]]))
    return cases


@pytest.mark.parametrize("func, arguments", _shape_rule_cases())
def test_shape_rules_give_what_the_mode_gives(func, arguments):
    """The outputs that the simulator makes from a few lines of shapes (convolution, batch norm,
    and their backward: zoo.torch_private._SHAPE_RULES) against FakeTensorMode's own dispatch:
    the same sizes, strides and dtypes, once the differences that its check patches are
    patched (statistics in another dtype, or empty)."""
    from zoo import torch_private as tp

    mode, cpu = tp.FakeTensorMode(), torch.device("cpu")
    args = [tp._fake_empty(mode, a[0], tp.make_contiguous_strides_for(a[0]),
                           a[1], cpu) if isinstance(a, tuple) else a for a in arguments]
    with mode:
        want = func(*args)
    got = tp._SHAPE_RULES[func](args, {}, mode)
    agreement = tp._agreement(got, want)
    assert agreement is not False, (tp._described(got), tp._described(want))
    if agreement is not True:
        got = tp._patched(got, agreement, mode)
    assert tp._described(got) == tp._described(want)


def test_views_have_the_strides_the_mode_gives():
    """A view's unit dimensions get the strides FakeTensorMode gives them, which are not always
    the meta kernel's: after a view of the same kind on other shapes, a channels-last image of one
    sample viewed as (1, channels, pixels) (NaFlexViT's patch embedding) keeps the mode's."""
    from zoo import torch_private as tp

    cpu, view = torch.device("cpu"), torch.ops.aten.view.default
    outputs: dict = {}
    mode = tp.FakeTensorMode()
    cases = [((2, 768, 24, 24), (442368, 576, 24, 1), [2, 768, 576]),
             ((1, 768, 24, 24), (442368, 1, 18432, 768), [1, 768, 576])]
    for size, stride, to in cases + cases:  # the second time: remade from the first
        x = tp._fake_empty(mode, size, stride, torch.float32, cpu)
        with mode:
            want = view(x, to)
        got = tp.fake_outputs(view, (x, to), {}, mode, outputs)
        assert (got.shape, got.stride(), got.storage_offset()) == \
            (want.shape, want.stride(), want.storage_offset())
        assert got.untyped_storage() is x.untyped_storage()
