"""Output formats beyond PNG: float32 EXR (``exr``), coloured point clouds (``ply``) with their
pinhole camera (``intrinsics``), and the metadata every output carries and ``depthcli info``
reads back (``metadata``: the PNG text chunk, EXR attribute, PLY comment, JSON sidecars)."""
