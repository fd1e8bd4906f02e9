"""Time one full student iteration without VEM, with VEM computed the textbook way, and with
our VEM, side by side; and their peak memory.

One iteration: teacher forward (no grad), student forward, the student's own loss (L1 to the
teacher), backward and an Adam step; with VEM also the EBM update (K = 10 Langevin steps + one
Adam step of the energy net) and the MI term, at the paper's defaults. Generators are pix2pix-style
ResNet-9-block nets (teacher ngf 64, student ngf 16); the energy net is the paper's, pix2pix width
64. "textbook" evaluates every energy literally (:meth:`vem_plugins.method.energy.EnergyNet.textbook`:
[t, s] concatenated, one forward through the plain layers, a power iteration at each), "ours" is
the library's fast path, which computes the same function (``tests/test_energy.py``).

    python benchmarks/iteration.py [--device cuda] [--iters 5]

Each configuration runs in its own subprocess so peak memory is its own: on CUDA the allocator's
peak; on CPU the growth of the peak resident set over the resident set before the first
iteration. Per size: ``ratio`` = ours / plain time and ``speedup`` = (textbook - plain) /
(ours - plain), the factor by which the fast path cuts VEM's extra time. The last line reads
``speedup=<at 256x256, batch 4> ratio_256=<ours/plain there>``.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn


def resnet_generator(ngf: int, blocks: int = 9) -> nn.Module:
    """The pix2pix/CycleGAN ResNet generator layout (instance norm, 2 down, 9 blocks, 2 up)."""
    def cna(cin, cout, **kw):
        return [nn.Conv2d(cin, cout, **kw), nn.InstanceNorm2d(cout), nn.ReLU(True)]

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(*cna(c, c, kernel_size=3, padding=1),
                                      nn.Conv2d(c, c, 3, padding=1), nn.InstanceNorm2d(c))

        def forward(self, x):
            return x + self.body(x)

    layers = cna(3, ngf, kernel_size=7, padding=3)
    layers += cna(ngf, 2 * ngf, kernel_size=3, stride=2, padding=1)
    layers += cna(2 * ngf, 4 * ngf, kernel_size=3, stride=2, padding=1)
    layers += [Block(4 * ngf) for _ in range(blocks)]
    for c in (4 * ngf, 2 * ngf):
        layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(c // 2),
                   nn.ReLU(True)]
    layers += [nn.Conv2d(ngf, 3, 7, padding=3), nn.Tanh()]
    return nn.Sequential(*layers)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def textbook_vem(**kwargs):
    """VEM whose every energy is computed literally (the benchmark's reference)."""
    from vem_plugins.method.estimators.vem import VEM
    from vem_plugins.method.langevin import sample

    class TextbookVEM(VEM):
        def prepare(self, t, s):
            self.energy.train()  # a power iteration at every forward, as the textbook does
            self.negatives = sample(lambda x: self.energy.textbook(x, s), s, self.steps,
                                    self.step_size, self.noise, self.value_range)

        def _energies(self, t, s):
            return self.energy.textbook(torch.cat([t, self.negatives]), torch.cat([s, s])).chunk(2)
    return TextbookVEM(**kwargs)


def run_one(size: int, batch: int, mode: str, iters: int, device: str) -> dict:
    """Time ``iters`` iterations (after one warm-up) in this process; ``mode``: plain, textbook
    or ours."""
    from vem_plugins.method.estimators.vem import VEM

    torch.manual_seed(0)
    teacher = resnet_generator(64).to(device).eval()
    student = resnet_generator(16).to(device)
    opt_s = torch.optim.Adam(student.parameters(), 2e-4, betas=(0.5, 0.999))
    est = None if mode == "plain" else (textbook_vem if mode == "textbook" else VEM)(width=64)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1

    def iteration():
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        loss = (s - t).abs().mean()
        if est is not None:
            est.update(t, s)
            loss = loss + est.loss(t, s)
        opt_s.zero_grad()
        loss.backward()
        opt_s.step()

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    iteration()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        iteration()
        sync()
        times.append(time.perf_counter() - t0)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"seconds": statistics.median(times), "peak_bytes": max(peak, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: size,batch,mode
    args = ap.parse_args()
    if args.one:
        size, batch, mode = args.one.split(",")
        print(json.dumps(run_one(int(size), int(batch), mode, args.iters, args.device)))
        return
    print(f"device={args.device} threads={torch.get_num_threads()} iters={args.iters} (median)")
    found = {}
    for size, batch in ((64, 4), (256, 1), (256, 4)):
        res = {}
        for mode in ("plain", "textbook", "ours"):
            out = subprocess.run([sys.executable, __file__, "--device", args.device, "--iters",
                                  str(args.iters), "--one", f"{size},{batch},{mode}"],
                                 capture_output=True, text=True, check=True).stdout
            res[mode] = json.loads(out.strip().splitlines()[-1])
        sec = {mode: r["seconds"] for mode, r in res.items()}
        mib = {mode: r["peak_bytes"] / 2**20 for mode, r in res.items()}
        ratio = sec["ours"] / sec["plain"]
        speedup = (sec["textbook"] - sec["plain"]) / max(sec["ours"] - sec["plain"], 1e-9)
        found[size, batch] = ratio, speedup
        print(f"size={size} batch={batch} plain={sec['plain']:.3f}s textbook={sec['textbook']:.3f}s "
              f"ours={sec['ours']:.3f}s ratio={ratio:.2f} speedup={speedup:.2f} "
              f"peak_plain={mib['plain']:.0f}MiB peak_textbook={mib['textbook']:.0f}MiB "
              f"peak_ours={mib['ours']:.0f}MiB mem_ratio={mib['ours'] / mib['plain']:.2f}", flush=True)
    ratio, speedup = found[256, 4]
    print(f"speedup={speedup:.2f} ratio_256={ratio:.2f}")


if __name__ == "__main__":
    main()
