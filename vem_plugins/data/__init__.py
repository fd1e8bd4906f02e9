"""The data the paper experiments need, in the layouts the upstream scripts load.

* :mod:`vem_plugins.data.catalog`: the six datasets, the official archives users download
  themselves, and where and how each adapter's paper scripts expect them (one table);
* :mod:`vem_plugins.data.archives`: reading a zip, a tar or an extracted folder safely, and
  recognising which official archive it is;
* :mod:`vem_plugins.data.prepare`: ``vem-plugins data prepare`` and ``data list``: verify, write
  each layout once under the data root, atomically, and link the installed checkouts to it;
* :mod:`vem_plugins.data.stats`, :mod:`vem_plugins.data.weights`: the evaluation assets
  (``data stats``, ``data weights``).

The command line is :mod:`vem_plugins.commands.data`.
"""
