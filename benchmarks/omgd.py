"""OMGD's own ``distill.py`` with and without ``--vem``: seconds per iteration and peak memory.

The paper's setting: ``scripts/resnet_pix2pix/edges2shoes/distill.sh`` as OMGD ships it
(multiteacher, teachers ngf 64 / 16, student ngf 16, batch 4, 256x256) with the paper's VEM
defaults (energy width 64, 7 blocks, K = 10, step 100), on generated 256x256 edge->shape pairs.
Appended to the script: the data and log folders, ``--gpu_ids`` (-1 on CPU), one epoch,
``--num_threads 0`` (no loader processes competing for the cores), ``--no_fid`` and
``--random_vgg`` (no Inception or ImageNet-VGG16 download; the VGG16 of OMGD's loss runs all the
same, with random weights).

    python benchmarks/omgd.py [--checkout third_party/omgd] [--iters 3] [--device cuda]

The checkout is installed with ``vem-plugins install omgd`` when missing. Each run is its own
process; the first iteration (warm-up, OMGD's MACs profile) is not timed; the median of the next
``--iters`` is. Peak memory: on CPU the peak resident set of the training process, on CUDA the
allocator's peak. The last line reads ``ratio_omgd=<vem/plain> mem_ratio_omgd=<vem/plain>
speedup=<S>``, with S from ``benchmarks/iteration.py`` at 256x256, batch 4 (pass it with
``--speedup``, or it is measured here by running that benchmark).
"""
import argparse
import json
import os
import resource
import runpy
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = "scripts/resnet_pix2pix/edges2shoes/distill.sh"
BATCH = 4


def driver(checkout: str, argv: list[str], device: str) -> None:
    """Run ``distill.py`` in this process, timing each ``optimize_parameters``; print JSON."""
    import torch

    os.chdir(checkout)
    sys.path.insert(0, checkout)
    from distillers.multiteacher_distiller import MultiTeacherDistiller

    times, step = [], MultiTeacherDistiller.optimize_parameters

    def timed(self, steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(self, steps)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)

    MultiTeacherDistiller.optimize_parameters = timed
    sys.argv = ["distill.py", *argv]
    runpy.run_path("distill.py", run_name="__main__")
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("BENCH " + json.dumps({"times": times, "peak_bytes": peak}), flush=True)


def paper_flags(checkout: Path) -> list[str]:
    """The flags of OMGD's paper script (after ``python distill.py``)."""
    words = shlex.split((checkout / SCRIPT).read_text().replace("\\\n", " "), comments=True)
    return words[words.index("distill.py") + 1:]


def run(checkout: Path, work: Path, vem: bool, iters: int, device: str) -> dict:
    flags = paper_flags(checkout) + [
        "--dataroot", str(work / "data"), "--log_dir", str(work / ("vem" if vem else "plain")),
        "--real_stat_path", str(work / "real_stat.npz"), "--gpu_ids", "0" if device == "cuda" else "-1",
        "--nepochs", "1", "--nepochs_decay", "0", "--num_threads", "0", "--no_fid",
        "--random_vgg", "--print_freq", "1"] + (["--vem"] if vem else [])
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import omgd; "
            f"omgd.driver({str(checkout)!r}, {flags!r}, {device!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode or not lines:
        sys.exit(f"OMGD {'with' if vem else 'without'} --vem failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    out = json.loads(lines[-1][6:])
    if len(out["times"]) < iters + 1:
        sys.exit(f"OMGD ran {len(out['times'])} iterations, expected {iters + 1}")
    return {"seconds": statistics.median(out["times"][1:]), "peak_bytes": out["peak_bytes"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", default="third_party/omgd")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--speedup", type=float, help="speedup from benchmarks/iteration.py")
    args = ap.parse_args()
    checkout = Path(args.checkout).absolute()
    if not (checkout / "distill.py").exists():
        from vem_plugins.adapters.omgd.adapter import ADAPTER
        from vem_plugins.install.checkout import install
        install(ADAPTER, checkout)
    import numpy as np
    from vem_plugins.commands import toy_pairs

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        toy_pairs.write(work / "data", train=BATCH * (args.iters + 1), val=1, size=256)
        np.savez(work / "real_stat.npz", mu=np.zeros(2048), sigma=np.zeros((2048, 2048)))
        res = {}
        for vem in (False, True):
            res[vem] = run(checkout, work, vem, args.iters, args.device)
            print(f"{'vem' if vem else 'plain'}: {res[vem]['seconds']:.2f} s/iteration, peak "
                  f"{res[vem]['peak_bytes'] / 2**20:.0f} MiB", flush=True)
    speedup = args.speedup
    if speedup is None:
        out = subprocess.run([sys.executable, str(Path(__file__).parent / "iteration.py"),
                              "--device", args.device], capture_output=True, text=True,
                             check=True).stdout
        print(out, end="", flush=True)
        speedup = float(out.strip().splitlines()[-1].split()[0].split("=")[1])
    print(f"ratio_omgd={res[True]['seconds'] / res[False]['seconds']:.2f} "
          f"mem_ratio_omgd={res[True]['peak_bytes'] / res[False]['peak_bytes']:.2f} "
          f"speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
