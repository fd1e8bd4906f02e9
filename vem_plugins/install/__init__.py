"""Getting upstream code into shape: git through GitPython (:mod:`.git`), patch series applied
on a scratch index (:mod:`.patchset`), checkouts with their lock file (:mod:`.checkout`) and
patch series rewritten from an author's edits (:mod:`.refresh`)."""
