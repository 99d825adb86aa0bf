"""Input pipeline: sources (`sources/`), robust decoding (`decode`), preprocessing ops composed
by a string (`pp/`), seeded stratified splits (`splits`), batch mixing (`mixing`), a per-file
catalogue (`catalogue`) and the grain datasets for train / eval / predict (`pipeline`).
Independent of the rest of jaxcls: what it imports from it is `jaxcls.files` (atomic writes,
local or gs://) and `jaxcls.native` (the C++ area resize, the malloc settings), modules that
import nothing else of jaxcls.
"""
