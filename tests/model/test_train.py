"""The training loop: losses fall, physics reaches the weights, resume is exact, DDP on gloo."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from xphyda.model.phyda import PhydaNet
from xphyda.model.physics_loss import PhysicsLoss
from xphyda.model.train import TrainConfig, load_train_state, simulate_observations, train

LAT = np.linspace(78.75, -78.75, 8)
LON = np.arange(0, 360, 22.5)
LEVELS = [300.0, 500.0]
INDEX = {"u": [0, 1], "v": [2, 3], "w": [4, 5], "z": [6, 7], "t": [8, 9]}


class Toy(torch.utils.data.Dataset):
    def __init__(self, n=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        base = torch.randn(n + 1, 10, 8, 16, generator=g).cumsum(0) * 0.3
        self.x = base

    def __len__(self):
        return len(self.x) - 1

    def __getitem__(self, i):
        return {"truth": self.x[i + 1], "background": self.x[i]}


def tiny_net():
    return PhydaNet(10, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4)


def physics():
    return PhysicsLoss(lat=LAT, lon=LON, levels_hpa=LEVELS, index=INDEX, mean=np.zeros(10),
                       std=np.array([10, 10, 5, 5, 0.1, 0.1, 500, 500, 5, 5.0]))


def config(**kw):
    base = dict(steps=6, batch_size=4, checkpoint_every=3, log_every=1, warmup=1, physics_lambda=0.1)
    base.update(kw)
    return TrainConfig(**base)


def test_simulated_observations_cover_requested_fraction():
    x = torch.randn(64, 4, 16, 32)
    y, mask = simulate_observations(x, fraction=(0.1, 0.1), noise=0.0, generator=torch.Generator().manual_seed(1))
    point = mask.amax(1)
    assert abs(float(point.mean()) - 0.1) < 0.02
    assert torch.equal(y, x * mask)  # no noise: observed values are the truth, zero elsewhere


def test_train_runs_logs_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    out = train(tiny_net(), Toy(), config=config(), out_dir=tmp_path / "a", physics=physics(), lat=LAT, progress=False)
    assert out["step"] == 6
    lines = [json.loads(s) for s in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 7))
    assert all(np.isfinite(r["loss"]) for r in lines)
    assert {"physics_continuity", "physics_hydrostatic", "physics_geostrophic", "reconstruction"} <= set(lines[-1])
    # resume: a run stopped at step 3 and continued to 6 gives the same weights as the straight run
    b = tmp_path / "b"
    torch.manual_seed(0)
    train(tiny_net(), Toy(), config=config(steps=3), out_dir=b, physics=physics(), lat=LAT, progress=False)
    out2 = train(tiny_net(), Toy(), config=config(steps=6), out_dir=b, physics=physics(), lat=LAT, progress=False)
    assert out2["step"] == 6
    net_a, net_b = tiny_net(), tiny_net()
    ema_a, ema_b = tiny_net(), tiny_net()
    opt = lambda n: torch.optim.AdamW(n.parameters())  # noqa: E731
    assert load_train_state(tmp_path / "a", net_a, ema_a, opt(net_a)) == 6
    load_train_state(b, net_b, ema_b, opt(net_b))
    for (k, va), vb in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-5), k


def test_resuming_with_or_without_a_movable_centre_names_the_difference(tmp_path):
    from xphyda.errors import ModelError

    def centred(**kw):
        torch.manual_seed(0)
        return PhydaNet(10, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, centred=True, **kw)

    train(centred(recon_centre=True), Toy(), config=config(steps=3, physics_lambda=0.0), out_dir=tmp_path, physics=None,
          lat=LAT, progress=False)
    with pytest.raises(ModelError, match=r"another network \(recon_centre True \(this run: False\)\).*Fix"):
        train(centred(), Toy(), config=config(steps=4, physics_lambda=0.0), out_dir=tmp_path, physics=None, lat=LAT,
              progress=False)


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    """A run killed between checkpoints logged steps it will repeat; the log keeps each step once."""
    train(tiny_net(), Toy(), config=config(steps=5, checkpoint_every=3), out_dir=tmp_path, physics=None, lat=LAT,
          progress=False)  # checkpoints at 3 and 5; pretend it died after logging 5 but before saving it:
    state = json.loads((tmp_path / "train_state.json").read_text())
    assert state["step"] == 5
    train(tiny_net(), Toy(), config=config(steps=3, checkpoint_every=3), out_dir=tmp_path / "b", physics=None,
          lat=LAT, progress=False)
    for name in ("train_state.json", "train_state.safetensors"):
        (tmp_path / name).write_bytes((tmp_path / "b" / name).read_bytes())  # the state saved at step 3
    train(tiny_net(), Toy(), config=config(steps=6, checkpoint_every=3), out_dir=tmp_path, physics=None, lat=LAT,
          progress=False)
    steps = [json.loads(s)["step"] for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


@pytest.mark.parametrize(("damage", "says"), [
    ({"train_state.json": b'{"step": 3, "optim'}, r"train_state.json cannot be read \(Unterminated string"),
    ({"train_state.json": b'[1, 2]'}, r"train_state.json cannot be read \(not a training state"),
    ({"train_state.json": None}, r"train_state.json cannot be read \(the file is missing"),
    ({"train_state.safetensors": b"\x00" * 20}, r"train_state.safetensors cannot be read"),
])
def test_a_damaged_training_state_is_a_model_error_that_says_how_to_start_afresh(tmp_path, damage, says):
    from xphyda.errors import ModelError
    from xphyda.model.train import saved_sizes

    train(tiny_net(), Toy(), config=config(steps=3), out_dir=tmp_path, physics=None, lat=LAT, progress=False)
    assert saved_sizes(tmp_path)["widths"] == [8, 16]
    for name, content in damage.items():
        (tmp_path / name).unlink() if content is None else (tmp_path / name).write_bytes(content)
    with pytest.raises(ModelError, match=says + r".*Fix: delete train_state.safetensors and train_state.json"):
        train(tiny_net(), Toy(), config=config(steps=6), out_dir=tmp_path, physics=None, lat=LAT, progress=False)


def test_physics_term_changes_the_update(tmp_path):
    """The same steps with and without the physics term move the weights differently.

    (Adam's first step is sign(g) * lr, so a few steps are needed to see magnitudes.)"""
    results = []
    for lam in (0.0, 10.0):
        torch.manual_seed(0)
        net = tiny_net()
        train(net, Toy(), config=config(steps=3, physics_lambda=lam, checkpoint_every=3), out_dir=tmp_path / f"l{lam}",
              physics=physics(), lat=LAT, progress=False)
        results.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert not torch.allclose(results[0], results[1])


SCRIPT = textwrap.dedent(
    """
    import sys, torch, numpy as np
    sys.path.insert(0, {tests!r})
    from test_train import Toy, tiny_net, physics, config, LAT
    from xphyda.model.train import train
    torch.manual_seed(0)
    out = train(tiny_net(), Toy(), config=config(steps=2, batch_size=4), out_dir={out!r}, physics=physics(), lat=LAT,
                progress=False)
    import torch.distributed as dist
    flat = torch.cat([p.detach().flatten() for p in out["ema"].values()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    assert torch.equal(gathered[0], gathered[1]), "ranks diverged"
    sys.stdout.write(f"RANK {{dist.get_rank()}} OK {{out['step']}}" + chr(10))  # one write: lines do not interleave
    sys.stdout.flush()
    dist.barrier()
    dist.destroy_process_group()
    """
)


def test_distributed_two_cpu_processes_gloo(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__), out=str(tmp_path / "ddp")))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    import socket
    import warnings

    def run():
        with socket.socket() as sock:  # a free port, so parallel or repeated runs do not collide
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={port}", str(script)]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    res = run()
    if res.returncode != 0:
        # Once in a fresh-clone CI run under load, rank 0 aborted ("terminate called without an active
        # exception", SIGABRT) and passed on its own 4 times out of 4: one retry, and the first failure is reported
        warnings.warn(f"the gloo run failed once and is retried: {res.stderr[-1500:]}", stacklevel=1)
        res = run()
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("OK 2") == 2


def test_learning_rate_warms_up_then_anneals_to_zero():
    from xphyda.model.train import learning_rate

    cfg = TrainConfig(steps=100, lr=1e-3, warmup=10, lr_decay_steps=40)
    rates = np.array([learning_rate(cfg, s) for s in range(100)])
    assert np.allclose(rates[:10], 1e-3 * np.arange(1, 11) / 10)  # linear warm-up
    assert np.allclose(rates[10:61], 1e-3)  # constant up to the start of the decay
    assert np.all(np.diff(rates[60:]) < 0) and rates[-1] < 1e-3 * 0.01  # strictly down, ends near 0
    assert np.isclose(rates[80], 0.5e-3)  # half-way down the cosine at its middle
    flat = TrainConfig(steps=100, lr=1e-3, warmup=10)
    assert learning_rate(flat, 99) == 1e-3  # no decay unless asked


def test_annealed_run_applies_the_schedule_and_resumes_on_it(tmp_path):
    """The optimiser runs with the scheduled rate, also after a resume (the schedule is a function of the step)."""
    seen = []

    class Spy(torch.optim.AdamW):
        def step(self, *a, **k):
            seen.append(self.param_groups[0]["lr"])
            return super().step(*a, **k)

    from unittest import mock

    from xphyda.model.train import learning_rate

    cfg = config(steps=6, lr=1e-3, lr_decay_steps=4)
    with mock.patch("torch.optim.AdamW", Spy):
        train(tiny_net(), Toy(), config=config(steps=3, lr=1e-3, lr_decay_steps=4), out_dir=tmp_path, physics=None,
              lat=LAT, progress=False)  # stage 1 of a run that will end at 6
        seen.clear()
        train(tiny_net(), Toy(), config=cfg, out_dir=tmp_path, physics=None, lat=LAT, progress=False)
    assert seen == pytest.approx([learning_rate(cfg, s) for s in range(3, 6)])
    assert seen[0] > seen[1] > seen[2]


def test_trim_metrics_drops_later_steps_and_a_line_cut_short(tmp_path):
    from xphyda.model.train import _trim_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo')
    _trim_metrics(path, 3)
    assert [json.loads(s)["step"] for s in path.read_text().splitlines()] == [1, 2, 3]
    _trim_metrics(path, 0)  # a fresh run (no checkpoint) after one killed before its first checkpoint
    assert path.read_text() == ""


def test_channel_weights_reweight_the_loss_and_are_checked(tmp_path):
    """Uniform weights are the default exactly (they are rescaled to mean 1); uneven ones change the update."""
    results = {}
    for name, weights in (("none", None), ("uniform", (3.0,) * 10), ("q", (5.0,) + (1.0,) * 9)):
        torch.manual_seed(0)
        net = tiny_net()
        train(net, Toy(), config=config(steps=3, channel_weights=weights), out_dir=tmp_path / name,
              physics=physics(), lat=LAT, progress=False)
        results[name] = torch.cat([p.detach().flatten() for p in net.parameters()])
    assert torch.allclose(results["none"], results["uniform"], atol=1e-6)
    assert not torch.allclose(results["none"], results["q"], atol=1e-4)
    from xphyda.errors import ModelError

    for bad in ((1.0,) * 9, (0.0,) + (1.0,) * 9, (float("nan"),) * 10):
        with pytest.raises(ModelError, match="channel_weights must be 10 positive finite numbers"):
            train(tiny_net(), Toy(), config=config(steps=1, channel_weights=bad), out_dir=tmp_path / "bad",
                  physics=None, lat=LAT, progress=False)


class Interrupting(Toy):
    """Sends this process SIGINT (Ctrl-C) while item ``at`` is read, as a user would in the middle of a step."""

    def __init__(self, at, **kw):
        super().__init__(**kw)
        self.at, self.sent = at, False

    def __getitem__(self, i):
        if not self.sent and i == self.at:
            import signal

            self.sent = True
            signal.raise_signal(signal.SIGINT)
        return super().__getitem__(i)


def test_ctrl_c_finishes_the_step_saves_the_state_and_resumes_exactly(tmp_path):
    """Ctrl-C used to lose every step since the last checkpoint (up to 199); now the step in progress ends, the
    state is saved, and the resumed run gives the straight run's weights."""
    torch.manual_seed(0)
    train(tiny_net(), Toy(), config=config(checkpoint_every=100), out_dir=tmp_path / "a", physics=physics(), lat=LAT,
          progress=False)
    torch.manual_seed(0)
    data = Interrupting(at=-1)
    data.at = int(next(iter(train.__globals__["StepBatchSampler"](len(data), 4, seed=0, start_step=2, steps=6)))[0])
    with pytest.raises(KeyboardInterrupt):
        train(tiny_net(), data, config=config(checkpoint_every=100), out_dir=tmp_path / "b", physics=physics(),
              lat=LAT, progress=False)
    net = tiny_net()
    assert load_train_state(tmp_path / "b", net, tiny_net(), torch.optim.AdamW(net.parameters())) == 3
    train(tiny_net(), Toy(), config=config(checkpoint_every=100), out_dir=tmp_path / "b", physics=physics(), lat=LAT,
          progress=False)
    net_a, net_b = tiny_net(), tiny_net()
    load_train_state(tmp_path / "a", net_a, tiny_net(), torch.optim.AdamW(net_a.parameters()))
    assert load_train_state(tmp_path / "b", net_b, tiny_net(), torch.optim.AdamW(net_b.parameters())) == 6
    for (k, va), vb in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-5), k


def test_a_non_finite_loss_stops_training_and_keeps_the_last_state(tmp_path):
    from xphyda.errors import ModelError

    data = Toy()
    data.x[5, 0, 3, 3] = float("nan")
    with pytest.raises(ModelError, match=r"loss is not finite at step 2 .*no state was saved\. Fix: look for NaN"):
        train(tiny_net(), data, config=config(steps=12), out_dir=tmp_path / "n", physics=physics(), lat=LAT,
              progress=False)
    clean = Toy()  # a state saved before the NaN is reached is named and kept
    train(tiny_net(), clean, config=config(steps=3), out_dir=tmp_path / "m", physics=physics(), lat=LAT, progress=False)
    clean.x[:] = float("nan")
    with pytest.raises(ModelError, match=r"loss is not finite at step 4 .*state saved at step 3 in .* is kept"):
        train(tiny_net(), clean, config=config(steps=12), out_dir=tmp_path / "m", physics=physics(), lat=LAT,
              progress=False)
    net = tiny_net()
    assert load_train_state(tmp_path / "m", net, tiny_net(), torch.optim.AdamW(net.parameters())) == 3
