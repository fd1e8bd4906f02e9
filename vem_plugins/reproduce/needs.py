"""What the selected jobs need before any starts: the prepared dataset linked into the
checkout, the files upstream reads at start-up (statistics, teachers), the pretrained weights;
each missing item is one line naming the command that makes it ready."""
from __future__ import annotations

from pathlib import Path

from vem_plugins.commands.places import show
from vem_plugins.data import catalog, links, prepare


def weights_folder() -> Path:
    """Where torch (and so every upstream) loads pretrained files from:
    ``$TORCH_HOME/hub/checkpoints``."""
    import torch.hub
    return Path(torch.hub.get_dir()) / "checkpoints"


def problems(spec, scale: str, checkout: Path, root: Path) -> list[str]:
    """One line per thing ``spec`` at ``scale`` lacks in ``checkout`` (data root ``root``).
    A prepared dataset is linked into the checkout on the way, as ``data prepare`` does for
    the checkouts it knows."""
    lines = []
    if scale == "paper":
        dataset = catalog.get(spec.dataset)
        if prepare.read_marker(root / dataset.name) is None:
            lines.append(f"{spec.name}: dataset {dataset.name} is not prepared under "
                         f"{show(root)}: vem-plugins data prepare {dataset.name} --from <the "
                         f"archive `vem-plugins data list` names> --root {show(root)}")
        else:
            links.link(dataset, root, {spec.adapter: [checkout]})
            state = links.states(dataset, root, {spec.adapter: [checkout]}).get(
                (spec.adapter, checkout), links.LINKED)
            if state.endswith(("not linked", "a dangling link", "somewhere else, left alone")):
                lines.append(f"{spec.name}: dataset {dataset.name} is not linked into "
                             f"{show(checkout)} ({state}): vem-plugins data prepare "
                             f"{dataset.name} --root {show(root)} links it")
    for need in spec.scales[scale].needs:
        if not (checkout / need.path).exists():
            lines.append(f"{spec.name}: {show(checkout / need.path)} is missing: {need.make}")
    folder = weights_folder()
    for name in spec.scales[scale].weights:
        if not (folder / name).is_file():
            lines.append(f"{spec.name}: weight file {show(folder / name)} is missing: "
                         f"`vem-plugins data weights` says where to get it")
    return lines
