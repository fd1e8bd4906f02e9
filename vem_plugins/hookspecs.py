"""The hook specifications of vem-plugins: the whole extension API in one file.

Plugins implement these with :data:`vem_plugins.hookimpl`; built-ins (the VEM, VID and CRD
estimators, the five upstream adapters) are plugins too. Third-party plugins are found through
the ``vem_plugins`` entry-point group (see :mod:`vem_plugins.plugins`).

Two kinds of hooks live here:

* *registration* hooks, called once when plugins load: :func:`register_estimators`,
  :func:`register_adapters`, :func:`add_options`;
* *training* hooks, called by :class:`vem_plugins.method.runtime.Runtime` from patched upstream code at
  fixed points of every iteration: :func:`estimator_update` (before the student step),
  :func:`student_loss` (inside it), :func:`checkpoint_state` / :func:`load_checkpoint_state`
  (with upstream's checkpoints). The active estimator object is registered on the runtime's own
  plugin manager, so these hooks reach it and any other plugin the user installed.

Each hook's documented signature is checked against its definition by the test suite.
"""
import pluggy

hookspec = pluggy.HookspecMarker("vem_plugins")


@hookspec
def register_estimators(register):
    """Register mutual-information estimators by name (``--mi NAME`` selects one).

    :param register: callable ``register(name, factory)``; ``factory(options, channels)`` returns
        an estimator object (see :class:`vem_plugins.method.estimators.base.Estimator`) for the parsed
        options and the channel counts ``(t_channels, s_channels)``.
    :return: None
    """


@hookspec
def register_adapters(register):
    """Register upstream adapters (``vem-plugins install NAME``).

    :param register: callable ``register(adapter)`` taking a :class:`vem_plugins.authoring.adapter.Adapter`.
    :return: None
    """


@hookspec
def add_options(parser):
    """Add command-line flags to upstream's ``argparse`` parser (or argument group).

    Called by :func:`vem_plugins.method.options.add_options`. Flags must not clash with upstream's.

    :param parser: an ``argparse.ArgumentParser`` or argument group.
    :return: None
    """


@hookspec
def estimator_update(teacher, student, real, context):
    """Run the estimators' own optimisation (the EBM step) before the student step.

    Called once per student step, after upstream computed its outputs and before it builds the
    student loss. Implementations work on detached tensors only and must leave no gradient in
    upstream's networks.

    :param teacher: detached teacher output, or None.
    :param student: student output (may carry its graph; implementations detach it).
    :param real: ground-truth target for paired data, or None.
    :param context: :class:`vem_plugins.method.runtime.Context` (step, options, device).
    :return: dict of named float statistics to log (e.g. the energy gap), or None.
    """


@hookspec
def student_loss(teacher, student, real, context):
    """Extra terms for the student generator's loss, once per student step.

    Patched upstream code adds the sum of all returned tensors to the student's loss before its
    ``backward()``; the names appear in upstream's loss logging.

    :param teacher: detached teacher output, or None.
    :param student: student output with its graph.
    :param real: ground-truth target for paired data, or None.
    :param context: :class:`vem_plugins.method.runtime.Context` (step, options, device).
    :return: dict of named, already-weighted scalar loss tensors, or None.
    """


@hookspec
def checkpoint_state(context):
    """State to save beside upstream's checkpoint (networks, optimisers, counters).

    :param context: :class:`vem_plugins.method.runtime.Context`.
    :return: dict mapping a key unique to the plugin to a ``torch.save``-able object, or None.
    """


@hookspec
def load_checkpoint_state(state, context):
    """Restore what :func:`checkpoint_state` saved.

    :param state: the merged dict that :func:`checkpoint_state` implementations returned;
        take your own key, ignore the rest.
    :param context: :class:`vem_plugins.method.runtime.Context`.
    :return: None
    """
