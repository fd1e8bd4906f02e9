"""What users run: the command line (:mod:`.cli`) and the commands behind it: ``check``,
``new-adapter`` (:mod:`.scaffold`), ``try`` (:mod:`.tryout`, on :mod:`.toy_pairs`) and ``report``
(:mod:`.report`, reading the run records that :mod:`.record` writes during training, with the
held-out metrics of :mod:`.paired_metrics`)."""
