"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class G2DBenchError(Exception):
    """Bad input or an unmet precondition a user can fix.

    The message is one line that names what is wrong (the file, the column, the value) and what to
    do about it, e.g. ``SIIM: train-rle.csv has no column 'EncodedPixels' (found: ImageId, Pixels).
    Is --data-root pointing at the SIIM release?``
    """
