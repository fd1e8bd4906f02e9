"""Mutual-information estimators: VEM (the method) and the VID and CRD baselines.

Each is a plain ``torch.nn.Module`` usable without pluggy; each module also registers its
estimator by name through the ``register_estimators`` hook.
"""
