"""Under torch.distributed (2 CPU processes, gloo) the energy net stays identical on every rank
and equals one process training on the whole batch (its gradients are averaged once per step)."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vem_plugins.method.estimators.vem import VEM


def data():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64) * 1.8 - 0.9 for _ in range(2)]


def make(seed):
    torch.manual_seed(seed)  # ranks start from different weights: rank 0's are broadcast
    return VEM(width=4, blocks=2, steps=2, step_size=10.0, noise=0.0, lr=1e-2).double()


def worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        est = make(seed=rank)
        t, s = data()
        for _ in range(3):
            est.update(t[2 * rank:2 * rank + 2], s[2 * rank:2 * rank + 2])
        torch.save([p.detach() for p in est.parameters()], f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_cpu_processes_match_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for a, b in zip(r0, r1):
        assert torch.equal(a, b)
    single = make(seed=0)
    t, s = data()
    for _ in range(3):
        single.update(t, s)
    for a, b in zip(r0, single.parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=1e-9, atol=1e-12)
    assert any(not torch.equal(a, b) for a, b in zip(r0, make(seed=0).parameters()))
