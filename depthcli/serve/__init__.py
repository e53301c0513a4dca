"""``depthcli serve``: one resident model behind an HTTP API and a browser page (docs/server.md).

A door like ``depthcli/cli``, on the same layer: it calls the ``jobs.image`` steps, never copies
of them. Needs the ``serve`` extra (Starlette, uvicorn, python-multipart), imported only by
``depthcli serve`` itself; ``client.py`` (the ``depthcli image --server`` side) is stdlib only.
"""
