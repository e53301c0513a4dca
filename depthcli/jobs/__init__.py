"""The per-input jobs, below every door: "decode -> predict -> render -> write atomically,
report stats" for one image (``jobs.image``) and one video (``jobs.video``), as plain functions
with no click, so the local CLI, cluster workers and the server run the very same code."""
