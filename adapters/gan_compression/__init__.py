"""The built-in adapter for gan-compression: declaration and documentation (:mod:`.adapter`), the calls its
patches make (:mod:`.glue`) and its compatibility fixes (:mod:`.compat`)."""
