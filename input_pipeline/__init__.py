"""Input pipeline: sources (`sources/`), robust decoding (`decode`), preprocessing ops composed
by a string (`pp/`), seeded stratified splits (`splits`), batch mixing (`mixing`), a per-file
catalogue (`catalogue`) and the grain datasets for train / eval / predict (`pipeline`).
Independent of the rest of jaxcls: the one thing imported from it is `jaxcls.files` (atomic
writes, local or gs://), a module that imports nothing of jaxcls.
"""
