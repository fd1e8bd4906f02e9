"""The built-in adapter for cagc: declaration and documentation (:mod:`.adapter`), the calls its
patches make (:mod:`.glue`) and its compatibility fixes (:mod:`.compat`)."""
