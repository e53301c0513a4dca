"""Exit codes, documented in the README. Scripts branch on these."""
OK = 0
SOME_FAILED = 1  # some inputs failed; the others were processed and written
USAGE = 2  # bad options or arguments (click's own code for usage errors)
MODEL = 3  # the model could not be loaded: missing/corrupt/unsafe checkpoint, download failed
DEVICE = 4  # the requested device or precision is not available, or ran out of memory
INPUT = 5  # a single input (video, camera, stream) could not be opened or read at all
INTERRUPTED = 130  # Ctrl-C / SIGTERM: what was written so far is complete and kept
