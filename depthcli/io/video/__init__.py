"""Video in and out: OpenCV for cameras and network streams (``opencv``), PyAV for files with
their exact timestamps and sound (``pyav``, ``audio``), image sequences (``sequence``), the
live camera reader (``camera``). ``opencv.open_video`` picks the reader for what ``depthcli
video`` is given."""
