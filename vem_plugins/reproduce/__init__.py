"""``vem-plugins reproduce``: the paper's tables as experiments (specs), run over seeds as
resumable jobs, locally or through submitit on Slurm, summarised with confidence intervals.

:mod:`.specs` reads the experiments (TOML files, one per table row), :mod:`.jobs` runs one job
(a spec x method x seed), :mod:`.executors` runs many, :mod:`.needs` checks what a job needs
before any starts, :mod:`.statistics` computes the intervals and :mod:`.results` writes the
results file and the HTML report.
"""
