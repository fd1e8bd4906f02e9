"""The paper's method inside a training run: the energy network (:mod:`.energy`), the short-run
Langevin sampler (:mod:`.langevin`), the MI estimators VEM, VID and CRD (:mod:`.estimators`),
their command-line flags (:mod:`.options`) and the :class:`~.runtime.Runtime` that patched
upstream code calls."""
