"""Time one full student iteration with and without VEM, and its peak memory.

One iteration: teacher forward (no grad), student forward, the student's own loss (L1 to the
teacher), backward and an Adam step; with VEM also the EBM update (K Langevin steps + one Adam step
of the energy net) and the MI term. Generators are pix2pix-style ResNet-9-block nets (teacher
ngf 64, student ngf 16); the energy net has the paper's pix2pix width 64.

    python benchmarks/iteration.py [--device cuda] [--iters 5]

Each configuration runs in its own subprocess so peak memory is its own: on CUDA the allocator's
peak; on CPU the growth of the peak resident set over the resident set before the first
iteration. The last line reads ``ratio_256=<vem/plain time> mem_ratio_256=<vem/plain memory>``
for 256x256, batch 1.
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


def run_one(size: int, batch: int, vem: bool, iters: int, device: str) -> dict:
    """Time ``iters`` iterations (after one warm-up) in this process."""
    from vem_plugins import options
    from vem_plugins.runtime import Runtime

    torch.manual_seed(0)
    teacher = resnet_generator(64).to(device).eval()
    student = resnet_generator(16).to(device)
    opt_s = torch.optim.Adam(student.parameters(), 2e-4, betas=(0.5, 0.999))
    flags = options.defaults()
    flags.vem = vem
    rt = Runtime(flags, device)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1

    def iteration():
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        rt.update(student=s, teacher=t)
        loss = (s - t).abs().mean() + rt.student_loss(student=s, teacher=t)
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
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: size,batch,vem
    args = ap.parse_args()
    if args.one:
        size, batch, vem = (int(v) for v in args.one.split(","))
        print(json.dumps(run_one(size, batch, bool(vem), args.iters, args.device)))
        return
    print(f"device={args.device} threads={torch.get_num_threads()} iters={args.iters} (median)")
    ratios = {}
    for size, batch in ((64, 4), (64, 1), (256, 4), (256, 1)):
        res = {}
        for vem in (0, 1):
            out = subprocess.run([sys.executable, __file__, "--device", args.device, "--iters",
                                  str(args.iters), "--one", f"{size},{batch},{vem}"],
                                 capture_output=True, text=True, check=True).stdout
            res[vem] = json.loads(out.strip().splitlines()[-1])
        ratio = res[1]["seconds"] / res[0]["seconds"]
        mem_ratio = res[1]["peak_bytes"] / res[0]["peak_bytes"]
        ratios[size, batch] = ratio, mem_ratio
        print(f"size={size} batch={batch} plain={res[0]['seconds']:.3f}s vem={res[1]['seconds']:.3f}s "
              f"ratio={ratio:.2f} peak_plain={res[0]['peak_bytes'] / 2**20:.0f}MiB "
              f"peak_vem={res[1]['peak_bytes'] / 2**20:.0f}MiB mem_ratio={mem_ratio:.2f}", flush=True)
    ratio, mem_ratio = ratios[256, 1]
    print(f"ratio_256={ratio:.2f} mem_ratio_256={mem_ratio:.2f}")


if __name__ == "__main__":
    main()
